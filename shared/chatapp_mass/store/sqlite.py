"""SQLite implementation of :class:`~chatapp_mass.store.interface.Store` (the default for local runs).

Longer than 500 lines: the whole Store interface (every transition a conditional write, as the interface
requires), its schema and its migration, in one implementation.

One connection per thread (sqlite3 connections are not shared across threads), WAL journal so readers
never block the writer, a long busy timeout so several processes on one file queue instead of failing.
Conditional writes are single ``UPDATE ... WHERE status IN (...)`` statements, atomic in SQLite; the rate
window is read and written in one ``BEGIN IMMEDIATE`` transaction, so concurrent ``send`` runs on one file
share one budget.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, fields
from typing import Any

from chatapp_mass.core.errors import StoreError
from chatapp_mass.core.planning import sender_json
from chatapp_mass.store import ratewindow
from chatapp_mass.store.interface import (
    JOB_COUNTERS,
    JOB_UPDATABLE,
    BatchRecord,
    BatchStatus,
    JobKey,
    JobRecord,
    JobStatus,
    Leaves,
    RateGrant,
    ReportRow,
    RequestClaim,
    RowRecord,
    RowStatus,
    Store,
    check_counts,
    check_swept,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    options TEXT NOT NULL,
    intake TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    total_rows INTEGER NOT NULL DEFAULT 0,
    valid INTEGER NOT NULL DEFAULT 0,
    invalid INTEGER NOT NULL DEFAULT 0,
    duplicate INTEGER NOT NULL DEFAULT 0,
    batches INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    scheduled_at REAL NOT NULL DEFAULT 0,
    plan_owner TEXT NOT NULL DEFAULT '',
    plan_expires REAL NOT NULL DEFAULT 0,
    batch_size INTEGER NOT NULL DEFAULT 0,
    max_request_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '',
    claim_expires REAL NOT NULL DEFAULT 0,
    code TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    group_message_id TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    first_line INTEGER NOT NULL DEFAULT 0,
    last_line INTEGER NOT NULL DEFAULT 0,
    root INTEGER NOT NULL DEFAULT -1,
    sending_at REAL NOT NULL DEFAULT 0,
    parts TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
-- One B-tree for the rows: keyed by (job_id, line), the rows themselves in it (WITHOUT ROWID), and no index
-- on batch_seq: a batch's rows are consecutive lines, found by its first_line..last_line (batch_rows).
CREATE TABLE IF NOT EXISTS rows (
    job_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    recipient_to TEXT NOT NULL,
    status TEXT NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    batch_seq INTEGER,
    recipient TEXT,
    PRIMARY KEY (job_id, line)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_events (
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_events_by_key ON rate_events (key, at);
CREATE TABLE IF NOT EXISTS rate_holds (
    key TEXT NOT NULL,
    token TEXT NOT NULL,
    not_before REAL NOT NULL,
    PRIMARY KEY (key, token)
);
CREATE TABLE IF NOT EXISTS requests (
    digest TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at DESC, job_id);
"""

# A store file from before the rows lost their batch_seq index (issue 14): its batches planned without line
# bounds (a release older still) get them from their rows, found by that index, before it is dropped. Its
# rows table keeps its rowid (rebuilding it would copy every row of every job at the first open): the same
# queries work on both layouts, only the new files' inserts are cheaper.
_OLD_ROWS_INDEX = "rows_by_batch"
_BOUNDS_FROM_ROWS = """
UPDATE batches SET
    first_line = COALESCE((SELECT MIN(line) FROM rows WHERE rows.job_id = batches.job_id
                                                         AND rows.batch_seq = batches.seq), 0),
    last_line = COALESCE((SELECT MAX(line) FROM rows WHERE rows.job_id = batches.job_id
                                                        AND rows.batch_seq = batches.seq), 0)
WHERE last_line = 0 AND root < 0
"""

_JOB_FIELDS = [f.name for f in fields(JobRecord)]
_BATCH_FIELDS = [f.name for f in fields(BatchRecord)]
_BATCH_UPDATABLE = set(_BATCH_FIELDS) - {"job_id", "seq", "size", "status", "first_line", "last_line", "root"}
# columns added after the first release, with their definitions (an older store file gains them on open)
_ADDED_BATCH_COLUMNS = {
    "first_line": "INTEGER NOT NULL DEFAULT 0",
    "last_line": "INTEGER NOT NULL DEFAULT 0",
    "root": "INTEGER NOT NULL DEFAULT -1",
    "sending_at": "REAL NOT NULL DEFAULT 0",
    "parts": "TEXT NOT NULL DEFAULT ''",
}
_ADDED_JOB_COLUMNS = {
    "scheduled_at": "REAL NOT NULL DEFAULT 0",
    "plan_owner": "TEXT NOT NULL DEFAULT ''",
    "plan_expires": "REAL NOT NULL DEFAULT 0",
    "batch_size": "INTEGER NOT NULL DEFAULT 0",
    "max_request_bytes": "INTEGER NOT NULL DEFAULT 0",
    "canary": "TEXT NOT NULL DEFAULT ''",
}

# --- the timer at any scale, per-job counters (issue 11) --------------------------------------------------
# Job columns added for them (an older store file gains them on open, like the batch columns above):
# ``settled`` (see Store.settle_job) and one ``count_<name>`` per JOB_COUNTERS name (Store.add_job_counts).
_SWEEP_JOB_COLUMNS = {
    "settled": "INTEGER NOT NULL DEFAULT 0",
    **{f"count_{name}": "INTEGER NOT NULL DEFAULT 0" for name in JOB_COUNTERS},
}
# jobs_in seeks by status (finished jobs are passed over by the seek, never read); a job settled in its status
# is out of the index, and back in once its status changes: the trigger, so that every writer of ``status``
# (update_job, and any later one) keeps to it without knowing.
_SWEEP_SCHEMA = """
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, job_id) WHERE settled = 0;
CREATE TRIGGER IF NOT EXISTS jobs_unsettled_by_a_status_change AFTER UPDATE OF status ON jobs
    WHEN NEW.status IS NOT OLD.status AND NEW.settled != 0
BEGIN
    UPDATE jobs SET settled = 0 WHERE job_id = NEW.job_id;
END;
"""


def _statements(script: str) -> Iterator[str]:
    """The statements of a SQL script one by one (a trigger's body keeps its inner semicolons)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""


def _switch_to_wal(conn: sqlite3.Connection, patience: float = 60.0) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock it needs.

    Switching a new file's journal needs an exclusive lock, and SQLite may answer "database is locked" at
    once rather than through the busy handler when several processes open one new file together.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteStore(Store):
    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock  # stamps updated_at (a simulation runs the store on its own clock)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise StoreError(f"store {path!r}: directory {directory!r} does not exist")
        try:
            self._migrate(self._conn())
        except sqlite3.DatabaseError as error:
            raise StoreError(f"store {path!r} cannot be used as a SQLite database: {error}") from None

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Create the tables or bring an older file up to date, in one write transaction.

        Several processes may open one new file at once (two ``send`` runs on one store): without the
        transaction both would see a column missing and the second ALTER would fail ("duplicate column").
        ``BEGIN IMMEDIATE`` takes the write lock first (waiting on the busy timeout), so they go one by one
        and the later ones find nothing to do.
        """
        conn.executescript("BEGIN IMMEDIATE;\n" + _SCHEMA)  # executescript keeps the open transaction
        try:
            for table, added_columns in (
                ("batches", _ADDED_BATCH_COLUMNS),
                ("jobs", _ADDED_JOB_COLUMNS),
                ("jobs", _SWEEP_JOB_COLUMNS),
            ):
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for added, definition in added_columns.items():
                    if added not in present:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {added} {definition}")
            for statement in _statements(_SWEEP_SCHEMA):
                conn.execute(statement)
            if conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (_OLD_ROWS_INDEX,)
            ).fetchone():
                conn.execute(_BOUNDS_FROM_ROWS)
                conn.execute(f"DROP INDEX {_OLD_ROWS_INDEX}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=60000")
            _switch_to_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- jobs -------------------------------------------------------------------------------------------
    @staticmethod
    def _job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
        data = dict(zip(_JOB_FIELDS, row, strict=True))
        data["options"] = json.loads(data["options"])
        data["intake"] = json.loads(data["intake"])
        data["status"] = JobStatus(data["status"])
        return JobRecord(**data)

    def create_job(self, job: JobRecord) -> bool:
        data = asdict(job)
        data["options"] = json.dumps(job.options, sort_keys=True)
        data["intake"] = json.dumps(job.intake, sort_keys=True)
        data["status"] = job.status.value
        cols = ",".join(_JOB_FIELDS)
        marks = ",".join("?" for _ in _JOB_FIELDS)
        cursor = self._conn().execute(
            f"INSERT OR IGNORE INTO jobs ({cols}) VALUES ({marks})", [data[name] for name in _JOB_FIELDS]
        )
        return cursor.rowcount == 1

    def get_job(self, job_id: str) -> JobRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {','.join(_JOB_FIELDS)} FROM jobs WHERE job_id=?", (job_id,))
            .fetchone()
        )
        return self._job_from_row(row) if row else None

    def find_jobs(self, prefix: str) -> list[str]:
        rows = (
            self._conn()
            .execute("SELECT job_id FROM jobs WHERE substr(job_id, 1, ?) = ? LIMIT 5", (len(prefix), prefix))
            .fetchall()
        )
        return [row[0] for row in rows]

    def list_jobs(self, limit: int = 50, *, after: JobKey | None = None) -> list[JobRecord]:
        where, params = "", []
        if after is not None:
            where = "WHERE created_at < ? OR (created_at = ? AND job_id > ?)"
            params = [after.created_at, after.created_at, after.job_id]
        rows = (
            self._conn()
            .execute(
                f"SELECT {','.join(_JOB_FIELDS)} FROM jobs {where} ORDER BY created_at DESC, job_id LIMIT ?",
                (*params, limit),
            )
            .fetchall()
        )
        return [self._job_from_row(row) for row in rows]

    # --- the API's repeat check -----------------------------------------------------------------------------
    def claim_request(
        self, digest: str, job_id: str, *, at: float, window: float, force: bool = False
    ) -> RequestClaim | None:
        conn = self._conn()
        # One statement: inserted if absent, taken over if expired (or forced), else left as it is.
        cursor = conn.execute(
            "INSERT INTO requests (digest, job_id, at) VALUES (?, ?, ?) ON CONFLICT (digest) DO UPDATE "
            "SET job_id = excluded.job_id, at = excluded.at WHERE ? OR requests.at < ?",
            (digest, job_id, at, 1 if force else 0, at - window),
        )
        if cursor.rowcount == 1:
            return None
        row = conn.execute("SELECT job_id, at FROM requests WHERE digest = ?", (digest,)).fetchone()
        return RequestClaim(row[0], row[1]) if row else None

    def release_request(self, digest: str, job_id: str) -> None:
        self._conn().execute("DELETE FROM requests WHERE digest = ? AND job_id = ?", (digest, job_id))

    def update_job(
        self,
        job_id: str,
        *,
        expect: Iterable[JobStatus] | None = None,
        expect_plan_owner: str | None = None,
        expect_plan_expires: float | None = None,
        **changes: Any,
    ) -> bool:
        unknown = set(changes) - JOB_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        values = {k: (v.value if isinstance(v, JobStatus) else v) for k, v in changes.items()}
        values["updated_at"] = self.clock()
        sql = f"UPDATE jobs SET {','.join(f'{k}=?' for k in values)} WHERE job_id=?"
        params: list[Any] = [*values.values(), job_id]
        if expect is not None:
            states = [s.value for s in expect]
            sql += f" AND status IN ({','.join('?' for _ in states)})"
            params += states
        sql += _equal_to(params, plan_owner=expect_plan_owner, plan_expires=expect_plan_expires)
        return self._conn().execute(sql, params).rowcount == 1

    def delete_job(self, job_id: str, *, plan_owner: str | None = None) -> bool:
        conn = self._conn()
        with _transaction(conn):
            if plan_owner is not None:
                deleted = conn.execute(
                    "DELETE FROM jobs WHERE job_id=? AND plan_owner=?", (job_id, plan_owner)
                )
            else:
                deleted = conn.execute("DELETE FROM jobs WHERE job_id=?", (job_id,))
            if deleted.rowcount != 1:
                return False
            for table in ("rows", "batches"):
                conn.execute(f"DELETE FROM {table} WHERE job_id=?", (job_id,))
        return True

    # --- plan -------------------------------------------------------------------------------------------
    def clear_plan(self, job_id: str) -> None:
        conn = self._conn()
        with _transaction(conn):
            conn.execute("DELETE FROM rows WHERE job_id=?", (job_id,))
            conn.execute("DELETE FROM batches WHERE job_id=?", (job_id,))

    def put_plan(self, rows: list[RowRecord], batches: list[BatchRecord]) -> None:
        conn = self._conn()
        with _transaction(conn):
            conn.executemany(
                "INSERT OR REPLACE INTO rows (job_id,line,recipient_to,status,code,message,batch_seq,recipient)"
                " VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        job_id,
                        line,
                        to,
                        status._value_,  # .value is a property: a Python call per row
                        code,
                        message,
                        batch_seq,
                        # the planner's own encoding when it carries one (the same bytes: sender_json)
                        text if text is not None else sender_json(recipient) if recipient else None,
                    )
                    for job_id, line, to, status, code, message, batch_seq, recipient, text in rows
                ],
            )
            # A batch is written once: a re-planned batch that already exists (same deterministic seq) keeps
            # its state, so re-running a plan can never reset a sent batch.
            conn.executemany(
                f"INSERT OR IGNORE INTO batches ({','.join(_BATCH_FIELDS)}) VALUES"
                f" ({','.join('?' for _ in _BATCH_FIELDS)})",
                [
                    [b.status.value if name == "status" else getattr(b, name) for name in _BATCH_FIELDS]
                    for b in batches
                ],
            )

    # --- batches ----------------------------------------------------------------------------------------
    @staticmethod
    def _batch_from_row(row: tuple[Any, ...]) -> BatchRecord:
        data = dict(zip(_BATCH_FIELDS, row, strict=True))
        data["status"] = BatchStatus(data["status"])
        return BatchRecord(**data)

    def get_batch(self, job_id: str, seq: int) -> BatchRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {','.join(_BATCH_FIELDS)} FROM batches WHERE job_id=? AND seq=?", (job_id, seq))
            .fetchone()
        )
        return self._batch_from_row(row) if row else None

    def list_batches(
        self, job_id: str, statuses: Iterable[BatchStatus] | None = None, *, limit: int | None = None
    ) -> list[BatchRecord]:
        sql = f"SELECT {','.join(_BATCH_FIELDS)} FROM batches WHERE job_id=?"
        params: list[Any] = [job_id]
        if statuses is not None:
            states = [s.value for s in statuses]
            sql += f" AND status IN ({','.join('?' for _ in states)})"
            params += states
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        rows = self._conn().execute(sql, params).fetchall()
        return [self._batch_from_row(row) for row in rows]

    def batch_rows(self, job_id: str, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """By line range: a batch's rows (a part's: its root's) are the rows carrying its seq between its
        first and last line, a seek on the rows' key. A batch without line bounds (planned by a release from
        before them, and not given them by the migration) or not written yet: the job's rows, scanned."""
        conn = self._conn()
        found = conn.execute(
            "SELECT root, first_line, last_line FROM batches WHERE job_id=? AND seq=?", (job_id, seq)
        ).fetchone()
        if found is not None and found[2] > 0:
            root, first, last = found
            rows = conn.execute(
                "SELECT line, recipient FROM rows WHERE job_id=? AND line BETWEEN ? AND ? AND batch_seq=?"
                " ORDER BY line",
                (job_id, first, last, root if root >= 0 else seq),
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT line, recipient FROM rows WHERE job_id=? AND batch_seq=? ORDER BY line", (job_id, seq)
            ).fetchall()
        return [(line, json.loads(recipient)) for line, recipient in rows]

    def transition_batch(
        self,
        job_id: str,
        seq: int,
        *,
        expect: Iterable[BatchStatus],
        to: BatchStatus,
        expect_owner: str | None = None,
        expect_expires: float | None = None,
        **changes: Any,
    ) -> bool:
        unknown = set(changes) - _BATCH_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update batch fields {sorted(unknown)}")
        values: dict[str, Any] = {"status": to.value, **changes, "updated_at": self.clock()}
        states = [s.value for s in expect]
        attempts_increment = values.pop("attempts", None)
        assignments = [f"{k}=?" for k in values]
        params: list[Any] = list(values.values())
        if attempts_increment is not None:
            assignments.append("attempts=attempts+?")
            params.append(attempts_increment)
        sql = (
            f"UPDATE batches SET {','.join(assignments)} WHERE job_id=? AND seq=?"
            f" AND status IN ({','.join('?' for _ in states)})"
        )
        params += [job_id, seq, *states]
        sql += _equal_to(params, owner=expect_owner, claim_expires=expect_expires)
        return self._conn().execute(sql, params).rowcount == 1

    def renew_claim(self, job_id: str, seq: int, *, owner: str, until: float) -> bool:
        return (
            self._conn()
            .execute(
                "UPDATE batches SET claim_expires=? WHERE job_id=? AND seq=? AND owner=? AND status IN (?,?)",
                (until, job_id, seq, owner, BatchStatus.claimed.value, BatchStatus.sending.value),
            )
            .rowcount
            == 1
        )

    def batch_totals(self, job_id: str) -> dict[BatchStatus, tuple[int, int]]:
        rows = (
            self._conn()
            .execute(
                "SELECT status, COUNT(*), COALESCE(SUM(size),0) FROM batches WHERE job_id=? AND status!=?"
                " GROUP BY status",
                (job_id, BatchStatus.split.value),
            )
            .fetchall()
        )
        return {BatchStatus(status): (count, size) for status, count, size in rows}

    # --- report -----------------------------------------------------------------------------------------
    def report_rows(self, job_id: str) -> Iterator[ReportRow]:
        # A dedicated connection: the caller may interleave other store calls while streaming.
        conn = sqlite3.connect(self.path, timeout=60.0)
        try:
            leaves = Leaves(
                self._batch_from_row(row)
                for row in conn.execute(
                    f"SELECT {','.join(_BATCH_FIELDS)} FROM batches WHERE job_id=?", (job_id,)
                )
            )
            cursor = conn.execute(
                "SELECT line, recipient_to, status, code, message, batch_seq FROM rows WHERE job_id=? ORDER BY line",
                (job_id,),
            )
            for line, to, row_status, code, message, batch_seq in cursor:
                if row_status != RowStatus.valid.value:
                    yield ReportRow(line, to, row_status, "", code, message)
                else:
                    yield leaves.row(line, to, batch_seq)
        finally:
            conn.close()

    # --- rate window ------------------------------------------------------------------------------------
    def rate_acquire(
        self,
        key: str,
        limit: int,
        window: float,
        clock: Callable[[], float],
        *,
        peek: bool = False,
        force: bool = False,
    ) -> float:
        conn = self._conn()
        if peek:
            now = clock()
            times = self._rate_counted(conn, key, window, now)
            return 0.0 if len(times) < limit else max(times[len(times) - limit] + window - now, 0.001)
        with _transaction(conn, immediate=True):
            now = clock()  # under the write lock (see Store.rate_acquire)
            self._rate_prune(conn, key, window, now)
            times = self._rate_counted(conn, key, window, now)
            if len(times) < limit or force:
                conn.execute("INSERT INTO rate_events (key, at) VALUES (?,?)", (key, now))
                return 0.0
            # The slot frees when the (len - limit + 1)-th newest leaves the window.
            return max(times[len(times) - limit] + window - now, 0.001)

    def rate_reserve(
        self, key: str, limit: int, window: float, clock: Callable[[], float], *, token: str, lead: float
    ) -> RateGrant:
        conn = self._conn()
        with _transaction(conn, immediate=True):
            now = clock()  # under the write lock
            self._rate_prune(conn, key, window, now)
            slot = ratewindow.next_slot(self._rate_counted(conn, key, window, now), limit, window, now)
            if slot - now > lead:
                return RateGrant(False, max(slot - now - lead, 0.001))
            conn.execute(
                "INSERT OR REPLACE INTO rate_holds (key, token, not_before) VALUES (?,?,?)",
                (key, token, slot),
            )
            return RateGrant(True, slot)

    def rate_depart(self, key: str, token: str, at: float, clock: Callable[[], float]) -> None:
        conn = self._conn()
        with _transaction(conn, immediate=True):
            row = conn.execute(
                "SELECT not_before FROM rate_holds WHERE key=? AND token=?", (key, token)
            ).fetchone()
            conn.execute("DELETE FROM rate_holds WHERE key=? AND token=?", (key, token))
            conn.execute(
                "INSERT INTO rate_events (key, at) VALUES (?,?)", (key, max(at, row[0]) if row else at)
            )

    @staticmethod
    def _rate_counted(conn: sqlite3.Connection, key: str, window: float, now: float) -> list[float]:
        departures = [
            row[0]
            for row in conn.execute("SELECT at FROM rate_events WHERE key=? AND at>?", (key, now - window))
        ]
        holds = [row[0] for row in conn.execute("SELECT not_before FROM rate_holds WHERE key=?", (key,))]
        return ratewindow.counted(departures, holds, now, window)

    @staticmethod
    def _rate_prune(conn: sqlite3.Connection, key: str, window: float, now: float) -> None:
        conn.execute("DELETE FROM rate_events WHERE key=? AND at<=?", (key, now - max(window, 1.0) * 10))
        conn.execute(
            "DELETE FROM rate_holds WHERE key=? AND not_before<=?",
            (key, now - window - ratewindow.HOLD_MAX),
        )

    # --- the timer at any scale, per-job counters (issue 11) ---------------------------------------------
    def jobs_in(self, statuses: Iterable[JobStatus], limit: int | None = None) -> list[JobRecord]:
        found: list[JobRecord] = []
        for status in check_swept(statuses):
            left = -1 if limit is None else limit - len(found)  # LIMIT -1: no limit
            if left == 0:
                break
            rows = (
                self._conn()
                .execute(
                    f"SELECT {','.join(_JOB_FIELDS)} FROM jobs WHERE status=? AND settled=0 ORDER BY job_id LIMIT ?",
                    (status.value, left),
                )
                .fetchall()
            )
            found.extend(self._job_from_row(row) for row in rows)
        return found

    def settle_job(self, job_id: str, status: JobStatus) -> bool:
        return (
            self._conn()
            .execute(
                "UPDATE jobs SET settled=1 WHERE job_id=? AND status=?", (job_id, JobStatus(status).value)
            )
            .rowcount
            == 1
        )

    def add_job_counts(self, job_id: str, **deltas: int) -> dict[str, int]:
        counts = check_counts(deltas)
        columns = ",".join(f"count_{name}" for name in JOB_COUNTERS)
        conn = self._conn()
        if any(counts.values()):
            # one statement: atomic, and it returns the totals it wrote (fetchall: the statement ends, and
            # with it the write, before we return)
            rows = conn.execute(
                f"UPDATE jobs SET {','.join(f'count_{name}=count_{name}+?' for name in JOB_COUNTERS)}"
                f" WHERE job_id=? RETURNING {columns}",
                [*counts.values(), job_id],
            ).fetchall()
        else:
            rows = conn.execute(f"SELECT {columns} FROM jobs WHERE job_id=?", (job_id,)).fetchall()
        if not rows:
            raise KeyError(job_id)
        return dict(zip(JOB_COUNTERS, (int(value) for value in rows[0]), strict=True))


def _equal_to(params: list[Any], **columns: Any) -> str:
    """`` AND column=?`` for each given (not None) value, appended to ``params``: a fenced write's token."""
    clause = ""
    for column, value in columns.items():
        if value is not None:
            clause += f" AND {column}=?"
            params.append(value)
    return clause


class _transaction:
    def __init__(self, conn: sqlite3.Connection, immediate: bool = False) -> None:
        self.conn = conn
        self.begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute(self.begin)
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
