"""The suppression list in the SQLite store's file: two tables beside the main store's, created on first use."""

from __future__ import annotations

import builtins
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from chatapp_mass.store.sqlite import SqliteStore, _transaction
from chatapp_mass.store.suppression import (
    MarkedRow,
    Suppression,
    SuppressionStore,
    check_limit,
    check_numbers,
    check_reason,
    check_space,
    chunks,
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS suppressed (
    space TEXT NOT NULL,
    number TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (space, number)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS suppressed_rows (
    job_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    recipient_to TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (job_id, line)
) WITHOUT ROWID""",
)


class SqliteSuppression(SuppressionStore):
    def __init__(self, store: SqliteStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store, self.clock = store, clock
        self._ready = False
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        """The main store's connection of this thread (WAL), with our tables created on first use."""
        conn = self.store._conn()
        if not self._ready:
            with self._lock:
                if not self._ready:
                    for statement in _SCHEMA:
                        conn.execute(statement)
                    self._ready = True
        return conn

    def add(self, space: str, numbers: Sequence[str], *, reason: str, source: str = "") -> int:
        space, reason, numbers = check_space(space), check_reason(reason), check_numbers(numbers)
        conn, now = self._conn(), self.clock()
        added = 0
        with _transaction(conn, immediate=True):
            for number in numbers:
                added += conn.execute(
                    "INSERT OR IGNORE INTO suppressed (space, number, reason, at, source) VALUES (?,?,?,?,?)",
                    (space, number, reason, now, source),
                ).rowcount
        return added

    def remove(self, space: str, numbers: Sequence[str]) -> int:
        space, numbers = check_space(space), check_numbers(numbers)
        conn = self._conn()
        removed = 0
        for part in chunks(numbers):
            marks = ",".join("?" * len(part))
            removed += conn.execute(
                f"DELETE FROM suppressed WHERE space=? AND number IN ({marks})", (space, *part)
            ).rowcount
        return removed

    def list(self, space: str, *, after: str = "", limit: int = 100) -> list[Suppression]:
        space, limit = check_space(space), check_limit(limit)
        rows = self._conn().execute(
            "SELECT space, number, reason, at, source FROM suppressed WHERE space=? AND number>? "
            "ORDER BY number LIMIT ?",
            (space, after, limit),
        )
        return [Suppression(*row) for row in rows]

    def suppressed(self, space: str, numbers: Sequence[str]) -> set[str]:
        space = check_space(space)
        numbers = list(dict.fromkeys(numbers))
        conn, found = self._conn(), set[str]()
        for part in chunks(numbers):
            marks = ",".join("?" * len(part))
            found.update(
                number
                for (number,) in conn.execute(
                    f"SELECT number FROM suppressed WHERE space=? AND number IN ({marks})", (space, *part)
                )
            )
        return found

    def mark_rows(self, rows: Sequence[MarkedRow]) -> None:
        if not rows:
            return
        conn = self._conn()
        with _transaction(conn, immediate=True):
            conn.executemany(
                "INSERT OR IGNORE INTO suppressed_rows (job_id, line, recipient_to, batch_seq, at)"
                " VALUES (?,?,?,?,?)",
                [tuple(row) for row in rows],
            )

    def marked_rows(
        self, job_id: str, first_line: int = 0, last_line: int | None = None
    ) -> builtins.list[MarkedRow]:
        rows = self._conn().execute(
            "SELECT job_id, line, recipient_to, batch_seq, at FROM suppressed_rows "
            "WHERE job_id=? AND line BETWEEN ? AND ? ORDER BY line",
            (job_id, first_line, (1 << 62) if last_line is None else last_line),
        )
        return [MarkedRow(*row) for row in rows]
