"""Plan and send at once: a plan written batch by batch while senders already send it.

**Why it is safe.** Batches are consecutive runs of valid rows in file order (``core.planning.BatchPlanner``),
and a duplicate keeps its first occurrence, so nothing later in the file changes a batch once the planner has
moved past its last line. :class:`PlanWriter` therefore writes a batch as soon as it is complete, after its
rows (``Store.put_plan`` writes rows before batches; an earlier chunk wrote the rest): a sender never sees a
batch whose rows are not all there. The first batch goes out as soon as it closes; later ones with the row
chunks. The chunk boundaries depend only on the file and the settings, so a planner that takes a plan over
writes the very same rows and batches (``put_plan`` never resets a batch that exists).

**Who sends while the plan is written.** The planner moves the job ``planning`` -> ``running`` once, at its
first written batch (``ingest.StreamStart``: a conditional write fenced by its plan lease; only a job due now,
never a scheduled one) and fans out then, as for a planned job. A drainer keeps looking for new batches for
as long as the plan is unfinished *and its lease alive* (:func:`plan_live`), instead of ending when nothing
is open (``dispatch.JobRunner._next_batches``); a planner that resumes a plan (redelivery, timer sweep) fans
out again at its own first batch.

**When the totals are final.** The plan lease (``plan_owner``) stays on the job until the last batch and the
totals are written (:func:`finish_plan`: one write, fenced by the token, clears it): :func:`plan_unfinished`
is that test. Until then nobody finalizes the job (``jobs.finalize`` returns early), the summary says
``totals_final: false`` and the HTTP progress shows no share done.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from chatapp_mass.core.planning import BatchPlanner
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord, JobStatus, RowRecord, Store

# The statuses a job can have while its plan is still written: planning, or started early (running) and then
# moved by an operator or a sender (pause, resume, cancel, the kill switch, the messaging limit's window full:
# scheduled -- the planner writes on, and keeps its lease, while the job waits for the window).
PLAN_STATUSES = [
    JobStatus.planning,
    JobStatus.ready,
    JobStatus.running,
    JobStatus.paused,
    JobStatus.stopped,
    JobStatus.cancelled,
    JobStatus.scheduled,
]

# (job id, the planner's lease token, the batches just written, whether the plan's last write)
OnBatches = Callable[[str, str, range, bool], None]


def plan_unfinished(job: JobRecord) -> bool:
    """Whether the job's plan is still being written (or was abandoned mid-way): its totals are not final and
    more batches may come. A planner's lease (``plan_owner``) is cleared by the write that ends the plan."""
    return job.status is JobStatus.planning or (bool(job.plan_owner) and job.status in PLAN_STATUSES)


def plan_live(job: JobRecord, now: float) -> bool:
    """The plan is unfinished and its planner's lease has not expired: more batches are on their way."""
    return bool(job.plan_owner) and job.plan_expires > now and job.status in PLAN_STATUSES


def plan_abandoned(job: JobRecord, now: float) -> bool:
    """Started early, and its planner went silent past its lease: ingest is to take the plan over."""
    return bool(job.plan_owner) and job.plan_expires < now and job.status in PLAN_STATUSES


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while planning: the loop allocates millions of small objects and no
    cycles, and the collector's passes over them cost a tenth of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class PlanWriter:
    """Writes a plan as it grows: rows in chunks of ``chunk``, each batch once complete (see the module).

    ``check`` is called before every write (it raises when the plan lease is lost); ``on_batches(seqs,
    final)`` after a write that added batches (``final``: the plan's last write)."""

    def __init__(
        self,
        store: Store,
        job_id: str,
        planner: BatchPlanner,
        *,
        chunk: int,
        check: Callable[[], None],
        on_batches: Callable[[range, bool], None] | None = None,
    ) -> None:
        self.store, self.job_id, self.planner, self.chunk = store, job_id, planner, chunk
        self.check, self.on_batches = check, on_batches
        self.rows: list[RowRecord] = []
        self.written = 0  # rows written so far (before self.rows)
        self.published = 0  # batches written so far: 0 .. published-1

    @property
    def added(self) -> int:
        """Rows added so far, written or not."""
        return self.written + len(self.rows)

    def add(self, record: RowRecord) -> None:
        rows = self.rows
        rows.append(record)
        # the first batch goes out as soon as it is complete: the sending starts that much earlier
        if len(rows) >= self.chunk or (not self.published and len(self.planner.sizes) > 1):
            self.flush(final=False)

    def flush(self, *, final: bool) -> None:
        self.check()
        sizes, lines = self.planner.sizes, self.planner.lines
        complete = len(sizes) if final else max(len(sizes) - 1, self.published)
        batches = [
            BatchRecord(
                job_id=self.job_id,
                seq=seq,
                size=sizes[seq],
                first_line=lines[seq][0],
                last_line=lines[seq][1],
            )
            for seq in range(self.published, complete)
        ]
        self.store.put_plan(self.rows, batches)
        self.written += len(self.rows)
        self.rows = []
        written = range(self.published, complete)
        self.published = complete
        if written and self.on_batches is not None:
            self.on_batches(written, final)


def finish_plan(store: Store, job_id: str, owner: str, totals: dict[str, Any]) -> bool:
    """The write that ends a plan: the totals, and the lease cleared (totals final from here), fenced by the
    planner's token. A job still ``planning`` becomes ``ready``; one started early keeps whatever status it
    has now (running, paused, stopped or cancelled: then what was written pending after the cancel is
    cancelled too). False if the lease is not ours any more."""
    if store.update_job(
        job_id, expect=[JobStatus.planning], expect_plan_owner=owner, status=JobStatus.ready, **totals
    ):
        return True
    while True:
        current = store.get_job(job_id)
        if current is None or current.plan_owner != owner or current.status not in PLAN_STATUSES:
            return False
        if store.update_job(job_id, expect=[current.status], expect_plan_owner=owner, **totals):
            if current.status is JobStatus.cancelled:
                cancel_batches(store, job_id)
            return True
        # the status changed between our read and our write (an operator, a sender): look again


def abort_streamed_plan(store: Store, job_id: str, owner: str, reason: str, totals: dict[str, Any]) -> bool:
    """The file turned out unreadable after the job started sending (a bad byte at line N): what was sent
    stays sent, the rest is cancelled, the lease cleared. False if the job never started (nothing sent: the
    caller removes it as before) or the lease is not ours."""
    while True:
        current = store.get_job(job_id)
        if current is None or current.plan_owner != owner or current.status is JobStatus.planning:
            return False
        if store.update_job(
            job_id,
            expect=[current.status],
            expect_plan_owner=owner,
            status=JobStatus.cancelled,
            reason=reason,
            **totals,
        ):
            cancel_batches(store, job_id)
            return True


def cancel_batches(store: Store, job_id: str) -> None:
    """Every batch of a cancelled job not yet on the wire (``pending`` or ``claimed``) becomes ``cancelled``:
    one conditional write each, so a batch a sender is just marking ``sending`` stays its, and is resolved by
    it. Looked at again while a sender may be handing a claimed batch back to pending."""
    for _ in range(3):
        left = store.list_batches(job_id, [BatchStatus.pending, BatchStatus.claimed])
        if not left:
            return
        for batch in left:
            store.transition_batch(
                job_id,
                batch.seq,
                expect=[BatchStatus.pending, BatchStatus.claimed],
                to=BatchStatus.cancelled,
                code="Cancelled",
                message="the job was cancelled before this batch was sent",
            )
