"""The receipt store in the SqliteStore's file (:class:`~chatapp_mass.store.receipts.ReceiptStore`).

Three tables of its own, created on first use (``CREATE TABLE IF NOT EXISTS``, so an older file gains them
and several processes may race to create them): ``receipt_tasks`` (TaskId -> job, seq), ``receipt_states``
(one row per (task_id, recipient): the highest-ranked receipt seen) and ``receipt_aside`` (receipts the store
could not place, with why; listed oldest first by the report's Timestamp, as on Tablestore).

``record`` applies a whole request in ONE transaction: one ``executemany`` of an upsert whose ``DO UPDATE``
has the rank rule (:func:`~chatapp_mass.store.receipts.advances`) as its ``WHERE``, so a receipt that does
not move the state forward writes nothing, in any order and however often it comes. The rank is stored
beside the status so the condition is a plain integer comparison. It reuses the SqliteStore's per-thread
connections (WAL: readers never wait for the writer).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

from chatapp_mass.core.errors import StoreError
from chatapp_mass.store.receipts import (
    RANK,
    DeliveryState,
    DeliveryStatus,
    Receipt,
    ReceiptStore,
    RecordResult,
    TaskRef,
)
from chatapp_mass.store.sqlite import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipt_tasks (
    task_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipt_states (
    task_id TEXT NOT NULL,
    recipient_to TEXT NOT NULL,
    status TEXT NOT NULL,
    rank INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    error_code TEXT NOT NULL DEFAULT '',
    error_description TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, recipient_to)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipt_aside (
    task_id TEXT NOT NULL,
    recipient_to TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    error_code TEXT NOT NULL DEFAULT '',
    error_description TEXT NOT NULL DEFAULT '',
    from_number TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL,
    set_at REAL NOT NULL,
    UNIQUE (message_id, status, task_id, recipient_to)
);
CREATE INDEX IF NOT EXISTS receipt_aside_by_time ON receipt_aside (at_ms);
"""

# The rank rule as the upsert's condition: the stored row changes only for a receipt that ranks higher
# (``advances``); ``changes()`` then counts exactly the receipts that moved a state.
_UPSERT = """
INSERT INTO receipt_states
    (task_id, recipient_to, status, rank, message_id, at_ms, error_code, error_description)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id, recipient_to) DO UPDATE SET
    status = excluded.status,
    rank = excluded.rank,
    message_id = excluded.message_id,
    at_ms = excluded.at_ms,
    error_code = excluded.error_code,
    error_description = excluded.error_description
WHERE excluded.rank > receipt_states.rank
"""


class SqliteReceipts(ReceiptStore):
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._ready = False
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = self.store._conn()
        if not self._ready:
            with self._lock:
                if not self._ready:
                    try:
                        for statement in _SCHEMA.split(";"):  # not executescript: it would COMMIT first
                            if statement.strip():
                                conn.execute(statement)
                    except sqlite3.DatabaseError as error:
                        raise StoreError(f"store {self.store.path!r}: receipt tables: {error}") from None
                    self._ready = True
        return conn

    def register_task(self, task_id: str, job_id: str, seq: int) -> None:
        self._conn().execute(
            "INSERT OR IGNORE INTO receipt_tasks (task_id, job_id, seq) VALUES (?, ?, ?)",
            (task_id, job_id, seq),
        )

    def task(self, task_id: str) -> TaskRef | None:
        row = (
            self._conn()
            .execute("SELECT job_id, seq FROM receipt_tasks WHERE task_id = ?", (task_id,))
            .fetchone()
        )
        return TaskRef(row[0], int(row[1])) if row else None

    def record(self, receipts: Sequence[Receipt]) -> RecordResult:
        if not receipts:
            return RecordResult(0, 0)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(
                _UPSERT,
                [
                    (
                        r.task_id,
                        r.to,
                        r.status._value_,
                        RANK[r.status],
                        r.message_id,
                        r.at_ms,
                        r.error_code,
                        r.error_description,
                    )
                    for r in receipts
                ],
            )
            changed = conn.total_changes - before
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return RecordResult(changed, len(receipts) - changed)

    def states(self, task_id: str) -> dict[str, DeliveryState]:
        rows = self._conn().execute(
            "SELECT recipient_to, status, message_id, at_ms, error_code, error_description"
            " FROM receipt_states WHERE task_id = ?",
            (task_id,),
        )
        return {
            to: DeliveryState(DeliveryStatus(status), message_id, int(at_ms), code, description)
            for to, status, message_id, at_ms, code, description in rows
        }

    def counts(self, task_ids: Sequence[str]) -> dict[DeliveryStatus, int]:
        """One query per 500 task ids (SQLite's parameter limit is far above; a job has a task per batch)."""
        totals = dict.fromkeys(DeliveryStatus, 0)
        conn = self._conn()
        unique = sorted(set(task_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            for status, n in conn.execute(
                f"SELECT status, COUNT(*) FROM receipt_states WHERE task_id IN ({marks}) GROUP BY status",
                chunk,
            ):
                totals[DeliveryStatus(status)] += int(n)
        return totals

    def failed_codes(self, task_ids: Sequence[str]) -> dict[str, int]:
        codes: dict[str, int] = {}
        conn = self._conn()
        unique = sorted(set(task_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            for code, n in conn.execute(
                f"SELECT error_code, COUNT(*) FROM receipt_states WHERE task_id IN ({marks}) AND status = ?"
                " GROUP BY error_code",
                [*chunk, DeliveryStatus.failed.value],
            ):
                codes[code] = codes.get(code, 0) + int(n)
        return dict(sorted(codes.items(), key=lambda item: (-item[1], item[0])))

    def set_aside(self, receipts: Sequence[Receipt], reason: str) -> None:
        if not receipts:
            return
        now = self.store.clock()
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR IGNORE INTO receipt_aside (task_id, recipient_to, message_id, status, at_ms,"
                " error_code, error_description, from_number, reason, set_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.task_id,
                        r.to,
                        r.message_id,
                        r.status._value_,
                        r.at_ms,
                        r.error_code,
                        r.error_description,
                        r.from_,
                        reason,
                        now,
                    )
                    for r in receipts
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def set_aside_list(self, limit: int = 100) -> list[tuple[Receipt, str]]:
        rows = self._conn().execute(
            "SELECT task_id, recipient_to, message_id, status, at_ms, error_code, error_description,"
            " from_number, reason FROM receipt_aside ORDER BY at_ms, rowid LIMIT ?",
            (max(limit, 0),),
        )
        return [
            (
                Receipt(
                    task_id,
                    to,
                    message_id,
                    DeliveryStatus(status),
                    int(at_ms),
                    code,
                    description,
                    from_number,
                ),
                reason,
            )
            for task_id, to, message_id, status, at_ms, code, description, from_number, reason in rows
        ]
