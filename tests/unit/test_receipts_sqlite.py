"""What only the SQLite receipt store has: its tables made on first use in an existing file, the rank rule as
the upsert's condition under concurrent writers, one transaction per ``record``. The behaviour both backends
share is proved by tests/contract/test_receipts_contract.py."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from chatapp_mass.store.features import open_receipts
from chatapp_mass.store.receipts import DeliveryStatus, Receipt, TaskRef
from chatapp_mass.store.receipts_sqlite import SqliteReceipts
from chatapp_mass.store.sqlite import SqliteStore

S, F, D, R = DeliveryStatus.sent, DeliveryStatus.failed, DeliveryStatus.delivered, DeliveryStatus.read


def receipt(status: DeliveryStatus, to: str = "6581230000", task: str = "t1", at: int = 1000) -> Receipt:
    return Receipt(task, to, f"m-{to}", status, at, "131026" if status is F else "", "")


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "s.db"))


def test_open_receipts_gives_the_sqlite_backend_on_the_same_file(store: SqliteStore) -> None:
    receipts = open_receipts(store)
    assert isinstance(receipts, SqliteReceipts)
    receipts.register_task("t1", "job1", 3)
    conn = sqlite3.connect(store.path)
    assert conn.execute("SELECT job_id, seq FROM receipt_tasks").fetchall() == [("job1", 3)]


def test_tables_are_made_on_first_use_in_a_file_made_before_them(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    SqliteStore(path).close()  # a store file from before receipts
    names = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "receipt_states" not in names
    first, second = SqliteReceipts(SqliteStore(path)), SqliteReceipts(SqliteStore(path))
    assert first.task("nope") is None and second.states("t") == {}  # both create IF NOT EXISTS: no error
    first.register_task("t", "j", -1)
    assert second.task("t") == TaskRef("j", -1)


def test_forward_only_whatever_the_order_and_repeats(store: SqliteStore) -> None:
    receipts = SqliteReceipts(store)
    result = receipts.record([receipt(R, at=3), receipt(D, at=2), receipt(S, at=1), receipt(R, at=3)])
    assert (result.changed, result.unchanged) == (1, 3)
    [(to, state)] = receipts.states("t1").items()
    assert (to, state.status, state.at_ms) == ("6581230000", R, 3)
    # a failure after delivery is ignored for the state; before delivery it moves it, and delivery then wins
    other = "6581230001"
    assert receipts.record([receipt(S, other), receipt(F, other, at=5)]).changed == 2
    assert receipts.states("t1")[other][0] is F and receipts.states("t1")[other].error_code == "131026"
    assert receipts.record([receipt(D, other, at=6), receipt(F, other, at=7)]).changed == 1
    state = receipts.states("t1")[other]
    assert (state.status, state.at_ms, state.error_code) == (D, 6, "")


def test_counts_in_one_query_per_chunk_match_the_states(store: SqliteStore) -> None:
    receipts = SqliteReceipts(store)
    statuses = [S, F, D, R]
    receipts.record([receipt(statuses[i % 4], f"65800{i:05d}", f"t{i % 3}") for i in range(30)])
    counts = receipts.counts(["t0", "t1", "t2", "t1", "missing"])
    assert counts == {S: 8, F: 8, D: 7, R: 7}
    assert counts == super(SqliteReceipts, receipts).counts(["t0", "t1", "t2", "missing"])  # the default
    codes = receipts.failed_codes(["t0", "t1", "t2", "t2"])
    assert codes == {"131026": 8} == super(SqliteReceipts, receipts).failed_codes(["t0", "t1", "t2"])


def test_thousands_per_call_in_one_transaction(store: SqliteStore) -> None:
    receipts = SqliteReceipts(store)
    batch = [receipt(D, f"65{i:08d}") for i in range(5000)]
    assert receipts.record(batch).changed == 5000
    assert receipts.record(batch).unchanged == 5000
    assert len(receipts.states("t1")) == 5000
    # one bad item (a NUL-free but NOT NULL violation is impossible here; a wrong type is): all or nothing
    broken = [receipt(R, f"65{i:08d}") for i in range(10)] + [Receipt("t1", None, "m", R, 1)]  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        receipts.record(broken)
    assert receipts.counts(["t1"])[R] == 0 and not store._conn().in_transaction


def test_concurrent_writers_end_at_the_highest_rank(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    recipients = [f"65{i:08d}" for i in range(300)]
    orders = [[S, D, R, F], [R, S, F, D], [F, D, S, R], [D, F, R, S]]

    def write(order: list[DeliveryStatus]) -> None:
        receipts = SqliteReceipts(SqliteStore(path))  # its own connection, as another process would have
        for status in order:
            receipts.record([receipt(status, to) for to in recipients])

    threads = [threading.Thread(target=write, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = SqliteReceipts(SqliteStore(path)).states("t1")
    assert {s.status for s in states.values()} == {R} and len(states) == 300


def test_set_aside_is_idempotent_and_listed_oldest_first(store: SqliteStore) -> None:
    receipts = SqliteReceipts(store)
    first = [receipt(D, "651", "u1"), receipt(R, "651", "u1")]
    receipts.set_aside(first, "unregistered TaskId")
    receipts.set_aside([receipt(D, "652", "u2"), *first], "unregistered TaskId")  # repeats: no new entries
    listed = receipts.set_aside_list()
    assert [(r.task_id, r.to, r.status) for r, _ in listed] == [
        ("u1", "651", D),
        ("u1", "651", R),
        ("u2", "652", D),
    ]
    assert {why for _, why in listed} == {"unregistered TaskId"}
    assert len(receipts.set_aside_list(limit=1)) == 1


def test_the_first_registration_stays(store: SqliteStore) -> None:
    receipts = SqliteReceipts(store)
    receipts.register_task("t9", "jobA", 4)
    receipts.register_task("t9", "jobB", 7)
    assert receipts.task("t9") == TaskRef("jobA", 4)
