"""Keep the garbage collector's full passes short while a local cloud holds a big job's state.

The emulators keep what the services keep (every row, object and message), as Python objects, in the process
that runs them. At a million recipients that is millions of objects, and each full collection walks them all:
measured in ``bench/bench_serverless.py`` at 1M rows, pauses of 0.1-0.8 s every 10-18 s (spaced as CPython's
full collections are, each when the long-lived objects have grown by a quarter), during which the local
Tablestore and CAMS answered nothing. The real services do not pause with the size of an account's data, and
their pauses made the product's rate limiter wait for departures recorded late (the sending looked 1-2%
slower than it is).

``steady()`` moves what exists to the collector's permanent generation every ``interval`` seconds
(``gc.freeze``), so each full collection walks only what came since; ``release()`` gives it all back
(``gc.unfreeze``) when the last user stops. Opt-in (``LocalCloud(steady_collector=True)``): while frozen,
cyclic garbage made before a freeze is not collected until the release, which suits a long-running local cloud
and a benchmark, not a test process that starts hundreds of clouds.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_users = 0
_stop: threading.Event | None = None


def steady(interval: float = 2.0) -> None:
    """Start freezing (once per process, counted: each call needs its :func:`release`)."""
    global _users, _stop
    with _lock:
        _users += 1
        if _users > 1:
            return
        stop = _stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            gc.freeze()

    threading.Thread(target=run, name="localcloud-collector", daemon=True).start()


def release() -> None:
    """One user is done; the last one stops the freezing and hands every frozen object back."""
    global _users, _stop
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users or _stop is None:
            return
        _stop.set()
        _stop = None
    gc.unfreeze()
