"""How busy this machine is, measured: the factor the suite's budgets scale with (issue 15: ``make test`` must
pass on a busy laptop, with two CPU-bound processes beside it).

A test never asserts a duration. What it does have are *budgets*: how long to wait for a condition before
calling it failed, and, in the fault suite, how long a sender's claim on a batch lasts before the sweeper
may take it (``CHATAPP_CLAIM_TTL``, 5 s there so that crashes recover quickly). On a machine shared with
other work both are too short when the test's processes get a fraction of a CPU: a claim expires while its
sender waits for the CPU, and the batch is reported ``uncertain`` although nothing was ambiguous.

The factor is measured, not guessed, and needs no reference machine:

- **contention**: a CPU-bound loop's wall time over the CPU time it got (``time.process_time``): 1.0 on an
  idle machine, about 1.5 when two busy processes share two CPUs with it, 3 when it gets a third of a CPU;
- **load**: the 1-minute load average per CPU (``os.getloadavg``), which also counts work that was not
  running during the short loop.

``factor()`` is the larger of the two, at least 1 and at most ``CHATAPP_TEST_SPEED_MAX`` (default 6), measured
once per process (the median of three short loops, about 0.2 s in all) and cached. ``CHATAPP_TEST_SPEED``
sets it outright (e.g. ``CHATAPP_TEST_SPEED=3`` on a machine known to be slow). ``budget(seconds)`` is a
budget scaled by it.
"""

from __future__ import annotations

import functools
import os
import statistics
import time


def _contention(rounds: int = 3, work: int = 300_000) -> float:
    ratios = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        total = 0
        for i in range(work):  # pure Python: the interpreter's speed, no I/O, no allocation to speak of
            total += i * i
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        ratios.append(wall / max(cpu, 1e-3))
    return statistics.median(ratios)


def _load() -> float:
    try:
        return os.getloadavg()[0] / max(os.cpu_count() or 1, 1)
    except OSError:  # not on every platform
        return 0.0


@functools.cache
def factor() -> float:
    """How many times longer than on an idle machine things take here now (1.0 to 6.0, see the module)."""
    given = os.environ.get("CHATAPP_TEST_SPEED", "").strip()
    if given:
        return max(1.0, float(given))
    most = float(os.environ.get("CHATAPP_TEST_SPEED_MAX", "6") or 6)
    return round(min(max(1.0, _contention(), _load()), most), 2)


def budget(seconds: float) -> float:
    """``seconds`` on an idle machine, scaled by :func:`factor`."""
    return seconds * factor()
