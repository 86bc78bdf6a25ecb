"""Issue 11, item 5: the timer at any scale. It used to look at the newest ``CHATAPP_SWEEP_JOBS`` (200) jobs
only, so a job scheduled or running behind 200 newer ones was never started, swept or finalized. It now finds
the jobs it acts on by status (``Store.jobs_in``): these tests bury such jobs behind 100,000 finished jobs
(SQLite) or 2,000 (Tablestore, through the local emulator) and 300 newer live ones, and fire the timer once."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fakes import Invocations, Objects
from stores import tablestore_on

from chatapp_mass.services.jobs import FunctionSettings
from chatapp_mass.services.timer import Timer
from chatapp_mass.store.interface import (
    BatchRecord,
    BatchStatus,
    JobRecord,
    JobStatus,
    RowRecord,
    RowStatus,
    Store,
)
from chatapp_mass.store.sqlite import SqliteStore
from chatapp_mass.store.tablestore import TablestoreStore

OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T", "Language": "en", "From": "8613800000000"}
EVENT = json.dumps({"triggerTime": "2030-03-17T08:00:00Z", "triggerName": "timer", "payload": ""})


def job(job_id: str, status: JobStatus, created_at: float, **fields: Any) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        source=f"oss://b/incoming/{job_id}.csv",
        options=OPTIONS,
        intake={},
        content_sha256="x",
        status=status,
        created_at=created_at,
        updated_at=created_at,
        **fields,
    )


def one_batch(store: Store, job_id: str, status: BatchStatus, **fields: Any) -> None:
    rows = [
        RowRecord(
            job_id,
            line,
            f"+861380000{line:04d}",
            RowStatus.valid,
            batch_seq=0,
            recipient={"To": f"861380000{line:04d}"},
        )
        for line in (1, 2)
    ]
    store.put_plan(rows, [BatchRecord(job_id, 0, 2, first_line=1, last_line=2)])
    if status is not BatchStatus.pending:
        store.transition_batch(job_id, 0, expect=[BatchStatus.pending], to=status, **fields)


def bury(store: Store, now: float) -> None:
    """The jobs the timer must act on, old; then (by the caller) many finished ones and 300 newer live ones."""
    long_ago = now - 30 * 86400
    store.create_job(job(f"due-{secrets.token_hex(3)}", JobStatus.scheduled, long_ago, scheduled_at=now - 60))
    store.create_job(job("done-running", JobStatus.running, long_ago + 1))  # every batch resolved: finalize
    one_batch(store, "done-running", BatchStatus.sent, group_message_id="g1")
    store.create_job(job("lost-claim", JobStatus.running, long_ago + 2))  # its sender died: release, resend
    one_batch(store, "lost-claim", BatchStatus.claimed, owner="gone:1", claim_expires=now - 600)


def newer_live_jobs(store: Store, now: float) -> None:
    for i in range(300):  # newer than everything: the old timer's 200-job window held only these
        store.create_job(
            job(f"later-{i:03d}", JobStatus.scheduled, now - 100 + i * 0.01, scheduled_at=now + 86400)
        )


def fire_and_check(store: Store, now: float) -> None:
    invoker, objects = Invocations(), Objects()
    settings = FunctionSettings(bucket="b", sweep_idle=120.0)
    result = Timer(store, objects, invoker, settings, clock=lambda: now).handle(EVENT)  # type: ignore[arg-type]
    due = [j for j in result["started"] if j.startswith("due-")]
    assert len(due) == 1 and store.get_job(due[0]).status is JobStatus.running  # type: ignore[union-attr]
    assert result["finalized"] == ["done-running"]
    assert store.get_job("done-running").status is JobStatus.completed  # type: ignore[union-attr]
    assert any(k.endswith(".report.csv") and "done-running" in k for k in objects.objects)
    assert result["released"] == 1 and "lost-claim" in result["resumed"]
    assert store.get_batch("lost-claim", 0).status is BatchStatus.pending  # type: ignore[union-attr]
    assert ("chatapp-mass-sender", {"job_id": "lost-claim", "drain": True}) in invoker.calls
    assert not [j for j in result["started"] if j.startswith("later-")]  # not before their time


def finished_copies(store: SqliteStore, jobs: list[JobRecord]) -> None:
    """Write the jobs as create_job does, fast: create_job writes the first, whose row (every column, any
    added later too) is copied for the others with their own id, status and times (create_job one by one
    takes ~0.2 ms of CPU each, most of it dataclasses.asdict)."""
    first, rest = jobs[0], jobs[1:]
    store.create_job(first)
    conn = store._conn()
    cursor = conn.execute("SELECT * FROM jobs WHERE job_id=?", (first.job_id,))
    names = [column[0] for column in cursor.description]
    template = dict(zip(names, cursor.fetchone(), strict=True))
    conn.execute("BEGIN")
    rows = (
        {
            **template,
            "job_id": j.job_id,
            "status": j.status.value,
            "created_at": j.created_at,
            "updated_at": j.updated_at,
        }
        for j in rest
    )
    conn.executemany(
        f"INSERT INTO jobs ({','.join(names)}) VALUES ({','.join('?' for _ in names)})",
        ([row[name] for name in names] for row in rows),
    )
    conn.execute("COMMIT")
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] >= len(jobs)


def test_timer_starts_and_sweeps_jobs_behind_100000_finished_and_300_newer_sqlite(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    now = time.time()
    bury(store, now)
    finished_copies(
        store,
        [
            job(f"old-{i:06d}", (JobStatus.completed, JobStatus.failed)[i % 2], now - 86400 + i)
            for i in range(100_000)
        ],
    )
    newer_live_jobs(store, now)
    started = time.perf_counter()
    fire_and_check(store, now)
    assert time.perf_counter() - started < 5.0  # the finished jobs are never read (a firing takes ms here)
    store.close()


@pytest.fixture(scope="module")
def local_tablestore() -> Iterator[Any]:
    from alibaba_localcloud.tablestore import LocalTablestore

    with LocalTablestore(max_tables=1024) as server:
        yield server


def test_timer_starts_and_sweeps_jobs_behind_2000_finished_and_300_newer_tablestore(
    local_tablestore: Any,
) -> None:
    store = tablestore_on(local_tablestore)
    now = time.time()
    bury(store, now)
    finished = [
        job(f"old-{i:05d}", (JobStatus.completed, JobStatus.stopped)[i % 2], now - 86400 + i)
        for i in range(2000)
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(store.create_job, finished))
    newer_live_jobs(store, now)
    fire_and_check(store, now)
    store.close()


# --- the Tablestore index (job_status) behind jobs_in --------------------------------------------------
def _index_rows(store: TablestoreStore) -> list[tuple[str, str]]:
    ts = store._ts
    rows = store._range(
        store.t_status,
        [("status", ts.INF_MIN), ("job_id", ts.INF_MIN)],
        [("status", ts.INF_MAX), ("job_id", ts.INF_MAX)],
        ["op"],
    )
    return [(row["status"], row["job_id"]) for row in rows if not row["status"].startswith("#")]


def test_tablestore_index_holds_only_live_jobs(local_tablestore: Any) -> None:
    store = tablestore_on(local_tablestore)
    for i, status in enumerate(
        [JobStatus.completed, JobStatus.running, JobStatus.failed, JobStatus.scheduled]
    ):
        store.create_job(job(f"j{i}", status, 1000.0 + i))
    assert _index_rows(store) == [("running", "j1"), ("scheduled", "j3")]
    store.update_job("j1", expect=[JobStatus.running], status=JobStatus.completed)
    store.update_job("j0", expect=[JobStatus.completed], status=JobStatus.ready)
    assert _index_rows(store) == [("ready", "j0"), ("scheduled", "j3")]
    store.update_job("j3", status=JobStatus.cancelled)
    store.settle_job("j3", JobStatus.cancelled)
    assert _index_rows(store) == [("ready", "j0")]
    store.close()


def test_tablestore_a_crash_between_the_writes_leaves_a_stale_row_never_a_hidden_job(
    local_tablestore: Any,
) -> None:
    store = tablestore_on(local_tablestore)
    store.create_job(job("a", JobStatus.running, 1000.0))
    # a status change that wrote its new row and died before the job update: the row is stale, skipped
    store._put_status_row("scheduled", "a", "dead-writer")
    assert [j.job_id for j in store.jobs_in([JobStatus.scheduled, JobStatus.running])] == ["a"]
    assert ("scheduled", "a") in _index_rows(store)  # young: it may be a change in progress, so it stays
    # a change that updated the job and died before deleting the old row: the job is listed in its new status
    store.create_job(job("b", JobStatus.running, 1001.0))
    store._put_status_row("ready", "b", "next")
    ts = store._ts
    store.client.update_row(
        store.t_jobs,
        ts.Row([("job_id", "b")], {"put": [("status", "ready"), ("index_op", "next")]}),
        ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST),
    )
    assert [j.job_id for j in store.jobs_in([JobStatus.ready])] == ["b"]
    assert [j.job_id for j in store.jobs_in([JobStatus.running])] == ["a"]
    # later, old stale rows are removed by the reader that finds them
    for status, job_id in [("scheduled", "a"), ("running", "b")]:
        store.client.update_row(
            store.t_status,
            ts.Row([("status", status), ("job_id", job_id)], {"put": [("at", 1)]}),
            ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST),
        )
    store.jobs_in([JobStatus.scheduled, JobStatus.running])
    assert _index_rows(store) == [("ready", "b"), ("running", "a")]
    store.close()


def test_tablestore_jobs_of_an_older_release_are_indexed_once(local_tablestore: Any) -> None:
    store = tablestore_on(local_tablestore)
    ts = store._ts
    for job_id, status in [
        ("legacy-run", "running"),
        ("legacy-done", "completed"),
        ("legacy-due", "scheduled"),
    ]:
        record = job(job_id, JobStatus(status), 1000.0)
        store.create_job(record)
        # as the older release wrote it: no index_op, no index row
        store.client.update_row(
            store.t_jobs,
            ts.Row([("job_id", job_id)], {"delete_all": ["index_op"]}),
            ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST),
        )
        store._drop_status_row(status, job_id, op=None)
    store.client.delete_row(
        store.t_status,
        ts.Row([("status", "#jobs-of-older-releases-indexed"), ("job_id", "")]),
        ts.Condition(ts.RowExistenceExpectation.IGNORE),
    )
    assert store.jobs_in([JobStatus.running, JobStatus.scheduled]) == []
    reopened = TablestoreStore(
        store.settings,
        access_key_id=local_tablestore.credentials.access_key_id,
        access_key_secret=local_tablestore.credentials.access_key_secret,
        security_token=local_tablestore.credentials.security_token or "",
    )
    assert [j.job_id for j in reopened.jobs_in([JobStatus.running, JobStatus.scheduled])] == [
        "legacy-run",
        "legacy-due",
    ]
    # and they change status like any other: the backfilled row goes
    assert reopened.update_job("legacy-run", expect=[JobStatus.running], status=JobStatus.completed) is True
    assert _index_rows(reopened) == [("scheduled", "legacy-due")]
    reopened.close()
    store.close()
