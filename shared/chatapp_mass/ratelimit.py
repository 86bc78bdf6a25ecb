"""The account-wide limiter: at most ``limit`` attempts in any sliding ``window`` seconds.

The window lives in the store, so every process (and later every function instance) that shares the store
shares one budget. ``margin`` widens the window a little: the service counts calls when they *arrive*, we
count them just before they leave, and the gap between the two varies (network, and CPU contention on a busy host: tens of ms).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from chatapp_mass.store import Store

DEFAULT_MARGIN = 0.06


class SlidingWindowLimiter:
    def __init__(
        self,
        store: Store,
        *,
        key: str = "cams:SendChatappMassMessage",
        limit: int = 10,
        window: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("the rate limit must be at least 1 call per window")
        self.store = store
        self.key = key
        self.limit = limit
        self.window = window + margin
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()  # one poller per process; others queue here, not on the database

    def acquire(self, stop: Optional[threading.Event] = None) -> Optional[float]:
        """Block until an attempt may be made; returns the time the slot was stamped, or None if ``stop``
        was set first. A caller that cannot send promptly after the stamp should not send on it (see
        ``DispatchSettings.slot_max_age``): the stamp stands in for the request's arrival."""
        stamped: list[float] = []

        def now() -> float:
            stamped.append(self.clock())
            return stamped[-1]

        with self._lock:
            while True:
                if stop is not None and stop.is_set():
                    return None
                wait = self.store.rate_acquire(self.key, self.limit, self.window, now)
                if wait <= 0:
                    return stamped[-1]
                if stop is not None:
                    if stop.wait(min(wait, 0.5)):
                        return None
                else:
                    self.sleep(wait)
