"""The account-wide limiter: at most ``limit`` attempts in any sliding ``window`` seconds.

The window lives in the store, so every process (and later every function instance) that shares the store
shares one budget. ``margin`` widens the window a little: the service counts calls when they *arrive*, we
count them just before they leave, and the gap between the two varies by a few milliseconds.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from chatapp_mass.store import Store

DEFAULT_MARGIN = 0.03


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

    def acquire(self, stop: Optional[threading.Event] = None) -> bool:
        """Block until an attempt may be made (True), or until ``stop`` is set (False)."""
        with self._lock:
            while True:
                if stop is not None and stop.is_set():
                    return False
                wait = self.store.rate_acquire(self.key, self.limit, self.window, self.clock())
                if wait <= 0:
                    return True
                if stop is not None:
                    if stop.wait(min(wait, 0.5)):
                        return False
                else:
                    self.sleep(wait)
