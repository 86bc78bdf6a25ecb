"""The account-wide limiter: at most ``limit`` attempts in any sliding ``window`` seconds, counted as the
service counts them.

The window lives in the store, so every process (and every function instance) that shares the store shares
one budget.

**Departures, not grants** (:meth:`SlidingWindowLimiter.reserve`, issue 14). The service counts a call when
it arrives; what we control is when its bytes leave. A slot is granted up to ``lead`` seconds ahead of the
moment it opens (the store records a *hold*, counted as departing no earlier than now, so nothing granted
later can overtake it); the engine has built and signed the request before asking, runs its ``before``
store write in that lead, and the HTTP layer holds the first byte until the slot opens
(``adapters.transport``). When the request line has been written, the hold becomes a *departure* at that
time (``Store.rate_depart``), and the next grants wait on departures. So whatever happens between grant and
first byte on a busy host (signing, the pool, a connect, the GIL: ~80 ms measured) only delays that call; it
can never bring two calls closer at the service than the window. An attempt that never wrote a byte
(connection refused) is counted at the time it returned: every attempt counts. The choice of hook is
argued in ``adapters.transport``.

**The margin is learned** (``ratemargin``): what is left between our departure and the service's arrival
is the network's variance, unknown here. A refusal by the service's rate window widens the margin a little,
accepted calls narrow it again slowly (additive increase, multiplicative decrease, bounded), so a path with
more jitter settles where it is safe and a quiet one runs near the ceiling. The margin lives in this
process (one per rate key, kept across runners: a warm function instance keeps what it learned), not in the
store: what it measures is this host's and this path's jitter, which another instance does not share, and
reading it from the store would put a round trip on every grant.

:meth:`SlidingWindowLimiter.acquire` (the grant is the stamp) remains for pacers whose service counts
nothing finer (the ListChatappMessage lookups).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from chatapp_mass.services.ratemargin import LearnedMargin, margin_for
from chatapp_mass.store.interface import Store

DEFAULT_MARGIN = 0.01  # the learned margin's floor (seconds added to the window); see ratemargin
DEFAULT_LEAD = 0.15  # how far ahead of its slot a grant is given, and ``before`` runs (one store write)
MIN_NAP = 0.001  # every wait sleeps at least this: a sub-resolution remainder must not spin (fake clocks)


class Slot:
    """A granted slot: the call must not leave before ``not_before``; :meth:`depart` records when it did."""

    def __init__(self, limiter: SlidingWindowLimiter, token: str, not_before: float) -> None:
        self.limiter = limiter
        self.token = token
        self.not_before = not_before
        self.departed_at: float | None = None

    def depart(self, at: float) -> None:
        """The call's bytes left at ``at`` (once; later calls are ignored)."""
        if self.departed_at is not None:
            return
        self.limiter.store.rate_depart(self.limiter.key, self.token, at, self.limiter.clock)
        self.departed_at = at


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
        learned: LearnedMargin | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("the rate limit must be at least 1 call per window")
        self.store = store
        self.key = key
        self.limit = limit
        self.base_window = window
        self.margin = learned or margin_for(key, margin)
        self.lead = lead
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()  # one poller per process; others queue here, not on the database

    @property
    def window(self) -> float:
        """The window the store is asked for: the service's, plus the margin learned so far."""
        return self.base_window + self.margin.value

    def reserve(
        self, stop: threading.Event | None = None, before: Callable[[], bool] | None = None
    ) -> Slot | None:
        """Block until a slot is at most ``lead`` seconds away, and take it: the returned :class:`Slot`
        holds its place in the window until :meth:`Slot.depart` records the departure. None if ``stop`` was
        set first, or ``before`` refused.

        ``before`` runs once, in this process's turn, when the slot is at most ``lead`` seconds away: the
        engine marks its batch ``sending`` there (a store write), so nothing but the request lies between
        the slot and its first byte. Only the batch in turn is marked ahead of its slot, so a crash leaves
        at most one per process ``sending`` without having been sent. Once ``before`` has run, ``stop`` no
        longer interrupts: the batch is marked and its slot is near.
        """
        token = uuid.uuid4().hex
        with self._lock:
            if before is not None and not self._turn(stop, before):
                return None
            while True:
                if stop is not None and stop.is_set() and before is None:
                    return None
                grant = self.store.rate_reserve(
                    self.key, self.limit, self.window, self.clock, token=token, lead=self.lead
                )
                if grant.granted:
                    return Slot(self, token, grant.at)
                if self._pause(min(grant.at, 0.5), stop if before is None else None):
                    return None

    def acquire(
        self, stop: threading.Event | None = None, before: Callable[[], bool] | None = None
    ) -> float | None:
        """The grant is the stamp: block until an attempt may be made now; returns the time it was stamped,
        or None if ``stop`` was set first (or ``before``, run when the slot is at most ``lead`` away,
        returned False). For pacers that have no departure to record (see the module docstring)."""
        stamped: list[float] = []

        def now() -> float:
            stamped.append(self.clock())
            return stamped[-1]

        with self._lock:
            if before is not None and not self._turn(stop, before):
                return None
            while True:
                if stop is not None and stop.is_set() and before is None:
                    return None
                wait = self.store.rate_acquire(self.key, self.limit, self.window, now)
                if wait <= 0:
                    return stamped[-1]
                if self._pause(min(wait, 0.5), stop if before is None else None):
                    return None

    def refused(self) -> None:
        """The service refused a call by its rate window: widen the margin (see ``ratemargin``)."""
        self.margin.refused(self.clock())

    def accepted(self) -> None:
        """The service took a call (it did not refuse it by rate): narrow the margin a little."""
        self.margin.accepted()

    def record(self) -> None:
        """Count one more attempt now, whatever the window holds (see ``Store.rate_acquire``'s ``force``)."""
        with self._lock:
            self.store.rate_acquire(self.key, self.limit, self.window, self.clock, force=True)

    def _turn(self, stop: threading.Event | None, before: Callable[[], bool]) -> bool:
        """This process's turn (under its lock): wait until a slot is at most ``lead`` away, then run
        ``before``. False if ``stop`` was set first or ``before`` refused: no slot is to be taken."""
        while True:
            if stop is not None and stop.is_set():
                return False
            wait = self.store.rate_acquire(self.key, self.limit, self.window, self.clock, peek=True)
            if wait <= self.lead:
                return before()
            if self._pause(min(wait - self.lead, 0.5), stop):
                return False

    def _pause(self, seconds: float, stop: threading.Event | None) -> bool:
        """Sleep at least ``MIN_NAP``; True if ``stop`` was set meanwhile."""
        seconds = max(seconds, MIN_NAP)
        if stop is not None:
            return stop.wait(seconds)
        self.sleep(seconds)
        return False
