"""Benchmark the Tablestore store through the local Tablestore (real SDK, real HTTP, loopback).

Prints rows/s for planning N recipient rows with the store's ``put_plan`` (BatchWriteRow, 200 rows per call,
several calls in flight) against writing the same rows with one PutRow per row, in the same run; and the
rate of conditional batch transitions (UpdateRow with a status condition) and of report paging (GetRange).
Figures, not assertions: the machine is shared, compare the ratio.

    python bench/bench_tablestore.py            # 5,000 rows
    python bench/bench_tablestore.py 20000
"""

from __future__ import annotations

import os
import secrets
import sys
import time

os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared"))

from chatapp_mass.localcloud.tablestore import LocalTablestore  # noqa: E402
from chatapp_mass.store import BatchRecord, BatchStatus, JobRecord, RowRecord, RowStatus  # noqa: E402
from chatapp_mass.store_tablestore import TablestoreSettings, TablestoreStore  # noqa: E402


def open_store(server: LocalTablestore) -> TablestoreStore:
    creds = server.credentials
    settings = TablestoreSettings(endpoint=server.endpoint, instance=server.instance_name,
                                  table_prefix=f"b{secrets.token_hex(3)}_")
    return TablestoreStore(settings, access_key_id=creds.access_key_id, access_key_secret=creds.access_key_secret,
                           security_token=creds.security_token or "")


def plan(job_id: str, rows: int, batch_size: int = 1000) -> tuple[list[RowRecord], list[BatchRecord]]:
    records = [RowRecord(job_id, line, f"86138{line:08d}", RowStatus.valid, batch_seq=(line - 2) // batch_size,
                         recipient={"To": f"86138{line:08d}", "TemplateParams": {"name": f"N{line}", "code": "A1"}})
               for line in range(2, rows + 2)]
    batches = [BatchRecord(job_id, seq, min(batch_size, rows - seq * batch_size), first_line=2 + seq * batch_size,
                           last_line=min(rows + 1, 1 + (seq + 1) * batch_size))
               for seq in range((rows + batch_size - 1) // batch_size)]
    return records, batches


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with LocalTablestore() as server:
        store = open_store(server)
        store.create_job(JobRecord(job_id="bench", source="bench.csv", options={}, intake={}, content_sha256="x"))
        records, batches = plan("bench", rows)

        started = time.perf_counter()
        store.put_plan(records, batches)
        batch_seconds = time.perf_counter() - started
        batch_calls = sum(1 for r in server.backend.requests if r.api == "BatchWriteRow")

        # the same rows, one PutRow each (what a naive store does), into a second table set
        single = open_store(server)
        ts = single._ts
        started = time.perf_counter()
        for record in records:
            row = ts.Row([("job_id", "bench"), ("line", record.line)],
                         [("to", record.to), ("status", record.status.value), ("batch_seq", record.batch_seq),
                          ("recipient", repr(record.recipient))])
            single.client.put_row(single.t_rows, row, ts.Condition(ts.RowExistenceExpectation.IGNORE))
        single_seconds = time.perf_counter() - started

        transitions = min(len(batches), 200)
        more = [BatchRecord("bench", 10_000 + i, 1) for i in range(transitions - len(batches))]
        if more:
            store.put_plan([], more)
        seqs = [b.seq for b in store.list_batches("bench")][:transitions]
        started = time.perf_counter()
        for seq in seqs:
            store.transition_batch("bench", seq, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner="bench")
        transition_seconds = time.perf_counter() - started

        started = time.perf_counter()
        reported = sum(1 for _ in store.report_rows("bench"))
        report_seconds = time.perf_counter() - started

    print(f"Tablestore store through the local Tablestore, {rows:,} recipient rows")
    print(f"  put_plan (BatchWriteRow):  {rows / batch_seconds:10,.0f} rows/s  ({batch_seconds:.2f} s, {batch_calls} calls)")
    print(f"  one PutRow per row:        {rows / single_seconds:10,.0f} rows/s  ({single_seconds:.2f} s)")
    print(f"  ratio:                     {single_seconds / batch_seconds:10.1f}x faster with BatchWriteRow")
    print(f"  transition_batch (UpdateRow with condition): {len(seqs) / transition_seconds:,.0f} /s")
    print(f"  report_rows (GetRange pages):                {reported / report_seconds:,.0f} rows/s")


if __name__ == "__main__":
    main()
