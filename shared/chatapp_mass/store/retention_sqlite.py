"""The SQLite purge (see ``store.retention``): in the main store's file, through its per-thread connections."""

from __future__ import annotations

import sqlite3
import time

from chatapp_mass.store import retention
from chatapp_mass.store.interface import JobRecord
from chatapp_mass.store.retention import (
    DAY,
    PURGE_CHUNK,
    PurgeResult,
    RetentionStore,
    finished_statuses,
    summary_of,
)
from chatapp_mass.store.sqlite import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retention_marks (
    name TEXT PRIMARY KEY,
    at REAL NOT NULL
) WITHOUT ROWID
"""


class SqliteRetention(RetentionStore):
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        store._conn().execute(_SCHEMA)

    def _candidates(self, before: float) -> list[JobRecord]:
        """Finished jobs older than ``before``: not purged yet, or purged by a purge that stopped half-way
        (rows left). A scan of the jobs table: there are thousands of jobs, not millions, and it runs daily."""
        states = [s.value for s in finished_statuses()]
        conn = self.store._conn()
        ids = [
            row[0]
            for row in conn.execute(
                f"SELECT job_id FROM jobs WHERE status IN ({','.join('?' for _ in states)})"
                " AND (CASE WHEN finished_at > 0 THEN finished_at ELSE updated_at END) < ?"
                " AND (purged_at = 0 OR EXISTS (SELECT 1 FROM batches WHERE batches.job_id = jobs.job_id)"
                "      OR EXISTS (SELECT 1 FROM rows WHERE rows.job_id = jobs.job_id))"
                " ORDER BY job_id",
                (*states, before),
            )
        ]
        jobs = [self.store.get_job(job_id) for job_id in ids]
        return [job for job in jobs if job is not None]

    def purge_finished(
        self, before: float, *, dry_run: bool = False, now: float | None = None, chunk: int = PURGE_CHUNK
    ) -> PurgeResult:
        now = time.time() if now is None else now
        result = PurgeResult(before=before, dry_run=dry_run)
        tables = self._tables()
        conn = self.store._conn()
        for job in self._candidates(before):
            result.jobs.append(job.job_id)
            if dry_run:
                for table, column in tables:
                    (count,) = conn.execute(
                        f"SELECT COUNT(*) FROM {table} WHERE {column}=?", (job.job_id,)
                    ).fetchone()
                    result.deleted[table] = result.deleted.get(table, 0) + count
                continue
            if not job.summary:  # finished by an older release: the summary first, while the rows are here
                finished_at = job.finished_at or job.updated_at
                summary = summary_of(job, self.store.batch_totals(job.job_id), finished_at=finished_at)
                self.store.update_job(job.job_id, summary=summary, finished_at=finished_at)
            # conditional on the status: a job reopened meanwhile (a resend) keeps its rows
            if not job.purged_at and not self.store.update_job(
                job.job_id, expect=finished_statuses(), purged_at=now
            ):
                result.jobs.pop()
                continue
            for table, column in tables:
                deleted = _delete_chunked(conn, table, column, job.job_id, chunk)
                result.deleted[table] = result.deleted.get(table, 0) + deleted
        return result

    def _tables(self) -> list[tuple[str, str]]:
        """The registered tables that exist in this file (a feature not used yet has none)."""
        present = {
            row[0] for row in self.store._conn().execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        return [
            (table, column) for table, column in dict.fromkeys(retention.PURGE_TABLES) if table in present
        ]

    def claim_daily(self, now: float) -> bool:
        cursor = self.store._conn().execute(
            "INSERT INTO retention_marks (name, at) VALUES ('purge', ?) ON CONFLICT (name) DO UPDATE"
            " SET at = excluded.at WHERE retention_marks.at <= ?",
            (now, now - DAY),
        )
        return cursor.rowcount == 1


def _delete_chunked(conn: sqlite3.Connection, table: str, column: str, job_id: str, chunk: int) -> int:
    """Delete a job's rows of ``table``, ``chunk`` at a time, each its own transaction (autocommit): by the
    table's primary key (its rowid for a table without one), so any feature table works the same way."""
    key = _key_columns(conn, table)
    keys = ",".join(key)
    deleted = 0
    while True:
        cursor = conn.execute(
            f"DELETE FROM {table} WHERE ({keys}) IN (SELECT {keys} FROM {table} WHERE {column}=? LIMIT ?)",
            (job_id, chunk),
        )
        deleted += max(cursor.rowcount, 0)
        if cursor.rowcount < chunk:
            return deleted


def _key_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    primary = sorted((row[5], row[1]) for row in info if row[5] > 0)
    return [name for _, name in primary] or ["rowid"]
