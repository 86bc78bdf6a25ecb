"""The messaging limit's window (``reach``) in the main store's SQLite file.

One row per From number: its entries (JSON, ``reach.encode``) and a version. Every change is read, decided by
the pure rules of ``reach`` and written in one ``BEGIN IMMEDIATE`` transaction (the write lock first, the clock
read under it), so concurrent senders -- threads, processes on one file -- never grant past the limit. The
connections are the store's own (``SqliteStore._conn``: per thread, WAL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from chatapp_mass.store import reach
from chatapp_mass.store.reach import DAY, Entry, Grant, ReachStore, Usage
from chatapp_mass.store.sqlite import SqliteStore, _transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reach (
    from_number TEXT PRIMARY KEY,
    entries TEXT NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID
"""


class SqliteReach(ReachStore):
    def __init__(self, store: SqliteStore, *, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.clock = clock or store.clock
        store._conn().execute(_SCHEMA)

    def _read(self, conn: sqlite3.Connection, from_number: str) -> list[Entry] | None:
        row = conn.execute("SELECT entries FROM reach WHERE from_number=?", (from_number,)).fetchone()
        return reach.decode(row[0]) if row else None

    @staticmethod
    def _write(conn: sqlite3.Connection, from_number: str, entries: list[Entry]) -> None:
        conn.execute(
            "INSERT INTO reach (from_number, entries, version) VALUES (?,?,1) ON CONFLICT (from_number) "
            "DO UPDATE SET entries=excluded.entries, version=reach.version+1",
            (from_number, reach.encode(entries)),
        )

    def reserve(
        self,
        from_number: str,
        count: int,
        limit: int | None,
        *,
        token: str,
        window: float = DAY,
        now: float | None = None,
    ) -> Grant:
        conn = self.store._conn()
        with _transaction(conn, immediate=True):
            at = self.clock() if now is None else now  # under the write lock
            grant, written = reach.reserve_entries(
                self._read(conn, from_number) or [], count, limit, window, at, token
            )
            if written is not None:
                self._write(conn, from_number, written)
            return grant

    def release(self, from_number: str, token: str, *, window: float = DAY, now: float | None = None) -> bool:
        conn = self.store._conn()
        with _transaction(conn, immediate=True):
            at = self.clock() if now is None else now
            written = reach.release_entries(self._read(conn, from_number) or [], token, at, window)
            if written is not None:
                self._write(conn, from_number, written)
            return written is not None

    def settle(
        self, from_number: str, token: str, at: float, *, window: float = DAY, now: float | None = None
    ) -> bool:
        conn = self.store._conn()
        with _transaction(conn, immediate=True):
            current = self.clock() if now is None else now
            written = reach.settle_entries(self._read(conn, from_number) or [], token, at, current, window)
            if written is not None:
                self._write(conn, from_number, written)
            return written is not None

    def usage(self, from_number: str, *, window: float = DAY, now: float | None = None) -> Usage:
        entries = self._read(self.store._conn(), from_number) or []
        return reach.usage_of(entries, self.clock() if now is None else now, window)
