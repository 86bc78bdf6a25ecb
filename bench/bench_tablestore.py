"""Benchmark the Tablestore store through the local Tablestore (real SDK, real HTTP, loopback).

Prints rows/s for planning N recipient rows with the store's ``put_plan`` (called as the engine calls it: 5,000
rows at a time, then the batches) against writing the same rows with one PutRow per row, in the same run; the
rate of conditional batch transitions (UpdateRow with a status condition); of ``batch_recipients`` for
1,000-recipient batches (what a sender reads before each CAMS call: at most 10 calls/s are allowed per
account, so a sender should read well over 10 batches/s); and of ``report_rows``. CPU figures are the
process's: the emulator runs in threads of this process, so they include its share of the work.
Figures, not assertions: the machine is shared, compare the ratios.

    python bench/bench_tablestore.py            # 5,000 rows
    python bench/bench_tablestore.py 20000
"""

from __future__ import annotations

import os
import secrets
import sys
import time

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared"))

from alibaba_localcloud.tablestore import LocalTablestore  # noqa: E402
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord, RowRecord, RowStatus  # noqa: E402
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore  # noqa: E402

ENGINE_ROWS_PER_CALL = 5_000  # plan._ROW_CHUNK
BATCH_SIZE = 1_000
RECIPIENT_READS = 30  # batch_recipients calls timed


def open_store(server: LocalTablestore) -> TablestoreStore:
    creds = server.credentials
    settings = TablestoreSettings(
        endpoint=server.endpoint, instance=server.instance_name, table_prefix=f"b{secrets.token_hex(3)}_"
    )
    return TablestoreStore(
        settings,
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
    )


def plan(job_id: str, rows: int, batch_size: int = BATCH_SIZE) -> tuple[list[RowRecord], list[BatchRecord]]:
    records = [
        RowRecord(
            job_id,
            line,
            f"86138{line:08d}",
            RowStatus.valid,
            batch_seq=(line - 2) // batch_size,
            recipient={"To": f"86138{line:08d}", "TemplateParams": {"name": f"N{line}", "code": "A1"}},
        )
        for line in range(2, rows + 2)
    ]
    batches = [
        BatchRecord(
            job_id,
            seq,
            min(batch_size, rows - seq * batch_size),
            first_line=2 + seq * batch_size,
            last_line=min(rows + 1, 1 + (seq + 1) * batch_size),
        )
        for seq in range((rows + batch_size - 1) // batch_size)
    ]
    return records, batches


class Timer:
    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with LocalTablestore() as server:
        store = open_store(server)
        store.create_job(
            JobRecord(job_id="bench", source="bench.csv", options={}, intake={}, content_sha256="x")
        )
        records, batches = plan("bench", rows)

        with Timer() as planning:
            cut = max(0, len(records) - (len(records) - 1) % ENGINE_ROWS_PER_CALL - 1)
            for start in range(0, cut, ENGINE_ROWS_PER_CALL):
                store.put_plan(records[start : start + ENGINE_ROWS_PER_CALL], [])
            store.put_plan(records[cut:], batches)
        batch_calls = sum(1 for r in server.backend.requests if r.api == "BatchWriteRow")
        physical_rows = server.backend.row_count(store.t_rows)

        # the same rows, one PutRow each (what a naive store does), into a second table set
        single = open_store(server)
        ts = single._ts
        with Timer() as one_by_one:
            for record in records:
                row = ts.Row(
                    [("job_id", "bench"), ("line", record.line)],
                    [
                        ("to", record.to),
                        ("status", record.status.value),
                        ("batch_seq", record.batch_seq),
                        ("recipient", repr(record.recipient)),
                    ],
                )
                single.client.put_row(single.t_rows, row, ts.Condition(ts.RowExistenceExpectation.IGNORE))

        full = [b.seq for b in batches if b.size == BATCH_SIZE] or [batches[0].seq]
        with Timer() as reading:
            read = [len(store.batch_recipients("bench", full[i % len(full)])) for i in range(RECIPIENT_READS)]
        assert all(n == batches[full[i % len(full)]].size for i, n in enumerate(read)), "batch_recipients"

        transitions = min(len(batches), 200)
        more = [BatchRecord("bench", 10_000 + i, 1) for i in range(transitions - len(batches))]
        if more:
            store.put_plan([], more)
        seqs = [b.seq for b in store.list_batches("bench")][:transitions]
        with Timer() as transiting:
            for seq in seqs:
                store.transition_batch(
                    "bench", seq, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner="bench"
                )

        with Timer() as reporting:
            reported = sum(1 for _ in store.report_rows("bench"))
        assert reported == rows, "report_rows"

    print(f"Tablestore store through the local Tablestore, {rows:,} recipient rows")
    print(
        f"  put_plan:                  {rows / planning.wall:10,.0f} rows/s  ({planning.wall:.2f} s, "
        f"{planning.cpu:.2f} s CPU, {batch_calls} BatchWriteRow calls, {physical_rows:,} table rows)"
    )
    print(f"  one PutRow per row:        {rows / one_by_one.wall:10,.0f} rows/s  ({one_by_one.wall:.2f} s)")
    print(f"  ratio:                     {one_by_one.wall / planning.wall:10.1f}x faster with put_plan")
    print(
        f"  batch_recipients ({BATCH_SIZE:,} recipients): {RECIPIENT_READS / reading.wall:,.1f} /s  "
        f"({1000 * reading.wall / RECIPIENT_READS:.1f} ms, {1000 * reading.cpu / RECIPIENT_READS:.1f} ms CPU each)"
    )
    print(f"  transition_batch (UpdateRow with condition): {len(seqs) / transiting.wall:,.0f} /s")
    print(
        f"  report_rows:                                 {reported / reporting.wall:,.0f} rows/s  "
        f"({reporting.wall:.2f} s, {reporting.cpu:.2f} s CPU)"
    )


if __name__ == "__main__":
    main()
