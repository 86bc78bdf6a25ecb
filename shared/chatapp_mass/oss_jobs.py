"""Jobs started by an OSS upload, and the sender's share of them: the core of the ingest and sender functions.

**ingest** (OSS trigger, invoked asynchronously by FC). For each record of the FC3 OSS event whose key is under
``CHATAPP_INCOMING_PREFIX`` (default ``incoming/``) and ends ``.csv``:

- **Job identity** = bucket + key + ETag + the upload's request id (``responseElements.requestId``, else
  ``eventTime``). A repeated event of one upload is the same job: nothing new is created or sent (a job not
  yet finished is fanned out again, which is harmless: senders claim). A new upload of the same key is a new
  job, even with the same content (recurring sends are legitimate) — the ETag alone cannot tell those apart,
  since it is the content's MD5, hence the request id.
- **Options**, field by field, first found wins: the object's user metadata (``x-oss-meta-channel-type``,
  ``x-oss-meta-template-code``, ... — the CLI's flag names), then a **sidecar JSON** beside the CSV (same key
  with ``.json`` for ``.csv``; API names such as ``ChannelType`` or the flag names; upload it *before* the
  CSV), then the function's defaults (``CHATAPP_DEFAULT_CHANNEL_TYPE``, ``CHATAPP_DEFAULT_TEMPLATE_CODE``...).
  Keys: every job option of ``chatapp-mass send`` plus ``default-country``, ``allow-empty-params`` and
  ``delimiter``. An unknown key is an error (a typo must not silently send with a default).
- **The event's key** is used as is; if OSS has no such object and the key changes when URL-decoded
  (``unquote_plus``), the decoded key is used — whether real OSS events URL-encode ``oss.object.key`` is
  unverified (ALIBABA-FACTS §2), so both forms are accepted and the log says which one was used.
- Plans the job (stream, validate, dedup, batches) with conditional writes: an ingest that crashed and is
  re-delivered resumes (a half-planned job is planned again; a planned one is not touched).
- Fans out (:class:`Dispatch`) with asynchronous sender invocations carrying a reference, never recipients.
- **Errors** (bad options, unreadable CSV, a missing sidecar that is not JSON): nobody waits on an OSS job,
  so the job row gets status ``failed`` and the reason, and ``reports/<name>.<job>.error.json`` says what was
  wrong and what to do. The invocation itself succeeds (a retry would fail the same way).

**sender** (async). The event is ``{"job_id": J, "seq": N}`` (one batch) or ``{"job_id": J, "drain": true}``
(pending batches until none is left or the invocation's time nearly runs out). Claims, the account-wide limiter,
the call and its classification are the CLI's (:class:`~chatapp_mass.engine.JobRunner`). Then it *settles*:
batches still pending (time ran out) → the sender is invoked again now; batches another instance holds → it is
invoked again when that claim expires (a crashed holder is then released: ``claimed`` back to ``pending``,
``sending`` to ``uncertain``); none open → **finalize**: the report CSV and a summary JSON go to
``reports/``, then the job becomes ``completed`` (conditional write; several finalizers write the same report).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatapp_mass import env, faults
from chatapp_mass.cams import CamsClient, params_in_from_env
from chatapp_mass.engine import (
    DispatchSettings,
    JobRunner,
    PlanSettings,
    cancel_batches,
    plan_job,
    restart_error_count,
)
from chatapp_mass.errors import ChatAppMassError, CsvFileError, OptionsError
from chatapp_mass.fc_invoke import Invoker
from chatapp_mass.options import IntakeOptions, JobOptions, parse_intake_options, parse_job_options
from chatapp_mass.oss_source import OssClient, OssLocation, SourceError
from chatapp_mass.parts import part_batches
from chatapp_mass.planning import API_MAX_RECIPIENTS, BODY_BUDGET, request_budget
from chatapp_mass.ratelimit import DEFAULT_MARGIN
from chatapp_mass.reconcile import Reconciler, ReconcileResult, unreconcilable
from chatapp_mass.report import job_summary, write_report
from chatapp_mass.store import IN_FLIGHT, OPEN_STATUSES, BatchStatus, JobRecord, JobStatus, Store

log = logging.getLogger("chatapp_mass.oss_jobs")

CLAIM_TTL = 90.0  # seconds a sender's claim on a batch lasts (see Sender.handle)


class EventError(ChatAppMassError):
    """The invocation's event is not what this function takes."""


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


def parse_oss_event(raw: bytes | str) -> list[OssEventRecord]:
    try:
        return OssEvent.model_validate_json(raw).events
    except ValidationError as error:
        raise EventError(
            f"not an FC3 OSS trigger event ({error.error_count()} problems: "
            f"{error.errors()[0]['loc']}: {error.errors()[0]['msg']})"
        ) from None


def _plan_reference(raw: bytes | str) -> str | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get("plan_job"), str) and value["plan_job"]:
        return str(value["plan_job"])
    return None


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


# --- settings ---------------------------------------------------------------------------------------------
def env_int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole-number setting from the environment, ``default`` when unset; OptionsError naming it."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise OptionsError(f"{name}={text!r}: a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise OptionsError(f"{name}={value}: from {low} to {high}")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """A duration in seconds from the environment, ``default`` when unset; OptionsError naming it."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise OptionsError(f"{name}={text!r}: seconds, from {low:g} to {high:g}") from None
    if not low <= value <= high:
        raise OptionsError(f"{name}={value:g}: from {low:g} to {high:g} seconds")
    return value


def _share(environ: Mapping[str, str], name: str) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise OptionsError(f"{name}={text!r}: a share such as 0.2 or 20% (0 = off)") from None
    if not 0 <= value < 1:
        raise OptionsError(f"{name}={text!r}: from 0 (off) to below 1")
    return value


@dataclass(frozen=True)
class FunctionSettings:
    bucket: str = "chatapp-mass"
    incoming_prefix: str = "incoming/"
    reports_prefix: str = "reports/"
    qps: int = 10
    sender_function: str = "chatapp-mass-sender"
    dispatch: str = "drain"  # drain: a few invocations each send many batches | per-batch: one per batch
    senders: int = 1  # drain mode: sender invocations per job
    sender_concurrency: int = 0  # calls in flight per invocation (0: enough for the rate at 3 s latency)
    batch_size: int = API_MAX_RECIPIENTS
    # bytes of encoded SenderList per call: where CHATAPP_CAMS_PARAMS_IN says the sender puts it (planning)
    max_request_bytes: int = BODY_BUDGET
    defaults: dict[str, str] = field(default_factory=dict)  # option defaults: normalized key -> value
    claim_ttl: float = CLAIM_TTL  # seconds a sender's claim on a batch lasts (see Sender.handle)
    sweep_idle: float = 120.0  # the timer starts a sender for a running job none has touched this long
    error_threshold: float = (
        0.0  # pause a job when more than this share of the recipients tried failed (0: off)
    )
    rate_margin: float = DEFAULT_MARGIN  # seconds the limiter adds to its 1 s window (ratelimit)
    reconcile_after: float = (
        60.0  # a job finished with uncertain batches is looked up this much later (0: off)
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> FunctionSettings:
        dispatch = environ.get(env.CHATAPP_DISPATCH, "drain").strip() or "drain"
        if dispatch not in ("drain", "per-batch"):
            raise OptionsError(f"{env.CHATAPP_DISPATCH}={dispatch!r}: drain or per-batch")
        defaults = {}
        for name, value in environ.items():
            if name.startswith(env.CHATAPP_DEFAULT_PREFIX) and value.strip():
                defaults[_norm(name[len(env.CHATAPP_DEFAULT_PREFIX) :])] = value.strip()
        return cls(
            bucket=environ.get(env.CHATAPP_BUCKET, "chatapp-mass"),
            incoming_prefix=environ.get(env.CHATAPP_INCOMING_PREFIX, "incoming/"),
            reports_prefix=environ.get(env.CHATAPP_REPORTS_PREFIX, "reports/"),
            qps=env_int(environ, env.CHATAPP_QPS, 10, 1, 1000),
            sender_function=environ.get(env.CHATAPP_SENDER_FUNCTION, "chatapp-mass-sender"),
            dispatch=dispatch,
            senders=env_int(environ, env.CHATAPP_SENDERS, 1, 1, 100),
            sender_concurrency=env_int(environ, env.CHATAPP_SENDER_CONCURRENCY, 0, 0, 64),
            batch_size=env_int(environ, env.CHATAPP_BATCH_SIZE, API_MAX_RECIPIENTS, 1, API_MAX_RECIPIENTS),
            max_request_bytes=request_budget(params_in_from_env(environ)),
            defaults=defaults,
            claim_ttl=float(env_int(environ, env.CHATAPP_CLAIM_TTL, int(CLAIM_TTL), 5, 3600)),
            sweep_idle=float(env_int(environ, env.CHATAPP_SWEEP_IDLE, 120, 1, 86400)),
            error_threshold=_share(environ, env.CHATAPP_ERROR_THRESHOLD),
            rate_margin=_seconds(environ, env.CHATAPP_RATE_MARGIN, DEFAULT_MARGIN, 0.0, 1.0),
            reconcile_after=float(env_int(environ, env.CHATAPP_RECONCILE_AFTER, 60, 0, 86400)),
        )


# --- options from metadata, sidecar, defaults --------------------------------------------------------------
def _norm(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


_JOB_KEYS = {_norm(info.alias or name): info.alias or name for name, info in JobOptions.model_fields.items()}
_JOB_KEYS.update({_norm(name): info.alias or name for name, info in JobOptions.model_fields.items()})
_JOB_KEYS[_norm("from")] = "From"
_INTAKE_KEYS = {_norm(name): name for name in IntakeOptions.model_fields}
_INTAKE_KEYS[_norm("country")] = "default_country"  # CHATAPP_DEFAULT_COUNTRY
_INT_OPTIONS = {"FallBackDuration", "Ttl"}
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_DELIMITERS = {",": ",", "comma": ",", ";": ";", "semicolon": ";", "tab": "\t", "\\t": "\t", "\t": "\t"}


def resolve_options(layers: list[tuple[str, Mapping[str, Any]]]) -> tuple[JobOptions, IntakeOptions]:
    """``layers`` = [(where, {key: value})], first wins per field. Raises OptionsError naming where."""
    job: dict[str, Any] = {}
    intake: dict[str, Any] = {}
    where_of: dict[str, str] = {}
    for where, values in layers:
        for key, value in values.items():
            norm = _norm(str(key))
            if norm in _JOB_KEYS:
                target, name = job, _JOB_KEYS[norm]
            elif norm in _INTAKE_KEYS:
                target, name = intake, _INTAKE_KEYS[norm]
            else:
                known = sorted({*_JOB_KEYS.values(), *_INTAKE_KEYS.values()})
                raise OptionsError(f"{where}: unknown option {key!r} (known: {', '.join(known)})")
            if name in target:
                continue
            target[name] = _coerce(where, key, name, value)
            where_of[name] = where
    try:
        options = parse_job_options(job)
    except OptionsError as error:
        sources = ", ".join(f"{k} from {v}" for k, v in where_of.items() if k in job)
        raise OptionsError(f"{error} (options given: {sources or 'none'})") from None
    return options, parse_intake_options(intake)


def _coerce(where: str, key: str, name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if name in _INT_OPTIONS:
        try:
            return int(text)
        except ValueError:
            raise OptionsError(f"{where}: {key}={text!r} is not a whole number") from None
    if name == "allow_empty_params":
        if text.lower() not in _BOOL_WORDS:
            raise OptionsError(f"{where}: {key}={text!r}: use true or false")
        return _BOOL_WORDS[text.lower()]
    if name == "delimiter":
        if text.lower() not in _DELIMITERS and value not in _DELIMITERS:
            raise OptionsError(f"{where}: {key}={value!r}: use comma, semicolon or tab")
        return _DELIMITERS.get(text.lower(), _DELIMITERS.get(value))
    return text


def _is_incoming_csv(key: str, settings: FunctionSettings) -> bool:
    return key.startswith(settings.incoming_prefix) and key.lower().endswith(".csv")


def sidecar_key(key: str) -> str:
    return key[: -len(".csv")] + ".json" if key.lower().endswith(".csv") else key + ".json"


def oss_job_id(bucket: str, key: str, etag: str, upload_id: str) -> str:
    return hashlib.sha256(f"oss\n{bucket}\n{key}\n{etag}\n{upload_id}".encode()).hexdigest()[:24]


def report_base(settings: FunctionSettings, key: str, job_id: str) -> str:
    """``incoming/2026/march.csv`` -> ``reports/2026/march.<job>`` (+ ``.report.csv``, ``.summary.json``...)."""
    relative = key[len(settings.incoming_prefix) :] if key.startswith(settings.incoming_prefix) else key
    stem = relative[: -len(".csv")] if relative.lower().endswith(".csv") else relative
    return f"{settings.reports_prefix}{stem}.{job_id[:12]}"


def report_location(settings: FunctionSettings, job: JobRecord) -> OssLocation:
    """Where a job's report objects go (without the ``.report.csv`` / ``.summary.json`` ending): beside its
    OSS source for uploads, ``reports/api/<job>`` in the function's bucket for HTTP-submitted jobs."""
    if job.source.startswith("oss://"):
        source = OssLocation.parse(job.source)
        return OssLocation(source.bucket, report_base(settings, source.key, job.job_id))
    return OssLocation(settings.bucket, f"{settings.reports_prefix}api/{job.job_id}")


def start_job(store: Store, dispatch: Dispatch, job_id: str, *, now: float) -> str:
    """A planned job (``ready``) starts now, or waits for the timer (``scheduled``) if its time is later.
    Conditional: of several starters (a repeated event, two timer runs) one moves it. Returns the status."""
    job = store.get_job(job_id)
    if job is None:
        return "unknown"
    if job.status is JobStatus.ready and job.scheduled_at > now:
        store.update_job(job_id, expect=[JobStatus.ready], status=JobStatus.scheduled)
        return JobStatus.scheduled.value
    if (
        job.status in (JobStatus.ready, JobStatus.scheduled)
        and job.scheduled_at <= now
        and store.update_job(job_id, expect=[job.status], status=JobStatus.running)
    ):
        dispatch.fan_out(job_id)
        return JobStatus.running.value
    current = store.get_job(job_id)
    return current.status.value if current else "unknown"


FINISHED = (JobStatus.completed, JobStatus.stopped, JobStatus.stalled, JobStatus.interrupted)


def reopen_job(store: Store, job_id: str, *, reason: str) -> None:
    """A finished job is to run again (an operator's resend): ``ready``, before its batches reopen (see
    ``reconcile.resend_uncertain``); the timer starts a ``ready`` job left so by a crash."""
    store.update_job(job_id, expect=FINISHED, status=JobStatus.ready, reason=reason)


def continue_job(store: Store, dispatch: Dispatch, job_id: str) -> str:
    """After a resend reopened batches: a ``ready`` job starts, a running one gets senders for them."""
    job = store.get_job(job_id)
    if job is not None and job.status is JobStatus.ready:
        return start_job(store, dispatch, job_id, now=time.time())
    if job is not None and job.status is JobStatus.running:
        dispatch.fan_out(job_id)
    return job.status.value if job else "unknown"


def pause_job(store: Store, job_id: str, *, reason: str = "paused by an operator") -> JobRecord | None:
    """Stop dispatching a job, resumably: senders stop taking batches when they next look (within ~2 s)
    and hand claimed ones back; calls in flight finish and are recorded. Returns the job (None: unknown)."""
    store.update_job(
        job_id,
        expect=[JobStatus.running, JobStatus.ready, JobStatus.scheduled],
        status=JobStatus.paused,
        reason=reason,
    )
    job = store.get_job(job_id)
    if job is not None and job.status is JobStatus.paused:
        log.warning("job paused", extra={"job_id": job_id, "reason": job.reason})
    return job


def resume_job(store: Store, dispatch: Dispatch, job_id: str) -> JobRecord | None:
    """A paused job runs again (a scheduled one whose time has not come waits for it): one conditional
    write, then senders are started."""
    job = store.get_job(job_id)
    if job is None or job.status is not JobStatus.paused:
        return job
    if store.update_job(job_id, expect=[JobStatus.paused], status=JobStatus.ready, reason=""):
        restart_error_count(store, job_id)
        log.warning("job resumed", extra={"job_id": job_id, "operator_decision": True})
        start_job(store, dispatch, job_id, now=time.time())
    return store.get_job(job_id)


def cancel_job(store: Store, job_id: str, *, reason: str = "cancelled by an operator") -> JobRecord | None:
    """Stop dispatching a job: its status becomes ``cancelled`` (senders stop taking batches when they next
    look), and every batch not yet on the wire (``pending`` or ``claimed``) becomes ``cancelled`` — one
    conditional write each, so a batch a sender is just marking ``sending`` stays its, and is resolved by it.
    Returns the job (None if unknown); a job already finished is left as it is."""
    job = store.get_job(job_id)
    if job is None:
        return None
    open_states = [
        JobStatus.planning,
        JobStatus.ready,
        JobStatus.scheduled,
        JobStatus.running,
        JobStatus.interrupted,
        JobStatus.stalled,
        JobStatus.paused,
    ]
    if job.status in open_states:
        store.update_job(job_id, expect=open_states, status=JobStatus.cancelled, reason=reason)
    current = store.get_job(job_id)
    if current is not None and current.status is JobStatus.cancelled:
        cancel_batches(store, job_id)
        log.warning("job cancelled", extra={"job_id": job_id, "reason": reason})
    return current


# --- the services -----------------------------------------------------------------------------------------
class Dispatch:
    """How a job's batches reach sender invocations (see the module docs and the bench for the choice)."""

    def __init__(self, store: Store, invoker: Invoker, settings: FunctionSettings) -> None:
        self.store, self.invoker, self.settings = store, invoker, settings

    def fan_out(self, job_id: str) -> int:
        """Invoke senders for the job's pending batches; returns the number of invocations."""
        pending = self.store.list_batches(job_id, [BatchStatus.pending])
        if not pending:
            return 0
        if self.settings.dispatch == "per-batch":
            refs = [{"job_id": job_id, "seq": b.seq} for b in pending]
        else:
            refs = [{"job_id": job_id, "drain": True}] * min(self.settings.senders, len(pending))
        for ref in refs:
            self.invoker.invoke_async(self.settings.sender_function, ref)
        log.info(
            "fanned out",
            extra={
                "job_id": job_id,
                "invocations": len(refs),
                "batches": len(pending),
                "dispatch": self.settings.dispatch,
            },
        )
        return len(refs)

    def reconcile_later(self, job_id: str, delay: float | None = None) -> None:
        """A sender looks the job's uncertain batches up in ``delay`` s (default ``reconcile_after``)."""
        delay = self.settings.reconcile_after if delay is None else delay
        if self.settings.reconcile_after > 0:
            self.invoker.invoke_async(
                self.settings.sender_function, {"job_id": job_id, "reconcile": True}, delay=int(max(0, delay))
            )

    def after_finish(self, job: JobRecord, summary: dict[str, Any]) -> None:
        """``finalize``'s hook: a job that just finished with uncertain batches is reconciled later,
        when it can be (WhatsApp/Viber, a CustSpaceId)."""
        if summary["uncertain"] and not unreconcilable(JobOptions.model_validate(job.options)):
            self.reconcile_later(job.job_id)

    def later(self, job_id: str, delay: float, seq: int | None = None) -> None:
        ref: dict[str, Any] = (
            {"job_id": job_id, "seq": seq} if seq is not None else {"job_id": job_id, "drain": True}
        )
        self.invoker.invoke_async(self.settings.sender_function, ref, delay=int(max(0, delay)) + 1)


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
        if job.status is not JobStatus.planning and not (
            job.status is JobStatus.cancelled and job.plan_owner
        ):
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
            )
        except SourceError as error:
            if not error.permanent:
                raise
            return self._failed(location, job_id, job.content_sha256, error)
        except (OptionsError, CsvFileError) as error:
            return self._failed(location, job_id, job.content_sha256, error)
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
            _is_incoming_csv(key, settings) or _is_incoming_csv(unquote_plus(key), settings)
        ):
            log.info("object ignored", extra={"key": key, "event": record.event_name})
            return IngestResult(key, message=f"not an upload under {settings.incoming_prefix} ending .csv")
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
        if existing is not None and existing.status is not JobStatus.planning:
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
            )
        except SourceError as error:
            if not error.permanent:
                raise  # OSS busy or unreachable: FC delivers the event again
            return self._failed(location, job_id, record.etag, error)
        except (OptionsError, CsvFileError) as error:
            return self._failed(location, job_id, record.etag, error)
        faults.checkpoint("ingest.planned")
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
                "batches": job.batches,
            },
        )
        return IngestResult(key, job_id, "planned", f"{job.valid} valid recipients in {job.batches} batches")

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


def reconcile_job(
    store: Store,
    oss: OssClient,
    settings: FunctionSettings,
    reconciler: Reconciler,
    job: JobRecord,
    *,
    deadline: float,
    cust_space_id: str | None = None,
) -> ReconcileResult:
    """Look the job's uncertain batches up (``reconcile``); if some were found in a job that finished, its
    report object (written when it finished) is written again. Nothing is sent."""
    result = reconciler.reconcile(job, cust_space_id=cust_space_id, deadline=deadline)
    if result.found and job.status in (JobStatus.completed, JobStatus.stopped, JobStatus.cancelled):
        finalize(store, oss, settings, job.job_id, status=job.status)
    return result


def finalize(
    store: Store,
    oss: OssClient,
    settings: FunctionSettings,
    job_id: str,
    status: JobStatus = JobStatus.completed,
    on_finished: Callable[[JobRecord, dict[str, Any]], None] | None = None,
) -> str:
    """Write the report and summary to OSS, then mark the job (conditional). Idempotent: the objects are
    deterministic, so two finalizers write the same bytes; only one changes the status, and only that one
    calls ``on_finished`` with the job and its summary."""
    job = store.get_job(job_id)
    if job is None:
        return "unknown"
    # A stopped or cancelled job is final only once no batch is in flight any more: a call another instance
    # has out is recorded first, so the report says what happened to it.
    waiting_for = OPEN_STATUSES if status is JobStatus.completed else IN_FLIGHT
    if waiting_for and store.list_batches(job_id, waiting_for):
        return job.status.value  # "finished" never shows while a batch is unresolved
    base = report_location(settings, job)
    with tempfile.TemporaryFile("w+b") as spool:  # a 1M-row report does not sit in memory
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        counts = write_report(store.report_rows(job_id), text)
        text.flush()
        spool.seek(0)
        oss.put(OssLocation(base.bucket, base.key + ".report.csv"), spool)
        text.detach()
    summary = job_summary(store, job)
    summary.update(
        {
            "status": status.value,
            "report": f"oss://{base.bucket}/{base.key}.report.csv",
            "report_rows": counts,
        }
    )
    oss.put(
        OssLocation(base.bucket, base.key + ".summary.json"),
        json.dumps(summary, indent=2).encode(),
        content_type="application/json",
    )
    faults.checkpoint("sender.report_written")
    if store.update_job(job_id, expect=[JobStatus.ready, JobStatus.running], status=status):
        log.info(
            "job finished", extra={"job_id": job_id, "status": status.value, "report": summary["report"]}
        )
        if on_finished is not None:
            on_finished(job, summary)
    else:  # finished already (a repeated finalizer, a report written again): same status, a fresh updated_at
        store.update_job(job_id, expect=[status], status=status)
    return status.value
