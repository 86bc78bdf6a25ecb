"""Issue 17, the messaging limit: a job on a 10K-tier From sends what fits its rolling 24 h window, waits
``scheduled`` for the window to free (its ETA in its status), and the timer resumes it -- on a simulated clock
(no waiting 24 h), through the serverless path's own services (Sender, Timer) over a SQLite store and the local
CAMS through the real SDK. Invariants checked from what the local CAMS received: every recipient exactly
once, no row failed, never more than 10,000 recipients of the From in any 24 h window."""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import Objects

from alibaba_localcloud.cams import LocalCams
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.messaging import parse_limits
from chatapp_mass.core.options import parse_intake_options, parse_job_options
from chatapp_mass.entry.bootstrap import cams_client_for
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner
from chatapp_mass.services.jobs import Dispatch, FunctionSettings, resolve_options, start_job
from chatapp_mass.services.plan import PlanSettings, Runtime, plan_job
from chatapp_mass.services.report import utc_timestamp
from chatapp_mass.services.sender import Sender
from chatapp_mass.services.timer import Timer
from chatapp_mass.store.features import open_reach
from chatapp_mass.store.interface import BatchStatus, JobRecord, JobStatus
from chatapp_mass.store.reach import DAY
from chatapp_mass.store.sqlite import SqliteStore

from world import QueueInvoker

FROM = "8613800000000"
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": FROM}
TIMER = json.dumps({"triggerTime": "2030-01-01T00:00:00Z", "triggerName": "timer", "payload": ""})


class SimClock:
    """Simulated time: moves a millisecond at every read (so calls are ordered), jumps when told."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.001
            return self.now


class Env:
    def __init__(self, tmp_path: Path, cams: LocalCams, clock: SimClock) -> None:
        self.clock, self.cams = clock, cams
        self.store = SqliteStore(str(tmp_path / "state.db"), clock=clock)
        self.client = cams_client_for(cams.endpoint, cams.credentials, region_id=cams.credentials.region_id)
        self.invoker = QueueInvoker()
        self.oss = Objects()
        self.settings = FunctionSettings(
            bucket="b",
            qps=1000,  # the local CAMS's per-second limit is off: the simulated clock barely moves
            sender_concurrency=4,
            messaging_limits=parse_limits(f"{FROM}=10K,default=unlimited", where="CHATAPP_MESSAGING_LIMITS"),
        )

    def plan(self, count: int, first: int = 0) -> JobRecord:
        lines = "phone,name\n" + "".join(f"+4915{n:09d},N{n}\n" for n in range(first, first + count))
        job, _ = plan_job(
            self.store,
            source=f"api:{first}",
            open_stream=lambda: io.BytesIO(lines.encode()),
            options=parse_job_options(OPTIONS),
            intake=parse_intake_options({}),
            settings=PlanSettings(batch_size=1000),
            runtime=Runtime(clock=self.clock),
        )
        assert job.valid == count
        return job

    def start(self, job_id: str) -> None:
        start_job(self.store, Dispatch(self.store, self.invoker, self.settings), job_id, now=self.clock())

    def run_senders(self) -> None:
        for _ in range(200):
            if not self.invoker.queue:
                return
            _, payload, _ = self.invoker.queue.pop(0)
            sender = Sender(self.store, self.client, self.oss, self.invoker, self.settings, clock=self.clock)
            sender.handle(json.dumps(payload).encode(), deadline=1e12)
        raise AssertionError("senders never settled")

    def fire_timer(self) -> dict[str, Any]:
        return Timer(self.store, self.oss, self.invoker, self.settings, clock=self.clock).handle(TIMER)  # type: ignore[arg-type]

    def sent(self, job_id: str) -> int:
        return self.store.batch_totals(job_id).get(BatchStatus.sent, (0, 0))[1]

    def job(self, job_id: str) -> JobRecord:
        job = self.store.get_job(job_id)
        assert job is not None
        return job

    def received(self) -> dict[str, int]:
        return self.cams.backend.received_count_by_number()

    def most_in_a_day(self) -> int:
        """The most recipients CAMS accepted in any window of 24 h (ending at an accepted call)."""
        calls = [(a.arrived_at, len(a.recipients)) for a in self.cams.backend.attempts if a.accepted]
        return max((sum(n for at, n in calls if end - DAY < at <= end) for end, _ in calls), default=0)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    clock = SimClock()
    with LocalCams(latency=0.0, qps_limit=None, clock=clock, max_clock_skew=None) as cams:
        world = Env(tmp_path, cams, clock)
        yield world
        world.store.close()


def test_30000_on_a_10k_number_send_10000_a_day_and_complete(env: Env) -> None:
    job = env.plan(30_000)
    env.start(job.job_id)
    reach = open_reach(env.store, clock=env.clock)
    for wave in (1, 2, 3):
        env.run_senders()
        assert env.sent(job.job_id) == 10_000 * wave
        assert sum(env.received().values()) == 10_000 * wave
        current = env.job(job.job_id)
        if wave == 3:
            break
        usage = reach.usage(FROM)
        assert usage.used == 10_000 and usage.entries == 10
        # scheduled: 24 h after the first send of this wave (its call's end, to the second above)
        assert current.status is JobStatus.scheduled
        assert usage.oldest_at is not None and current.scheduled_at == math.ceil(usage.oldest_at + DAY)
        assert current.reason == (
            f"messaging limit: 10,000 of 10,000 used for +86138****0000 in the last 24 h; next 1,000 at "
            f"{utc_timestamp(current.scheduled_at)}"
        )
        # the rest waits pending, untried; nothing failed
        totals = env.store.batch_totals(job.job_id)
        assert set(totals) == {BatchStatus.sent, BatchStatus.pending}
        assert totals[BatchStatus.pending] == (20 - 10 * (wave - 1), 20_000 - 10_000 * (wave - 1))
        assert all(b.attempts == 0 for b in env.store.list_batches(job.job_id, [BatchStatus.pending]))
        # the timer does not start it before its time...
        env.clock.now = current.scheduled_at - 1
        assert env.fire_timer()["started"] == [] and not env.invoker.queue
        # ...and does once the whole wave has left the window (its sends took well under a minute)
        env.clock.now = current.scheduled_at + 60
        assert env.job(job.job_id).status is JobStatus.scheduled
        assert env.fire_timer()["started"] == [job.job_id]
        assert env.job(job.job_id).reason == ""
    done = env.job(job.job_id)
    assert done.status is JobStatus.completed, done.reason
    assert len(env.received()) == 30_000 and set(env.received().values()) == {1}  # each exactly once
    assert all(b.attempts == 1 for b in env.store.list_batches(job.job_id, [BatchStatus.sent]))
    assert env.store.batch_totals(job.job_id) == {BatchStatus.sent: (30, 30_000)}
    report = env.oss.objects[next(k for k in env.oss.objects if k.endswith(".report.csv"))].decode()
    assert report.count(",sent,") == 30_000 and ",failed," not in report
    assert env.most_in_a_day() == 10_000


def test_two_jobs_on_one_number_share_the_allowance(env: Env) -> None:
    """Two jobs of 6,000 on one From, their senders at once: 10,000 between them in the first day, the rest
    after; never over 10,000 in any 24 h."""
    jobs = [env.plan(6_000, first=0), env.plan(6_000, first=100_000)]
    for job in jobs:
        env.start(job.job_id)
    payloads = [payload for _, payload, _ in env.invoker.queue]
    env.invoker.queue.clear()

    def drain(payload: dict[str, Any]) -> None:
        sender = Sender(env.store, env.client, env.oss, env.invoker, env.settings, clock=env.clock)
        sender.handle(json.dumps(payload).encode(), deadline=1e12)

    threads = [threading.Thread(target=drain, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    env.run_senders()  # whatever they handed on
    assert sum(env.sent(job.job_id) for job in jobs) == 10_000 == sum(env.received().values())
    waiting = [env.job(job.job_id) for job in jobs if env.job(job.job_id).status is JobStatus.scheduled]
    assert waiting, "one job at least waits for the window"
    env.clock.now = max(job.scheduled_at for job in waiting) + 60
    env.fire_timer()
    env.run_senders()
    assert [env.job(job.job_id).status for job in jobs] == [JobStatus.completed] * 2
    assert len(env.received()) == 12_000 and set(env.received().values()) == {1}
    assert env.most_in_a_day() == 10_000


def test_a_batch_over_the_limit_is_split_into_parts_that_fit(env: Env) -> None:
    """A 250-tier number (the job's own option, below the setting): a 1,000-recipient batch can never go
    whole; it is split into parts of at most 250, which go as the window allows."""
    lines = "phone\n" + "".join(f"+4915{n:09d}\n" for n in range(600))
    job, _ = plan_job(
        env.store,
        source="api:small",
        open_stream=lambda: io.BytesIO(lines.encode()),
        options=parse_job_options({**OPTIONS, "MessagingLimit": "250"}),
        intake=parse_intake_options({}),
        settings=PlanSettings(batch_size=1000),
        runtime=Runtime(clock=env.clock),
    )
    assert job.options["MessagingLimit"] == 250 and job.batches == 1
    env.start(job.job_id)
    env.run_senders()
    # parts of 250, 250 and 100, each sent whole: the first day one of them (whichever a sender took first)
    assert env.sent(job.job_id) in (100, 250)
    assert sum(b.size for b in env.store.list_batches(job.job_id, [BatchStatus.pending])) == 600 - env.sent(
        job.job_id
    )
    for _day in range(3):
        current = env.job(job.job_id)
        if current.status is JobStatus.completed:
            break
        assert current.status is JobStatus.scheduled and "of 250 used" in current.reason
        env.clock.now = current.scheduled_at + 60
        env.fire_timer()
        env.run_senders()
    assert env.job(job.job_id).status is JobStatus.completed
    assert len(env.received()) == 600 and set(env.received().values()) == {1}
    assert env.most_in_a_day() == 250
    # the request CAMS saw carries no MessagingLimit: it is the product's, not an API parameter
    assert all("MessagingLimit" not in a.params for a in env.cams.backend.attempts)


def test_bad_limits_say_what_to_write() -> None:
    with pytest.raises(OptionsError, match=r"CHATAPP_MESSAGING_LIMITS \(8613800000000\)='ten thousand'"):
        FunctionSettings.from_env({"CHATAPP_MESSAGING_LIMITS": "8613800000000=ten thousand"})
    with pytest.raises(OptionsError, match=r"MessagingLimit: '-5': a whole number .* or unlimited"):
        resolve_options([("the job's options", {**OPTIONS, "messaging_limit": "-5"})])
    options, _ = resolve_options([("sidecar", {**OPTIONS, "messaging-limit": "2K"})])
    assert options.messaging_limit == 2000 and "MessagingLimit" not in options.to_api()
    assert FunctionSettings.from_env({}).messaging_limits.for_number(FROM) is None


def test_the_cli_run_sends_what_fits_and_a_rerun_after_the_window_goes_on(env: Env) -> None:
    """The CLI's path (``JobRunner.run``, ``--messaging-limit 1K``): 1,000 of 2,500 go, the job is scheduled; a
    rerun before the window frees sends nothing, one after it sends the next 1,000."""
    lines = "phone\n" + "".join(f"+4915{n:09d}\n" for n in range(2_500))
    job, _ = plan_job(
        env.store,
        source="customers.csv",
        open_stream=lambda: io.BytesIO(lines.encode()),
        options=parse_job_options({**OPTIONS, "From": "8613900000000", "MessagingLimit": "1K"}),
        intake=parse_intake_options({}),
        settings=PlanSettings(batch_size=500),
        runtime=Runtime(clock=env.clock),
    )

    def run() -> JobRecord:
        runner = JobRunner(env.store, env.client, DispatchSettings(qps=1000, concurrency=3), clock=env.clock)
        return runner.run(env.job(job.job_id)).job

    first = run()
    assert first.status is JobStatus.scheduled and env.sent(job.job_id) == 1_000
    assert first.reason.startswith("messaging limit: 1,000 of 1,000 used for +86139****0000")
    assert run().status is JobStatus.scheduled and env.sent(job.job_id) == 1_000  # not before its time
    env.clock.now = first.scheduled_at + 60
    assert run().status is JobStatus.scheduled and env.sent(job.job_id) == 2_000
    env.clock.now = env.job(job.job_id).scheduled_at + 60
    assert run().status is JobStatus.completed and env.sent(job.job_id) == 2_500
    assert len(env.received()) == 2_500 and set(env.received().values()) == {1}
    assert env.most_in_a_day() == 1_000
