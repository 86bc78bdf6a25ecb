"""Planning: read, validate and plan a recipient file into the store (senders may start on it meanwhile).

A job's rows (one per CSV line: valid, invalid or duplicate, with the number as written and as sent) and its
batches (``pending``, at most ``batch_size`` recipients and ``max_request_bytes`` of SenderList each) are
written by one planner at a time, under a lease (:func:`plan_job`). The plan is a pure function of the file
and of the settings fixed in the job row, so a planner that lost its lease writes the same bytes as the
owner. Sending is :mod:`.dispatch`'s.

The file readers (:mod:`chatapp_mass.core.intake`, and with them ``phonenumbers``) are imported by the functions
that read a file: the sender and the api import this module for its job-level helpers and read none.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from typing import IO, Any

from chatapp_mass.core.canary import CanaryOptions, CanaryState, canary_recipients
from chatapp_mass.core.errors import CsvFileError
from chatapp_mass.core.options import IntakeOptions, JobOptions, job_identity
from chatapp_mass.core.planning import (
    API_MAX_RECIPIENTS,
    BODY_BUDGET,
    BatchPlanner,
    fits_alone,
    intake_sender_json,
    sized_sender_json,
)
from chatapp_mass.runtime import faults
from chatapp_mass.services.lease import PLAN_LEASE, Heartbeat, owner_id
from chatapp_mass.services.streaming import (
    PLAN_STATUSES,
    OnBatches,
    PlanWriter,
    abort_streamed_plan,
    collector_paused,
    finish_plan,
    plan_unfinished,
)
from chatapp_mass.store.interface import JobRecord, RowRecord, RowStatus, Store

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = BODY_BUDGET  # the body mode's; the callers pass planning.request_budget(mode)
_ROW_CHUNK = 5_000

OpenStream = Callable[[], AbstractContextManager[IO[bytes]]]


# --- planning -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanSettings:
    batch_size: int = API_MAX_RECIPIENTS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    new_job: bool = False
    canary: CanaryOptions | None = None  # fixed in the job row when it is created (a rerun keeps its own)


@dataclass(frozen=True)
class Runtime:
    """How the engine reads time, waits and keeps its leases alive. The real ones by default; a simulation
    (tests/sim) passes its own clock and sleep, and drives the heartbeats itself."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], object] = time.sleep
    start_heartbeat: Callable[[Heartbeat], object] = Heartbeat.start


REAL = Runtime()
_PLAN_POLL = 2.0  # how often a planner waiting for another's lease looks again


class PlanLost(Exception):
    """Our planning lease was taken over (we were silent longer than it lasts): stop writing the plan."""


def plan_job(
    store: Store,
    *,
    source: str,
    open_stream: OpenStream,
    options: JobOptions,
    intake: IntakeOptions,
    settings: PlanSettings = PlanSettings(),
    identity: tuple[str, str] | None = None,
    read_rows: Callable[[], Iterable[Any]] | None = None,
    scheduled_at: float = 0.0,
    runtime: Runtime = REAL,
    lease: float = PLAN_LEASE,
    on_batches: OnBatches | None = None,
) -> tuple[JobRecord, bool]:
    """Read, validate and plan the whole file into the store.

    Returns the job and whether it already existed (a rerun resumes it instead of planning again). A file
    that cannot be read raises :class:`CsvFileError` and leaves no job behind.

    ``identity`` = (job id, content fingerprint) when the caller knows them (an OSS upload: bucket + key +
    ETag); otherwise the job id is the file's SHA-256 plus the options (:func:`job_identity`).
    ``read_rows``: the records come from there instead of a CSV read from ``open_stream`` (a JSON list of
    recipients: :class:`~chatapp_mass.core.intake.JsonRecipients`); it needs ``identity``.

    **One planner at a time** (``lease``): the job row names its planner and until when (``plan_owner``,
    ``plan_expires``), renewed by a heartbeat. A second planner of the same job waits while that lease is
    alive, and takes over only an expired one (a conditional write from exactly the expired lease). Every
    write that ends the plan is fenced by the token (``ready``, or the job's removal after a bad file), and
    planning stops as soon as the heartbeat finds the lease gone. Nothing is ever cleared: the plan is a pure
    function of the file and of settings fixed in the job row, so rows and batches a stale planner still
    writes are the very bytes the owner writes (rows are put whole; a batch is only inserted if absent).
    Nobody sends a batch of a job still ``planning``.
    """
    if identity is not None:
        job_id, content_sha = identity
    else:
        from chatapp_mass.core.intake import sha256_of

        with open_stream() as stream:
            content_sha = sha256_of(stream)
        job_id = job_identity(content_sha, options, intake)
    if settings.new_job:
        job_id = f"{job_id[:16]}-{secrets.token_hex(4)}"
    owner = owner_id()
    fresh = JobRecord(
        job_id=job_id,
        source=source,
        options=options.to_record(),
        intake=intake.model_dump(mode="json"),
        content_sha256=content_sha,
        scheduled_at=scheduled_at,
        plan_owner=owner,
        batch_size=settings.batch_size,
        max_request_bytes=settings.max_request_bytes,
        canary=CanaryState(options=settings.canary).model_dump_json() if settings.canary else "",
    )
    while True:
        job = _take_plan(store, fresh, runtime, lease)
        if not plan_unfinished(job):
            return job, True
        heartbeat = Heartbeat(
            lambda: store.update_job(
                job_id,
                expect=PLAN_STATUSES,  # a job started early is running (or paused...) while planned
                expect_plan_owner=owner,
                plan_expires=runtime.clock() + lease,
            ),
            lease / 3,
            name=f"plan {job_id[:12]}",
        )
        runtime.start_heartbeat(heartbeat)
        try:
            return _plan_owned(store, job, owner, heartbeat, open_stream, read_rows, on_batches), False
        except PlanLost:
            log.warning(
                "planning lease lost to another planner: waiting for its plan", extra={"job_id": job_id}
            )
        finally:
            heartbeat.stop()


def _take_plan(store: Store, fresh: JobRecord, runtime: Runtime, lease: float) -> JobRecord:
    """The job with our planning lease on it, or the job once someone else has planned it."""
    owner, waited = fresh.plan_owner, False
    while True:
        now = runtime.clock()
        if store.create_job(replace(fresh, plan_expires=now + lease, created_at=now, updated_at=now)):
            return replace(fresh, plan_expires=now + lease)
        current = store.get_job(fresh.job_id)
        if current is None:
            continue  # removed meanwhile (its file was refused): try again, the same way
        if not plan_unfinished(current):
            return current
        if current.plan_owner and current.plan_expires > now:
            if not waited:
                log.info(
                    "another process is planning this job: waiting for it",
                    extra={"job_id": fresh.job_id, "lease_left": round(current.plan_expires - now, 1)},
                )
                waited = True
            runtime.sleep(min(current.plan_expires - now, _PLAN_POLL))
            continue
        # Expired, or never taken (a job row created ``planning`` for ingest to plan: HTTP, the timer).
        # The plan's settings stay those of the job row when it has them.
        batch_size = current.batch_size or fresh.batch_size
        max_bytes = current.max_request_bytes or fresh.max_request_bytes
        canary = current.canary or fresh.canary
        if store.update_job(
            fresh.job_id,
            expect=[current.status],
            expect_plan_owner=current.plan_owner,
            expect_plan_expires=current.plan_expires,
            plan_owner=owner,
            plan_expires=now + lease,
            batch_size=batch_size,
            max_request_bytes=max_bytes,
            canary=canary,
        ):
            if current.plan_owner:
                log.warning(
                    "planning lease expired: plan taken over",
                    extra={"job_id": fresh.job_id, "previous_owner": current.plan_owner},
                )
            return replace(
                current,
                plan_owner=owner,
                plan_expires=now + lease,
                batch_size=batch_size,
                max_request_bytes=max_bytes,
                canary=canary,
            )


def _plan_owned(
    store: Store,
    job: JobRecord,
    owner: str,
    heartbeat: Heartbeat,
    open_stream: OpenStream,
    read_rows: Callable[[], Iterable[Any]] | None,
    on_batches: OnBatches | None = None,
) -> JobRecord:
    """Plan ``job`` (whose lease is ours) with the job row's own options and settings."""
    job_id = job.job_id
    options = JobOptions.model_validate(job.options)
    intake = IntakeOptions.model_validate(job.intake)
    max_bytes = job.max_request_bytes or DEFAULT_MAX_REQUEST_BYTES
    planner = BatchPlanner(
        job.batch_size or API_MAX_RECIPIENTS, max_bytes, cut_after=canary_recipients(job.canary)
    )
    # rows refused, by status: the valid ones are the rest (no per-row count for them: an Enum's hash is
    # a Python call)
    refused = {RowStatus.invalid: 0, RowStatus.duplicate: 0}

    def check() -> None:
        if heartbeat.lost.is_set():
            raise PlanLost(job_id)

    writer = PlanWriter(
        store,
        job_id,
        planner,
        chunk=_ROW_CHUNK,
        check=check,
        on_batches=None if on_batches is None else (lambda seqs, last: on_batches(job_id, owner, seqs, last)),
    )

    def totals() -> dict[str, Any]:  # the plan's figures (so far), written with the lease cleared
        total = writer.added
        return dict(
            plan_owner="",
            plan_expires=0.0,
            total_rows=total,
            valid=total - sum(refused.values()),
            invalid=refused[RowStatus.invalid],
            duplicate=refused[RowStatus.duplicate],
            batches=writer.published,
        )

    try:
        with (
            nullcontext(None) if read_rows is not None else open_stream() as stream,
            collector_paused(),
            ExitStack() as files,  # an Excel workbook, open while its rows are read
        ):
            records: Iterable[Any]
            encode: Callable[[str, dict[str, str] | None], tuple[str, int]] | None = None
            if read_rows is not None:
                records = read_rows()
            else:
                assert stream is not None  # opened above whenever there is no read_rows
                from chatapp_mass.core.intake import open_recipients

                reader = files.enter_context(
                    open_recipients(stream, source=job.source, channel=options.channel_type, intake=intake)
                )
                records, encode = reader, intake_sender_json(reader.header.param_columns)
            plan_row, add, valid = _plan_row, writer.add, RowStatus.valid  # locals: once per row
            for row in records:
                record = plan_row(job_id, row, planner, max_bytes, encode)
                if record.status is not valid:
                    refused[record.status] += 1
                add(record)
    except CsvFileError as error:
        # Unreadable: a job nobody started is removed (nothing was sent); one that started sending already
        # is cancelled from here, what was sent staying sent.
        if abort_streamed_plan(store, job_id, owner, f"the file is unreadable: {error}", totals()):
            raise
        if not store.delete_job(job_id, plan_owner=owner):
            raise PlanLost(job_id) from None
        raise
    writer.flush(final=True)
    faults.checkpoint("plan.written")
    # Cancelled while we planned (the lease is still ours): the plan is complete all the same, so the report
    # lists every row; what was written pending after the cancel is cancelled (finish_plan).
    if not finish_plan(store, job_id, owner, totals()):
        raise PlanLost(job_id)
    planned = store.get_job(job_id)
    assert planned is not None
    return planned


def restart_error_count(store: Store, job_id: str) -> None:
    """An operator resumed a job the error threshold paused: the threshold counts afresh from here (the
    counters go back to zero; an outcome recorded meanwhile may still count, on the safe side)."""
    counts = store.add_job_counts(job_id)
    if counts["tried"] or counts["failed"]:
        store.add_job_counts(job_id, tried=-counts["tried"], failed=-counts["failed"])


# RowStatus by its value, without the Enum's own lookup (a dict read): one per input line.
_ROW_STATUS = {status.value: status for status in RowStatus}
_VALID = RowStatus.valid
# A RowRecord from its nine fields in order, without the NamedTuple's ``__new__`` (a Python function taking
# keywords and defaults: ~0.1 us of a valid row's ~9). The same object: a RowRecord is its tuple.
_row_record: Callable[[tuple[Any, ...]], RowRecord] = partial(tuple.__new__, RowRecord)


def _plan_row(
    job_id: str,
    row: Any,
    planner: BatchPlanner,
    max_request_bytes: int,
    encode: Callable[[str, dict[str, str] | None], tuple[str, int]] | None = None,
) -> RowRecord:
    """The row's record: a valid row with its batch and its SenderList item. ``encode``: the file's own
    encoder (:func:`intake_sender_json`, a CSV's rows), else the general one (a JSON list's recipients)."""
    line, to, status = row.line, row.to, row.status
    if status != "valid":
        return RowRecord(job_id, line, to, _ROW_STATUS[status], row.code, row.message)
    params = row.template_params
    recipient: dict[str, Any] = {"To": to, "TemplateParams": params} if params else {"To": to}
    if encode is not None:
        text, size = encode(to, params)
    else:
        if row.extra:
            recipient.update(row.extra)
        text, size = sized_sender_json(recipient)
    if not fits_alone(size, max_request_bytes):
        return RowRecord(
            job_id,
            line,
            to,
            RowStatus.invalid,
            "RequestTooLarge",
            f"this recipient alone encodes to {size} bytes, over --max-request-bytes {max_request_bytes}",
        )
    return _row_record((job_id, line, to, _VALID, "", "", planner.assign(size, line), recipient, text))


plan_row = _plan_row  # a row as the plan judges it, for a preview (services.preview) to judge it the same
