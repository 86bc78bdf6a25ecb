"""Benchmark ingest: rows/s and peak RSS of this checkout against a baseline revision, on the same file.

The file is what users upload: numbers of a dozen countries in mixed notations (``+CC`` with spaces,
parentheses and dashes, ``00CC``, the API's bare E.164 digits, dotted), ~3% invalid (too short, letters,
unknown calling codes, Excel's scientific notation ``8.61387E+12``), ~3% repeats of an earlier line, two
template-parameter columns. Each measurement runs in a fresh subprocess, so its peak RSS is that of one
ingest (interpreter and imports included); the baseline revision is checked out into a temporary
``git worktree`` (removed afterwards) and run by the same interpreter on the same file.

Two measurements per revision (``--what``):

- ``reader``: parse + E.164 + dedup + batch planning (``RecipientReader`` and ``BatchPlanner`` with each
  valid recipient's encoded size): the pure core, nothing written;
- ``sqlite``: the whole ``plan_job`` into a SQLite store in a temporary file (the above, plus the rows and
  batches written as the engine writes them, 5,000 rows per transaction);
- ``tablestore`` (not by default): the whole ``plan_job`` into the local Tablestore (real SDK, real HTTP over
  loopback); the emulator runs in threads of the measured process, so its CPU and memory are counted too.

Figures, not assertions: the machine is shared, so the load average is printed before and after, rows per
CPU-second (the process's CPU time: threads included) beside rows per wall second, and the ratio of the two
revisions (measured one after the other in the same run) is the figure to compare.

    python bench/bench_intake.py                                   # 100,000 and 1,000,000 rows vs 584c50e
    python bench/bench_intake.py --sizes 1000000 --baseline 584c50e --what sqlite
    python bench/bench_intake.py --sizes 100000 --what reader sqlite tablestore
    python bench/bench_intake.py --baseline none                   # this checkout only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import _baseline  # bench/_baseline.py, beside this script (the A/B benches' shared checkout and load)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (calling code, national prefix of a mobile or geographic number, digits that follow)
_PLANS = (
    ("86", "138", 8),  # CN mobile
    ("86", "139", 8),
    ("44", "7400", 6),  # GB mobile
    ("1", "4152", 6),  # US
    ("1", "2125", 6),
    ("33", "612", 6),  # FR mobile
    ("49", "151", 8),  # DE mobile
    ("91", "98", 8),  # IN mobile
    ("55", "119", 8),  # BR mobile
    ("7", "916", 7),  # RU mobile
    ("39", "347", 7),  # IT mobile
    ("52", "55", 8),  # MX
    ("234", "803", 7),  # NG mobile
    ("62", "812", 8),  # ID mobile
)
_INVALID = ("12345", "+999 123 4567", "0000", "call me", "+44 20", "86-138", "+1 415 555", "n/a", "+86 138")


def _number(rng: random.Random, counters: list[int]) -> tuple[str, str]:
    """(calling code, national number): a valid number never given before (a per-plan counter spread over
    the free digits)."""
    plan = rng.randrange(len(_PLANS))
    code, prefix, rest = _PLANS[plan]
    counters[plan] += 1
    return code, prefix + f"{(counters[plan] * 7919 + 12345) % 10**rest:0{rest}d}"


def _written(code: str, national: str, rng: random.Random) -> str:
    """The number in one of the notations people use."""
    roll = rng.random()
    if roll < 0.30:
        return f"+{code} {national[:4]} {national[4:]}"
    if roll < 0.55:
        return code + national  # the API's own format
    if roll < 0.67:
        return f"00{code}{national}"
    if roll < 0.79:
        return f"+{code} ({national[:3]}) {national[3:6]}-{national[6:]}"
    if roll < 0.91:
        return f"+{code}{national}"
    if roll < 0.97:
        return f"+{code}-{national[:3]}-{national[3:6]}-{national[6:]}"
    return f"+{code}.{national[:3]}.{national[3:]}"


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
            elif roll < 0.03:  # Excel's rendering of a long number: not a number any more
                to = f"{float(''.join(_number(rng, counters))):.5E}"
            elif roll < 0.06 and recent:
                to = rng.choice(recent)
            else:
                to = _written(*_number(rng, counters), rng)
                if len(recent) < 1000:
                    recent.append(to)
                else:
                    recent[rng.randrange(1000)] = to
            out.write(f'{to},Customer {index},"C-{index:07d}, ok"\n')


_CHILD = r"""
import json, os, resource, sys, time
from contextlib import contextmanager
sys.path.insert(0, os.path.join(sys.argv[1], "shared"))
what, path = sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
from chatapp_mass.core.intake import RecipientReader
from chatapp_mass.core.options import ChannelType, IntakeOptions, JobOptions
from chatapp_mass.core.planning import BatchPlanner, encoded_size
if what in ("sqlite", "tablestore"):
    from chatapp_mass.services.plan import plan_job
if what == "sqlite":
    from chatapp_mass.store.sqlite import SqliteStore
if what == "tablestore":
    os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    from alibaba_localcloud.tablestore import LocalTablestore
    from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore
    server = LocalTablestore().__enter__()
    creds = server.credentials
    store = TablestoreStore(
        TablestoreSettings(endpoint=server.endpoint, instance=server.instance_name, table_prefix="bench_"),
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
    )
import psutil
base = psutil.Process().memory_info().rss
t1, c1 = time.perf_counter(), time.process_time()
if what == "reader":
    planner = BatchPlanner()
    with open(path, "rb") as stream:
        reader = RecipientReader(stream, source=path, channel=ChannelType.whatsapp, intake=IntakeOptions())
        rows = 0
        for row in reader:
            rows += 1
            if row.status == "valid":
                recipient = {"To": row.to, "TemplateParams": row.template_params}
                planner.assign(encoded_size(recipient), row.line)
    counts = dict(reader.counts, batches=len(planner.sizes))
else:
    if what == "sqlite":
        store = SqliteStore(sys.argv[4])
    options = JobOptions.model_validate(
        {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": "8613800000000"}
    )

    @contextmanager
    def open_stream():
        with open(path, "rb") as stream:
            yield stream

    job, _ = plan_job(store, source=path, open_stream=open_stream, options=options, intake=IntakeOptions(),
                      identity=("bench-job", "0" * 64))
    rows = job.total_rows
    counts = {"valid": job.valid, "invalid": job.invalid, "duplicate": job.duplicate, "batches": job.batches}
t2, c2 = time.perf_counter(), time.process_time()
if what == "tablestore":
    server.__exit__(None, None, None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
print(json.dumps({"rows": rows, "seconds": t2 - t1, "cpu": c2 - c1, "import_seconds": t1 - t0,
                  "base_rss": base, "peak_rss": peak, "counts": counts}))
"""


def measure(tree: str, what: str, path: str, tmp: str) -> dict[str, object]:
    db = os.path.join(tmp, f"plan-{os.getpid()}-{time.monotonic_ns()}.sqlite")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, tree, what, path, db],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
        )
    finally:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
    stats: dict[str, object] = json.loads(result.stdout)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--baseline", default="584c50e", help="git revision to compare with; 'none' to skip")
    parser.add_argument(
        "--what", choices=["reader", "sqlite", "tablestore"], nargs="+", default=["reader", "sqlite"]
    )
    args = parser.parse_args()
    whats = args.what
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp, _baseline.trees(args.baseline) as trees:
        print(f"before: {_baseline.load()}", flush=True)
        for size in args.sizes:
            path = os.path.join(tmp, f"recipients-{size}.csv")
            write_csv(path, size)
            print(f"{size:,} rows, {os.path.getsize(path) / mib:.1f} MiB", flush=True)
            for what in whats:
                rates, per_cpu = [], []
                for label, tree in trees:
                    stats = measure(tree, what, path, tmp)
                    rate = float(stats["rows"]) / float(stats["seconds"])  # type: ignore[arg-type]
                    rates.append(rate)
                    per_cpu.append(float(stats["rows"]) / float(stats["cpu"]))  # type: ignore[arg-type]
                    print(
                        f"  {what:6} {label:18} {rate:9,.0f} rows/s  {stats['seconds']:6.2f} s  "
                        f"({float(stats['rows']) / float(stats['cpu']):9,.0f} rows per CPU-second)  "  # type: ignore[arg-type]
                        f"peak RSS {float(stats['peak_rss']) / mib:6.1f} MiB "  # type: ignore[arg-type]
                        f"(after imports {float(stats['base_rss']) / mib:.1f})  {stats['counts']}",  # type: ignore[arg-type]
                        flush=True,
                    )
                if len(rates) == 2:
                    print(
                        f"  {what:6} ratio {rates[0] / rates[1]:.2f}x "
                        f"(per CPU-second {per_cpu[0] / per_cpu[1]:.2f}x)",
                        flush=True,
                    )
        print(f"after: {_baseline.load()}", flush=True)


if __name__ == "__main__":
    main()
