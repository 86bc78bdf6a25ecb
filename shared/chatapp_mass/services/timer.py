"""The timer (FC3 timer trigger): start scheduled jobs, sweep stalled work, run recurring sends.

Each firing (s.yaml: every minute by default), over every job in a status it acts on (``Store.jobs_in``:
found by status, however many newer or finished jobs there are; scheduled first, then ready, running and
cancelled):

- **Planned** jobs left ``ready`` (the planner died before starting them) start, once idle that long.
- **Scheduled** jobs whose ``scheduled_at`` has come start: ``scheduled`` -> ``running`` is one conditional
  write, so of repeated or overlapping timer events exactly one starts a job, and never before its time.
- **The sweeper**, for every job that is ``running``: claims that expired (their sender died or timed
  out) are released — ``claimed`` back to ``pending``; ``sending`` to ``uncertain``, never resent, since the
  call may have reached CAMS. Then, if batches are pending and claims were released, or no batch of the job
  has changed for ``CHATAPP_SWEEP_IDLE`` seconds (default 120: no sender is working on it), a sender is
  started; if nothing is open any more, the job is finalized (its finalizer died). A job that needs a sender
  is logged, so nothing stalls silently.
- **A plan abandoned** mid-way (its planner silent past its lease) is handed to ingest again: a job still
  ``planning``, or one that started sending while planned (``running`` with the lease on it: ``.streaming``).
- **Cancelled** jobs with batches still open: what is not on the wire is cancelled, and the job is
  finalized once nothing is in flight. A cancelled job with nothing open, cancelled over
  ``SETTLE_CANCELLED_AFTER`` ago, is settled (``Store.settle_job``): later firings no longer list it.
- **Recurring send**: the trigger's ``payload`` may be JSON ``{"recurring": {"source": "oss://B/K" or "K",
  "options": {...}}}``; each firing then creates one job of that CSV (job id = source + the firing's
  ``triggerTime``, so a re-delivered timer event is the same job) and hands it to ingest to plan. A payload
  that is not that (not JSON, another shape, a malformed source, a bad option) is refused in the result's
  ``recurring.error`` and logged; the rest of the firing goes on (one trigger's typo must not hold back
  every scheduled job).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatapp_mass.adapters.fc import Invoker
from chatapp_mass.adapters.oss import OssClient, OssLocation
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.services.dispatch import release_stale
from chatapp_mass.services.jobs import (
    Dispatch,
    EventError,
    FunctionSettings,
    cancel_job,
    finalize,
    resolve_options,
    start_job,
)
from chatapp_mass.services.streaming import plan_abandoned
from chatapp_mass.store.interface import IN_FLIGHT, OPEN_STATUSES, BatchStatus, JobRecord, JobStatus, Store

log = logging.getLogger(__name__)

# The statuses a firing acts on, in the order it takes them: a scheduled job's start is the most
# time-sensitive.
SWEPT = (JobStatus.scheduled, JobStatus.ready, JobStatus.running, JobStatus.cancelled, JobStatus.planning)
# A cancelled job with no batch open stops being looked at (settled) this long after it was cancelled: a
# planner may still be writing the batches of a job cancelled while it was planning (they arrive pending,
# after the cancel) for as long as an ingest invocation lasts (s.yaml: 900 s); this is well past that.
SETTLE_CANCELLED_AFTER = 3600.0


class _Recurring(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recurring: _Recurring | None = None


class TimerEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    trigger_time: str = Field(alias="triggerTime")
    trigger_name: str = Field(default="", alias="triggerName")
    payload: str = ""

    def recurring(self) -> _Recurring | None:
        if not self.payload.strip():
            return None
        try:
            return _Payload.model_validate_json(self.payload).recurring
        except ValidationError as error:
            first = error.errors()[0]
            raise EventError(
                f"timer {self.trigger_name!r} payload: {'.'.join(map(str, first['loc'])) or 'body'}: "
                f'{first["msg"]} (expected {{"recurring": {{"source": "incoming/x.csv", '
                f'"options": {{...}}}}}} or nothing)'
            ) from None


def is_timer_event(value: Any) -> bool:
    return isinstance(value, dict) and "triggerTime" in value and "requestContext" not in value


class Timer:
    def __init__(
        self,
        store: Store,
        oss: OssClient,
        invoker: Invoker,
        settings: FunctionSettings,
        *,
        ingest_function: str = "chatapp-mass-ingest",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.oss, self.invoker, self.settings = store, oss, invoker, settings
        self.ingest_function, self.clock = ingest_function, clock
        self.dispatch = Dispatch(store, invoker, settings)

    def handle(self, raw: bytes | str) -> dict[str, Any]:
        try:
            event = TimerEvent.model_validate_json(raw)
        except ValidationError as error:
            raise EventError(
                f"not an FC3 timer event: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}"
            ) from None
        now = self.clock()
        result: dict[str, Any] = {
            "started": [],
            "resumed": [],
            "finalized": [],
            "released": 0,
            "recurring": None,
        }
        try:
            recurring = event.recurring()
        except EventError as error:  # one trigger's bad payload must not stop the sweep of every job
            log.error("recurring send refused", extra={"trigger": event.trigger_name, "error": str(error)})
            result["recurring"] = {"job_id": None, "error": str(error)}
            recurring = None
        if recurring is not None:
            result["recurring"] = self.recurring(event, recurring)
        for job in self.store.jobs_in(SWEPT):
            if job.status is JobStatus.scheduled and job.scheduled_at <= now:
                if start_job(self.store, self.dispatch, job.job_id, now=now) == JobStatus.running.value:
                    log.info("scheduled job started", extra={"job_id": job.job_id})
                    result["started"].append(job.job_id)
            elif job.status is JobStatus.ready and now - job.updated_at >= self.settings.sweep_idle:
                # planned, never started: its planner died between the plan and the start
                if start_job(self.store, self.dispatch, job.job_id, now=now) == JobStatus.running.value:
                    log.warning("planned job was never started: started", extra={"job_id": job.job_id})
                    result["resumed"].append(job.job_id)
            elif job.status is JobStatus.running:
                self._sweep(job, now, result)
                if job.source.startswith("oss://") and plan_abandoned(job, now):
                    self._replan(job, result)  # started early, its planner went silent (.streaming)
            elif job.status is JobStatus.cancelled and self.store.list_batches(job.job_id, OPEN_STATUSES):
                cancel_job(self.store, job.job_id, reason=job.reason or "cancelled by an operator")
                result["released"] += release_stale(self.store, job.job_id, now=now)
                if not self.store.list_batches(job.job_id, IN_FLIGHT):
                    finalize(self.store, self.oss, self.settings, job.job_id, status=JobStatus.cancelled)
                    result["finalized"].append(job.job_id)
            elif job.source.startswith("oss://") and (
                (job.plan_owner and job.plan_expires < now)
                or (
                    job.status is JobStatus.planning
                    and not job.plan_owner
                    and now - job.updated_at >= self.settings.sweep_idle
                )
            ):
                # planning (or cancelled while planning) and its planner went silent past its lease, or its
                # plan event never came: ingest takes the plan over (plan.plan_job: only an expired lease)
                self._replan(job, result)
            elif (
                job.status is JobStatus.cancelled
                and not job.plan_owner
                and now - job.updated_at >= SETTLE_CANCELLED_AFTER
            ):
                # nothing open, and no planner can still be adding batches: done with it (finalized when
                # its last batch resolved, by the canceller, its sender or an earlier firing)
                self.store.settle_job(job.job_id, JobStatus.cancelled)
        return result

    def _replan(self, job: JobRecord, result: dict[str, Any]) -> None:
        log.warning("plan abandoned by its planner: planning again", extra={"job_id": job.job_id})
        self.invoker.invoke_async(self.ingest_function, {"plan_job": job.job_id})
        result["resumed"].append(job.job_id)

    def _sweep(self, job: JobRecord, now: float, result: dict[str, Any]) -> None:
        before = self.store.list_batches(job.job_id)
        last_change = max((b.updated_at for b in before), default=job.updated_at)  # before our own changes
        released = release_stale(self.store, job.job_id, now=now)
        result["released"] += released
        batches = self.store.list_batches(job.job_id) if released else before
        open_batches = [b for b in batches if b.status in OPEN_STATUSES]
        if not open_batches:
            if (
                finalize(
                    self.store, self.oss, self.settings, job.job_id, on_finished=self.dispatch.after_finish
                )
                == JobStatus.completed.value
            ):
                result["finalized"].append(job.job_id)
            return
        pending = [b for b in open_batches if b.status is BatchStatus.pending]
        if pending and (released or now - last_change >= self.settings.sweep_idle):
            log.warning(
                "job idle with batches pending: starting a sender",
                extra={
                    "job_id": job.job_id,
                    "pending": len(pending),
                    "idle_seconds": round(now - last_change),
                },
            )
            self.dispatch.fan_out(job.job_id)
            result["resumed"].append(job.job_id)

    def recurring(self, event: TimerEvent, recurring: _Recurring) -> dict[str, Any]:
        try:
            location = (
                OssLocation.parse(recurring.source)
                if recurring.source.startswith("oss://")
                else OssLocation(self.settings.bucket, recurring.source.lstrip("/"))
            )
        except OptionsError as error:
            message = f"timer {event.trigger_name!r} payload: recurring.source: {error}"
            log.error("recurring send refused", extra={"trigger": event.trigger_name, "error": message})
            return {"job_id": None, "error": message}
        job_id = (
            "t"
            + hashlib.sha256(
                f"{location.url}\n{event.trigger_name}\n{event.trigger_time}".encode()
            ).hexdigest()[:23]
        )
        try:
            options, intake = resolve_options(
                [
                    (f"timer {event.trigger_name!r} payload options", recurring.options),
                    ("the function's CHATAPP_DEFAULT_* environment", self.settings.defaults),
                ]
            )
        except OptionsError as error:
            log.error("recurring send refused", extra={"trigger": event.trigger_name, "error": str(error)})
            return {"job_id": None, "error": str(error)}
        fired = _parse_time(event.trigger_time) or self.clock()
        created = self.store.create_job(
            JobRecord(
                job_id=job_id,
                source=location.url,
                options=options.to_record(),
                intake=intake.model_dump(mode="json"),
                content_sha256=f"timer:{event.trigger_time}",
                created_at=fired,
            )
        )
        if (
            created
            or (self.store.get_job(job_id) or JobRecord("", "", {}, {}, "")).status is JobStatus.planning
        ):
            self.invoker.invoke_async(self.ingest_function, {"plan_job": job_id})
        return {"job_id": job_id, "created": created}


def _parse_time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
