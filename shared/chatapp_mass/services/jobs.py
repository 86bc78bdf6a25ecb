"""The jobs of the serverless path, shared by the ingest and sender functions: their settings
(:class:`FunctionSettings`, from the environment), the options of an OSS job resolved layer by layer, the
objects a job writes (report, summary, error), the fan-out to senders (:class:`Dispatch`), the job
lifecycle (start, pause, resume, cancel, reopen) and finalize. The functions themselves: :mod:`.ingest`
and :mod:`.sender`."""

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

from chatapp_mass.adapters.cams import params_in_from_env
from chatapp_mass.adapters.fc import Invoker
from chatapp_mass.adapters.oss import OssClient, OssLocation
from chatapp_mass.core.errors import ChatAppMassError, OptionsError
from chatapp_mass.core.messaging import MessagingLimits, parse_limits
from chatapp_mass.core.options import IntakeOptions, JobOptions, parse_intake_options, parse_job_options
from chatapp_mass.core.planning import API_MAX_RECIPIENTS, BODY_BUDGET, request_budget
from chatapp_mass.runtime import env, faults
from chatapp_mass.services.canary import override
from chatapp_mass.services.plan import restart_error_count
from chatapp_mass.services.ratelimit import DEFAULT_MARGIN
from chatapp_mass.services.reconcile import Reconciler, ReconcileResult, unreconcilable
from chatapp_mass.services.report import delivery_fingerprint, job_summary, report_rows, write_report
from chatapp_mass.services.retention import record_summary
from chatapp_mass.services.streaming import cancel_batches, plan_unfinished
from chatapp_mass.store.interface import IN_FLIGHT, OPEN_STATUSES, BatchStatus, JobRecord, JobStatus, Store
from chatapp_mass.store.retention import DEFAULT_RETENTION_DAYS, retention_days

log = logging.getLogger(__name__)

CLAIM_TTL = 90.0  # seconds a sender's claim on a batch lasts (see Sender.handle)


class EventError(ChatAppMassError):
    """The invocation's event is not what this function takes."""


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
    rate_margin: float = DEFAULT_MARGIN  # the least margin the limiter adds to its 1 s window (ratemargin)
    reconcile_after: float = (
        60.0  # a job finished with uncertain batches is looked up this much later (0: off)
    )
    # WhatsApp's messaging limit per From (CHATAPP_MESSAGING_LIMITS; default: unlimited)
    messaging_limits: MessagingLimits = field(default_factory=MessagingLimits)
    # days a finished job's rows are kept (CHATAPP_RETENTION_DAYS; 0: forever): the timer's daily purge
    retention_days: int = DEFAULT_RETENTION_DAYS

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
            messaging_limits=messaging_limits_from(environ),
            retention_days=retention_days(environ),
        )


def messaging_limits_from(environ: Mapping[str, str] = os.environ) -> MessagingLimits:
    """``CHATAPP_MESSAGING_LIMITS`` (``core.messaging``); OptionsError naming it and what to write."""
    return parse_limits(environ.get(env.CHATAPP_MESSAGING_LIMITS, ""), where=env.CHATAPP_MESSAGING_LIMITS)


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


# The endings of the uploads ingest reads (s.yaml has an OSS trigger for each): a CSV or an Excel workbook,
# either recognised by content once read.
RECIPIENT_FILE_SUFFIXES = (".csv", ".xlsx")


def _stem(key: str) -> str:
    """The key without its .csv / .xlsx ending (as it is without one)."""
    for suffix in RECIPIENT_FILE_SUFFIXES:
        if key.lower().endswith(suffix):
            return key[: -len(suffix)]
    return key


def sidecar_key(key: str) -> str:
    """``incoming/march.csv`` (or ``.xlsx``) -> ``incoming/march.json``; other keys get ``.json`` added."""
    return _stem(key) + ".json"


def oss_job_id(bucket: str, key: str, etag: str, upload_id: str) -> str:
    return hashlib.sha256(f"oss\n{bucket}\n{key}\n{etag}\n{upload_id}".encode()).hexdigest()[:24]


def report_base(settings: FunctionSettings, key: str, job_id: str) -> str:
    """``incoming/2026/march.csv`` -> ``reports/2026/march.<job>`` (+ ``.report.csv``, ``.summary.json``...)."""
    relative = key[len(settings.incoming_prefix) :] if key.startswith(settings.incoming_prefix) else key
    stem = _stem(relative)
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
        and store.update_job(job_id, expect=[job.status], status=JobStatus.running, reason="")
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
    # a canary that paused the job holds it back no more: the operator decided (services.canary.override)
    canary: dict[str, Any] = {"canary": override(job.canary)} if job.canary else {}
    if store.update_job(job_id, expect=[JobStatus.paused], status=JobStatus.ready, reason="", **canary):
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


def write_report_object(
    store: Store, oss: OssClient, settings: FunctionSettings, job: JobRecord
) -> dict[str, int]:
    """Write the job's report object (``<base>.report.csv``); returns its rows per status.

    Its metadata ``delivery`` is the job's receipt fingerprint read *before* the rows
    (``report.delivery_fingerprint``): a reader finding the same fingerprint later knows no receipt changed a
    state since, so the object says all the receipts say (receipts come for days after a job finished)."""
    base = report_location(settings, job)
    fingerprint = delivery_fingerprint(store, job)
    with tempfile.TemporaryFile("w+b") as spool:  # a 1M-row report does not sit in memory
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        counts = write_report(report_rows(store, job), text)
        text.flush()
        spool.seek(0)
        oss.put(OssLocation(base.bucket, base.key + ".report.csv"), spool, metadata={"delivery": fingerprint})
        text.detach()
    return counts


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
    if plan_unfinished(job):  # batches may still come, and the totals are not final (see .streaming)
        return job.status.value
    # A stopped or cancelled job is final only once no batch is in flight any more: a call another instance
    # has out is recorded first, so the report says what happened to it.
    waiting_for = OPEN_STATUSES if status is JobStatus.completed else IN_FLIGHT
    if waiting_for and store.list_batches(job_id, waiting_for):
        return job.status.value  # "finished" never shows while a batch is unresolved
    base = report_location(settings, job)
    counts = write_report_object(store, oss, settings, job)
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
    finished = store.update_job(job_id, expect=[JobStatus.ready, JobStatus.running], status=status)
    if finished:
        log.info(
            "job finished", extra={"job_id": job_id, "status": status.value, "report": summary["report"]}
        )
        if on_finished is not None:
            on_finished(job, summary)
    else:  # finished already (a repeated finalizer, a report written again): same status, a fresh updated_at
        finished = store.update_job(job_id, expect=[status], status=status)
    if finished:  # its summary on the record, outliving the rows (services.retention); the latest wins
        record_summary(store, job, now=time.time(), extra={"report": summary["report"]})
    return status.value
