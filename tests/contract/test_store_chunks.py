"""Edges of storing input records in chunks (Tablestore keeps up to 128 consecutive records in one row): the
contract part runs on SQLite and Tablestore alike; the rest looks at Tablestore's physical rows."""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stores import tablestore_on

from chatapp_mass.core.errors import StoreError
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord, RowRecord, RowStatus, Store
from chatapp_mass.store.sqlite import SqliteStore
from chatapp_mass.store.tablestore import TablestoreStore

ENGINE_ROWS_PER_CALL = 5_000  # plan._ROW_CHUNK: how the engine hands rows to put_plan


@pytest.fixture(scope="module")
def local_tablestore() -> Iterator[Any]:
    from alibaba_localcloud.tablestore import LocalTablestore

    with LocalTablestore(max_tables=1024) as server:  # each test's store has its own ten tables
        yield server


@pytest.fixture(params=["sqlite", "tablestore"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    handle: Store
    if request.param == "sqlite":
        handle = SqliteStore(str(tmp_path / "state.db"))
    else:
        handle = tablestore_on(request.getfixturevalue("local_tablestore"))
    yield handle
    handle.close()


@pytest.fixture
def tablestore(local_tablestore: Any) -> Iterator[TablestoreStore]:
    handle = tablestore_on(local_tablestore)
    yield handle
    handle.close()


def job(job_id: str = "job1") -> JobRecord:
    return JobRecord(job_id=job_id, source="f.csv", options={}, intake={}, content_sha256="x")


def recipient(line: int) -> dict[str, Any]:
    return {"To": f"86138{line:08d}", "TemplateParams": {"name": f"n{line}"}}


def mixed_plan(
    job_id: str, lines: int, batch_size: int, seed: int = 7
) -> tuple[list[RowRecord], list[BatchRecord]]:
    """Like the planner: valid rows fill batches in line order; invalid and duplicate rows fall in between."""
    chance = random.Random(seed)
    rows: list[RowRecord] = []
    batches: list[BatchRecord] = []
    members: list[int] = []

    def close() -> None:
        batches.append(
            BatchRecord(job_id, len(batches), len(members), first_line=members[0], last_line=members[-1])
        )
        members.clear()

    for line in range(2, lines + 2):
        draw = chance.random()
        if draw < 0.05:
            rows.append(
                RowRecord(
                    job_id, line, "bad", RowStatus.invalid, "InvalidNumber", f"line {line}: not a number"
                )
            )
        elif draw < 0.08:
            rows.append(
                RowRecord(job_id, line, "86138", RowStatus.duplicate, "Duplicate", "same recipient as line 2")
            )
        else:
            rows.append(
                RowRecord(
                    job_id,
                    line,
                    f"86138{line:08d}",
                    RowStatus.valid,
                    batch_seq=len(batches),
                    recipient=recipient(line),
                )
            )
            members.append(line)
            if len(members) == batch_size:
                close()
    if members:
        close()
    return rows, batches


def put_like_the_engine(store: Store, rows: list[RowRecord], batches: list[BatchRecord]) -> None:
    last_call = (len(rows) - 1) // ENGINE_ROWS_PER_CALL * ENGINE_ROWS_PER_CALL
    for start in range(0, last_call, ENGINE_ROWS_PER_CALL):
        store.put_plan(rows[start : start + ENGINE_ROWS_PER_CALL], [])
    store.put_plan(rows[last_call:], batches)


def expected_recipients(rows: list[RowRecord], seq: int) -> list[dict[str, Any]]:
    return [r.recipient for r in rows if r.batch_seq == seq and r.recipient]


# --- contract: SQLite and Tablestore -------------------------------------------------------------------------
def test_a_12000_row_plan_in_engine_calls_round_trips(store: Store) -> None:
    store.create_job(job())
    rows, batches = mixed_plan("job1", 12_000, 1_000)
    put_like_the_engine(store, rows, batches)
    for batch in batches:
        assert store.batch_recipients("job1", batch.seq) == expected_recipients(rows, batch.seq), batch.seq
    report = list(store.report_rows("job1"))
    assert [r.line for r in report] == list(range(2, 12_002))
    statuses = {r.line: r.status for r in report}
    assert all(
        statuses[r.line] == (r.status.value if r.status is not RowStatus.valid else "pending") for r in rows
    )
    assert store.batch_totals("job1") == {BatchStatus.pending: (len(batches), sum(b.size for b in batches))}


def test_batches_of_every_size_across_chunk_boundaries(store: Store) -> None:
    """Batches of 1 to 300 recipients: single-line batches, batches starting or ending on any line of a chunk,
    batches spanning two or more chunks, interleaved with invalid rows."""
    store.create_job(job())
    rows, _ = mixed_plan("job1", 2_000, 1, seed=3)
    sizes = [1, 2, 127, 128, 129, 300, 1, 255, 256, 257, 3]
    regrouped: list[BatchRecord] = []
    valid = [r for r in rows if r.status is RowStatus.valid]
    seq_of: dict[int, int] = {}
    start = 0
    while start < len(valid):
        size = sizes[len(regrouped) % len(sizes)]
        members = valid[start : start + size]
        for member in members:
            seq_of[member.line] = len(regrouped)
        regrouped.append(
            BatchRecord(
                "job1", len(regrouped), len(members), first_line=members[0].line, last_line=members[-1].line
            )
        )
        start += size
    rows = [
        RowRecord(r.job_id, r.line, r.to, r.status, r.code, r.message, seq_of.get(r.line), r.recipient)
        for r in rows
    ]
    store.put_plan(rows, regrouped)
    for batch in regrouped:
        assert store.batch_recipients("job1", batch.seq) == expected_recipients(rows, batch.seq), batch.seq


def test_replanning_the_same_calls_keeps_one_copy(store: Store) -> None:
    store.create_job(job())
    rows, batches = mixed_plan("job1", 1_000, 100)
    for _ in range(2):
        for start in range(0, len(rows), 300):
            store.put_plan(rows[start : start + 300], [])
        store.put_plan([], batches)
    assert [r.line for r in store.report_rows("job1")] == list(range(2, 1_002))
    assert store.batch_recipients("job1", 3) == expected_recipients(rows, 3)


def test_rows_of_two_jobs_in_one_call_out_of_order(store: Store) -> None:
    store.create_job(job("a"))
    store.create_job(job("b"))
    rows_a, batches_a = mixed_plan("a", 300, 50, seed=1)
    rows_b, batches_b = mixed_plan("b", 300, 50, seed=2)
    mixed = rows_a + rows_b
    random.Random(5).shuffle(mixed)
    store.put_plan(mixed, batches_a + batches_b)
    for job_id, rows, batches in (("a", rows_a, batches_a), ("b", rows_b, batches_b)):
        assert [r.line for r in store.report_rows(job_id)] == list(range(2, 302))
        for batch in batches:
            assert store.batch_recipients(job_id, batch.seq) == expected_recipients(rows, batch.seq)


def test_large_records_round_trip(store: Store) -> None:
    """Records of ~40 KB that do not compress: far more than one Tablestore value or request holds in all."""
    store.create_job(job())
    noise = random.Random(9)
    rows = [
        RowRecord(
            "job1",
            line,
            f"86138{line:08d}",
            RowStatus.valid,
            batch_seq=(line - 2) // 40,
            recipient={
                "To": f"86138{line:08d}",
                "TemplateParams": {
                    "blob": "".join(noise.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=40_000))
                },
            },
        )
        for line in range(2, 122)
    ]
    batches = [
        BatchRecord("job1", seq, 40, first_line=2 + seq * 40, last_line=41 + seq * 40) for seq in range(3)
    ]
    store.put_plan(rows, batches)
    assert store.batch_recipients("job1", 1) == expected_recipients(rows, 1)
    assert [r.line for r in store.report_rows("job1")] == list(range(2, 122))


# --- Tablestore's physical rows ------------------------------------------------------------------------------
def test_records_are_stored_in_chunk_rows(local_tablestore: Any, tablestore: TablestoreStore) -> None:
    tablestore.create_job(job())
    rows, batches = mixed_plan("job1", 12_000, 1_000)
    put_like_the_engine(tablestore, rows, batches)
    # 5,000 + 5,000 + 2,000 records, each call in chunks of 128 at most
    assert local_tablestore.backend.row_count(tablestore.t_rows) == 40 + 40 + 16
    before = sum(1 for r in local_tablestore.backend.requests if r.api == "GetRange")
    assert len(tablestore.batch_recipients("job1", 5)) == 1_000
    # a BACKWARD GetRange for the chunk holding the first line, a FORWARD one for the rest
    assert sum(1 for r in local_tablestore.backend.requests if r.api == "GetRange") - before == 2
    tablestore.clear_plan("job1")
    assert local_tablestore.backend.row_count(tablestore.t_rows) == 0
    assert local_tablestore.backend.row_count(tablestore.t_batches) == 0


def test_rows_of_the_one_record_per_row_layout_are_still_read(tablestore: TablestoreStore) -> None:
    """A job planned before chunks (one row per record, no ``data``) can still be sent, reported and cleared."""
    ts = tablestore._ts
    tablestore.create_job(job())
    for line, to, status, seq in (
        (2, "111", "valid", 0),
        (3, "bad", "invalid", None),
        (4, "222", "valid", 0),
    ):
        columns: list[tuple[str, Any]] = [("to", to), ("status", status), ("code", ""), ("message", "")]
        if seq is not None:
            columns += [("batch_seq", seq), ("recipient", json.dumps({"To": to}))]
        tablestore.client.put_row(
            tablestore.t_rows,
            ts.Row([("job_id", "job1"), ("line", line)], columns),
            ts.Condition(ts.RowExistenceExpectation.IGNORE),
        )
    tablestore.put_plan([], [BatchRecord("job1", 0, 2, first_line=2, last_line=4)])
    assert tablestore.batch_recipients("job1", 0) == [{"To": "111"}, {"To": "222"}]
    tablestore.transition_batch(
        "job1", 0, expect=[BatchStatus.pending], to=BatchStatus.sent, group_message_id="g"
    )
    assert [(r.line, r.status) for r in tablestore.report_rows("job1")] == [
        (2, "sent"),
        (3, "invalid"),
        (4, "sent"),
    ]
    tablestore.clear_plan("job1")
    assert list(tablestore.report_rows("job1")) == []


def test_a_record_too_big_for_one_value_is_a_clear_error(tablestore: TablestoreStore) -> None:
    tablestore.create_job(job())
    huge = {"To": "111", "TemplateParams": {"blob": secrets.token_urlsafe(3_000_000)}}
    with pytest.raises(StoreError, match=r"job job1, input line 7: the record takes [\d,]+ bytes compressed"):
        tablestore.put_plan([RowRecord("job1", 7, "111", RowStatus.valid, batch_seq=0, recipient=huge)], [])


def test_put_plan_with_nothing_writes_nothing(local_tablestore: Any, tablestore: TablestoreStore) -> None:
    before = sum(1 for r in local_tablestore.backend.requests if r.api == "BatchWriteRow")
    tablestore.put_plan([], [])
    assert sum(1 for r in local_tablestore.backend.requests if r.api == "BatchWriteRow") == before
