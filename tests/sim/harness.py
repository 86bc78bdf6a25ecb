"""A deterministic simulation of concurrent deliveries, the way FoundationDB's simulator and Jepsen-style tests
explore interleavings: several actors (CLI sends that plan and run, serverless drainers, sweepers, an
operator) work on one job against one real store, one step at a time, in an order a seeded scheduler picks.

- **Steps.** Every actor is a thread, but only the one holding the baton runs. It hands the baton back at
  every store call (before it), around every CAMS call and whenever it sleeps: those are the points where
  another process could run in between, so every interleaving of them is reachable.
- **Faults,** chosen by the seed at those points: a *crash* (the actor dies there: ``Crash`` is raised and
  none of its later store calls happen — its ``finally`` blocks cannot write), a *pause* (the actor is not
  scheduled for a while and its heartbeats stop, as a frozen process's would, while the clock runs on:
  its leases expire), and the outcome of each CAMS call (accepted, throttled, refused for one number, a
  connection refused, a timeout before or after CAMS took it).
- **Time** is virtual: one clock for all, each actor reading it with its own small skew; it moves a little
  at every step and jumps forward when every live actor sleeps or is paused. Heartbeats are ticked by the
  scheduler on behalf of live, unpaused actors, at their interval.
- **Replay.** All choices come from ``random.Random(seed)``: a seed replays exactly (same trace).

After the actors are done, a recovery phase (an operator resuming, then a clean send, far later) brings the
job to an end, and :func:`check` asserts the invariants: no number received twice; ``sent`` => received;
received => ``sent`` or ``uncertain``; every input line exactly once in the report, with a final status;
no job stopped by an internal error; attempts <= the limit in every sliding second.
"""

from __future__ import annotations

import io
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from chatapp_mass.adapters.cams import ListPage
from chatapp_mass.core.options import parse_intake_options, parse_job_options
from chatapp_mass.core.outcomes import OutcomeKind, SendOutcome
from chatapp_mass.services import dispatch, plan
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner, release_stale
from chatapp_mass.services.ingest import StreamStart
from chatapp_mass.services.jobs import (
    FINISHED,
    Dispatch,
    FunctionSettings,
    cancel_job,
    finalize,
    pause_job,
    start_job,
)
from chatapp_mass.services.lease import Heartbeat
from chatapp_mass.services.plan import PlanSettings, Runtime, plan_job
from chatapp_mass.services.ratelimit import SlidingWindowLimiter
from chatapp_mass.services.ratemargin import LearnedMargin
from chatapp_mass.services.reconcile import ReconcileError, Reconciler, resend_uncertain
from chatapp_mass.services.timer import Timer
from chatapp_mass.store.interface import BatchStatus, JobStatus, Store

START = 1_700_000_000.0
QPS = 3
CLAIM_TTL = 6.0
PLAN_LEASE = 6.0
BAD = "4915100000099"  # a number CAMS refuses the whole call for (InvalidParameter.PhoneNumberError)
FINAL = {"sent", "failed", "uncertain", "cancelled", "invalid", "duplicate"}


class Crash(BaseException):
    """The actor's process dies here (BaseException: no ``except Exception`` of the product catches it)."""


class Deadlock(AssertionError):
    pass


def csv_bytes(rng: random.Random) -> tuple[bytes, set[str]]:
    """A small recipient file as users have them: mixed notations, an invalid row, a duplicate, and
    sometimes a number CAMS refuses. Returns the file and its valid numbers (wire form)."""
    numbers = [f"49151000{n:05d}" for n in rng.sample(range(100, 999), rng.randint(6, 11))]
    if rng.random() < 0.4:
        numbers.insert(rng.randrange(len(numbers)), BAD)
    lines = ["phone,name"]
    for index, number in enumerate(numbers):
        shown = f"+{number}" if index % 3 == 0 else f"00{number}" if index % 3 == 1 else f"+49 {number[2:]}"
        lines.append(f"{shown},N{index}")
    lines.insert(rng.randint(1, len(lines)), "not-a-number,X")
    lines.insert(rng.randint(1, len(lines)), f"+{numbers[0]},again")
    return ("\n".join(lines) + "\n").encode(), set(numbers)


@dataclass
class Actor:
    name: str
    body: Callable[[Actor], None]
    skew: float = 0.0
    faults: bool = True
    thread: threading.Thread | None = None
    turn: bool = False
    state: str = "new"  # new | runnable | done | crashed
    wake_at: float = 0.0
    paused_until: float = 0.0
    heartbeats: list[tuple[Heartbeat, list[float]]] = field(default_factory=list)
    error: BaseException | None = None
    steps: int = 0


class Sim:
    def __init__(
        self,
        seed: int,
        *,
        crash_rate: float = 0.004,
        pause_rate: float = 0.01,
        max_steps: int = 20_000,
        script: list[Any] | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = START
        self.crash_rate, self.pause_rate, self.max_steps = crash_rate, pause_rate, max_steps
        self.cond = threading.Condition()
        self.actors: list[Actor] = []
        self.by_thread: dict[int, Actor] = {}
        self.trace: list[str] = []
        self.received: Counter[str] = Counter()
        self.call_times: list[float] = []
        self.messages: list[
            tuple[str, float]
        ] = []  # (number, when CAMS took it): what ListChatappMessage shows
        self.steps = 0
        self.faults_on = True
        # A scripted interleaving (the named regression tests), followed before any random choice; no faults
        # but those it names. Entries: (actor, {labels}) runs the actor until it is about to do one of those
        # steps ("store.put_plan", "sleep", "cams.call"...); (actor, None) runs it to its end;
        # ("@pause", actor, seconds) freezes it that long (its heartbeats too); ("@crash", actor) kills it.
        self.script = list(script or [])
        if script is not None:
            self.faults_on = False

    # --- what the product sees ---------------------------------------------------------------------------
    def actor(self) -> Actor | None:
        return self.by_thread.get(threading.get_ident())

    def clock(self) -> float:
        actor = self.actor()
        return self.now + (actor.skew if actor else 0.0)

    def sleep(self, seconds: float) -> None:
        actor = self.actor()
        if actor is None:
            raise AssertionError("a sleep outside the simulated actors")
        actor.wake_at = self.now + max(seconds, 0.001)
        self.point("sleep", fault=False)

    def start_heartbeat(self, heartbeat: Heartbeat) -> None:
        actor = self.actor()
        if actor is not None:
            actor.heartbeats = [(h, t) for h, t in actor.heartbeats if not h._stop.is_set()]
            actor.heartbeats.append((heartbeat, [self.now + heartbeat.interval]))

    def runtime(self) -> Runtime:
        return Runtime(clock=self.clock, sleep=self.sleep, start_heartbeat=self.start_heartbeat)

    def point(self, label: str, *, fault: bool = True) -> None:
        """A step boundary in the calling actor: the scheduler may run others, crash or pause this one."""
        actor = self.actor()
        if actor is None:  # the scheduler itself (heartbeats, checks): runs straight through
            return
        if actor.state == "crashed":
            raise Crash(actor.name)
        self.trace.append(f"{actor.name}:{label}")
        self.now += 0.0005
        if fault and actor.faults and self.faults_on:
            roll = self.rng.random()
            if roll < self.crash_rate:
                self.trace.append(f"{actor.name}:CRASH")
                actor.state = "crashed"
                raise Crash(actor.name)
            if roll < self.crash_rate + self.pause_rate and label != "cams.call":
                pause = self.rng.choice([0.05, 0.5, 3.0, 8.0, 20.0])
                actor.paused_until = self.now + pause
                self.trace.append(f"{actor.name}:PAUSE {pause}")
        with self.cond:
            actor.turn = False
            self.cond.notify_all()
            while not actor.turn:
                self.cond.wait()
        if actor.state == "crashed":
            raise Crash(actor.name)

    # --- the scheduler -----------------------------------------------------------------------------------
    def add(self, name: str, body: Callable[[Actor], None], *, faults: bool = True) -> Actor:
        actor = Actor(name, body, skew=self.rng.uniform(-0.005, 0.005), faults=faults)
        self.actors.append(actor)
        return actor

    def _start(self, actor: Actor) -> None:
        def main() -> None:
            self.by_thread[threading.get_ident()] = actor
            with self.cond:
                while not actor.turn:
                    self.cond.wait()
            try:
                actor.body(actor)
                if actor.state != "crashed":
                    actor.state = "done"
            except Crash:
                actor.state = "crashed"
            except BaseException as error:  # noqa: BLE001 - reported by run()
                actor.error = error
                actor.state = "done"
            finally:
                self.by_thread.pop(threading.get_ident(), None)  # idents are reused by later threads
                with self.cond:
                    actor.turn = False
                    self.cond.notify_all()

        actor.state = "runnable"
        actor.thread = threading.Thread(target=main, name=f"sim-{actor.name}", daemon=True)
        actor.thread.start()

    def run(self) -> None:
        while True:
            for actor in self.actors:
                if actor.state == "new":  # also one an actor added meanwhile (an async invocation)
                    self._start(actor)
            live = [a for a in self.actors if a.state == "runnable"]
            if not live:
                break
            self._tick_heartbeats(live)
            chosen = self._scripted(live)
            if chosen is None:
                ready = [a for a in live if a.wake_at <= self.now and a.paused_until <= self.now]
                if not ready:
                    self.now = max(self.now, min(max(a.wake_at, a.paused_until) for a in live))
                    continue
                chosen = ready[self.rng.randrange(len(ready))]
            elif max(chosen.wake_at, chosen.paused_until) > self.now:
                self.now = max(chosen.wake_at, chosen.paused_until)  # the scripted one is asleep: wait for it
                continue
            if self.rng.random() < 0.02:
                self.now += self.rng.uniform(0, 0.3)  # time passes unevenly
            self.steps += 1
            if self.steps > self.max_steps:
                raise Deadlock(f"seed {self.seed}: over {self.max_steps} steps (livelock?)\n" + self.tail())
            with self.cond:
                chosen.turn = True
                self.cond.notify_all()
                while chosen.turn:
                    if not self.cond.wait(timeout=60):
                        raise Deadlock(f"seed {self.seed}: actor {chosen.name} never yielded\n" + self.tail())
        for actor in self.actors:
            if actor.thread is not None:
                actor.thread.join(timeout=10)
            if actor.error is not None:
                raise AssertionError(
                    f"seed {self.seed}: actor {actor.name} failed: {actor.error!r}\n" + self.tail()
                ) from actor.error

    def _scripted(self, live: list[Actor]) -> Actor | None:
        """The actor the script wants next (None: the script is done, choose at random)."""
        while self.script:
            entry = self.script[0]
            if entry[0] == "@crash":  # the actor dies where it stands (its process is gone)
                actor = next(a for a in self.actors if a.name == entry[1])
                self.trace.append(f"{actor.name}:CRASH")
                actor.state = "crashed"
                with self.cond:
                    actor.turn = True
                    self.cond.notify_all()
                    while actor.turn:
                        self.cond.wait(timeout=60)
                self.script.pop(0)
                continue
            if entry[0] == "@pause":
                _, name, seconds = entry
                actor = next(a for a in self.actors if a.name == name)
                actor.paused_until = self.now + seconds
                self.trace.append(f"{name}:PAUSE {seconds}")
                self.script.pop(0)
                continue
            name, labels = entry[0], entry[1]
            actor = next(a for a in self.actors if a.name == name)
            last = self.trace_of(actor)
            started = len(entry) > 2
            if actor.state != "runnable" or (started and labels is not None and last in labels):
                self.script.pop(0)
                continue
            if not started:
                self.script[0] = (name, labels, True)
            return actor
        return None

    def trace_of(self, actor: Actor) -> str:
        for item in reversed(self.trace):
            if item.startswith(actor.name + ":") and not item.endswith(("CRASH",)) and ":PAUSE" not in item:
                return item[len(actor.name) + 1 :]
        return ""

    def _tick_heartbeats(self, live: list[Actor]) -> None:
        for actor in live:
            if actor.paused_until > self.now:
                continue  # a frozen process's heartbeat is frozen too
            for heartbeat, due in actor.heartbeats:
                if heartbeat._stop.is_set() or heartbeat.lost.is_set():
                    continue
                while due[0] <= self.now:
                    heartbeat.tick()
                    due[0] += heartbeat.interval

    def tail(self, n: int = 60) -> str:
        return "trace (last steps): " + " ".join(self.trace[-n:])

    # --- a store that yields at every call ---------------------------------------------------------------
    def store(self, inner: Store) -> Store:
        sim = self

        class Stepping:
            def __getattr__(self, name: str) -> Any:
                value = getattr(inner, name)
                if not callable(value) or name.startswith("_"):
                    return value

                def call(*args: Any, **kwargs: Any) -> Any:
                    sim.point(f"store.{name}")
                    return value(*args, **kwargs)

                return call

        return Stepping()  # type: ignore[return-value]

    # --- CAMS: what it received ----------------------------------------------------------------------------
    def cams(self) -> Any:
        sim = self

        class Prepared:
            def __init__(self, recipients: list[dict[str, Any]]) -> None:
                self.recipients = recipients

            def __call__(self) -> SendOutcome:
                numbers = [r["To"] for r in self.recipients]
                assert numbers, "a call with no recipients"
                # The request arrives as it leaves (the step just before had the last ownership check): CAMS
                # decides now; the step below is the reply's way back (no pause in it, a crash: reply lost).
                sim.call_times.append(sim.now)
                roll = sim.rng.random() if sim.faults_on else 1.0
                if BAD in numbers:
                    outcome = SendOutcome(
                        OutcomeKind.recipient, "InvalidParameter.PhoneNumberError", "bad number"
                    )
                elif roll < 0.08:
                    outcome = SendOutcome(OutcomeKind.throttled, "Throttling.User", "slow down")
                elif roll < 0.12:
                    outcome = SendOutcome(OutcomeKind.not_sent, "ConnectFailed", "refused")
                elif roll < 0.16:
                    outcome = SendOutcome(OutcomeKind.uncertain, "ReadTimeout", "no reply")  # never arrived
                else:
                    sim.received.update(numbers)
                    sim.messages.extend((number, sim.now) for number in numbers)
                    lost_reply = roll < 0.22
                    outcome = (
                        SendOutcome(OutcomeKind.uncertain, "ReadTimeout", "no reply")
                        if lost_reply
                        else SendOutcome(OutcomeKind.sent, "OK", "", "req", "gm")
                    )
                sim.point("cams.call")
                sim.point("cams.replied")  # a crash here: CAMS has it, the store does not know
                return outcome

        class Cams:
            call_timeout = 35.0

            def prepare(self, options: Any, recipients: list[dict[str, Any]], **_: Any) -> Prepared:
                return Prepared(list(recipients))

            def list_messages(self, query: dict[str, Any]) -> ListPage:
                """ListChatappMessage over what CAMS took: by number and time window (ms), as the reconciler
                asks (a GroupMessageId query lists nothing: the fake has no group ids to match)."""
                if "UserNumber" not in query:
                    return ListPage(True, "OK", "", [])
                start, end = query.get("StartTime", 0) / 1000, query.get("EndTime", 10**15) / 1000
                items = [
                    {"UserNumber": number, "EventAction": "DOWN"}
                    for number, at in sim.messages
                    if number == query["UserNumber"] and start <= at <= end
                ]
                return ListPage(True, "OK", "", items)

        return Cams()


class SimInvoker:
    """FC's async invocations: a sender invocation becomes a new drainer actor, a ``plan_job`` one (the
    timer resuming an abandoned plan) a new streaming ingest actor (a few per seed at most)."""

    def __init__(self, world: World, limit: int = 3) -> None:
        self.world, self.left = world, limit

    def invoke_async(self, function: str, payload: dict[str, Any], *, delay: int = 0) -> None:
        if self.left <= 0:
            return
        name = f"fc{len(self.world.sim.actors)}"  # unique: the scripted regressions name them
        if "drain" in payload or "seq" in payload:
            self.left -= 1
            self.world.sim.add(name, self.world.drainer)
        elif "plan_job" in payload:
            self.left -= 1
            self.world.sim.add(name, self.world.stream_ingest)


class FakeOss:
    """Where finalize writes the report objects (an in-memory bucket)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.history: list[tuple[str, bytes]] = []  # every write, in order (a later one hides none)

    def put(self, location: Any, data: Any, content_type: str = "", metadata: Any = None) -> None:
        self.objects[location.url] = data if isinstance(data, bytes) else data.read()
        self.history.append((location.url, self.objects[location.url]))


@contextmanager
def small_plan_chunks() -> Iterator[None]:
    """Plan in chunks of 4 rows, so a plan takes several store writes (interleavings inside it)."""
    old = plan._ROW_CHUNK
    plan._ROW_CHUNK = 4
    try:
        yield
    finally:
        plan._ROW_CHUNK = old


OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_SIM", "Language": "en", "From": "8613800000000"}


@dataclass
class World:
    """One seed's job: the file, the shared store (one handle per actor, as separate processes), CAMS."""

    sim: Sim
    open_store: Callable[[Callable[[], float]], Store]
    data: bytes
    valid: set[str]
    job_id: str = "simjob"
    rate_key: str = "cams:sim"
    oss: FakeOss = field(default_factory=FakeOss)
    streamed: list[tuple[float, float]] = field(default_factory=list)  # plans that sent while written

    def handle(self) -> Store:
        return self.sim.store(self.open_store(self.sim.clock))

    def plan(self, store: Store, on_batches: Any = None) -> Any:
        return plan_job(
            store,
            source="oss://sim/sim.csv",  # an OSS job: the timer hands an abandoned plan back to ingest
            open_stream=lambda: io.BytesIO(self.data),
            options=parse_job_options(OPTIONS),
            intake=parse_intake_options({"default_country": "DE"}),
            settings=PlanSettings(batch_size=3),
            identity=(self.job_id, "sha"),
            runtime=self.sim.runtime(),
            lease=PLAN_LEASE,
            on_batches=on_batches,
        )

    def runner(self, store: Store) -> JobRunner:
        settings = DispatchSettings(qps=QPS, claim_ttl=CLAIM_TTL, max_stall=1e9)
        limiter = SlidingWindowLimiter(
            store,
            key=self.rate_key,
            limit=QPS,
            clock=self.sim.clock,
            sleep=self.sim.sleep,
            learned=LearnedMargin(0.06),  # its own: the process-wide one would carry lessons across seeds
        )
        return JobRunner(
            store, self.sim.cams(), settings, limiter=limiter, runtime=self.sim.runtime(), inline=True
        )

    # the actors
    def cli_send(self, actor: Actor) -> None:
        store = self.handle()
        job, _ = self.plan(store)
        self.runner(store).run(job)

    def stream_ingest(self, actor: Actor) -> None:
        """The ingest function (an OSS event, or the timer's ``plan_job``): plans the job and starts sending
        at its first batch (``ingest.StreamStart``: running, fanned out to drainers), then settles."""
        store = self.handle()
        settings = FunctionSettings(claim_ttl=CLAIM_TTL)
        stream = StreamStart(
            store, Dispatch(store, SimInvoker(self, limit=2), settings), clock=self.sim.clock
        )  # type: ignore[arg-type]
        began = self.sim.now
        job, _ = self.plan(store, on_batches=stream)
        if stream.started:
            self.streamed.append((began, self.sim.now))
            stream.settle(
                self.job_id,
                lambda current: finalize(
                    store,
                    self.oss,  # type: ignore[arg-type]
                    settings,
                    self.job_id,
                    status=current.status
                    if current.status in (JobStatus.stopped, JobStatus.cancelled)
                    else JobStatus.completed,
                ),
            )
        elif job.status is JobStatus.ready:
            start_job(
                store, Dispatch(store, SimInvoker(self, limit=1), settings), self.job_id, now=self.sim.clock()
            )  # type: ignore[arg-type]

    def drainer(self, actor: Actor) -> None:
        """A sender invocation: the job if it is ready or running, until nothing is pending, then finalize."""
        store = self.handle()
        for _ in range(40):
            job = store.get_job(self.job_id)
            if job is not None and job.status in (JobStatus.ready, JobStatus.running):
                break
            self.sim.sleep(1.0)
        else:
            return
        runner = self.runner(store)
        runner.drain(job, deadline=self.sim.clock() + 60)
        if runner.halt_status is JobStatus.stopped:
            store.update_job(
                self.job_id,
                expect=[JobStatus.ready, JobStatus.running],
                status=JobStatus.stopped,
                reason=runner.halt_reason,
            )
        if not store.list_batches(
            self.job_id,
            [BatchStatus.pending, BatchStatus.claimed, BatchStatus.sending, BatchStatus.splitting],
        ):
            finalize(store, self.oss, FunctionSettings(), self.job_id)  # type: ignore[arg-type]

    def sweeper(self, actor: Actor) -> None:
        store = self.handle()
        for _ in range(self.sim.rng.randint(2, 6)):
            self.sim.sleep(self.sim.rng.choice([1.0, 4.0, 9.0]))
            if store.get_job(self.job_id) is not None:
                release_stale(store, self.job_id, now=self.sim.clock())

    def timer(self, actor: Actor) -> None:
        """The timer function firing now and then: starts, sweeps and finalizes by status (jobs_in)."""
        store = self.handle()
        settings = FunctionSettings(sweep_idle=5.0, claim_ttl=CLAIM_TTL)
        timer = Timer(store, self.oss, SimInvoker(self), settings, clock=self.sim.clock)  # type: ignore[arg-type]
        for _ in range(self.sim.rng.randint(2, 5)):
            self.sim.sleep(self.sim.rng.choice([2.0, 6.0, 15.0]))
            timer.handle(json.dumps({"triggerTime": "2026-01-01T00:00:00Z", "triggerName": "sweep"}))

    def resender(self, actor: Actor) -> None:
        """An operator's ``send --resend-uncertain``: reconcile with ListChatappMessage, reopen only what CAMS
        does not have, send it (a rerun)."""
        store = self.handle()
        self.sim.sleep(self.sim.rng.uniform(5.0, 40.0))
        job = store.get_job(self.job_id)
        if job is None or job.status in (JobStatus.planning, JobStatus.cancelled):
            return
        reconciler = Reconciler(
            store, self.sim.cams(), qps=1000, concurrency=1, clock=self.sim.clock, sleep=self.sim.sleep
        )  # type: ignore[arg-type]
        try:
            resend_uncertain(
                store,
                reconciler,
                job,
                cust_space_id="cs-sim",
                before_reopen=lambda: store.update_job(
                    self.job_id, expect=list(FINISHED), status=JobStatus.interrupted
                ),
            )
        except ReconcileError:
            return
        self.runner(store).run(store.get_job(self.job_id) or job)

    def operator(self, actor: Actor) -> None:
        """Pauses (and later resumes by rerunning) or cancels the job at some moment."""
        store = self.handle()
        self.sim.sleep(self.sim.rng.uniform(0.5, 10.0))
        if self.sim.rng.random() < 0.5:
            pause_job(store, self.job_id)
        else:
            cancel_job(store, self.job_id)

    def recover(self) -> None:
        """Far later, with no faults: sweep, resume a paused job as the CLI does, send what is left."""
        self.sim.faults_on = False
        self.sim.now += 1000.0

        def clean(actor: Actor) -> None:
            store = self.handle()
            release_stale(store, self.job_id, now=self.sim.clock())
            job, _ = self.plan(
                store
            )  # finishes a plan whose planner died (also of a job cancelled meanwhile)
            if job.status is JobStatus.cancelled:
                cancel_job(store, self.job_id)
                return
            if job.status is JobStatus.paused:
                store.update_job(self.job_id, expect=[JobStatus.paused], status=JobStatus.interrupted)
            self.runner(store).run(store.get_job(self.job_id) or job)

        self.sim.add("recovery", clean, faults=False)
        self.sim.run()


def check(world: World, store: Store) -> dict[str, int]:
    """The invariants, from CAMS's record and the store's report. Returns counts for the figures."""
    sim, seed = world.sim, world.sim.seed
    where = f"seed {seed}"
    twice = [n for n, count in sim.received.items() if count > 1]
    assert not twice, f"{where}: received twice: {twice}\n{sim.tail()}"
    job = store.get_job(world.job_id)
    assert job is not None, f"{where}: no job"
    assert not (job.status is JobStatus.stopped and "internal error" in job.reason), f"{where}: {job.reason}"
    rows = list(store.report_rows(world.job_id))
    lines = [r.line for r in rows]
    assert lines == sorted(set(lines)) and len(lines) == job.total_rows, f"{where}: report lines {lines}"
    status_of = {r.to: r.status for r in rows if r.status not in ("invalid", "duplicate")}
    for row in rows:
        assert row.status in FINAL, (
            f"{where}: line {row.line} ends {row.status} (job {job.status.value})\n{sim.tail()}"
        )
        if row.status == "sent":
            assert sim.received[row.to] == 1, f"{where}: {row.to} reported sent, never received\n{sim.tail()}"
    for number in sim.received:
        assert status_of.get(number) in ("sent", "uncertain"), (
            f"{where}: {number} received, reported {status_of.get(number)}\n{sim.tail()}"
        )
    assert set(status_of) == world.valid, (
        f"{where}: valid numbers {sorted(status_of)} != {sorted(world.valid)}"
    )
    # A report is written only once the plan is complete (.streaming: never while batches may still come):
    # every report object the run wrote lists every record of the file.
    records = world.data.count(b"\n") - 1
    for url, body in world.oss.history:
        if url.endswith(".report.csv"):
            written = body.decode().count("\n") - 1
            assert written == records, f"{where}: {url} lists {written} of {records} rows\n{sim.tail()}"
        elif url.endswith(".summary.json"):
            summary = json.loads(body)
            assert summary["totals_final"] and summary["rows"] == records, f"{where}: summary {summary}"
    times = sorted(sim.call_times)
    for index, at in enumerate(times):
        inside = sum(1 for t in times[index : index + QPS + 1] if t - at < 1.0)
        assert inside <= QPS, f"{where}: {inside} calls within 1 s from {at - START:.3f}"
    return {
        "received": len(sim.received),
        "calls": len(times),
        "steps": sim.steps,
        "uncertain": sum(1 for s in status_of.values() if s == "uncertain"),
        "streamed_plans": len(world.streamed),
        "calls_while_planning": sum(1 for t in times if any(a <= t <= b for a, b in world.streamed)),
    }


def run_seed(seed: int, open_store: Callable[[Callable[[], float]], Store]) -> dict[str, int]:
    """One seed: a random cast of actors on one job, then recovery, then the checks."""
    sim = Sim(seed)
    data, valid = csv_bytes(sim.rng)
    world = World(sim, open_store, data, valid, job_id=f"sim{seed}", rate_key=f"cams:sim{seed}")
    with small_plan_chunks():
        dispatch._first_call_done.set()  # the cold-call leader is a process-level nicety, not simulated
        for index in range(sim.rng.randint(1, 3)):
            sim.add(f"cli{index}", world.cli_send)
        for index in range(sim.rng.randint(0, 2)):
            sim.add(f"drain{index}", world.drainer)
        for index in range(sim.rng.randint(0, 2)):
            sim.add(f"sweep{index}", world.sweeper)
        if sim.rng.random() < 0.5:
            sim.add("timer", world.timer)
        if sim.rng.random() < 0.3:
            sim.add("resend", world.resender)
        if sim.rng.random() < 0.15:
            sim.add("operator", world.operator)
        for index in range(sim.rng.choice([0, 0, 1, 1, 2])):  # ingest: plans while it sends (two at once)
            sim.add(f"ingest{index}", world.stream_ingest)
        sim.run()
        world.recover()
    checker = open_store(lambda: sim.now)
    try:
        return check(world, checker)
    finally:
        job = checker.get_job(world.job_id)
        if job is not None and job.status is JobStatus.cancelled:
            checker.settle_job(world.job_id, JobStatus.cancelled)  # later seeds' timers need not look at it
        checker.close()
