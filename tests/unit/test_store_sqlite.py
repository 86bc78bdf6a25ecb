"""What only the SQLite store has: its URLs, its file checks and its schema migration. The behaviour every
store shares is proved by tests/contract/test_store_contract.py."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from chatapp_mass.core.errors import OptionsError, StoreError
from chatapp_mass.entry.bootstrap import open_store
from chatapp_mass.store.interface import BatchRecord, RowRecord, RowStatus
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


# The rows table and its batch_seq index as released before issue 14's plan write (a rowid table, three
# B-trees per row), and the batches table of then.
_ROWS_BEFORE_ISSUE_14 = """
CREATE TABLE rows (
    job_id TEXT NOT NULL, line INTEGER NOT NULL, recipient_to TEXT NOT NULL, status TEXT NOT NULL,
    code TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '', batch_seq INTEGER, recipient TEXT,
    PRIMARY KEY (job_id, line)
);
CREATE INDEX rows_by_batch ON rows (job_id, batch_seq) WHERE batch_seq IS NOT NULL;
CREATE TABLE batches (
    job_id TEXT NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '', claim_expires REAL NOT NULL DEFAULT 0,
    code TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '', request_id TEXT NOT NULL DEFAULT '',
    group_message_id TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL,
    first_line INTEGER NOT NULL DEFAULT 0, last_line INTEGER NOT NULL DEFAULT 0,
    root INTEGER NOT NULL DEFAULT -1, sending_at REAL NOT NULL DEFAULT 0, parts TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}


def test_a_store_with_the_batch_seq_index_gets_line_bounds_and_loses_the_index(tmp_path: Path) -> None:
    """A file written before the rows lost their batch_seq index: a batch planned without line bounds gets
    them from its rows, the index is dropped, and every batch still finds exactly its rows (by line range);
    the rows table keeps its rowid layout and takes new plans as before."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(_ROWS_BEFORE_ISSUE_14)
    # job j: batch 0 (lines 2-4, planned without bounds), an invalid line 5, batch 1 (lines 6-7, bounded)
    for line, seq in ((2, 0), (3, 0), (4, 0), (5, None), (6, 1), (7, 1)):
        conn.execute(
            "INSERT INTO rows VALUES ('j', ?, ?, ?, '', '', ?, ?)",
            (
                line,
                f"86138000000{line:02d}",
                "invalid" if seq is None else "valid",
                seq,
                None if seq is None else json.dumps({"To": f"86138000000{line:02d}"}),
            ),
        )
    conn.execute("INSERT INTO batches (job_id, seq, size, status, updated_at) VALUES ('j', 0, 3, 'sent', 1)")
    conn.execute(
        "INSERT INTO batches (job_id, seq, size, status, updated_at, first_line, last_line)"
        " VALUES ('j', 1, 2, 'pending', 1, 6, 7)"
    )
    conn.commit()
    conn.close()

    store = SqliteStore(str(path))
    assert "rows_by_batch" not in _indexes(path)
    assert [(b.seq, b.first_line, b.last_line) for b in store.list_batches("j")] == [(0, 2, 4), (1, 6, 7)]
    assert [line for line, _ in store.batch_rows("j", 0)] == [2, 3, 4]
    assert store.batch_rows("j", 1) == [(6, {"To": "8613800000006"}), (7, {"To": "8613800000007"})]
    store.put_plan(
        [RowRecord("k", 2, "8613800000099", RowStatus.valid, batch_seq=0, recipient={"To": "8613800000099"})],
        [BatchRecord("k", 0, 1, first_line=2, last_line=2)],
    )
    assert store.batch_rows("k", 0) == [(2, {"To": "8613800000099"})]
    assert [(r.line, r.status) for r in store.report_rows("j")] == [
        (2, "sent"),
        (3, "sent"),
        (4, "sent"),
        (5, "invalid"),
        (6, "pending"),
        (7, "pending"),
    ]
    store.close()
    SqliteStore(str(path)).close()  # opened again: nothing left to migrate


def test_a_new_store_keeps_rows_in_one_b_tree_and_finds_a_batch_by_line_range(tmp_path: Path) -> None:
    """The rows table is its key (WITHOUT ROWID) with no other index, and batch_rows seeks that key."""
    path = tmp_path / "new.db"
    SqliteStore(str(path)).close()
    assert not {name for name in _indexes(path) if not name.startswith("sqlite_autoindex")} - {
        "rate_events_by_key",
        "jobs_by_status",
        "jobs_by_created",  # GET /jobs pages: newest first after a cursor
    }
    with sqlite3.connect(path) as conn:
        [(sql,)] = conn.execute("SELECT sql FROM sqlite_master WHERE name='rows'").fetchall()
        assert sql.rstrip().endswith("WITHOUT ROWID")
        plan = " ".join(
            row[-1]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT line, recipient FROM rows WHERE job_id=? AND line BETWEEN ? AND ?"
                " AND batch_seq=? ORDER BY line",
                ("j", 2, 9, 0),
            )
        )
    assert "PRIMARY KEY (job_id=? AND line>? AND line<?)" in plan, plan


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
