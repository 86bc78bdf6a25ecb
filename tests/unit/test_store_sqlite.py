"""What only the SQLite store has: its URLs, its file checks and its schema migration. The behaviour every
store shares is proved by tests/contract/test_store_contract.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chatapp_mass.bootstrap import open_store
from chatapp_mass.errors import OptionsError, StoreError
from chatapp_mass.store import BatchRecord
from chatapp_mass.store_sqlite import SqliteStore


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite:///{tmp_path}/a.db"), SqliteStore)  # absolute via 4 slashes
    with pytest.raises(OptionsError, match="tablestore://INSTANCE"):
        open_store("tablestore://")
    with pytest.raises(OptionsError, match="sqlite:///"):
        open_store("postgres://x")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/missing/dir/a.db")


def test_not_a_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not SQLite" * 100)
    with pytest.raises(StoreError, match="cannot be used as a SQLite database"):
        SqliteStore(str(path))


def test_a_store_from_before_batch_line_bounds_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE batches (job_id TEXT NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL,"
                 " status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '',"
                 " claim_expires REAL NOT NULL DEFAULT 0, code TEXT NOT NULL DEFAULT '',"
                 " message TEXT NOT NULL DEFAULT '', request_id TEXT NOT NULL DEFAULT '',"
                 " group_message_id TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL, PRIMARY KEY (job_id, seq))")
    conn.execute("INSERT INTO batches (job_id, seq, size, status, updated_at) VALUES ('j', 0, 5, 'sent', 1.0)")
    conn.commit()
    conn.close()
    store = SqliteStore(str(path))
    [batch] = store.list_batches("j")
    assert (batch.size, batch.status.value, batch.first_line, batch.last_line) == (5, "sent", 0, 0)
    store.put_plan([], [BatchRecord("j", 1, 2, first_line=7, last_line=9)])
    assert [(b.first_line, b.last_line) for b in store.list_batches("j")] == [(0, 0), (7, 9)]
    store.close()
