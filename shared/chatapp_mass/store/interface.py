"""The state store: jobs, batches, input rows and the account-wide rate window, behind one interface.

The rules (state machine, which transitions are allowed, what a resume does) live in ``engine`` above this
interface; a backend only has to make each method atomic, and ``transition_batch`` conditional: it changes
a batch only if it is still in one of the expected states, and says whether it did. That one primitive is
what makes "one claimant ever wins" and "never sent twice" hold across threads, processes and, later,
function instances.

**Fences.** Work that can be done twice at the same time has one owner, named by a token (``lease``): a
job's plan (``JobRecord.plan_owner``/``plan_expires``) and a batch's claim (``BatchRecord.owner``/
``claim_expires``). ``update_job(expect_plan_owner=, expect_plan_expires=)``, ``delete_job(plan_owner=)``,
``transition_batch(expect_owner=, expect_expires=)`` and ``renew_claim`` make the token (and, for a take-over,
the exact lease seen) part of the write's condition, so a stale owner's write is refused by the store itself.

Backends: ``store.sqlite.SqliteStore`` (local runs, the default) and ``store.tablestore.TablestoreStore``
(the cloud, and the local cloud); one contract suite (tests/contract) runs against both.

Longer than 500 lines: the one interface both backends implement, its records and each method's contract
(what is atomic, what is conditional) written beside it.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple


class JobStatus(str, Enum):
    planning = "planning"  # the file is being read into the store
    ready = "ready"  # planned, nothing dispatched yet (or a dry run)
    running = "running"
    completed = "completed"  # every batch resolved (sent, failed or uncertain)
    stopped = "stopped"  # kill switch: an account- or template-level refusal
    stalled = "stalled"  # throttled or unreachable without progress for --max-stall
    interrupted = "interrupted"  # Ctrl-C; resumable
    failed = "failed"  # could not be planned (bad options, unreadable file): nothing was sent
    scheduled = "scheduled"  # planned; the timer starts it at ``scheduled_at``
    cancelled = "cancelled"  # an operator cancelled it: no new batch is dispatched
    paused = "paused"  # an operator (or the error threshold) paused it: batches wait, resumable

    @property
    def is_final(self) -> bool:
        return self is JobStatus.completed


class BatchStatus(str, Enum):
    pending = "pending"  # not yet sent (or released for a retry)
    claimed = "claimed"  # a sender owns it; its call has not started
    sending = "sending"  # the call may be on the wire
    sent = "sent"
    failed = "failed"
    uncertain = "uncertain"  # the call may or may not have reached CAMS
    cancelled = "cancelled"  # the job was cancelled before this batch was sent
    splitting = "splitting"  # being replaced by its parts (see split_batch): open until they are written
    # replaced by its parts, which hold its rows now; counted nowhere. (The member hides str.split on the
    # members, which nothing calls; renaming it would rename the status.)
    split = "split"  # type: ignore[assignment]

    @property
    def resolved(self) -> bool:
        return self in (
            BatchStatus.sent,
            BatchStatus.failed,
            BatchStatus.uncertain,
            BatchStatus.cancelled,
            BatchStatus.split,
        )


# Batches not resolved yet: a job with one of these is not finished.
OPEN_STATUSES = (BatchStatus.pending, BatchStatus.claimed, BatchStatus.sending, BatchStatus.splitting)
# Batches someone is working on: a cancelled job is final only once none is left.
IN_FLIGHT = (BatchStatus.claimed, BatchStatus.sending, BatchStatus.splitting)


# --- parts of a batch ------------------------------------------------------------------------------------
# A batch is split into parts when CAMS refused it for one recipient (halves, until the bad one is alone) or
# when a reconciliation found some of its recipients and not others. A part is a batch of its own over a
# sub-range of its parent's lines; its rows keep the batch_seq of the planned batch they came from (its
# ``root``), so splitting rewrites no row. Its seq is derived from where it starts and how deep it is:
#     CHILD_BASE + first_line * 64 + generation
# At one generation a line lies in at most one batch (parts partition their parent), so that is unique, and
# a repeated split (a sweeper finishing one whose splitter died) writes the very same parts.
CHILD_BASE = 1 << 40
_GENERATIONS = 64


def part_seq(first_line: int, generation: int) -> int:
    if not 0 < generation < _GENERATIONS:
        raise ValueError(f"a batch cannot be split {generation} levels deep")
    return CHILD_BASE + first_line * _GENERATIONS + generation


def generation(seq: int) -> int:
    """0 for a planned batch, 1 for its parts, 2 for theirs..."""
    return 0 if seq < CHILD_BASE else (seq - CHILD_BASE) % _GENERATIONS


class RowStatus(str, Enum):
    valid = "valid"
    invalid = "invalid"
    duplicate = "duplicate"
    suppressed = "suppressed"  # on the suppression list of the job's space when planned: in no batch


@dataclass
class JobRecord:
    job_id: str
    source: str
    options: dict[str, Any]  # JobOptions.to_record()
    intake: dict[str, Any]  # IntakeOptions.model_dump()
    content_sha256: str
    status: JobStatus = JobStatus.planning
    reason: str = ""
    total_rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicate: int = 0
    batches: int = 0
    suppressed: int = (
        0  # rows suppressed at plan time (the sender's later ones are marked: store.suppression)
    )
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    scheduled_at: float = 0.0  # epoch seconds; 0 = start when planned
    # The planning lease (see plan.plan_job): who plans the job now, and until when unless renewed. Only
    # a ``planning`` job has one; a second planner waits for it, or takes over only once it has expired.
    plan_owner: str = ""
    plan_expires: float = 0.0
    # The plan's own settings, fixed when the job is created: whoever plans (or re-plans) the job plans the
    # very same batches, so a stale planner's late writes are the same bytes as the owner's.
    batch_size: int = 0
    max_request_bytes: int = 0
    # A canary (core.canary.CanaryState as JSON; "" = none): its options, fixed when the job is created
    # (the plan cuts its first batches there), and its verdict once the receipts decide.
    canary: str = ""
    # Retention (issue 17, see store/retention.py): what the job came to, written when it finished
    # (``finished_at``), so that it outlives the rows and batches a purge (SQLite) or the table TTL
    # (Tablestore) removes; ``purged_at``: when a purge began removing them (0: never).
    summary: dict[str, Any] = field(default_factory=dict)
    finished_at: float = 0.0
    purged_at: float = 0.0


@dataclass
class BatchRecord:
    job_id: str
    seq: int
    size: int  # recipients
    status: BatchStatus = BatchStatus.pending
    attempts: int = 0
    owner: str = ""
    claim_expires: float = 0.0
    code: str = ""
    message: str = ""
    request_id: str = ""
    group_message_id: str = ""
    updated_at: float = field(default_factory=time.time)
    # The input lines of its first and last recipient: a batch's rows are contiguous in input order, so a
    # store may find them by line range (Tablestore does) instead of by an index on batch_seq.
    first_line: int = 0
    last_line: int = 0
    root: int = -1  # a part: the planned batch whose rows (between first_line and last_line) it holds
    sending_at: float = 0.0  # when its call was last started (a reconciliation's time window starts there)
    parts: str = ""  # a split batch: its parts, JSON (see split_batch)

    @property
    def rows_seq(self) -> int:
        """The batch_seq its rows carry."""
        return self.root if self.root >= 0 else self.seq


class RowRecord(NamedTuple):
    """One input record. Valid rows carry their batch and the SenderList item to send.

    A NamedTuple, not a frozen dataclass: the planner builds one per input line (millions), and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost a tenth of the plan's time. Immutable
    all the same. ``recipient_json``: ``sender_json(recipient)``, when the planner already encoded it to
    size it; the stores write it as it is instead of encoding the recipient again (None: they encode it).
    """

    job_id: str
    line: int
    to: str
    status: RowStatus
    code: str = ""
    message: str = ""
    batch_seq: int | None = None
    recipient: dict[str, Any] | None = None
    recipient_json: str | None = None


class ReportRow(NamedTuple):
    """One line of the report. A NamedTuple: a report has a line per input record (millions)."""

    line: int
    to: str
    status: str  # sent | failed | uncertain | pending | invalid | duplicate | cancelled | suppressed
    group_message_id: str
    code: str
    message: str
    # What the receipts said (issue 17), joined by the report service (services.report.report_rows), never
    # by a store: "" | sent | delivered | read | failed, WhatsApp's ErrorCode / ErrorDescription, ISO UTC.
    delivery: str = ""
    delivery_code: str = ""
    delivery_message: str = ""
    delivery_at: str = ""


REPORT_STATUS = {
    BatchStatus.pending: "pending",
    BatchStatus.claimed: "pending",
    BatchStatus.sending: "pending",
    BatchStatus.sent: "sent",
    BatchStatus.failed: "failed",
    BatchStatus.uncertain: "uncertain",
    BatchStatus.cancelled: "cancelled",
    BatchStatus.splitting: "pending",
    BatchStatus.split: "pending",  # only while its parts are being written
}


class Leaves:
    """Which batch holds a row now: its planned batch, or the deepest part of it covering its line.

    Built from a job's batches; a store's report looks rows up in it. Parts are rare (a refusal for one
    recipient, a partial reconciliation), so the lookup walks a short list per split planned batch."""

    def __init__(self, batches: Iterable[BatchRecord]) -> None:
        self.planned: dict[int, BatchRecord] = {}
        self.parts: dict[int, list[BatchRecord]] = {}
        self._tails: dict[int | None, tuple[str, ...]] = {}  # batch_seq -> a row's last four cells (row)
        for batch in batches:
            if batch.root >= 0:
                self.parts.setdefault(batch.root, []).append(batch)
            else:
                self.planned[batch.seq] = batch
        for parts in self.parts.values():
            parts.sort(key=lambda b: -generation(b.seq))

    def row(self, line: int, to: str, batch_seq: int | None) -> ReportRow:
        """A valid row's report line. The last four cells of a batch that is not split are the same for all
        its rows: worked out once (a report is a line per input record, millions)."""
        tail = self._tails.get(batch_seq)
        if tail is None:
            planned = self.planned.get(batch_seq) if batch_seq is not None else None
            if planned is not None and planned.status in (BatchStatus.split, BatchStatus.splitting):
                return report_row(line, to, self.holder(batch_seq, line))  # per line: its part
            tail = self._tails[batch_seq] = report_row(0, "", planned)[2:]
        return ReportRow(line, to, *tail)

    def holder(self, batch_seq: int | None, line: int) -> BatchRecord | None:
        planned = self.planned.get(batch_seq) if batch_seq is not None else None
        if planned is None or planned.status not in (BatchStatus.split, BatchStatus.splitting):
            return planned
        for part in self.parts.get(planned.seq, ()):
            if part.first_line <= line <= part.last_line and part.status is not BatchStatus.split:
                return part
        return planned  # its parts are being written: pending


def report_row(line: int, to: str, batch: BatchRecord | None) -> ReportRow:
    """A valid row's report line, from the batch that holds it (None: not written yet, planning)."""
    if batch is None:
        return ReportRow(line, to, "pending", "", "", "")
    return ReportRow(line, to, REPORT_STATUS[batch.status], batch.group_message_id, batch.code, batch.message)


# --- what the timer looks for, and counters shared by a job's senders --------------------------------------
# The statuses a store can list jobs by (``Store.jobs_in``): every status the timer acts on, or may (a job's
# planning lease). A job in any other status (completed, failed, stopped, interrupted, stalled) is finished
# for the timer: a store keeps no listing for it, so finished jobs cost the timer nothing however many.
SWEPT_STATUSES = (
    JobStatus.planning,
    JobStatus.ready,
    JobStatus.scheduled,
    JobStatus.running,
    JobStatus.paused,
    JobStatus.cancelled,
)
# Counters on a job row, shared by every sender instance (``Store.add_job_counts``): recipients tried and
# recipients that failed, for an error threshold over the whole job rather than one invocation.
JOB_COUNTERS = ("tried", "failed")


def check_swept(statuses: Iterable[JobStatus]) -> list[JobStatus]:
    """``statuses`` as a list without repeats, in order; ValueError names any ``jobs_in`` cannot list."""
    wanted = list(dict.fromkeys(JobStatus(s) for s in statuses))
    others = [s.value for s in wanted if s not in SWEPT_STATUSES]
    if others:
        raise ValueError(
            f"jobs_in lists jobs in {[s.value for s in SWEPT_STATUSES]}, not {others}: a store keeps "
            "no listing of finished jobs"
        )
    return wanted


def check_counts(deltas: dict[str, int]) -> dict[str, int]:
    """Every counter of ``JOB_COUNTERS`` with its delta (0 if not given); ValueError for another name."""
    unknown = sorted(set(deltas) - set(JOB_COUNTERS))
    if unknown:
        raise ValueError(f"job counters are {list(JOB_COUNTERS)}, not {unknown}")
    bad = sorted(
        name for name, delta in deltas.items() if isinstance(delta, bool) or not isinstance(delta, int)
    )
    if bad:
        raise ValueError(f"job counter deltas must be integers: {bad}")
    return {name: deltas.get(name, 0) for name in JOB_COUNTERS}


class RateGrant(NamedTuple):
    """``Store.rate_reserve``'s answer: ``granted`` with ``at`` the slot's time, or not with ``at`` the seconds
    to wait before asking again."""

    granted: bool
    at: float


# The JobRecord fields ``Store.update_job`` may change (the others are the job's identity and its
# creation); a backend refuses any other with ValueError.
JOB_UPDATABLE = frozenset(
    {
        "status",
        "reason",
        "total_rows",
        "valid",
        "invalid",
        "duplicate",
        "batches",
        "scheduled_at",
        "plan_owner",
        "plan_expires",
        "batch_size",
        "max_request_bytes",
        "canary",
        "suppressed",
        "summary",
        "finished_at",
        "purged_at",
    }
)


class JobKey(NamedTuple):
    """Where a job stands in ``list_jobs`` (newest first, then by id): a page starts after the last one's."""

    created_at: float
    job_id: str

    @classmethod
    def of(cls, job: JobRecord) -> JobKey:
        return cls(job.created_at, job.job_id)


class RequestClaim(NamedTuple):
    """Who holds a request's digest (``Store.claim_request``): the job it made, and when."""

    job_id: str
    at: float


class Store(abc.ABC):
    # jobs
    @abc.abstractmethod
    def create_job(self, job: JobRecord) -> bool:
        """Insert the job if no job has its id; True if this call created it."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> JobRecord | None: ...

    @abc.abstractmethod
    def find_jobs(self, prefix: str) -> list[str]:
        """Ids of (at most a few) jobs whose id starts with ``prefix``."""

    @abc.abstractmethod
    def list_jobs(self, limit: int = 50, *, after: JobKey | None = None) -> list[JobRecord]:
        """Newest first (``created_at`` descending, then ``job_id``); with ``after``, only the jobs after that
        one in this order (the next page: a job created meanwhile is on the first page, not repeated)."""

    @abc.abstractmethod
    def claim_request(
        self, digest: str, job_id: str, *, at: float, window: float, force: bool = False
    ) -> RequestClaim | None:
        """The API's repeat check, one conditional write: record that the request ``digest`` makes ``job_id``
        at ``at`` if no job holds the digest, or the one holding it took it before ``at - window`` (or
        ``force``); None if this call recorded it. Else nothing changes and the holder is returned: of any
        number of identical requests at once, exactly one gets None."""

    @abc.abstractmethod
    def release_request(self, digest: str, job_id: str) -> None:
        """Forget ``digest`` if ``job_id`` holds it (the request made no job after all)."""

    @abc.abstractmethod
    def update_job(
        self,
        job_id: str,
        *,
        expect: Iterable[JobStatus] | None = None,
        expect_plan_owner: str | None = None,
        expect_plan_expires: float | None = None,
        **fields: Any,
    ) -> bool:
        """Set fields; with ``expect``, only if the job's status is one of them; with ``expect_plan_owner``
        (and ``expect_plan_expires``), only if the job's planning lease is that token's (and still ends then:
        a take-over of an expired lease must fail if its owner renewed it meanwhile). True if it changed."""

    @abc.abstractmethod
    def delete_job(self, job_id: str, *, plan_owner: str | None = None) -> bool:
        """Remove the job with its rows and batches (a plan that was refused). With ``plan_owner``, only if
        the job's planning lease is that token's. True if the job row was removed."""

    # plan
    @abc.abstractmethod
    def clear_plan(self, job_id: str) -> None:
        """Drop rows and batches of a plan that did not finish, so it can be planned again."""

    @abc.abstractmethod
    def put_plan(self, rows: list[RowRecord], batches: list[BatchRecord]) -> None:
        """Write rows and (new) batches. Idempotent: writing the same plan twice leaves one copy, and a
        batch that exists already is left as it is (whatever its state)."""

    # batches
    @abc.abstractmethod
    def list_batches(
        self, job_id: str, statuses: Iterable[BatchStatus] | None = None, *, limit: int | None = None
    ) -> list[BatchRecord]:
        """Ordered by seq; the first ``limit`` only, if given (a sender's queue needs a few, not a 1M job's
        thousand)."""

    @abc.abstractmethod
    def get_batch(self, job_id: str, seq: int) -> BatchRecord | None:
        """One batch, by a point read (None if there is none)."""

    @abc.abstractmethod
    def batch_rows(self, job_id: str, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """(input line, SenderList item) of a batch's recipients, in input order. A part (``root`` set)
        holds its root's rows between its first and last line."""

    def batch_recipients(self, job_id: str, seq: int) -> list[dict[str, Any]]:
        """The SenderList items of a batch, in input order."""
        return [recipient for _, recipient in self.batch_rows(job_id, seq)]

    @abc.abstractmethod
    def transition_batch(
        self,
        job_id: str,
        seq: int,
        *,
        expect: Iterable[BatchStatus],
        to: BatchStatus,
        expect_owner: str | None = None,
        expect_expires: float | None = None,
        **fields: Any,
    ) -> bool:
        """Conditional update: only if the batch is in one of ``expect`` and, with ``expect_owner``, its
        claim is that token's (a stale claimant's write is refused) and, with ``expect_expires``, its claim
        still ends then (a sweeper releasing an expired claim fails if its owner renewed it meanwhile).
        True if this call changed it."""

    @abc.abstractmethod
    def renew_claim(self, job_id: str, seq: int, *, owner: str, until: float) -> bool:
        """The heartbeat of a claim: ``claim_expires = until`` if the batch is still ``claimed`` or
        ``sending`` by ``owner`` (its status and everything else unchanged). False: the claim is lost."""

    @abc.abstractmethod
    def batch_totals(self, job_id: str) -> dict[BatchStatus, tuple[int, int]]:
        """Per batch status: (batches, recipients). A ``split`` batch is left out: its parts count."""

    # report
    @abc.abstractmethod
    def report_rows(self, job_id: str) -> Iterator[ReportRow]:
        """One row per input record, ordered by line."""

    # account-wide rate window
    @abc.abstractmethod
    def rate_acquire(
        self,
        key: str,
        limit: int,
        window: float,
        clock: Callable[[], float],
        *,
        peek: bool = False,
        force: bool = False,
    ) -> float:
        """Record an attempt at ``now`` if fewer than ``limit`` were recorded in ``(now - window, now]``
        (departures and holds of :meth:`rate_reserve` count too: see ``ratewindow``).

        ``now = clock()`` is read only once the store holds the window exclusively: a time read before
        waiting for the lock would stamp the attempt too early and let a burst through. Returns 0.0 when
        granted, else the seconds to wait before a slot frees up. Atomic across every process sharing
        the store. ``peek``: only say how long until a slot frees (0.0: one is free now); record nothing.
        ``force``: record an attempt at ``now`` even over the limit (an attempt known to have happened
        later than its slot said); returns 0.0.
        """

    @abc.abstractmethod
    def rate_reserve(
        self, key: str, limit: int, window: float, clock: Callable[[], float], *, token: str, lead: float
    ) -> RateGrant:
        """Grant a slot for a call that will leave within ``lead`` seconds, counted at its departure.

        The window (``ratewindow``) counts departures and holds (granted slots not yet departed, each
        counting as departing no earlier than now). If the next slot (``ratewindow.next_slot``) is at most
        ``lead`` seconds away, a hold named ``token`` is recorded with that slot as its ``not_before`` and
        the grant says so (``granted``, ``at`` = the slot: the call must not leave before it); else nothing
        is recorded and ``at`` is the seconds to wait before asking again. ``now`` is read as for
        ``rate_acquire``. Atomic across every process sharing the store.
        """

    @abc.abstractmethod
    def rate_depart(self, key: str, token: str, at: float, clock: Callable[[], float]) -> None:
        """The call of hold ``token`` left at ``at``: the hold becomes a departure at ``at`` (never earlier
        than its ``not_before``). A hold already gone (expired, or departed) is recorded as a departure all
        the same: every attempt counts. Idempotent for one token only while its hold exists."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # --- the timer at any scale, and per-job counters (added for issue 11) ---------------------------------
    @abc.abstractmethod
    def jobs_in(self, statuses: Iterable[JobStatus], limit: int | None = None) -> list[JobRecord]:
        """The jobs now in one of ``statuses`` (each of ``SWEPT_STATUSES``, else ValueError), found by status,
        not by age: a job behind any number of newer or finished ones is listed. Grouped by status in the
        order given, by job id within one; at most ``limit`` (None: all). The cost follows the jobs listed,
        never the finished ones.

        A job settled in its status (``settle_job``) is left out until its status changes again.
        Reads are not a snapshot: a job changing status meanwhile may be listed in its old status or its new
        one (callers check and change a job with conditional writes anyway), but a job that stays in a listed
        status through the call is always listed."""

    @abc.abstractmethod
    def settle_job(self, job_id: str, status: JobStatus) -> bool:
        """The timer is done with the job while it stays in ``status``: ``jobs_in`` leaves it out from now on,
        until its status next changes (which lists it again). True if the job is in ``status`` (and now left
        out); False, and nothing changes, if it is not. For a ``cancelled`` job the timer finalized (no batch
        open), so that cancelled jobs do not cost the timer a lookup each firing for ever."""

    @abc.abstractmethod
    def add_job_counts(self, job_id: str, **deltas: int) -> dict[str, int]:
        """Add to the job's counters (names from ``JOB_COUNTERS``; ValueError for another) in one atomic step
        shared by every process and instance, and return every counter's total right after this addition
        (with no deltas: the totals now). Counters start at 0; a delta may be negative. KeyError if there is
        no such job. Not idempotent: a call retried by its caller counts twice."""
