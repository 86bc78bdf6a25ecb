"""The ingest function's core: jobs started by an OSS upload.

**ingest** (OSS trigger, invoked asynchronously by FC). For each record of the FC3 OSS event whose key is under
``CHATAPP_INCOMING_PREFIX`` (default ``incoming/``) and ends ``.csv`` or ``.xlsx`` (an Excel workbook, read
directly: its first sheet, or the one ``x-oss-meta-sheet`` names; either kind is recognised by content):

- **Job identity** = bucket + key + ETag + the upload's request id (``responseElements.requestId``, else
  ``eventTime``). A repeated event of one upload is the same job: nothing new is created or sent (a job not
  yet finished is fanned out again, which is harmless: senders claim). A new upload of the same key is a new
  job, even with the same content (recurring sends are legitimate) — the ETag alone cannot tell those apart,
  since it is the content's MD5, hence the request id.
- **Options**, field by field, first found wins: the object's user metadata (``x-oss-meta-channel-type``,
  ``x-oss-meta-template-code``, ... — the CLI's flag names), then a **sidecar JSON** beside the CSV (same key
  with ``.json`` for ``.csv`` or ``.xlsx``; API names such as ``ChannelType`` or the flag names; upload it *before* the
  CSV), then the function's defaults (``CHATAPP_DEFAULT_CHANNEL_TYPE``, ``CHATAPP_DEFAULT_TEMPLATE_CODE``...).
  Keys: every job option of ``chatapp-mass send`` plus ``default-country``, ``allow-empty-params``,
  ``delimiter``, ``recipient-column`` and ``sheet``. An unknown key is an error (a typo must not silently
  send with a default).
- **Refused at the edge** (skipped, with the reason in the result and the log): an event for another bucket
  than ``CHATAPP_BUCKET`` (the role reads only its own), and a key with a ``.`` or ``..`` segment, as is or
  URL-decoded (the report's key is derived from it). An event of more than :data:`MAX_EVENT_RECORDS`
  records is not OSS's (it sends one): :class:`EventError`.
- **The event's key** is used as is; if OSS has no such object and the key changes when URL-decoded
  (``unquote_plus``), the decoded key is used — whether real OSS events URL-encode ``oss.object.key`` is
  unverified (ALIBABA-FACTS §2), so both forms are accepted and the log says which one was used.
- Plans the job (stream, validate, dedup, batches) with conditional writes: an ingest that crashed and is
  re-delivered resumes (a half-planned job is planned again; a planned one is not touched).
- Fans out (:class:`Dispatch`) with asynchronous sender invocations carrying a reference, never recipients,
  **as soon as the first batch is written** (:class:`StreamStart`, :mod:`.streaming`): senders send while
  the rest of the file is planned; the job's totals are final when the plan ends.
- **Errors** (bad options, unreadable CSV, a missing sidecar that is not JSON): nobody waits on an OSS job,
  so the job row gets status ``failed`` and the reason, and ``reports/<name>.<job>.error.json`` says what was
  wrong and what to do. The invocation itself succeeds (a retry would fail the same way).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatapp_mass.adapters.fc import Invoker
from chatapp_mass.adapters.oss import OssClient, OssLocation, SourceError
from chatapp_mass.core.errors import CsvFileError, OptionsError
from chatapp_mass.core.options import IntakeOptions, JobOptions
from chatapp_mass.runtime import env, faults
from chatapp_mass.services.jobs import (
    RECIPIENT_FILE_SUFFIXES,
    Dispatch,
    EventError,
    FunctionSettings,
    finalize,
    oss_job_id,
    report_base,
    resolve_options,
    sidecar_key,
    start_job,
)
from chatapp_mass.services.plan import PlanSettings, plan_job
from chatapp_mass.services.streaming import plan_unfinished
from chatapp_mass.store.interface import OPEN_STATUSES, JobRecord, JobStatus, Store

log = logging.getLogger(__name__)


# --- events (the edge) ------------------------------------------------------------------------------------
class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _OssBucket(_Loose):
    name: str


class _OssObject(_Loose):
    key: str
    e_tag: str = Field(alias="eTag")
    size: int = 0


class _OssPart(_Loose):
    bucket: _OssBucket
    object: _OssObject


class _ResponseElements(_Loose):
    request_id: str = Field(default="", alias="requestId")


class OssEventRecord(_Loose):
    event_name: str = Field(alias="eventName")
    event_time: str = Field(default="", alias="eventTime")
    region: str = ""
    oss: _OssPart
    response_elements: _ResponseElements = Field(default_factory=_ResponseElements, alias="responseElements")

    @property
    def upload_id(self) -> str:
        """What tells two uploads of the same bytes apart: the upload request's id (else the event time).
        A re-delivered event carries the same one."""
        return self.response_elements.request_id or self.event_time

    @property
    def bucket(self) -> str:
        return self.oss.bucket.name

    @property
    def key(self) -> str:
        return self.oss.object.key

    @property
    def etag(self) -> str:
        return self.oss.object.e_tag.strip('"')


class OssEvent(_Loose):
    events: list[OssEventRecord]


# An OSS trigger event carries one record (ALIBABA-FACTS §2); a list of thousands is not OSS's, and each
# record costs OSS and store requests.
MAX_EVENT_RECORDS = 100


def parse_oss_event(raw: bytes | str) -> list[OssEventRecord]:
    try:
        events = OssEvent.model_validate_json(raw).events
    except ValidationError as error:
        raise EventError(
            f"not an FC3 OSS trigger event ({error.error_count()} problems: "
            f"{error.errors()[0]['loc']}: {error.errors()[0]['msg']})"
        ) from None
    if len(events) > MAX_EVENT_RECORDS:
        raise EventError(
            f"not an FC3 OSS trigger event: events holds {len(events)} records (OSS sends one; "
            f"at most {MAX_EVENT_RECORDS} are taken)"
        )
    return events


def _refused_key(key: str) -> str:
    """Why an object key is not taken as an upload ("" if it is): a '.' or '..' segment, which a path
    would resolve outside the prefix (the report's key is derived from it)."""
    for form in (key, unquote_plus(key)):
        if any(part in (".", "..") for part in form.split("/")):
            return f"the key {key!r} has a '.' or '..' segment: not taken as an upload"
    return ""


def _plan_reference(raw: bytes | str) -> str | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit: not a reference
        return None
    if isinstance(value, dict) and isinstance(value.get("plan_job"), str) and value["plan_job"]:
        return str(value["plan_job"])
    return None


def _is_incoming_file(key: str, settings: FunctionSettings) -> bool:
    return key.startswith(settings.incoming_prefix) and key.lower().endswith(RECIPIENT_FILE_SUFFIXES)


class StreamStart:
    """Plan and send at once (``plan_job``'s ``on_batches``; see :mod:`.streaming`): at the first batch
    written, a job due now goes ``planning`` -> ``running`` (fenced by the plan lease) and is fanned out; a
    plan taken over from a silent planner (the job ``running`` already, our lease on it) is fanned out
    again. Per-batch dispatch then gets one invocation per batch as each is written. A plan written in one
    go (one batch at most), and a scheduled, paused, stopped or cancelled job, are not started here: they
    start the ordinary way when the plan ends."""

    def __init__(self, store: Store, dispatch: Dispatch, clock: Callable[[], float] = time.time) -> None:
        self.store, self.dispatch, self.clock = store, dispatch, clock
        self.started: bool | None = None  # None: no batch written yet

    def __call__(self, job_id: str, owner: str, seqs: range, final: bool) -> None:
        if self.started is None and final:
            return  # the whole plan in one write: the job starts the ordinary way when it ends
        if self.started is None:
            job = self.store.get_job(job_id)
            self.started = (
                job is not None
                and job.plan_owner == owner
                and job.scheduled_at <= self.clock()
                and (
                    (
                        job.status is JobStatus.planning
                        and self.store.update_job(
                            job_id,
                            expect=[JobStatus.planning],
                            expect_plan_owner=owner,
                            status=JobStatus.running,
                        )
                    )
                    or job.status is JobStatus.running
                )
            )
            if self.started:
                log.info("sending while planning", extra={"job_id": job_id, "batches": len(seqs)})
                if self.dispatch.settings.dispatch == "per-batch":
                    self.dispatch.fan_out(job_id)
                else:  # as many drainers as for the whole job: more batches are coming
                    for _ in range(self.dispatch.settings.senders):
                        self._invoke({"job_id": job_id, "drain": True})
        elif self.started and self.dispatch.settings.dispatch == "per-batch":
            for seq in seqs:
                self._invoke({"job_id": job_id, "seq": seq})

    def _invoke(self, reference: dict[str, Any]) -> None:
        self.dispatch.invoker.invoke_async(self.dispatch.settings.sender_function, reference)

    def settle(self, job_id: str, finish: Callable[[JobRecord], str]) -> str:
        """After a plan that started sending: the job is final now only if nothing is open (``finish``); a
        stopped or cancelled one is finalized with that status."""
        job = self.store.get_job(job_id)
        if job is None:
            return "unknown"
        if job.status in (JobStatus.stopped, JobStatus.cancelled):
            return finish(job)
        if job.status is not JobStatus.running:
            return str(job.status.value)  # paused (or resumed just now): whoever runs it on finishes it
        if not self.store.list_batches(job_id, OPEN_STATUSES):
            return finish(job)
        # Open batches have senders: those invoked at the start, drainers waiting on the plan. Any a drainer
        # left (it gave up on a plan that looked abandoned) are pending and idle: the timer's sweep starts a
        # sender for them after CHATAPP_SWEEP_IDLE, as for a sender that died.
        return str(job.status.value)


@dataclass
class IngestResult:
    key: str
    job_id: str = ""
    status: str = "skipped"  # skipped | planned | resumed | failed
    message: str = ""


class Ingest:
    def __init__(self, store: Store, oss: OssClient, invoker: Invoker, settings: FunctionSettings) -> None:
        self.store, self.oss, self.settings = store, oss, settings
        self.dispatch = Dispatch(store, invoker, settings)

    def handle(self, raw: bytes | str) -> list[IngestResult]:
        """An OSS trigger event, or ``{"plan_job": JOB}`` for a job submitted over HTTP with an OSS source
        (the API creates the job row, ``planning``, with its options; planning a big file is not done
        while an HTTP client waits)."""
        reference = _plan_reference(raw)
        if reference is not None:
            return [self.plan_submitted(reference)]
        return [self.ingest(record) for record in parse_oss_event(raw)]

    def plan_submitted(self, job_id: str) -> IngestResult:
        job = self.store.get_job(job_id)
        if job is None:
            log.warning("plan event for an unknown job: ignored", extra={"job_id": job_id})
            return IngestResult("", job_id, "skipped", "unknown job")
        location = OssLocation.parse(job.source)
        if not plan_unfinished(job):
            self._continue(job)
            return IngestResult(location.key, job_id, "resumed", f"job already {job.status.value}")
        try:
            planned, _ = plan_job(
                self.store,
                source=job.source,
                open_stream=lambda: self.oss.open(location),
                options=JobOptions.model_validate(job.options),
                intake=IntakeOptions.model_validate(job.intake),
                settings=PlanSettings(
                    batch_size=self.settings.batch_size, max_request_bytes=self.settings.max_request_bytes
                ),
                identity=(job_id, job.content_sha256),
                on_batches=(stream := StreamStart(self.store, self.dispatch)),
            )
        except SourceError as error:
            if not error.permanent:
                raise
            return self._failed(location, job_id, job.content_sha256, error)
        except (OptionsError, CsvFileError) as error:
            return self._failed(location, job_id, job.content_sha256, error)
        if stream.started:
            status = stream.settle(job_id, self._finish)
        else:
            status = start_job(self.store, self.dispatch, job_id, now=time.time())
        if planned.batches == 0 and status == JobStatus.running.value:
            finalize(self.store, self.oss, self.settings, job_id)
        return IngestResult(
            location.key,
            job_id,
            "planned",
            f"{planned.valid} valid recipients in {planned.batches} batches; {status}",
        )

    def ingest(self, record: OssEventRecord) -> IngestResult:
        key, settings = record.key, self.settings
        if not record.event_name.startswith("ObjectCreated:") or not (
            _is_incoming_file(key, settings) or _is_incoming_file(unquote_plus(key), settings)
        ):
            log.info("object ignored", extra={"key": key, "event": record.event_name})
            return IngestResult(
                key, message=f"not an upload under {settings.incoming_prefix} ending .csv or .xlsx"
            )
        if record.bucket != settings.bucket:
            log.warning("upload to another bucket ignored", extra={"key": key, "bucket": record.bucket})
            return IngestResult(
                key,
                message=f"the event is for bucket {record.bucket!r}; this function takes uploads to "
                f"{env.CHATAPP_BUCKET}={settings.bucket!r}",
            )
        refused = _refused_key(key)
        if refused:
            log.warning("upload ignored", extra={"key": key, "error": refused})
            return IngestResult(key, message=refused)
        try:
            location = self._locate(record)
        except SourceError as error:
            if not error.permanent:
                raise
            location = OssLocation(record.bucket, key)
            return self._failed(
                location, oss_job_id(record.bucket, key, record.etag, record.upload_id), record.etag, error
            )
        key = location.key
        job_id = oss_job_id(record.bucket, key, record.etag, record.upload_id)
        existing = self.store.get_job(job_id)
        if existing is not None and not plan_unfinished(existing):
            self._continue(existing)
            log.info(
                "repeated event of a known upload", extra={"job_id": job_id, "status": existing.status.value}
            )
            return IngestResult(key, job_id, "resumed", f"job already {existing.status.value}")
        try:
            options, intake = self._options(location)
            job, _ = plan_job(
                self.store,
                source=location.url,
                open_stream=lambda: self.oss.open(location),
                options=options,
                intake=intake,
                settings=PlanSettings(
                    batch_size=settings.batch_size, max_request_bytes=settings.max_request_bytes
                ),
                identity=(job_id, f"etag:{record.etag}"),
                on_batches=(stream := StreamStart(self.store, self.dispatch)),
            )
        except SourceError as error:
            if not error.permanent:
                raise  # OSS busy or unreachable: FC delivers the event again
            return self._failed(location, job_id, record.etag, error)
        except (OptionsError, CsvFileError) as error:
            return self._failed(location, job_id, record.etag, error)
        faults.checkpoint("ingest.planned")
        if stream.started:  # it has been sending while planned
            stream.settle(job_id, self._finish)
        else:
            self.store.update_job(job_id, expect=[JobStatus.ready], status=JobStatus.running)
            self.dispatch.fan_out(job_id)
            faults.checkpoint("ingest.fanned_out")
            if job.batches == 0:
                finalize(self.store, self.oss, settings, job_id)
        log.info(
            "job planned",
            extra={
                "job_id": job_id,
                "rows": job.total_rows,
                "valid": job.valid,
                "invalid": job.invalid,
                "duplicate": job.duplicate,
                "suppressed": job.suppressed,
                "batches": job.batches,
            },
        )
        return IngestResult(key, job_id, "planned", f"{job.valid} valid recipients in {job.batches} batches")

    def _finish(self, job: JobRecord) -> str:
        status = job.status if job.status in (JobStatus.stopped, JobStatus.cancelled) else JobStatus.completed
        return finalize(
            self.store,
            self.oss,
            self.settings,
            job.job_id,
            status=status,
            on_finished=self.dispatch.after_finish,
        )

    def _locate(self, record: OssEventRecord) -> OssLocation:
        """The object the event names: its key as is, or URL-decoded when only that form exists (the
        encoding of ``oss.object.key`` in real events is unverified). Logs which form was used."""
        raw = OssLocation(record.bucket, record.key)
        decoded_key = unquote_plus(record.key)
        if decoded_key == record.key:
            return raw
        try:
            self.oss.head(raw)
        except SourceError as error:
            if error.code != "NoSuchKey":
                raise
        else:
            log.info("event key used as is", extra={"key": record.key, "key_form": "raw"})
            return raw
        decoded = OssLocation(record.bucket, decoded_key)
        self.oss.head(decoded)  # NoSuchKey here too: the object is gone, whatever the form
        log.info(
            "event key was URL-encoded: decoded",
            extra={"key": decoded_key, "event_key": record.key, "key_form": "url-decoded"},
        )
        return decoded

    def _continue(self, job: JobRecord) -> None:
        """A repeated event of a job planned already: an earlier ingest may have died between its plan and
        the start (``ready``: start it) or before fanning out (``running``: fan out again; senders claim)."""
        if job.status is JobStatus.ready:
            start_job(self.store, self.dispatch, job.job_id, now=time.time())
        elif job.status is JobStatus.running:
            self.dispatch.fan_out(job.job_id)

    def _options(self, location: OssLocation) -> tuple[JobOptions, IntakeOptions]:
        meta = self.oss.head(location)["meta"]
        layers: list[tuple[str, Mapping[str, Any]]] = [(f"{location.url} metadata (x-oss-meta-*)", meta)]
        sidecar = OssLocation(location.bucket, sidecar_key(location.key))
        try:
            with self.oss.open(sidecar) as stream:
                raw = stream.read()
        except SourceError as error:
            if error.code != "NoSuchKey":
                raise
        else:
            try:
                values = json.loads(raw)
            except ValueError as error:
                raise OptionsError(
                    f"{sidecar.url}: not JSON ({error}); it must be an object such as "
                    '{"ChannelType": "whatsapp", "TemplateCode": "..."}'
                ) from None
            if not isinstance(values, dict):
                raise OptionsError(f"{sidecar.url}: must be a JSON object of options")
            layers.append((sidecar.url, values))
        layers.append(("the function's CHATAPP_DEFAULT_* environment", self.settings.defaults))
        return resolve_options(layers)

    def _failed(self, location: OssLocation, job_id: str, etag: str, error: Exception) -> IngestResult:
        reason = str(error)
        fingerprint = etag if ":" in etag else f"etag:{etag}"
        job = JobRecord(
            job_id=job_id,
            source=location.url,
            options={},
            intake={},
            content_sha256=fingerprint,
            status=JobStatus.failed,
            reason=reason,
        )
        if not self.store.create_job(
            job
        ):  # a job planning (the same file fails the same way), never a planned one
            self.store.update_job(job_id, expect=[JobStatus.planning], status=JobStatus.failed, reason=reason)
        what = "options" if isinstance(error, OptionsError) else "file"
        fix = {
            "options": "fix the object's x-oss-meta-* metadata, the sidecar JSON or the function's "
            "CHATAPP_DEFAULT_* settings, then upload the CSV again",
            "file": "fix the CSV and upload it again",
        }[what]
        body = {
            "job_id": job_id,
            "source": location.url,
            "status": "failed",
            "problem": what,
            "error": reason,
            "fix": fix,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        target = OssLocation(
            location.bucket, report_base(self.settings, location.key, job_id) + ".error.json"
        )
        self.oss.put(target, json.dumps(body, indent=2).encode(), content_type="application/json")
        log.warning("job refused", extra={"job_id": job_id, "error": reason, "report": target.url})
        return IngestResult(location.key, job_id, "failed", reason)
