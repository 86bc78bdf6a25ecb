"""Benchmark: the same recipients as a CSV and as an Excel workbook (.xlsx), planned and previewed.

The file is bench_intake.py's (numbers of a dozen countries in mixed notations, ~3% invalid, ~3% repeats, two
template-parameter columns), written once as CSV and once as a workbook (openpyxl, write-only; the numbers as
text, as a careful user formats the column). Each measurement runs in a fresh subprocess (interpreter and
imports in its peak RSS, not in its seconds):

- ``plan``: the whole ``plan_job`` into a SQLite store in a temporary file (what ``send`` does before sending);
- ``preview``: ``preview_recipients`` (what ``check``, the send question and the console's preview read).

Figures, not assertions: rows per wall second and per CPU-second, peak RSS, and the workbook's cost as a
ratio to the CSV's measured in the same run (the machine is shared; the load average is printed).

    python bench/bench_xlsx.py                    # 100,000 rows
    python bench/bench_xlsx.py --rows 300000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import _baseline  # bench/_baseline.py: the load line
from bench_intake import write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, os, resource, sys, time
from contextlib import contextmanager
sys.path.insert(0, os.path.join(sys.argv[1], "shared"))
what, path, db = sys.argv[2], sys.argv[3], sys.argv[4]
from chatapp_mass.core.options import IntakeOptions, JobOptions
from chatapp_mass.services.plan import plan_job
from chatapp_mass.services.preview import preview_recipients
from chatapp_mass.store.sqlite import SqliteStore
options = JobOptions.model_validate(
    {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": "8613800000000"}
)
t1, c1 = time.perf_counter(), time.process_time()
if what == "plan":
    @contextmanager
    def open_stream():
        with open(path, "rb") as stream:
            yield stream
    job, _ = plan_job(SqliteStore(db), source=path, open_stream=open_stream, options=options,
                      intake=IntakeOptions(), identity=("bench-job", "0" * 64))
    counts = {"rows": job.total_rows, "valid": job.valid, "invalid": job.invalid, "duplicate": job.duplicate}
else:
    with open(path, "rb") as stream:
        p = preview_recipients(stream, source=path, options=options, intake=IntakeOptions())
    counts = {"rows": p.rows, "valid": p.valid, "invalid": p.invalid, "duplicate": p.duplicate}
t2, c2 = time.perf_counter(), time.process_time()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": t2 - t1, "cpu": c2 - c1, "peak_rss": peak, "counts": counts}))
"""


def write_xlsx(csv_path: str, xlsx_path: str) -> None:
    import csv

    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("Recipients")
    with open(csv_path, encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            sheet.append(row)
    book.save(xlsx_path)


def measure(what: str, path: str, tmp: str) -> dict[str, object]:
    db = os.path.join(tmp, f"plan-{time.monotonic_ns()}.sqlite")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, ROOT, what, path, db],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
        cwd=tmp,
    )
    stats: dict[str, object] = json.loads(result.stdout)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-xlsx-") as tmp:
        csv_path, xlsx_path = os.path.join(tmp, "list.csv"), os.path.join(tmp, "list.xlsx")
        write_csv(csv_path, args.rows)
        write_xlsx(csv_path, xlsx_path)
        print(
            f"{args.rows:,} rows: CSV {os.path.getsize(csv_path) / 2**20:.1f} MiB, "
            f"XLSX {os.path.getsize(xlsx_path) / 2**20:.1f} MiB; {_baseline.load()}"
        )
        for what in ("plan", "preview"):
            results = {
                kind: measure(what, path, tmp) for kind, path in (("csv", csv_path), ("xlsx", xlsx_path))
            }
            assert results["csv"]["counts"] == results["xlsx"]["counts"], results
            for kind, stats in results.items():
                seconds, cpu = float(stats["seconds"]), float(stats["cpu"])  # type: ignore[arg-type]
                print(
                    f"  {what:8} {kind:5} {args.rows / seconds:>9,.0f} rows/s wall, {args.rows / cpu:>9,.0f} "
                    f"per CPU-s, {seconds:6.2f} s, peak RSS {int(stats['peak_rss']) / 2**20:.0f} MiB"  # type: ignore[call-overload]
                )
            ratio = float(results["xlsx"]["cpu"]) / float(results["csv"]["cpu"])  # type: ignore[arg-type]
            print(
                f"  {what:8} the workbook costs {ratio:.2f}x the CSV's CPU time; counts {results['csv']['counts']}"
            )
        print(_baseline.load())


if __name__ == "__main__":
    main()
