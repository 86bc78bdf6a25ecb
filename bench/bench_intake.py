"""Benchmark the recipient-CSV reader: rows/s and peak RSS for 10k and 1M rows.

Each file (valid numbers across a few countries, ~2% invalid, ~2% duplicates, two parameter columns) is
written to a temporary directory and read in a fresh subprocess, so the peak RSS is that of one read
(interpreter and imports included).

    python bench/bench_intake.py            # 10k and 1M rows
    python bench/bench_intake.py 100000     # other sizes
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time

# (prefix as digits, digits that follow, how it is written: "+" international with spaces, or digits only)
_PLANS = (
    ("86138", 8),  # CN mobile
    ("86139", 8),
    ("447400", 6),  # GB mobile
    ("14152", 6),  # US
    ("12125", 6),
    ("33612", 6),  # FR mobile
    ("49151", 8),  # DE mobile
    ("9198", 8),  # IN mobile
    ("55119", 8),  # BR mobile
)
_INVALID = ("12345", "+999 123", "0000", "call me", "+44 20", "86-138")


def _number(rng: random.Random, counters: list[int]) -> str:
    """A valid number, never one given before: a per-prefix counter spread over the free digits."""
    plan = rng.randrange(len(_PLANS))
    prefix, rest = _PLANS[plan]
    counters[plan] += 1
    return prefix + f"{(counters[plan] * 7919 + 12345) % 10**rest:0{rest}d}"


def _written(digits: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return digits
    return "+" + digits[:2] + " " + digits[2:6] + " " + digits[6:]


def write_csv(path: str, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    recent: list[str] = []
    counters = [0] * len(_PLANS)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("to,name,code\n")
        for index in range(rows):
            roll = rng.random()
            if roll < 0.02:
                to = rng.choice(_INVALID)
            elif roll < 0.04 and recent:
                to = rng.choice(recent)
            else:
                to = _written(_number(rng, counters), rng)
                if len(recent) < 1000:
                    recent.append(to)
                else:
                    recent[rng.randrange(1000)] = to
            out.write(f'{to},Customer {index},"C-{index:07d}, ok"\n')


_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from chatapp_mass.core.intake import RecipientReader
from chatapp_mass.core.options import ChannelType, IntakeOptions
import psutil
base = psutil.Process().memory_info().rss
t1 = time.perf_counter()
with open(sys.argv[1], "rb") as stream:
    reader = RecipientReader(stream, source=sys.argv[1], channel=ChannelType.whatsapp, intake=IntakeOptions())
    rows = 0
    for _ in reader:
        rows += 1
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
print(json.dumps({"rows": rows, "seconds": t2 - t1, "import_seconds": t1 - t0, "base_rss": base,
                  "peak_rss": peak, "counts": reader.counts}))
"""


def measure(path: str) -> dict:
    result = subprocess.run([sys.executable, "-c", _CHILD, path], check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def main(sizes: list[int]) -> None:
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = os.path.join(tmp, f"recipients-{size}.csv")
            start = time.perf_counter()
            write_csv(path, size)
            written = time.perf_counter() - start
            stats = measure(path)
            print(
                f"{size:>9,} rows  {os.path.getsize(path) / mib:7.1f} MiB  "
                f"{stats['rows'] / stats['seconds']:9,.0f} rows/s  {stats['seconds']:6.2f} s  "
                f"peak RSS {stats['peak_rss'] / mib:6.1f} MiB (after imports {stats['base_rss'] / mib:.1f} MiB)  "
                f"{stats['counts']}  [generated in {written:.1f} s]",
                flush=True,
            )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 1_000_000])
