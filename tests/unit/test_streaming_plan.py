"""Plan and send at once (``services.streaming``): batches are written as soon as they are complete, the job
starts (``running``, fanned out) at the first, nothing is finalized and the totals are not final until the
plan ends; a drainer waits for more batches while the plan's lease lives; the timer hands a plan abandoned
after the start back to ingest. SQLite store, fake invoker and OSS; the interleavings are in tests/sim."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fakes import Invocations, Objects

from chatapp_mass.core.options import parse_intake_options, parse_job_options
from chatapp_mass.services.dispatch import JobRunner
from chatapp_mass.services.ingest import StreamStart
from chatapp_mass.services.jobs import Dispatch, FunctionSettings, finalize
from chatapp_mass.services.plan import PlanSettings, plan_job
from chatapp_mass.services.report import job_summary
from chatapp_mass.services.timer import Timer
from chatapp_mass.store.interface import BatchStatus, JobStatus
from chatapp_mass.store.sqlite import SqliteStore

OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T", "Language": "en", "From": "8613800000000"}


def _rows(count: int, during: Any = None) -> Iterator[SimpleNamespace]:
    for index in range(count):
        if during is not None and index == count // 2:
            during()  # the middle of the plan: what the world sees while it is written
        yield SimpleNamespace(
            status="valid",
            line=index + 2,
            to=f"86138{index:08d}",
            template_params={"name": f"N{index}"},
            extra=None,
            code="",
            message="",
        )


def _plan(store: SqliteStore, stream: StreamStart | None, count: int, during: Any = None) -> Any:
    return plan_job(
        store,
        source="oss://b/incoming/x.csv",
        open_stream=lambda: io.BytesIO(b""),
        options=parse_job_options(OPTIONS),
        intake=parse_intake_options({}),
        settings=PlanSettings(batch_size=1000),
        identity=("job1", "etag:x"),
        read_rows=lambda: _rows(count, during),
        on_batches=stream,
    )


def test_batches_go_out_and_the_job_starts_while_the_plan_is_written(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    invocations, oss = Invocations(), Objects()
    settings = FunctionSettings()
    stream = StreamStart(store, Dispatch(store, invocations, settings))  # type: ignore[arg-type]
    seen: dict[str, Any] = {}

    def during() -> None:
        job = store.get_job("job1")
        assert job is not None
        seen["status"], seen["owner"] = job.status, job.plan_owner
        seen["batches"] = [(b.seq, b.size, b.status) for b in store.list_batches("job1")]
        seen["calls"] = list(invocations.calls)
        seen["summary"] = job_summary(store, job)
        seen["finalize"] = finalize(store, oss, settings, "job1")  # type: ignore[arg-type]

    job, existed = _plan(store, stream, 13_000, during)
    assert not existed and stream.started
    assert seen["status"] is JobStatus.running and seen["owner"]  # started, the plan still its planner's
    # the first batch as soon as it was complete, then the row chunks' (5,000 rows): only complete ones
    assert seen["batches"] == [(seq, 1000, BatchStatus.pending) for seq in range(6)]
    assert seen["calls"] == [(settings.sender_function, {"job_id": "job1", "drain": True})]
    assert seen["summary"]["totals_final"] is False
    assert seen["finalize"] == "running" and not oss.objects  # no report while the plan is unfinished
    assert job.status is JobStatus.running and not job.plan_owner
    assert (job.total_rows, job.valid, job.batches) == (13_000, 13_000, 13)
    assert [b.size for b in store.list_batches("job1")] == [1000] * 13
    assert job_summary(store, job)["totals_final"] is True
    assert stream.settle("job1", lambda j: "finished") == "running"  # batches open: senders have them
    assert len(invocations.calls) == 1  # one drainer for the job, as when fanned out after the plan


def test_a_plan_written_in_one_go_starts_the_ordinary_way(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    invocations = Invocations()
    stream = StreamStart(store, Dispatch(store, invocations, FunctionSettings()))  # type: ignore[arg-type]
    job, _ = _plan(store, stream, 800)
    assert stream.started is None and job.status is JobStatus.ready and not invocations.calls


def test_per_batch_dispatch_invokes_each_batch_as_it_is_written(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    invocations = Invocations()
    settings = FunctionSettings(dispatch="per-batch")
    stream = StreamStart(store, Dispatch(store, invocations, settings))  # type: ignore[arg-type]
    _plan(store, stream, 12_345)
    assert [p["seq"] for _, p in invocations.calls] == list(range(13))


def test_a_drainer_waits_for_batches_while_the_plan_lease_lives(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    stream = StreamStart(store, Dispatch(store, Invocations(), FunctionSettings()))  # type: ignore[arg-type]
    _plan(store, stream, 3_000)
    for batch in store.list_batches("job1"):
        store.transition_batch("job1", batch.seq, expect=[BatchStatus.pending], to=BatchStatus.sent)
    runner = JobRunner(store, cams=None)  # type: ignore[arg-type]
    now = time.time()
    store.update_job("job1", plan_owner="planner", plan_expires=now + 30)  # as if still being planned
    assert (
        runner._next_batches("job1", SimpleNamespace(valid=0), inflight=(), deadline=now + 60, only=None)
        == []
    )  # type: ignore[arg-type]
    store.update_job("job1", plan_expires=now - 1)  # its planner went silent: the drainer ends
    assert (
        runner._next_batches("job1", SimpleNamespace(valid=0), inflight=(), deadline=now + 60, only=None)
        is None
    )  # type: ignore[arg-type]


def test_the_timer_hands_a_plan_abandoned_after_the_start_back_to_ingest(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    stream = StreamStart(store, Dispatch(store, Invocations(), FunctionSettings()))  # type: ignore[arg-type]
    _plan(store, stream, 3_000)
    store.update_job("job1", plan_owner="dead-planner", plan_expires=time.time() - 5)
    invocations = Invocations()
    timer = Timer(store, Objects(), invocations, FunctionSettings())  # type: ignore[arg-type]
    result = timer.handle(json.dumps({"triggerTime": "2030-01-01T00:00:00Z", "triggerName": "t"}))
    assert ("chatapp-mass-ingest", {"plan_job": "job1"}) in invocations.calls
    assert "job1" in result["resumed"] and "job1" not in result["finalized"]
    job = store.get_job("job1")
    assert job is not None and job.status is JobStatus.running  # never finalized while unfinished
