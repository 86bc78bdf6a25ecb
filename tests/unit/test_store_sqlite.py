"""What only the SQLite store has: its URLs, its file checks and its schema migration. The behaviour every
store shares is proved by tests/contract/test_store_contract.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from chatapp_mass.core.errors import OptionsError, StoreError
from chatapp_mass.entry.bootstrap import open_store
from chatapp_mass.store.interface import BatchRecord
from chatapp_mass.store.sqlite import SqliteStore


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
    conn.execute(
        "CREATE TABLE batches (job_id TEXT NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL,"
        " status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '',"
        " claim_expires REAL NOT NULL DEFAULT 0, code TEXT NOT NULL DEFAULT '',"
        " message TEXT NOT NULL DEFAULT '', request_id TEXT NOT NULL DEFAULT '',"
        " group_message_id TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL, PRIMARY KEY (job_id, seq))"
    )
    conn.execute(
        "INSERT INTO batches (job_id, seq, size, status, updated_at) VALUES ('j', 0, 5, 'sent', 1.0)"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(str(path))
    [batch] = store.list_batches("j")
    assert (batch.size, batch.status.value, batch.first_line, batch.last_line) == (5, "sent", 0, 0)
    store.put_plan([], [BatchRecord("j", 1, 2, first_line=7, last_line=9)])
    assert [(b.first_line, b.last_line) for b in store.list_batches("j")] == [(0, 0), (7, 9)]
    store.close()


def _open_at_once(path: Path, processes: int) -> list[int]:
    """Start `processes` Pythons that each open `path` as a store the moment a shared go-file appears."""
    go = path.with_suffix(".go")
    script = (
        "import os, sys, time\n"
        "from chatapp_mass.store.sqlite import SqliteStore\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
        "SqliteStore(sys.argv[1]).close()\n"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(go)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    go.write_text("go")
    codes = []
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        codes.append(run.returncode)
    return codes


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # CI reproduced it: two `send` runs on one new store, the second died with "duplicate column name".
    for attempt in range(5):
        path = tmp_path / f"new-{attempt}.db"
        assert _open_at_once(path, 6) == [0] * 6
        conn = sqlite3.connect(path)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        conn.close()
        assert {"plan_owner", "settled"} <= columns
