"""The sender function's core: one invocation sends a batch, or drains a job's pending batches.

**sender** (async). The event is ``{"job_id": J, "seq": N}`` (one batch) or ``{"job_id": J, "drain": true}``
(pending batches until none is left or the invocation's time nearly runs out). Claims, the account-wide limiter,
the call and its classification are the CLI's (:class:`~chatapp_mass.services.dispatch.JobRunner`). Then it *settles*:
batches still pending (time ran out) → the sender is invoked again now; batches another instance holds → it is
invoked again when that claim expires (a crashed holder is then released: ``claimed`` back to ``pending``,
``sending`` to ``uncertain``); none open while the plan is still written and out of time (``.streaming``: a
drainer waits for new batches while the planner's lease lives) → invoked again; none open → **finalize**: the
report CSV and a summary JSON go to ``reports/``, then the job becomes ``completed`` (conditional write;
several finalizers write the same report).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatapp_mass.adapters.cams import CamsClient
from chatapp_mass.adapters.fc import Invoker
from chatapp_mass.adapters.oss import OssClient
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner
from chatapp_mass.services.jobs import (
    Dispatch,
    EventError,
    FunctionSettings,
    finalize,
    reconcile_job,
    start_job,
)
from chatapp_mass.services.parts import part_batches
from chatapp_mass.services.reconcile import Reconciler
from chatapp_mass.services.streaming import plan_live
from chatapp_mass.store.interface import OPEN_STATUSES, BatchStatus, JobRecord, JobStatus, Store

log = logging.getLogger(__name__)


class SenderEvent(BaseModel):
    """What ingest (and a sender, to continue) sends the sender: a reference, never recipients."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(min_length=1, max_length=64)
    seq: int | None = Field(default=None, ge=0)
    drain: bool = False
    reconcile: bool = False  # look the finished job's uncertain batches up (see Sender.reconcile)


def parse_sender_event(raw: bytes | str) -> SenderEvent:
    try:
        event = SenderEvent.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        raise EventError(
            f"sender event: {'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']} "
            '(expected {"job_id": "...", "seq": N} or {"job_id": "...", "drain": true})'
        ) from None
    if (event.seq is not None) + event.drain + event.reconcile != 1:
        raise EventError('sender event: give exactly one of "seq", "drain": true or "reconcile": true')
    return event


class Sender:
    """One sender invocation. ``deadline`` is when it must be done (its timeout, less a margin)."""

    def __init__(
        self,
        store: Store,
        cams: CamsClient,
        oss: OssClient,
        invoker: Invoker,
        settings: FunctionSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.cams, self.oss, self.settings, self.clock = store, cams, oss, settings, clock
        self.dispatch = Dispatch(store, invoker, settings)

    def handle(self, raw: bytes | str, *, deadline: float) -> dict[str, Any]:
        event = parse_sender_event(raw)
        job = self.store.get_job(event.job_id)
        if job is None:
            log.warning("sender event for an unknown job: ignored", extra={"job_id": event.job_id})
            return {"job_id": event.job_id, "status": "unknown job"}
        if event.reconcile:
            return self.reconcile(job, deadline=deadline)
        if job.status is JobStatus.cancelled:
            return {"job_id": job.job_id, "status": self.settle(job.job_id, event)}
        if job.status is JobStatus.scheduled and job.scheduled_at <= self.clock():
            # its time has come (a canary's next look, asked for below): started as the timer would start it
            started = start_job(self.store, self.dispatch, job.job_id, now=self.clock())
            return {"job_id": job.job_id, "status": started}
        if job.status not in (JobStatus.ready, JobStatus.running):
            return {"job_id": job.job_id, "status": job.status.value}
        # A claim covers one batch's token wait and call (read timeout 30 s), not the whole invocation: if
        # this instance dies, another sender may take the batch over (or mark it uncertain) that much later.
        dispatch = DispatchSettings(
            qps=self.settings.qps,
            concurrency=self._concurrency(event),
            claim_ttl=self.settings.claim_ttl,
            error_threshold=self.settings.error_threshold,
            rate_margin=self.settings.rate_margin,
            messaging_limits=self.settings.messaging_limits,
        )
        runner = JobRunner(self.store, self.cams, dispatch, clock=self.clock)
        snapshot = runner.drain(job, deadline=deadline, only=event.seq)
        if runner.halt_status is JobStatus.stopped:  # an account- or template-level refusal: the kill switch
            self.store.update_job(
                job.job_id,
                expect=[JobStatus.ready, JobStatus.running],
                status=JobStatus.stopped,
                reason=runner.halt_reason,
            )
        if event.seq is not None:
            self._send_parts(job.job_id, snapshot.splits)
        if runner.wake_at:  # the job waits for its canary's receipts (scheduled): look again then
            self.dispatch.later(job.job_id, max(runner.wake_at - self.clock(), 0.0))
        status = self.settle(job.job_id, event)
        return {
            "job_id": job.job_id,
            "calls": snapshot.calls,
            "sent": snapshot.sent,
            "failed": snapshot.failed,
            "uncertain": snapshot.uncertain,
            "throttled": snapshot.throttled,
            "late_slots": snapshot.late_slots,
            "job": status,
        }

    def reconcile(self, job: JobRecord, *, deadline: float) -> dict[str, Any]:
        """Look a finished job's uncertain batches up in ListChatappMessage (``reconcile``): what CAMS has is
        reported sent, the report object is written again; nothing is ever sent here (a resend is an
        operator's decision). A job running again (a resend, a rerun) is left to finish first."""
        if job.status not in (JobStatus.completed, JobStatus.stopped):
            return {"job_id": job.job_id, "status": job.status.value, "reconciled": None}
        result = reconcile_job(
            self.store,
            self.oss,
            self.settings,
            Reconciler(self.store, self.cams, clock=self.clock),
            job,
            deadline=deadline,
        )
        if result.left and not result.error and not result.skipped:
            self.dispatch.reconcile_later(job.job_id, delay=0)  # out of time: go on in a new invocation
        return {"job_id": job.job_id, "status": job.status.value, "reconciled": result.to_dict()}

    def _concurrency(self, event: SenderEvent) -> int:
        if event.seq is not None:
            return 1
        return self.settings.sender_concurrency or max(
            4, 3 * self.settings.qps // max(self.settings.senders, 1)
        )

    def settle(self, job_id: str, event: SenderEvent) -> str:
        """After draining: continue what is left, watch what others hold, finalize when nothing is open."""
        job = self.store.get_job(job_id)
        if job is None or job.status not in (JobStatus.ready, JobStatus.running):
            if job is not None and job.status in (JobStatus.stopped, JobStatus.cancelled):
                finalize(self.store, self.oss, self.settings, job_id, status=job.status)
            return job.status.value if job else "unknown"
        batches = self.store.list_batches(job_id, OPEN_STATUSES)
        if event.seq is not None:
            batches = [b for b in batches if b.seq == event.seq]
        now = self.clock()
        pending = [b for b in batches if b.status is BatchStatus.pending]
        held = [b for b in batches if b.status is not BatchStatus.pending]
        if pending:
            self.dispatch.later(job_id, 0, event.seq)  # time ran out (or a claim came back): go on
        elif held:
            wake = min(b.claim_expires for b in held) - now
            self.dispatch.later(job_id, min(max(wake, 0), 3600), event.seq)  # release it if its holder died
        elif event.drain and plan_live(job, now):
            self.dispatch.later(job_id, 0)  # out of time while the plan is written: more batches will come
        if self.store.list_batches(job_id, OPEN_STATUSES):
            return "running"
        return finalize(self.store, self.oss, self.settings, job_id, on_finished=self.dispatch.after_finish)

    def _send_parts(self, job_id: str, split: list[int]) -> None:
        """Per-batch dispatch: a batch this invocation split (refused for one recipient) is replaced by its
        parts, which need invocations of their own. Only the splitter sends them (a repeated event finds
        the batch split already and adds none); if it dies first, the sweeper starts them."""
        if not split:
            return
        every = {b.seq: b for b in self.store.list_batches(job_id)}
        for seq in split:
            for part in part_batches(every[seq]) if seq in every else ():
                if part.seq in every and every[part.seq].status is BatchStatus.pending:
                    self.dispatch.later(job_id, 0, part.seq)
