"""Benchmark the end of a job: its per-recipient report read from the store, written as CSV and put to OSS.

A job is "done" when its report is written (``services.jobs.finalize``): after the last CAMS call, a sender
reads every input record back (``Store.report_rows``), writes the CSV (``write_report``) and puts it to OSS.
At 1,000,000 recipients this tail is part of the job's time and of its function time (GB-s).

The job is what a user's looks like when it ends: N input lines, ~3% invalid (as written: letters, Excel's
``8.61387E+12``, ``+44 (20) ...``), ~3% duplicates, the valid ones in 1,000-recipient batches, most sent, a few
failed with a code and a message holding commas and quotes, one uncertain. It is planned once into the local
Tablestore and into a SQLite file; then, for this checkout and a baseline revision (checked out into a
temporary ``git worktree``, removed afterwards), a fresh subprocess per measurement does what ``finalize``
does (report to a temporary file, then ``OssClient.put``) against each store, the revisions interleaved.
As on Function Compute, the sender is its own process and Tablestore and OSS another (here this one: the
local cloud runs in threads of the parent), so the two overlap on the machine's CPUs as they would over a
network. Printed per run: wall seconds to the report in OSS, the child's CPU seconds, and the report's
SHA-256: the revisions must write the same bytes.

Figures, not assertions: the machine is shared; compare the ratios within one run.

    python bench/bench_report.py                          # 1,000,000 rows, this checkout vs 5da55b2
    python bench/bench_report.py --rows 200000 --runs 3 --baseline none
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "shared"))

import _baseline  # noqa: E402 - bench/_baseline.py, beside this script

from chatapp_mass.entry.localcloud import LocalCloud  # noqa: E402
from chatapp_mass.store.interface import (  # noqa: E402
    BatchRecord,
    BatchStatus,
    JobRecord,
    RowRecord,
    RowStatus,
)
from chatapp_mass.store.sqlite import SqliteStore  # noqa: E402
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore  # noqa: E402

JOB = "bench-report"
BATCH = 1_000
PREFIX = "benchreport_"
_INVALID = ("8.61387E+12", "call me", "+44 (20) 79", "12-34", "=1+2", "n/a", "")


def plan(rows: int, seed: int = 11) -> tuple[list[RowRecord], list[BatchRecord]]:
    """The job's records and its batches, as they stand when it ends."""
    rng = random.Random(seed)
    records: list[RowRecord] = []
    batches: list[BatchRecord] = []
    members: list[int] = []

    def close_batch() -> None:
        seq = len(batches)
        roll = rng.random()
        if roll < 0.01:
            status, code, message = (
                BatchStatus.failed,
                "Throttling.User",
                'Request was denied, "flow control"',
            )
        elif roll < 0.012:
            status, code, message = BatchStatus.uncertain, "NetworkError", "no answer, read timed out"
        else:
            status, code, message = BatchStatus.sent, "OK", ""
        batches.append(
            BatchRecord(
                JOB,
                seq,
                len(members),
                status=status,
                code=code,
                message=message,
                group_message_id=f"{seq:08d}-{rng.getrandbits(64):016x}"
                if status is BatchStatus.sent
                else "",
                first_line=members[0],
                last_line=members[-1],
            )
        )
        members.clear()

    for line in range(2, rows + 2):
        roll = rng.random()
        if roll < 0.03:
            records.append(
                RowRecord(JOB, line, rng.choice(_INVALID), RowStatus.invalid, "InvalidNumber", "not a number")
            )
        elif roll < 0.06:
            records.append(
                RowRecord(
                    JOB, line, f"+86 138 {line:08d}", RowStatus.duplicate, "", f"same as line {line - 1}"
                )
            )
        else:
            to = f"86138{line:08d}"
            recipient = {"To": to, "TemplateParams": {"name": f"Customer {line}", "code": f"C-{line:07d}"}}
            records.append(
                RowRecord(JOB, line, to, RowStatus.valid, batch_seq=len(batches), recipient=recipient)
            )
            members.append(line)
            if len(members) == BATCH:
                close_batch()
    if members:
        close_batch()
    return records, batches


def fill(store: TablestoreStore | SqliteStore, records: list[RowRecord], batches: list[BatchRecord]) -> None:
    store.create_job(JobRecord(job_id=JOB, source="bench.csv", options={}, intake={}, content_sha256="x"))
    for start in range(0, len(records), 5_000):  # as the engine writes them
        store.put_plan(records[start : start + 5_000], [])
    store.put_plan([], batches)


_CHILD = r"""
import hashlib, io, json, os, sys, tempfile, time
sys.path.insert(0, os.path.join(sys.argv[1], "shared"))
kind, job = sys.argv[2], sys.argv[3]
from chatapp_mass.adapters.oss import OssClient, OssLocation
from chatapp_mass.services.report import write_report
if kind == "sqlite":
    from chatapp_mass.store.sqlite import SqliteStore
    store = SqliteStore(sys.argv[4])
else:
    from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore
    store = TablestoreStore(
        TablestoreSettings(endpoint=os.environ["CHATAPP_TABLESTORE_ENDPOINT"], instance=sys.argv[4],
                           table_prefix=sys.argv[5]),
        access_key_id=os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        access_key_secret=os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        security_token=os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""),
    )
oss = OssClient.from_env()
store.get_job(job)  # connections and SDK set-up, as a warm sender has them
t0, c0 = time.perf_counter(), time.process_time()
with tempfile.TemporaryFile("w+b") as spool:  # as services.jobs.finalize writes it
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    counts = write_report(store.report_rows(job), text)
    text.flush()
    t1 = time.perf_counter()
    size = spool.tell()
    spool.seek(0)
    oss.put(OssLocation(os.environ["CHATAPP_BUCKET"], f"{job}-{os.getpid()}.report.csv"), spool)
    t2, c2 = time.perf_counter(), time.process_time()
    spool.seek(0)
    digest = hashlib.sha256(spool.read()).hexdigest()
    text.detach()
print(json.dumps({"wall": t2 - t0, "written": t1 - t0, "put": t2 - t1, "cpu": c2 - c0, "bytes": size,
                  "sha256": digest, "counts": counts}))
"""


def measure(tree: str, kind: str, target: list[str], environ: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, tree, kind, JOB, *target],
        check=True,
        capture_output=True,
        text=True,
        env=dict(environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    stats: dict[str, object] = json.loads(result.stdout)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2, help="measurements per revision and store")
    parser.add_argument("--baseline", default="5da55b2", help="git revision to compare with; 'none' to skip")
    parser.add_argument(
        "--store", choices=["tablestore", "sqlite"], nargs="+", default=["tablestore", "sqlite"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalCloud() as cloud, _baseline.trees(args.baseline) as trees:
        environ = dict(os.environ, **cloud.environment(), CHATAPP_BUCKET=cloud.bucket)
        os.environ.update(cloud.environment())
        records, batches = plan(args.rows)
        targets: dict[str, list[str]] = {}
        if "tablestore" in args.store:
            server = cloud.tablestore
            settings = TablestoreSettings(
                endpoint=server.endpoint, instance=server.instance_name, table_prefix=PREFIX
            )
            creds = server.credentials
            store = TablestoreStore(
                settings,
                access_key_id=creds.access_key_id,
                access_key_secret=creds.access_key_secret,
                security_token=creds.security_token or "",
            )
            store.init_tables()
            fill(store, records, batches)
            targets["tablestore"] = [server.instance_name, PREFIX]
        if "sqlite" in args.store:
            path = os.path.join(tmp, "report.sqlite")
            fill(SqliteStore(path), records, batches)
            targets["sqlite"] = [path]
        del records
        print(f"{args.rows:,} input lines, {len(batches):,} batches; before: {_baseline.load()}", flush=True)
        for kind, target in targets.items():
            walls: dict[str, list[float]] = {label: [] for label, _ in trees}
            digests = set()
            for _ in range(args.runs):
                for label, tree in trees:
                    stats = measure(tree, kind, target, environ)
                    walls[label].append(float(stats["wall"]))  # type: ignore[arg-type]
                    digests.add(stats["sha256"])
                    print(
                        f"  {kind:10} {label:18} report in OSS after {stats['wall']:5.2f} s "
                        f"(CSV {stats['written']:5.2f} s, put {stats['put']:4.2f} s; "
                        f"{stats['cpu']:5.2f} CPU-s in the sender)  "
                        f"{int(str(stats['bytes'])) / 1e6:5.1f} MB  {stats['counts']}  "
                        f"sha256 {str(stats['sha256'])[:12]}",
                        flush=True,
                    )
            if len(trees) == 2:
                this, base = (min(walls[label]) for label, _ in trees)
                print(
                    f"  {kind:10} best of {args.runs}: {base:.2f} -> {this:.2f} s, {base / this:.2f}x faster"
                )
            print(f"  {kind:10} the same report bytes in every run: {'yes' if len(digests) == 1 else 'NO'}")
        print(f"after: {_baseline.load()}", flush=True)


if __name__ == "__main__":
    main()
