"""Retention (issue 17) on SQLite: the setting, the purge (finished old jobs lose their rows, batches and
registered feature rows in chunks; their summary stays; unfinished and recent jobs are untouched; idempotent),
the timer's once-a-day marker, and what the CLI says of a purged job (status, report, purge)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.entry import cli
from chatapp_mass.services.jobs import FunctionSettings
from chatapp_mass.services.retention import daily_purge, purge, record_summary
from chatapp_mass.store import retention
from chatapp_mass.store.features import open_retention
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord, JobStatus, RowRecord, RowStatus
from chatapp_mass.store.retention import DAY, retention_days
from chatapp_mass.store.sqlite import SqliteStore

NOW = 1_900_000_000.0


# --- the setting ------------------------------------------------------------------------------------------
def test_the_setting_defaults_to_30_days_and_0_keeps_forever() -> None:
    assert retention_days({}) == 30
    assert retention_days({"CHATAPP_RETENTION_DAYS": " 7 "}) == 7
    assert retention_days({"CHATAPP_RETENTION_DAYS": "0"}) == 0
    assert FunctionSettings.from_env({"CHATAPP_RETENTION_DAYS": "90"}).retention_days == 90
    assert FunctionSettings.from_env({}).retention_days == 30


@pytest.mark.parametrize("text", ["thirty", "1.5", "-1", "99999999"])
def test_a_bad_setting_names_the_variable_and_what_to_write(text: str) -> None:
    with pytest.raises(OptionsError, match=r"CHATAPP_RETENTION_DAYS=.*(whole number|from 0)") as refused:
        retention_days({"CHATAPP_RETENTION_DAYS": text})
    assert "keep forever" in str(refused.value)


# --- the SQLite purge -------------------------------------------------------------------------------------
def add_job(
    store: SqliteStore,
    job_id: str,
    *,
    status: JobStatus,
    finished_at: float,
    rows: int = 50,
    batch_size: int = 20,
    summary: bool = True,
) -> None:
    """A job of ``rows`` lines (line 4 invalid), batches of ``batch_size`` (the first failed, the rest sent)."""
    store.create_job(
        JobRecord(job_id=job_id, source="f.csv", options={}, intake={}, content_sha256="x", created_at=0.0)
    )
    records, batches = [], []
    valid = [line for line in range(1, rows + 1) if line != 4]
    for line in range(1, rows + 1):
        if line == 4:
            records.append(RowRecord(job_id, line, "12", RowStatus.invalid, "InvalidNumber", "too short"))
            continue
        seq = valid.index(line) // batch_size
        to = f"86138{line:08d}"
        records.append(RowRecord(job_id, line, to, RowStatus.valid, batch_seq=seq, recipient={"To": to}))
    for seq in range(math.ceil(len(valid) / batch_size)):
        part = valid[seq * batch_size : (seq + 1) * batch_size]
        batches.append(
            BatchRecord(
                job_id, seq, len(part), BatchStatus.failed if seq == 0 else BatchStatus.sent,
                first_line=part[0], last_line=part[-1],
            )
        )  # fmt: skip
    store.put_plan(records, batches)
    store.update_job(
        job_id, status=status, total_rows=rows, valid=len(valid), invalid=1, batches=len(batches)
    )
    if summary:
        job = store.get_job(job_id)
        assert job is not None
        record_summary(store, job, now=finished_at)
    else:  # a job finished by a release before summaries: only its updated_at says when
        store.clock = lambda: finished_at
        store.update_job(job_id, reason="finished long ago")
        store.clock = lambda: NOW


def count(store: SqliteStore, table: str, job_id: str) -> int:
    (n,) = store._conn().execute(f"SELECT COUNT(*) FROM {table} WHERE job_id=?", (job_id,)).fetchone()
    return int(n)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "state.db"), clock=lambda: NOW)


def test_purge_removes_old_finished_jobs_rows_and_keeps_their_summary(store: SqliteStore) -> None:
    add_job(store, "old", status=JobStatus.completed, finished_at=NOW - 31 * DAY)
    add_job(store, "new", status=JobStatus.completed, finished_at=NOW - 29 * DAY)
    add_job(store, "running", status=JobStatus.running, finished_at=NOW - 90 * DAY)
    add_job(store, "scheduled", status=JobStatus.scheduled, finished_at=NOW - 90 * DAY)
    result = purge(store, 30, now=NOW)
    assert result.jobs == ["old"]
    assert result.deleted == {"rows": 50, "batches": 3}
    assert count(store, "rows", "old") == count(store, "batches", "old") == 0
    for kept in ("new", "running", "scheduled"):
        assert (count(store, "rows", kept), count(store, "batches", kept)) == (50, 3), kept
    job = store.get_job("old")
    assert job is not None and job.purged_at == NOW and job.status is JobStatus.completed
    assert {k: job.summary[k] for k in ("sent", "failed", "invalid", "pending", "batches", "rows")} == {
        "sent": 29,
        "failed": 20,
        "invalid": 1,
        "pending": 0,
        "batches": 3,
        "rows": 50,
    }
    assert job.summary["finished_at"] == retention.utc(NOW - 31 * DAY)
    # idempotent: nothing left to do, the job is not counted again
    again = purge(store, 30, now=NOW + 60)
    assert again.jobs == [] and again.deleted == {}
    assert (store.get_job("old") or job).purged_at == NOW


def test_a_job_without_a_summary_gets_one_before_its_rows_go(store: SqliteStore) -> None:
    add_job(store, "legacy", status=JobStatus.stopped, finished_at=NOW - 40 * DAY, summary=False)
    assert (store.get_job("legacy") or JobRecord("", "", {}, {}, "")).summary == {}
    assert purge(store, 30, now=NOW).jobs == ["legacy"]
    job = store.get_job("legacy")
    assert job is not None and (job.summary["sent"], job.summary["failed"]) == (29, 20)
    assert job.finished_at == NOW - 40 * DAY and count(store, "rows", "legacy") == 0


def test_dry_run_and_zero_days_delete_nothing(store: SqliteStore) -> None:
    add_job(store, "old", status=JobStatus.failed, finished_at=NOW - 31 * DAY)
    dry = purge(store, 30, now=NOW, dry_run=True)
    assert dry.jobs == ["old"] and dry.deleted == {"rows": 50, "batches": 3}
    assert purge(store, 0, now=NOW).jobs == []
    assert count(store, "rows", "old") == 50
    assert (store.get_job("old") or JobRecord("", "", {}, {}, "")).purged_at == 0


def test_purge_deletes_in_chunks_and_feature_tables_registered_for_it(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = store._conn()
    conn.execute(
        "CREATE TABLE receipts_x (job_id TEXT, task TEXT, recipient TEXT, PRIMARY KEY (task, recipient))"
        " WITHOUT ROWID"
    )
    conn.execute("CREATE TABLE notes_x (job_id TEXT, note TEXT)")  # a rowid table without a key
    for i in range(30):
        conn.execute("INSERT INTO receipts_x VALUES (?, 't', ?)", ("old" if i < 25 else "other", str(i)))
        conn.execute("INSERT INTO notes_x VALUES (?, ?)", ("old", str(i)))
    # what a feature module does at import: PURGE_TABLES.append(...); a table missing from the file is passed over
    extra = [("receipts_x", "job_id"), ("notes_x", "job_id"), ("missing_x", "job_id")]
    monkeypatch.setattr(retention, "PURGE_TABLES", [*retention.PURGE_TABLES, *extra])
    add_job(store, "old", status=JobStatus.cancelled, finished_at=NOW - 31 * DAY)
    deletes: list[str] = []
    conn.set_trace_callback(lambda sql: deletes.append(sql) if sql.startswith("DELETE FROM rows") else None)
    result = open_retention(store).purge_finished(NOW - 30 * DAY, now=NOW, chunk=7)
    conn.set_trace_callback(None)
    assert result.deleted == {"rows": 50, "batches": 3, "receipts_x": 25, "notes_x": 30}
    assert len(deletes) == math.ceil(50 / 7) + (50 % 7 == 0)  # one statement (transaction) per chunk
    assert conn.execute("SELECT COUNT(*) FROM receipts_x").fetchone() == (5,)  # another job's stay


def test_a_job_reopened_before_its_purge_keeps_its_rows(store: SqliteStore) -> None:
    add_job(store, "old", status=JobStatus.completed, finished_at=NOW - 31 * DAY)
    backend = open_retention(store)
    store.update_job("old", status=JobStatus.ready)  # a resend reopened it
    assert backend.purge_finished(NOW - 30 * DAY, now=NOW).jobs == []
    assert count(store, "rows", "old") == 50


def test_the_timer_purges_at_most_once_a_day(store: SqliteStore) -> None:
    add_job(store, "a", status=JobStatus.completed, finished_at=NOW - 31 * DAY)
    first = daily_purge(store, 30, now=NOW)
    assert first is not None and first.jobs == ["a"]
    add_job(store, "b", status=JobStatus.completed, finished_at=NOW - 31 * DAY)
    assert daily_purge(store, 30, now=NOW + DAY - 1) is None  # the same day: the marker says it ran
    assert count(store, "rows", "b") == 50
    later = daily_purge(store, 30, now=NOW + DAY)
    assert later is not None and later.jobs == ["b"]
    assert daily_purge(store, 0, now=NOW + 5 * DAY) is None  # 0 days: never


# --- the CLI ----------------------------------------------------------------------------------------------
def test_cli_purge_status_and_report_of_a_purged_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    path = tmp_path / "cli.db"
    url = f"sqlite:///{path}"
    now = time.time()
    seed = SqliteStore(str(path), clock=lambda: now)
    add_job(seed, "job-old", status=JobStatus.completed, finished_at=now - 45 * DAY)
    add_job(seed, "job-new", status=JobStatus.completed, finished_at=now - DAY)
    seed.close()
    monkeypatch.setenv("CHATAPP_RETENTION_DAYS", "30")

    out = io.StringIO()
    assert cli.main(["purge", "--store", url, "--dry-run"], out=out) == 0
    assert "would delete 3 batches, 50 rows" in out.getvalue() and "job-old" in out.getvalue()
    assert "job-new" not in out.getvalue()
    out = io.StringIO()
    assert cli.main(["purge", "--store", url, "--older-than", "30"], out=out) == 0
    assert "deleted 3 batches, 50 rows; each job keeps its summary" in out.getvalue()

    out = io.StringIO()
    assert cli.main(["status", "job-old", "--store", url, "--json"], out=out) == 0
    status = json.loads(out.getvalue())
    assert (status["sent"], status["failed"], status["invalid"]) == (29, 20, 1)
    assert status["retention"].startswith("rows purged on ") and status["rows_purged_at"]

    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["report", "job-old", "--store", url, "--out", "-"], out=out, err=err) == 2
    assert out.getvalue() == ""
    assert "its rows were purged on" in err.getvalue() and "29 sent, 20 failed" in err.getvalue()
    err = io.StringIO()
    assert cli.main(["reconcile", "job-old", "--store", url], out=io.StringIO(), err=err) == 2
    assert "its rows were purged on" in err.getvalue()
    report = tmp_path / "new.csv"
    assert cli.main(["report", "job-new", "--store", url, "--out", str(report)], out=io.StringIO()) == 0
    assert len(report.read_text().splitlines()) == 51  # a job within the retention: its whole report
