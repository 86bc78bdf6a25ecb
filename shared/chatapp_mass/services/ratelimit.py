"""The account-wide limiter: at most ``limit`` attempts in any sliding ``window`` seconds.

The window lives in the store, so every process (and later every function instance) that shares the store
shares one budget. ``margin`` widens the window a little: the service counts calls when they *arrive*, we
count them just before they leave, and the gap between the two varies (network, and CPU contention on a busy
host: tens of ms).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chatapp_mass.store.interface import Store

DEFAULT_MARGIN = 0.06
DEFAULT_LEAD = 0.05  # how far ahead of its slot ``acquire(before=...)`` runs ``before`` (one store write)


class SlidingWindowLimiter:
    def __init__(
        self,
        store: Store,
        *,
        key: str = "cams:SendChatappMassMessage",
        limit: int = 10,
        window: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        lead: float = DEFAULT_LEAD,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("the rate limit must be at least 1 call per window")
        self.store = store
        self.key = key
        self.limit = limit
        self.window = window + margin
        self.lead = lead
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()  # one poller per process; others queue here, not on the database

    def acquire(
        self, stop: threading.Event | None = None, before: Callable[[], bool] | None = None
    ) -> float | None:
        """Block until an attempt may be made; returns the time the slot was stamped, or None if ``stop``
        was set first. A caller that cannot send promptly after the stamp should not send on it (see
        ``DispatchSettings.slot_max_age``): the stamp stands in for the request's arrival.

        ``before`` runs once, in this process's turn, when a slot is at most ``lead`` seconds away: the
        engine marks its batch ``sending`` there (a store write), so that write happens *before* the stamp
        and the request can follow the stamp at once. (Marking after the stamp put a store round trip
        between stamp and request: under load more than half the slots came too late to be spent.) Only
        the batch in turn is ever marked ahead of its slot, so a crash leaves at most one per process
        ``sending`` without having been sent. If ``before`` returns False, no slot is taken (None). Once it
        has run, ``stop`` no longer interrupts: the batch is marked and its slot is near.
        """
        stamped: list[float] = []

        def now() -> float:
            stamped.append(self.clock())
            return stamped[-1]

        with self._lock:
            ready = before is None
            while True:
                if not ready:
                    if stop is not None and stop.is_set():
                        return None
                    wait = self.store.rate_acquire(self.key, self.limit, self.window, self.clock, peek=True)
                    if wait > self.lead:
                        if self._pause(min(wait - self.lead, 0.5), stop):
                            return None
                        continue
                    assert before is not None
                    if not before():
                        return None
                    ready = True
                elif stop is not None and stop.is_set() and before is None:
                    return None
                wait = self.store.rate_acquire(self.key, self.limit, self.window, now)
                if wait <= 0:
                    return stamped[-1]
                if self._pause(min(wait, 0.5), stop if before is None else None):
                    return None

    def record(self) -> None:
        """Count one more attempt now, whatever the window holds (see ``Store.rate_acquire``'s ``force``)."""
        with self._lock:
            self.store.rate_acquire(self.key, self.limit, self.window, self.clock, force=True)

    def _pause(self, seconds: float, stop: threading.Event | None) -> bool:
        """Sleep; True if ``stop`` was set meanwhile."""
        if stop is not None:
            return stop.wait(seconds)
        self.sleep(seconds)
        return False
