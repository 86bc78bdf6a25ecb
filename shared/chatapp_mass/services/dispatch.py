"""Dispatch: send a planned job's batches to CAMS at the account's rate, and record every outcome.

Longer than 500 lines: ``JobRunner`` is the batch state machine drawn below; its steps (claim, send, classify,
split, record, hand back) are methods sharing its claims, limiter and counters, and read best in the order a
batch takes them.

Batch state machine (every arrow is one conditional write in the store)::

    pending --claim--> claimed --its token is next--> sending --reply--> sent | failed | uncertain
       ^                  |  ^                     |  |
       |   stop / stall   |  +--throttled, or ------+  +--refused for one recipient--> splitting --> split
       +------------------+     connection refused (nothing sent): retried       (two pending halves: parts)
                                within the rate
    sending --no credentials (nothing signed)--> pending, and the run stops (a rerun sends it)

A batch in ``sending`` whose owner died or whose claim expired may have reached CAMS: it becomes
``uncertain`` and is never resent automatically. A ``claimed`` one whose owner is gone goes back to
``pending``. On a rerun (resume): ``failed`` batches are retried (the cause may have been fixed);
``uncertain`` ones only when the operator asks (``reconcile.resend_uncertain``: looked up in
ListChatappMessage first), which is logged.

**The messaging limit** (WhatsApp's unique users per rolling 24 h per From; ``core.messaging``,
``store.reach``): a claimed batch's recipients are reserved in its From's window before its call. If they do
not fit, the batch goes back ``pending`` (attempts unchanged), the job ``scheduled`` for when the window frees
enough (``scheduled_at``, and a reason with the ETA), and the run takes no new batch; the timer starts the job
then, and its senders resume with what is pending (nothing re-planned, nothing sent twice). A batch larger
than the limit itself is split into parts that fit (``parts``).
"""

from __future__ import annotations

import gc
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from chatapp_mass.adapters.cams import CamsClient, PreparedCall, batch_task_id
from chatapp_mass.adapters.transport import Departure, departing
from chatapp_mass.core.errors import StoreError
from chatapp_mass.core.messaging import MessagingLimits, effective_limit
from chatapp_mass.core.options import JobOptions
from chatapp_mass.core.outcomes import OutcomeKind, SendOutcome, nothing_left
from chatapp_mass.core.phone_text import mask_number
from chatapp_mass.runtime import faults, logs
from chatapp_mass.services.canary import CanaryGate, Gate
from chatapp_mass.services.lease import CLOCK_SKEW, Heartbeat, owner_id, owner_is_dead
from chatapp_mass.services.parts import Part, finish_split, halves, split_batch
from chatapp_mass.services.plan import REAL, Runtime
from chatapp_mass.services.ratelimit import DEFAULT_MARGIN, SlidingWindowLimiter, Slot
from chatapp_mass.services.receipts import receipts_of
from chatapp_mass.services.report import utc_timestamp
from chatapp_mass.services.retention import RowsPurged, record_summary
from chatapp_mass.services.streaming import plan_live
from chatapp_mass.services.suppress import (
    RESOLVED_ALL_SUPPRESSED,
    all_suppressed_fields,
    drop_suppressed,
    suppression_of,
)
from chatapp_mass.store.features import open_reach, open_receipts
from chatapp_mass.store.interface import (
    OPEN_STATUSES,
    BatchRecord,
    BatchStatus,
    JobRecord,
    JobStatus,
    Store,
)
from chatapp_mass.store.reach import DAY, NEVER, ReachStore
from chatapp_mass.store.receipts import ReceiptStore
from chatapp_mass.store.suppression import DEFAULT_SPACE

log = logging.getLogger(__name__)


# --- dispatch -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DispatchSettings:
    qps: int = 10
    concurrency: int = 0  # 0 = enough calls in flight to hold the rate at multi-second latency
    max_stall: float = 600.0
    claim_ttl: float = 300.0  # longer than any one call (read timeout) plus its token wait
    rate_margin: float = DEFAULT_MARGIN  # the floor of the learned margin (ratemargin)
    # Pause the job when more than this share of the recipients tried failed (0 = never), once at least
    # error_threshold_min recipients (or a tenth of the job, if fewer) were tried.
    error_threshold: float = 0.0
    error_threshold_min: int = 1000
    # WhatsApp's messaging limit per From (CHATAPP_MESSAGING_LIMITS; a job's MessagingLimit may lower it) and
    # its rolling window: see JobRunner._reserve_reach
    messaging_limits: MessagingLimits = field(default_factory=MessagingLimits)
    messaging_window: float = DAY

    @property
    def workers(self) -> int:
        return self.concurrency or min(64, max(4, 3 * self.qps))


@dataclass
class Snapshot:
    """Live progress of a run, in recipients (sends), not rows read."""

    valid: int
    sent: int = 0
    failed: int = 0
    uncertain: int = 0
    calls: int = 0
    throttled: int = 0
    late_slots: int = 0  # always 0 since the window counts departures (issue 14): a late slot is safe now
    splits: list[int] = field(default_factory=list)  # batches this run split (refused for one recipient)
    started: float = field(default_factory=time.time)
    sent_at_start: int = 0

    @property
    def remaining(self) -> int:
        return max(self.valid - self.sent - self.failed - self.uncertain, 0)

    def rate(self, now: float) -> float:
        elapsed = max(now - self.started, 1e-6)
        return (self.sent - self.sent_at_start) / elapsed


@dataclass
class RunResult:
    job: JobRecord
    snapshot: Snapshot
    totals: dict[BatchStatus, tuple[int, int]]

    @property
    def all_sent(self) -> bool:
        sent = self.totals.get(BatchStatus.sent, (0, 0))[1]
        return self.job.status is JobStatus.completed and sent == self.job.valid


# The first CAMS call of a process goes alone (see JobRunner._first_call_turn). Process-wide, not per runner:
# a warm function instance runs many runners, and only its first call builds the HTTP session.
_first_call_lock = threading.Lock()
_first_call_done = threading.Event()


LIMIT_REASON = "messaging limit:"  # how the reason of a job the messaging limit scheduled begins
_SPLIT_GRACE = 5.0  # a split's own steps take milliseconds; finishing it sooner would only race its splitter
# Statuses a run (the CLI's send, a rerun) may take a job from: never a cancelled, paused, scheduled, failed
# or still planning one.
RUNNABLE = (
    JobStatus.ready,
    JobStatus.running,
    JobStatus.interrupted,
    JobStatus.stalled,
    JobStatus.stopped,
    JobStatus.completed,
)


def release_stale(store: Store, job_id: str, *, now: float, owner: str = "") -> int:
    """Claims nobody will finish: expired, or of a process on this host that is gone (``owner``'s own are
    kept). ``claimed`` goes back to ``pending`` (nothing was sent); ``sending`` becomes ``uncertain`` (the
    call may have reached CAMS; never resent automatically); a split left half done is finished
    (``parts.finish_split``). Each release is conditional on the very claim it saw (owner and expiry): a
    claim its owner renewed meanwhile is kept. Returns how many batches were released."""
    released = 0
    for batch in store.list_batches(
        job_id, [BatchStatus.claimed, BatchStatus.sending, BatchStatus.splitting]
    ):
        if batch.status is BatchStatus.splitting:
            if now - batch.updated_at > _SPLIT_GRACE:  # its splitter died between the steps: finish it
                finish_split(store, batch)
                released += 1
            continue
        if (owner and batch.owner == owner) or (batch.claim_expires > now and not owner_is_dead(batch.owner)):
            continue
        if batch.status is BatchStatus.claimed:
            released += store.transition_batch(
                job_id,
                batch.seq,
                expect=[BatchStatus.claimed],
                to=BatchStatus.pending,
                owner="",
                claim_expires=0.0,
                expect_owner=batch.owner,
                expect_expires=batch.claim_expires,
            )
        elif store.transition_batch(
            job_id,
            batch.seq,
            expect=[BatchStatus.sending],
            to=BatchStatus.uncertain,
            code="Interrupted",
            message="the sender stopped while this call was in flight; it may have reached CAMS "
            "(reconcile it: chatapp-mass reconcile JOB)",
            expect_owner=batch.owner,
            expect_expires=batch.claim_expires,
        ):
            released += 1
            log.warning(
                "batch may have been sent before a crash: marked uncertain",
                extra={"job_id": job_id, "batch": batch.seq},
            )
    return released


class Claims:
    """The batches one runner holds (``claimed`` or ``sending``) and until when, by its own knowledge.

    Its heartbeat renews every held claim (a conditional write on the owner token); a claim that could not
    be renewed is lost for good: the runner never calls CAMS on it and its later writes are refused anyway.
    """

    def __init__(self, store: Store, job_id: str, owner: str, ttl: float, clock: Callable[[], float]) -> None:
        self.store, self.job_id, self.owner, self.ttl, self.clock = store, job_id, owner, ttl, clock
        self._until: dict[int, float] = {}
        self._lock = threading.Lock()
        self.heartbeat = Heartbeat(self.renew, max(ttl / 3, 0.05), name=f"claims {job_id[:12]}")

    def hold(self, seq: int, until: float) -> None:
        with self._lock:
            self._until[seq] = until

    def drop(self, seq: int) -> None:
        with self._lock:
            self._until.pop(seq, None)

    def valid(self, seq: int) -> bool:
        """Still ours for long enough to make a call on it (see ``lease.CLOCK_SKEW``)."""
        with self._lock:
            until = self._until.get(seq)
        return until is not None and until - self.clock() > CLOCK_SKEW

    def renew(self) -> bool:
        with self._lock:
            held = list(self._until)
        for seq in held:
            until = self.clock() + self.ttl
            if self.store.renew_claim(self.job_id, seq, owner=self.owner, until=until):
                with self._lock:
                    if seq in self._until:
                        self._until[seq] = until
            else:
                log.warning(
                    "claim lost: the batch was released or taken over",
                    extra={"job_id": self.job_id, "batch": seq},
                )
                self.drop(seq)
        return True  # one heartbeat for all the runner's claims: losing one does not end the others


class JobRunner:
    """Dispatches one job's pending batches with a pool of workers under the account-wide limiter.

    Every batch it works on is claimed under its owner token (``lease``): each later write of that batch
    is conditional on the token, and the claim is renewed by a heartbeat while the runner lives."""

    def __init__(
        self,
        store: Store,
        cams: CamsClient,
        settings: DispatchSettings = DispatchSettings(),
        *,
        limiter: SlidingWindowLimiter | None = None,
        clock: Callable[[], float] | None = None,
        runtime: Runtime = REAL,
        inline: bool = False,
        reach: ReachStore | None = None,
    ) -> None:
        self.store = store
        self.reach = reach  # the messaging limit's window: opened beside the store when a limit applies
        self.cams = cams
        self.settings = settings
        self.runtime = runtime if clock is None else replace(runtime, clock=clock)
        self.clock = self.runtime.clock
        self.limiter = limiter or SlidingWindowLimiter(
            store, limit=settings.qps, margin=settings.rate_margin, clock=self.clock, sleep=self.runtime.sleep
        )
        self.inline = inline  # one batch at a time in the calling thread, every wait through runtime.sleep
        self.owner = owner_id()
        self.halt = threading.Event()
        self.halt_status: JobStatus | None = None
        self.halt_reason = ""
        self._lock = threading.Lock()
        self._last_progress = self.clock()
        self.claims: Claims | None = None
        self.suppression = suppression_of(store)  # checked just before each call (services.suppress)
        self._job_counts: dict[str, int] | None = None  # the job's counters, as last returned by the store
        # Set when the messaging limit's window is full (_wait_for_limit): no new batch is taken, but the
        # batches already granted go out (halting would hand them back, leaving the window unused until the ETA)
        self._limit_reason = ""
        self._receipts: ReceiptStore | None = None
        self._registered: set[str] = set()  # TaskIds this runner registered
        self.canary = CanaryGate(store, self.receipts, self.clock)
        self.wake_at = 0.0  # a drain that left its job waiting for a canary's receipts: when to look again

    def receipts(self) -> ReceiptStore:
        """The receipt store beside ``store``, opened when first needed."""
        if self._receipts is None:
            self._receipts = open_receipts(self.store)
        return self._receipts

    # control
    def stop(
        self, status: JobStatus = JobStatus.interrupted, reason: str = "interrupted by the user"
    ) -> None:
        with self._lock:
            if self.halt_status is None:
                self.halt_status, self.halt_reason = status, reason
        self.halt.set()

    def _wait(self, seconds: float) -> bool:
        """Wait (interrupted by a halt); True if halted."""
        if self.inline:
            self.runtime.sleep(seconds)
            return self.halt.is_set()
        return self.halt.wait(seconds)

    # resume rules
    def release_stale(self, job_id: str) -> None:
        release_stale(self.store, job_id, now=self.clock(), owner=self.owner)

    def reopen_for_rerun(self, job_id: str) -> None:
        """A rerun retries failed batches (the cause may have been fixed). Uncertain ones are never reopened
        here: that is an operator's decision, after a reconciliation (``reconcile.resend_uncertain``)."""
        for batch in self.store.list_batches(job_id, [BatchStatus.failed]):
            if self.store.transition_batch(job_id, batch.seq, expect=[batch.status], to=BatchStatus.pending):
                log.info(
                    "failed batch reopened for sending",
                    extra={"job_id": job_id, "batch": batch.seq, "recipients": batch.size},
                )

    # the run
    def run(
        self,
        job: JobRecord,
        *,
        on_progress: Callable[[Snapshot], None] | None = None,
        progress_interval: float = 0.5,
    ) -> RunResult:
        """The CLI's send (and rerun). The job goes to ``running`` only from a state a run may resume
        (:data:`RUNNABLE`): a job an operator cancelled or paused, or one scheduled, is left as it is."""
        job_id = job.job_id
        options = JobOptions.model_validate(job.options)
        snapshot = Snapshot(valid=job.valid)
        current = self.store.get_job(job_id) or job
        if current.purged_at:  # its rows are gone (retention): a rerun would send nothing and report nothing
            raise RowsPurged(current, current.purged_at)
        # a job the messaging limit scheduled (not an operator) may be rerun once the window has freed
        due = (
            current.status is JobStatus.scheduled
            and current.reason.startswith(LIMIT_REASON)
            and current.scheduled_at <= self.clock()
        )
        if (current.status not in RUNNABLE and not due) or not self.store.update_job(
            job_id, expect=[current.status], status=JobStatus.running, reason=""
        ):
            latest = self.store.get_job(job_id) or current
            log.warning(
                "job not run: its status does not allow it",
                extra={"job_id": job_id, "status": latest.status.value},
            )
            self.halt_status, self.halt_reason = (
                latest.status,
                latest.reason or f"the job is {latest.status.value}",
            )
            return RunResult(latest, snapshot, self.store.batch_totals(job_id))
        self.release_stale(job_id)
        self.reopen_for_rerun(job_id)
        totals = self.store.batch_totals(job_id)
        snapshot.sent = snapshot.sent_at_start = totals.get(BatchStatus.sent, (0, 0))[1]
        snapshot.failed = totals.get(BatchStatus.failed, (0, 0))[1]
        snapshot.uncertain = totals.get(BatchStatus.uncertain, (0, 0))[1]
        self._dispatch(
            job_id, options, snapshot, on_progress=on_progress, progress_interval=progress_interval
        )
        totals = self.store.batch_totals(job_id)
        if self.halt_status is not None:
            status, reason = self.halt_status, self.halt_reason
        elif any(totals.get(s, (0, 0))[0] for s in OPEN_STATUSES):
            status, reason = JobStatus.interrupted, "batches are still open"
        else:
            status, reason = JobStatus.completed, ""
        # Only over our own ``running``: an operator's pause or cancel meanwhile stands.
        if self.store.update_job(job_id, expect=[JobStatus.running], status=status, reason=reason):
            # its summary, which outlives the rows a purge removes (services.retention)
            record_summary(self.store, current, now=self.clock())
        if on_progress:
            on_progress(snapshot)
        final = self.store.get_job(job_id)
        assert final is not None
        return RunResult(final, snapshot, totals)

    def drain(self, job: JobRecord, *, deadline: float, only: int | None = None) -> Snapshot:
        """A sender invocation's work: send the job's pending batches (only batch ``only`` if given) until
        none is left or ``deadline`` (on ``clock``) arrives; calls in flight are finished and recorded.

        Unlike :meth:`run` it never reopens failed or uncertain batches (that is an operator's rerun) and
        never sets the job's status: several invocations drain one job at once, and whoever sees the last
        batch resolve finalizes it (``jobs.finalize``).
        """
        options = JobOptions.model_validate(job.options)
        self.release_stale(job.job_id)
        snapshot = Snapshot(valid=job.valid)
        self._dispatch(job.job_id, options, snapshot, deadline=deadline, only=only)
        return snapshot

    def _dispatch(
        self,
        job_id: str,
        options: JobOptions,
        snapshot: Snapshot,
        *,
        on_progress: Callable[[Snapshot], None] | None = None,
        progress_interval: float = 0.5,
        deadline: float | None = None,
        only: int | None = None,
    ) -> None:
        """Keep up to ``workers`` pending batches in flight until none is open, a halt, or ``deadline``.

        The job's batches are listed once into a local queue and listed again only when the queue runs dry
        (at most every 0.5 s), every 2 s regardless, and at once when nothing is in flight; stale claims
        are looked for every second. (Listing on every completed call cost two full scans of the job's
        batch rows ten times a second.) A queued batch someone else took meanwhile just fails its claim.
        The claims taken are renewed by a heartbeat for as long as this runs.
        """
        self.claims = Claims(self.store, job_id, self.owner, self.settings.claim_ttl, self.clock)
        self.runtime.start_heartbeat(self.claims.heartbeat)
        try:
            if self.inline:
                self._dispatch_inline(job_id, options, snapshot, deadline=deadline, only=only)
            else:
                self._dispatch_pool(
                    job_id,
                    options,
                    snapshot,
                    on_progress=on_progress,
                    progress_interval=progress_interval,
                    deadline=deadline,
                    only=only,
                )
        finally:
            self.claims.heartbeat.stop()
        if self._limit_reason:
            self.stop(JobStatus.scheduled, self._limit_reason)

    def _next_batches(
        self,
        job_id: str,
        snapshot: Snapshot,
        *,
        inflight: Iterable[int],
        deadline: float | None,
        only: int | None,
    ) -> list[int] | None:
        """One look at the job: the pending batches to queue, or None when this run is to end (the job was
        paused or cancelled, the error threshold, or nothing is open any more)."""
        current = self.store.get_job(job_id)
        if current is not None and current.status in (JobStatus.cancelled, JobStatus.paused):
            self.stop(current.status, current.reason or current.status.value)
            return None  # claimed batches go back (or are the canceller's); calls in flight finish
        if current is not None and current.status is JobStatus.scheduled:
            # another sender found the messaging limit's window full (_wait_for_limit): take no new batch
            with self._lock:
                self._limit_reason = self._limit_reason or current.reason or "scheduled"
            return None
        if self._over_error_threshold(job_id, snapshot):
            return None
        inflight = set(inflight)
        gate = self.canary.check(current) if current is not None else None
        if gate is not None:
            return self._canary_batches(job_id, gate, inflight, deadline=deadline, only=only)
        if only is not None:
            open_batches = [b for b in self.store.list_batches(job_id, OPEN_STATUSES) if b.seq == only]
            if deadline is not None:  # a drainer leaves batches other instances hold to them
                open_batches = [
                    b for b in open_batches if b.status is BatchStatus.pending or b.seq in inflight
                ]
            if not open_batches and not inflight:
                return None
            return [b.seq for b in open_batches if b.status is BatchStatus.pending and b.seq not in inflight]
        # The next pending batches, as many as the workers can take (a listing every second or two: of a 1M
        # job's thousand batches, not all of them each time)
        pending = [
            b.seq
            for b in self.store.list_batches(
                job_id, [BatchStatus.pending], limit=self.settings.workers + len(inflight)
            )
            if b.seq not in inflight
        ]
        if pending or inflight:
            return pending
        if deadline is None and self.store.list_batches(job_id, OPEN_STATUSES, limit=1):
            return []  # other processes hold batches: this run ends when they are resolved
        if current is not None and plan_live(current, self.clock()):
            return []  # the plan is still being written (.streaming): more batches are coming
        return None

    def _canary_batches(
        self, job_id: str, gate: Gate, inflight: set[int], *, deadline: float | None, only: int | None
    ) -> list[int] | None:
        """:meth:`_next_batches` while a canary holds the job: its batches only; once they are resolved,
        the job pauses (the canary failed) or waits for receipts: a sender invocation (``deadline``) leaves
        the job ``scheduled`` for the timer to start again at ``wake_at``; the CLI waits here."""
        if gate.pause:
            self.store.update_job(
                job_id, expect=[JobStatus.running], status=JobStatus.paused, reason=gate.pause
            )
            self.stop(JobStatus.paused, gate.pause)
            return None
        allowed = gate.allowed if only is None else gate.allowed & {only}
        pending = [
            b.seq
            for b in self.store.list_batches(job_id, [BatchStatus.pending])
            if b.seq in allowed and b.seq not in inflight
        ]
        if pending or inflight or gate.allowed:
            return pending  # the canary's batches: sent, or held by others until they resolve
        if deadline is None:
            return []  # the CLI waits for the receipts (it looks again every second or two)
        self.wake_at = gate.wake_at  # the sender asks to be invoked again then (Sender.handle)
        self.store.update_job(
            job_id,
            expect=[JobStatus.running],
            status=JobStatus.scheduled,
            scheduled_at=gate.wake_at,
            reason=gate.reason,
        )
        return None

    def _dispatch_inline(
        self,
        job_id: str,
        options: JobOptions,
        snapshot: Snapshot,
        *,
        deadline: float | None,
        only: int | None,
    ) -> None:
        """One batch at a time, in this thread (a simulation drives it; see ``inline``)."""
        self._last_progress = self.clock()
        next_stale_check = 0.0
        while not self.halt.is_set() and not self._limit_reason:
            now = self.clock()
            if deadline is not None and now >= deadline:
                return
            if now >= next_stale_check:
                self.release_stale(job_id)
                next_stale_check = now + 1.0
            queue = self._next_batches(job_id, snapshot, inflight=(), deadline=deadline, only=only)
            if queue is None:
                return
            if not queue:
                self._wait(0.5)  # others hold what is open: look again
                continue
            self._send_batch(job_id, queue[0], options, snapshot)

    def _dispatch_pool(
        self,
        job_id: str,
        options: JobOptions,
        snapshot: Snapshot,
        *,
        on_progress: Callable[[Snapshot], None] | None,
        progress_interval: float,
        deadline: float | None,
        only: int | None,
    ) -> None:
        self._last_progress = self.clock()
        wake = threading.Event()
        inflight: dict[int, Future[None]] = {}
        queue: list[int] = []
        last_report = 0.0
        next_listing = next_stale_check = 0.0
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="sender") as pool:
            try:
                while not self.halt.is_set() and not self._limit_reason:
                    now = self.clock()
                    if deadline is not None and now >= deadline:
                        self.halt.set()  # workers waiting for a token give their batch back
                        break
                    for seq in [s for s, f in inflight.items() if f.done()]:
                        inflight.pop(seq).result()
                    if now >= next_stale_check:
                        self.release_stale(job_id)
                        next_stale_check = now + 1.0
                    if now >= next_listing or not (inflight or queue):
                        listed = self._next_batches(
                            job_id, snapshot, inflight=inflight, deadline=deadline, only=only
                        )
                        if listed is None:
                            break
                        queue = listed
                        next_listing = now + (2.0 if queue else 0.5)
                    while queue and len(inflight) < self.settings.workers:
                        seq = queue.pop(0)
                        if seq in inflight:
                            continue
                        future = pool.submit(logs.carried(self._send_batch), job_id, seq, options, snapshot)
                        future.add_done_callback(lambda _: wake.set())
                        inflight[seq] = future
                    if on_progress and self.clock() - last_report >= progress_interval:
                        on_progress(snapshot)
                        last_report = self.clock()
                    wake.wait(0.2)
                    wake.clear()
            except KeyboardInterrupt:
                self.stop()
            finally:
                if not self._limit_reason:  # (the limit: granted batches still go, see _limit_reason)
                    self.halt.set()  # workers waiting for a token give their batch back; calls in flight finish
                for future in list(inflight.values()):
                    while True:
                        try:
                            future.result()
                            break
                        except KeyboardInterrupt:
                            self.stop()  # a second Ctrl-C: still wait, a call in flight must be recorded

    def _send_batch(self, job_id: str, seq: int, options: JobOptions, snapshot: Snapshot) -> None:
        store, claims = self.store, self.claims
        assert claims is not None
        until = self.clock() + self.settings.claim_ttl
        if not store.transition_batch(
            job_id,
            seq,
            expect=[BatchStatus.pending],
            to=BatchStatus.claimed,
            owner=self.owner,
            claim_expires=until,
        ):
            return  # another sender won the claim
        claims.hold(seq, until)
        try:
            faults.checkpoint("sender.claimed")
            batch = store.get_batch(job_id, seq)
            rows = store.batch_rows(job_id, seq)
            if batch is None or len(rows) != batch.size:  # the plan's rows, suppressed or not
                self._plan_mismatch(job_id, seq, batch, len(rows))
                return
            lines, to_send = [line for line, _ in rows], rows
            if self.suppression is not None:  # numbers suppressed since the plan: left out, marked
                space = options.cust_space_id or DEFAULT_SPACE
                to_send, dropped = drop_suppressed(self.suppression, job_id, space, batch, rows, self.clock)
                if dropped and not to_send:
                    self._all_suppressed(job_id, seq, space, len(rows))
                    return
            limit = effective_limit(
                self.settings.messaging_limits.for_number(options.from_), options.messaging_limit
            )
            token = ""
            if limit is not None:  # suppressed ones reserved too: counting more keeps under the cap
                token = self._reserve_reach(job_id, batch, lines, options.from_, limit, snapshot)
                if not token:
                    return  # given back (the job waits for the window) or split to fit the limit
            task_id = batch_task_id(job_id, seq)
            self._register_task(options.task_id or task_id, job_id, -1 if options.task_id else seq)
            call = self.cams.prepare(
                options,
                [recipient for _, recipient in to_send],  # before the slot: see prepare
                task_id=task_id,
            )
            leader = False if self.inline else self._first_call_turn()
            outcome: SendOutcome | None = None
            returned = False
            try:
                outcome = self._attempt_until_resolved(job_id, seq, lines, call, snapshot, len(to_send))
                returned = True
            finally:
                if token:
                    self._close_reservation(options.from_, token, outcome, returned)
                if leader:
                    # The process is warm now (SDKs imported, session built): what exists now lives as long
                    # as it does. Frozen, the collector stops re-scanning it: full collections in a sender
                    # took 50-100 ms with it (20 ms without); one between a slot and its request delays
                    # that request (since issue 14 it no longer crowds the service's window, but costs rate).
                    gc.freeze()
                    _first_call_done.set()
        finally:
            claims.drop(seq)

    def _all_suppressed(self, job_id: str, seq: int, space: str, size: int) -> None:
        """Every recipient of the batch is suppressed: no call; the batch is resolved ``sent`` (nothing is left
        to send: counted nowhere as failed; its report lines say ``suppressed``)."""
        if self.store.transition_batch(
            job_id,
            seq,
            expect=[BatchStatus.claimed],
            to=RESOLVED_ALL_SUPPRESSED,
            expect_owner=self.owner,
            **all_suppressed_fields(space, size),
        ):
            with self._lock:
                self._last_progress = self.clock()
            log.info("every recipient suppressed: no call", extra={"job_id": job_id, "batch": seq})
        else:
            log.warning("stale claim: suppressed batch not resolved", extra={"job_id": job_id, "batch": seq})

    def _register_task(self, task_id: str, job_id: str, seq: int) -> None:
        """Name the call's ``TaskId`` in the receipt store before the call (issue 17), so that its receipts find
        the job. Once per TaskId per runner (a job's own ``--task-id``: seq -1). A store error is logged, not
        raised: the report joins receipts by the TaskId it computes, so an unregistered call loses nothing but
        its receipts are also listed as unmatched; a send is never held back for it."""
        if task_id in self._registered:
            return
        if self._receipts is None:
            self._receipts = receipts_of(self.store)
            if self._receipts is None:  # a store with no receipt backend (a test's wrapper): nothing to name
                self._registered.add(task_id)
                return
        try:
            self._receipts.register_task(task_id, job_id, seq)
        except StoreError as error:
            log.warning(
                "task not registered for receipts", extra={"job_id": job_id, "seq": seq, "error": str(error)}
            )
            return
        self._registered.add(task_id)

    def _plan_mismatch(self, job_id: str, seq: int, batch: BatchRecord | None, found: int) -> None:
        """A batch whose rows do not number its size is never sent (a plan written wrong, or changed under
        us): the batch goes back untouched and the job stops, saying so."""
        planned = batch.size if batch is not None else "?"
        reason = (
            f"internal error: batch {seq} holds {found} recipients in the store, planned {planned}; "
            "nothing of it was sent. The job is stopped: report this (with the job id) before resuming it"
        )
        self._give_back(job_id, seq, [BatchStatus.claimed])
        log.error(
            "batch rows do not match the plan: not sent, job stopped",
            extra={"job_id": job_id, "batch": seq, "planned": planned, "found": found},
        )
        self.stop(JobStatus.stopped, reason)

    def _give_back(self, job_id: str, seq: int, expect: list[BatchStatus]) -> bool:
        """Nothing of this batch was sent: back to ``pending`` — only while the claim is still ours."""
        given = self.store.transition_batch(
            job_id,
            seq,
            expect=expect,
            to=BatchStatus.pending,
            expect_owner=self.owner,
            owner="",
            claim_expires=0.0,
        )
        if not given:
            log.warning(
                "stale claim: hand-back refused (the batch was released or taken over)",
                extra={"job_id": job_id, "batch": seq},
            )
        return given

    def _first_call_turn(self) -> bool:
        """The run's first call goes alone; the other workers wait for it before taking a rate slot.

        A process's first SDK call builds the HTTP session (TLS context, connection pool: tens of ms of
        CPU). Ten workers doing that at once hold each other up for ~0.3 s *after* taking their slots, so
        their requests arrive bunched against the next second's and the service sees more than the limit
        in one window. Returns True for the leader, who must set ``_first_call_done`` when finished. Since
        the window counts departures (issue 14) a late call can no longer bunch arrivals (the leader's own
        cold call was counted twice for that before); going alone still keeps the warm-up from delaying
        the first second's calls.
        """
        if _first_call_done.is_set():
            return False
        if _first_call_lock.acquire(blocking=False):
            return True
        while not _first_call_done.wait(0.1) and not self.halt.is_set():
            pass
        return False

    def _attempt_until_resolved(
        self,
        job_id: str,
        seq: int,
        lines: list[int],
        call: PreparedCall,
        snapshot: Snapshot,
        calling: int | None = None,
    ) -> SendOutcome | None:
        """Call until the batch is resolved. Returns the last outcome, or None if no call was made (or none
        left the process: every try was throttled or not sent) -- nothing of the batch was sent then.
        ``lines``: the batch's (a split halves them); ``calling``: how many of them the call carries (the
        rest suppressed since the plan; default all)."""
        calling = len(lines) if calling is None else calling
        store, ttl, claims = self.store, self.settings.claim_ttl, self.claims
        assert claims is not None
        retry = 0
        while True:
            marked: list[bool] = []

            # just before the slot: see SlidingWindowLimiter.reserve (``marked`` bound for this iteration)
            def mark_sending(marked: list[bool] = marked) -> bool:
                until = self.clock() + ttl
                marked.append(
                    claims.valid(seq)
                    and store.transition_batch(
                        job_id,
                        seq,
                        expect=[BatchStatus.claimed],
                        to=BatchStatus.sending,
                        expect_owner=self.owner,
                        claim_expires=until,
                        attempts=1,
                        sending_at=self.clock(),
                    )
                )
                if marked[-1]:
                    claims.hold(seq, until)
                return marked[-1]

            slot: Slot | None = None
            if not self.halt.is_set() and not self._stalled(job_id):
                try:
                    slot = self.limiter.reserve(None if self.inline else self.halt, before=mark_sending)
                except StoreError:
                    self._hand_back_unsent(job_id, seq)
                    raise
            if marked and not marked[-1]:
                log.warning(
                    "stale claim: not marked sending, not sent", extra={"job_id": job_id, "batch": seq}
                )
                return None  # the claim was taken from us (expired): never send without it
            if slot is None:
                self._give_back(job_id, seq, [BatchStatus.claimed])
                return None
            if not claims.valid(seq):
                # Paused or starved past our own lease while waiting for the slot: someone may hold the
                # batch now (or have marked it uncertain). Never call without a valid claim.
                slot.depart(self.clock())  # counted all the same: nothing may rely on it not being
                log.warning("claim expired before the call: not sent", extra={"job_id": job_id, "batch": seq})
                self._give_back(job_id, seq, [BatchStatus.sending, BatchStatus.uncertain])
                return None
            faults.checkpoint("sender.sending")
            outcome = self._call_in_slot(call, slot)
            faults.checkpoint("sender.after_call")
            with self._lock:
                snapshot.calls += 1
            if outcome.kind is OutcomeKind.credentials:
                self._no_credentials(job_id, seq, outcome)
                return outcome
            if outcome.kind in (OutcomeKind.throttled, OutcomeKind.not_sent):
                if not store.transition_batch(
                    job_id,
                    seq,
                    expect=[BatchStatus.sending, BatchStatus.uncertain],
                    to=BatchStatus.claimed,
                    expect_owner=self.owner,
                    code=outcome.code,
                    message=outcome.message,
                ):
                    log.warning("stale claim: retry refused", extra={"job_id": job_id, "batch": seq})
                    return None
                with self._lock:
                    snapshot.throttled += outcome.kind is OutcomeKind.throttled
                retry += 1
                log.info(
                    "call not taken; retrying within the rate",
                    extra={"job_id": job_id, "batch": seq, "code": outcome.code, "retry": retry},
                )
                self._wait(_backoff(retry, outcome))
                continue
            if outcome.kind is OutcomeKind.recipient and calling > 1:
                if self._split(job_id, seq, lines, outcome):
                    with self._lock:
                        snapshot.splits.append(seq)
            else:
                self._record(job_id, seq, calling, outcome, snapshot)
            return outcome

    # --- the messaging limit (store.reach) ------------------------------------------------------------------
    def _reach(self) -> ReachStore:
        with self._lock:
            if self.reach is None:
                self.reach = open_reach(self.store, clock=self.clock)
            return self.reach

    def _reserve_reach(
        self,
        job_id: str,
        batch: BatchRecord,
        lines: list[int],
        from_number: str,
        limit: int,
        snapshot: Snapshot,
    ) -> str:
        """Reserve the batch's recipients in its From's window before its call (every recipient a new unique
        user: the strict assumption of ``store.reach``). Returns the reservation's token, or "" when the
        batch is not to be sent now: it does not fit what is left (given back ``pending``, attempts
        unchanged, and the job ``scheduled`` for when the window frees enough: :meth:`_wait_for_limit`), or
        it is larger than the limit itself (split into parts of at most the limit, which fit one by one).
        Whole batches only otherwise: a batch waits rather than being cut to the rest of the allowance (every
        call a full batch, no part generations used up by the limit)."""
        token = f"{job_id[:12]}:{batch.seq}:{secrets.token_hex(4)}"
        try:
            grant = self._reach().reserve(
                from_number, len(lines), limit, token=token, window=self.settings.messaging_window
            )
        except StoreError:
            self._hand_back_unsent(job_id, batch.seq)
            raise
        if grant.granted:
            return token
        if grant.next_free_at == NEVER:
            self._split_for_limit(job_id, batch, lines, from_number, limit, snapshot)
        elif self._give_back(job_id, batch.seq, [BatchStatus.claimed]):
            self._wait_for_limit(job_id, from_number, limit, grant.used, len(lines), grant.next_free_at)
        return ""

    def _wait_for_limit(
        self, job_id: str, from_number: str, limit: int, used: int, count: int, free_at: float
    ) -> None:
        """The job waits for the window: ``scheduled`` at the (whole) second ``count`` more fit, with a reason
        saying so; the timer starts it then, and its senders resume with the batches still pending. Only
        from ``running``/``ready`` (an operator's pause or cancel meanwhile stands); this run stops."""
        at = math.ceil(free_at)
        reason = (
            f"{LIMIT_REASON} {used:,} of {limit:,} used for {mask_number(from_number)} in the last 24 h; "
            f"next {count:,} at {utc_timestamp(at)}"
        )
        if self.store.update_job(
            job_id,
            expect=[JobStatus.running, JobStatus.ready],
            status=JobStatus.scheduled,
            scheduled_at=float(at),
            reason=reason,
        ):
            log.warning(
                "messaging limit reached: job scheduled for when the window frees",
                extra={"job_id": job_id, "from": mask_number(from_number), "used": used, "limit": limit},
            )
        with self._lock:
            self._limit_reason = self._limit_reason or reason  # this run takes no new batch (see _dispatch)

    def _split_for_limit(
        self,
        job_id: str,
        batch: BatchRecord,
        lines: list[int],
        from_number: str,
        limit: int,
        snapshot: Snapshot,
    ) -> None:
        """A batch larger than the messaging limit itself can never be sent whole: its parts of at most
        ``limit`` recipients replace it (``parts``; nothing was sent), each sent when it fits."""
        parts = [Part(chunk[0], chunk[-1], len(chunk)) for chunk in _chunks(lines, limit)]
        if split_batch(
            self.store,
            batch,
            parts,
            expect=[BatchStatus.claimed],
            expect_owner=self.owner,
            code="MessagingLimit",
            message=f"split: {len(lines):,} recipients are more than the messaging limit of {limit:,} "
            f"per 24 h for {mask_number(from_number)}",
        ):
            with self._lock:
                snapshot.splits.append(batch.seq)
                self._last_progress = self.clock()
            log.warning(
                "batch larger than the messaging limit: split into parts that fit",
                extra={"job_id": job_id, "batch": batch.seq, "recipients": len(lines), "limit": limit},
            )

    def _close_reservation(
        self, from_number: str, token: str, outcome: SendOutcome | None, returned: bool
    ) -> None:
        """After the call: a call that may have sent (sent, uncertain) stays counted, from when it ended
        (``settle``); one that sent nothing for certain (never made, or refused by CAMS as a whole --
        throttled, failed, a bad number, no credentials) gives its recipients back (``release``). An
        exception (not ``returned``: we do not know what left) keeps them counted, from now: strict."""
        reach = self._reach()
        window = self.settings.messaging_window
        try:
            if not returned or (
                outcome is not None and outcome.kind in (OutcomeKind.sent, OutcomeKind.uncertain)
            ):
                reach.settle(from_number, token, self.clock(), window=window)
            else:
                reach.release(from_number, token, window=window)
        except StoreError:  # it stays counted from its reservation: at worst a little early, never lost
            log.warning("messaging limit window not updated: the store failed", exc_info=True)

    def _call_in_slot(self, call: PreparedCall, slot: Slot) -> SendOutcome:
        """Make the call in its slot and record its departure (``ratelimit``, ``adapters.transport``).

        Nothing but the SDK's own request path lies between the grant and the first byte: the request was
        built before the slot, the batch marked ``sending`` in the slot's lead, and the HTTP layer holds the
        first byte until ``not_before``. The departure is recorded as soon as the request is written (in
        ``getresponse``), else when the call returns: a call that wrote nothing (connection refused) or a
        store that failed there is still counted, at the latest time it can have left."""
        departure = Departure(
            slot.not_before, clock=self.clock, sleep=self.runtime.sleep, on_sent=slot.depart
        )
        if log.isEnabledFor(logging.DEBUG):  # in the slot's lead, before the gate: it delays no first byte
            log.debug("calling CAMS", extra={"slot": round(slot.not_before, 4)})
        if getattr(call, "gated", False):
            with departing(departure):
                outcome = call()
            if departure.sent_at is None:
                # The HTTP layer saw no request written (it failed connecting, resolving, in TLS, or before
                # any HTTP at all): CAMS cannot have acted on it, whatever the error's type says.
                outcome = nothing_left(outcome, "no request was written")
        else:  # no HTTP to hold: wait for the slot here
            departure.before_first_send()
            outcome = call()
            departure.after_first_send()
        if slot.departed_at is None:
            try:
                slot.depart(departure.sent_at if departure.sent_at is not None else self.clock())
            except StoreError:  # its hold still counts, as departing at the latest HOLD_MAX after its slot
                log.warning("departure not recorded: the store failed", exc_info=True)
        if outcome.kind is OutcomeKind.throttled:
            self.limiter.refused()
        elif outcome.reached_service and outcome.kind is not OutcomeKind.uncertain:
            self.limiter.accepted()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("CAMS called", extra={"first_byte": departure.first_byte, "sent_at": departure.sent_at})
        return outcome

    def _no_credentials(self, job_id: str, seq: int, outcome: SendOutcome) -> None:
        """Credentials could not be loaded: nothing was signed or sent, and no other batch can be either. The
        batch goes back to ``pending`` (never ``uncertain``) and the run stops, saying what to set; a rerun
        once the keys are there sends it."""
        self.store.transition_batch(
            job_id,
            seq,
            expect=[BatchStatus.sending, BatchStatus.uncertain],
            to=BatchStatus.pending,
            expect_owner=self.owner,
            owner="",
            claim_expires=0.0,
            code=outcome.code,
            message=outcome.message,
        )
        log.error("no credentials: nothing sent, run stopped", extra={"job_id": job_id, "batch": seq})
        self.stop(JobStatus.stopped, f"{outcome.message}; then rerun the same command")

    def _hand_back_unsent(self, job_id: str, seq: int) -> None:
        """The store failed between the claim and the call (marking it ``sending``, or the rate window): no
        call was made, so the batch may go back to ``pending`` rather than end ``uncertain``. Best effort:
        if the store still fails, the batch stays as it is and the sweeper resolves it (``sending`` becomes
        ``uncertain``: safe, never sent twice)."""
        try:
            self._give_back(job_id, seq, [BatchStatus.claimed, BatchStatus.sending])
        except StoreError:
            log.warning(
                "batch left claimed after a store failure; the sweeper will release it",
                extra={"job_id": job_id, "batch": seq},
            )

    def _split(self, job_id: str, seq: int, lines: list[int], outcome: SendOutcome) -> bool:
        """CAMS refused the whole call for one recipient (nothing was sent): send the two halves instead, so
        that in the end only that recipient fails (see ``parts``)."""
        batch = self.store.get_batch(job_id, seq)
        if batch is not None and split_batch(
            self.store,
            batch,
            halves(lines),
            expect=[BatchStatus.sending, BatchStatus.uncertain],
            expect_owner=self.owner,
            code=outcome.code,
            message=f"split to isolate the recipient CAMS refused: {outcome.message}",
        ):
            with self._lock:
                self._last_progress = self.clock()
            log.warning(
                "batch refused for one recipient: split in halves to isolate it",
                extra={
                    "job_id": job_id,
                    "batch": seq,
                    "recipients": len(lines),
                    "code": outcome.code,
                    "cams_request_id": outcome.request_id,
                },
            )
            return True
        return False

    def _record(self, job_id: str, seq: int, size: int, outcome: SendOutcome, snapshot: Snapshot) -> None:
        """The call's outcome, over our own ``sending`` — or over ``uncertain`` if a sweeper took us for dead
        while the call was out but the batch is still ours (the reply is the truth; nothing else touched it).
        A claim that is not ours any more is refused and logged: the batch keeps what its new holder says."""
        status = {
            OutcomeKind.sent: BatchStatus.sent,
            OutcomeKind.failed: BatchStatus.failed,
            OutcomeKind.recipient: BatchStatus.failed,  # the one bad recipient, alone in its batch
            OutcomeKind.fatal: BatchStatus.failed,
            OutcomeKind.uncertain: BatchStatus.uncertain,
        }[outcome.kind]
        recorded = self.store.transition_batch(
            job_id,
            seq,
            expect=[BatchStatus.sending, BatchStatus.uncertain],
            to=status,
            expect_owner=self.owner,
            code=outcome.code,
            message=outcome.message,
            request_id=outcome.request_id,
            group_message_id=outcome.group_message_id,
        )
        if not recorded:
            log.error(
                "stale claim: outcome not recorded (the batch is another's now)",
                extra={
                    "job_id": job_id,
                    "batch": seq,
                    "outcome": status.value,
                    "cams_request_id": outcome.request_id,
                },
            )
        if recorded:
            self._count_tried(job_id, size, status is BatchStatus.failed)
        with self._lock:
            self._last_progress = self.clock()
            if not recorded:
                pass
            elif status is BatchStatus.sent:
                snapshot.sent += size
            elif status is BatchStatus.failed:
                snapshot.failed += size
            else:
                snapshot.uncertain += size
        level = logging.INFO if status is BatchStatus.sent else logging.WARNING
        log.log(
            level,
            f"batch {status.value}",
            extra={
                "job_id": job_id,
                "batch": seq,
                "recipients": size,
                "code": outcome.code,
                "cams_request_id": outcome.request_id,
                "group_message_id": outcome.group_message_id,
            },
        )
        if outcome.kind is OutcomeKind.fatal:
            self.stop(
                JobStatus.stopped, f"CAMS refused the account or template: {outcome.code}: {outcome.message}"
            )
            log.error(
                "job stopped by an account- or template-level refusal",
                extra={"job_id": job_id, "code": outcome.code},
            )

    def _count_tried(self, job_id: str, size: int, failed: bool) -> None:
        """The job's own counters of recipients tried and failed (the error threshold), shared by every
        runner and function instance sending the job: one atomic store addition per recorded outcome."""
        if self.settings.error_threshold <= 0:
            return
        totals = self.store.add_job_counts(job_id, tried=size, failed=size if failed else 0)
        with self._lock:
            self._job_counts = totals

    def _over_error_threshold(self, job_id: str, snapshot: Snapshot) -> bool:
        """Pause the job when more than ``error_threshold`` of the recipients tried failed, once at least
        ``error_threshold_min`` or a tenth of the job (whichever is fewer) were tried: a template or list
        problem should not burn the whole list. Counted per job across all its senders (the store's
        counters, ``_count_tried``); an operator's resume starts the count afresh (:func:`restart_error_count`)."""
        share = self.settings.error_threshold
        if share <= 0:
            return False
        with self._lock:
            counts = self._job_counts
        if counts is None:
            counts = self.store.add_job_counts(job_id)
        failed, tried = counts["failed"], counts["tried"]
        if (
            share <= 0
            or tried <= 0
            or tried < min(self.settings.error_threshold_min, snapshot.valid / 10 or float("inf"))
            or failed <= share * tried
        ):
            return False
        reason = (
            f"paused: {failed:,} of {tried:,} recipients tried failed ({failed / tried:.0%}, above the "
            f"{share:.0%} threshold); look at the report's codes, then resume"
        )
        if self.store.update_job(
            job_id, expect=[JobStatus.running, JobStatus.ready], status=JobStatus.paused, reason=reason
        ):
            log.error(
                "job paused by the error threshold",
                extra={"job_id": job_id, "failed": failed, "tried": tried},
            )
        self.stop(JobStatus.paused, reason)
        return True

    def _stalled(self, job_id: str) -> bool:
        if self.clock() - self._last_progress < self.settings.max_stall:
            return False
        self.stop(
            JobStatus.stalled,
            f"no batch resolved for {self.settings.max_stall:g} s (throttled or unreachable); rerun to resume",
        )
        return True


def _chunks(lines: list[int], size: int) -> list[list[int]]:
    return [lines[start : start + size] for start in range(0, len(lines), size)]


def _backoff(retry: int, outcome: SendOutcome) -> float:
    """Throttled: retry soon (the limiter already paces us). Nothing sent (unreachable): back off up to 5 s."""
    if outcome.kind is OutcomeKind.throttled:
        return min(0.1 * retry, 1.0)
    return min(0.25 * 2.0 ** (retry - 1), 5.0)
