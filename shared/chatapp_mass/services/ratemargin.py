"""The rate window's learned margin: additive increase on a refusal, multiplicative decrease on success.

The limiter counts departures (``ratelimit``); the service counts arrivals. The difference is the network's
variance between us and the gateway, which nothing here can measure directly, but the service says when it
was too much: it refuses with its rate code (``System.LimitControl``, ``Throttling*``:
``core.outcomes.OutcomeKind.throttled``). So:

- a refusal **widens** the margin by ``step`` (additive), at most once per ``cooldown`` seconds: the calls
  already in flight when the first refusal came back were spaced by the old margin, and their refusals are
  the same lesson, not new ones;
- every accepted call **narrows** it: ``floor + (value - floor) * decay`` (multiplicative), so after a
  refusal it takes a few hundred calls (tens of seconds at 10 calls/s) to come back, and a path whose jitter
  keeps causing refusals settles where they stop;
- it stays within ``[floor, ceiling]``: the floor is the configured margin (``DispatchSettings.rate_margin``,
  ``CHATAPP_RATE_MARGIN``), the ceiling keeps a burst of refusals that have another cause (another client
  on the same account) from throttling us to a crawl: 0.25 s is 80% of the ceiling at worst.

One per process and rate key (:func:`margin_for`): see ``ratelimit`` for why not in the store.
"""

from __future__ import annotations

import threading

STEP = 0.02  # seconds added per refusal
DECAY = 0.995  # per accepted call: half of the excess gone after ~140 calls
CEILING = 0.25
COOLDOWN = 1.0  # refusals within this long of a widening are the same lesson


class LearnedMargin:
    def __init__(
        self,
        floor: float,
        *,
        step: float = STEP,
        decay: float = DECAY,
        ceiling: float = CEILING,
        cooldown: float = COOLDOWN,
    ) -> None:
        if floor < 0.0:
            raise ValueError(f"margin floor {floor} must not be negative")
        self.floor, self.step, self.decay, self.cooldown = floor, step, decay, cooldown
        self.ceiling = max(ceiling, floor)  # a configured floor above the ceiling is the user's choice
        self.value = floor
        self.widened = 0  # how many refusals widened it (the others fell in a cooldown)
        self._last_widened: float | None = None
        self._lock = threading.Lock()

    def refused(self, now: float) -> None:
        with self._lock:
            if self._last_widened is not None and now - self._last_widened < self.cooldown:
                return
            self._last_widened = now
            self.value = min(self.ceiling, self.value + self.step)
            self.widened += 1

    def accepted(self) -> None:
        with self._lock:
            self.value = self.floor + (self.value - self.floor) * self.decay


_margins: dict[tuple[str, float], LearnedMargin] = {}
_margins_lock = threading.Lock()


def margin_for(key: str, floor: float) -> LearnedMargin:
    """This process's margin for rate key ``key`` with that floor, created on first use and kept: every
    runner (a warm function instance runs many) starts from what the process has learned."""
    with _margins_lock:
        margin = _margins.get((key, floor))
        if margin is None:
            margin = _margins[(key, floor)] = LearnedMargin(floor)
        return margin
