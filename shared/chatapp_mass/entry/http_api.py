"""The HTTP API (FC3 HTTP trigger): submit, watch, fetch and cancel jobs. The ``api`` function's core.

Longer than 500 lines: the routes of one HTTP API with their pydantic request and reply models (the edge) and
the auth check; every route is a few lines over the services.

Routes (JSON unless said; every refusal is ``{"error": {"code", "message", "field"}}`` with a 4xx status, and
the same body with a 502/503 is a fault on the server's side, retryable as it is: see the README):

- ``POST /jobs`` — a job from one of:
  * JSON ``{"options": {...}, "recipients": [{"To": ..., "TemplateParams": {...}, "Payload": [...],
    "FlowAction": {...}, "ProductAction": {...}}, ...]}`` — planned at once (the body is size-limited);
  * JSON ``{"options": {...}, "source": "oss://BUCKET/KEY" | "KEY"}`` — a CSV already in OSS, planned by
    the ingest function (``{"plan_job": JOB}``), so a big file is not read while the client waits;
  * a CSV body (``Content-Type: text/csv``) or an Excel workbook (``application/vnd.openxmlformats-
    officedocument.spreadsheetml.sheet``; its first sheet, or ``?sheet=NAME``) with the options in the query
    (``?channelType=...``).
  Options take the API's names (``ChannelType``) or the CLI's (``channel-type``), then the function's
  ``CHATAPP_DEFAULT_*``. ``scheduledAt`` (body or query): ISO 8601 with an offset, or a local time plus
  ``timeZone`` (IANA, e.g. ``Asia/Singapore``); the timer starts the job then.
  Answers **202** ``{"job_id", "status", "status_url", "report_url"}``. ``Idempotency-Key`` makes a repeat
  return the same job (**200**, ``"repeated": true``); without one, an identical request within
  ``CHATAPP_API_REPEAT_WINDOW`` seconds (default 600), keyed or not, is refused **409** ``probable_repeat``
  unless ``force=true`` (query): one conditional write in the store (``Store.claim_request``), so of identical
  requests arriving together exactly one makes a job. ``?preview=true`` (any of the three bodies) answers
  **200** with the preview instead (:class:`~chatapp_mass.services.preview.Preview`: counts, refused rows
  by reason with up to 3 examples, TemplateParams keys, the first valid recipient's request) and creates no
  job: nothing is stored or sent (an OSS source is read once, while the client waits).
  ``preview`` and ``force`` take true/false (1/0, yes/no); any other value is **400** naming the parameter
  (``preview=maybe`` must not send).
- ``GET /openapi.json`` — this API's OpenAPI 3.1 document (:mod:`chatapp_mass.entry.openapi`, served by
  :func:`chatapp_mass.entry.console.serve`; no token).
- ``GET /jobs`` — jobs, newest first, a page at a time: ``?limit=`` (1 to 200, default 50) and ``?cursor=``
  (the ``next_cursor`` of the previous page; opaque); answers ``{"jobs": [...], "next_cursor": "..." | null}``.
- ``GET /jobs/{id}`` — state and counts in recipients (sent, failed, uncertain, pending, invalid, duplicate,
  cancelled, suppressed), rate and ETA.
- ``GET /jobs/{id}/report`` — the per-recipient report CSV: streamed (``text/csv``) while the job runs and when
  its report object in OSS is at most ``CHATAPP_REPORT_INLINE_MAX`` bytes (default 1 MiB); a larger one is
  answered **302** to a V4-presigned OSS GET URL of that object, valid 300 s (an FC response body is limited,
  and OSS serves big objects better than a function does). A job whose rows are gone (retention:
  ``CHATAPP_RETENTION_DAYS``) answers **410** with when they went and the job's kept ``summary``.
- ``POST /jobs/{id}/cancel`` — stops dispatch between batches; batches not yet on the wire are reported
  ``cancelled``; calls in flight finish and are recorded.
- ``POST /jobs/{id}/pause`` / ``POST /jobs/{id}/resume`` — stop dispatch resumably (batches wait as
  ``pending``), and go on. The error threshold (``CHATAPP_ERROR_THRESHOLD``) pauses a job by itself and
  says why in ``reason``.
- ``POST /jobs/{id}/reconcile`` — look the job's ``uncertain`` batches up in ListChatappMessage (WhatsApp
  and Viber; ``reconcile``): recipients CAMS has become ``sent``. Body (optional) ``{"cust_space_id"}``. It
  works for up to ``CHATAPP_API_RECONCILE_SECONDS`` (default 60) and says how many batches are ``left``:
  call again for those. Nothing is sent.
- ``GET /suppressions``, ``POST /suppressions``, ``DELETE /suppressions`` — the suppression list of a space
  (numbers never sent to again): :mod:`chatapp_mass.entry.http_suppressions`.
- ``POST /receipts?key=K`` — ChatAppStatus receipts, CAMS's HTTP push: a JSON array of reports (issue 17;
  :mod:`chatapp_mass.core.receipts` has the wire shapes). ``POST /receipts/mns?key=K``: the same reports as an
  MNS batch (``[{"MessageId", "MessageBody"}]``, one report per message). ``POST /inbound?key=K``:
  ChatAppInbound messages (a STOP word opts its sender out). No bearer token (CAMS signs nothing, the docs say
  nothing of auth): the URL's ``key`` is compared in constant time with ``CHATAPP_RECEIPT_KEY`` (missing or
  wrong: **401**; the variable unset: **503** naming it). A body that is not a JSON array: **400**; bad items
  are skipped and counted. Answers **200** ``{"code": 0, "msg": "success", "accepted", "skipped"}`` (ASSUMPTION:
  the SMS receipt ack, ALIBABA-FACTS §6) after one bulk write (CAMS waits 3 s at most).
- ``GET /receipts/unmatched?limit=N`` — receipts whose TaskId no job registered, kept aside, oldest first.
- ``POST /jobs/{id}/resend-uncertain`` — the operator's decision to send again what is still uncertain
  (logged): reconciled first (WhatsApp/Viber), refused **409** ``not_resent`` if that cannot finish, unless
  the body says ``{"reconcile": false}``. The job then runs again.

The api function serves the web console beside these routes (:func:`chatapp_mass.entry.console.serve`: ``/`` and
``/console/...``, and a browser following a link to ``/jobs`` is sent to the console's page of it).

**Authentication.** ``Authorization: Bearer <token>``; the function keeps the tokens' hashes with their scopes
in ``CHATAPP_API_TOKENS`` (``scope:sha256hex`` entries, several at once for rotation;
:mod:`chatapp_mass.core.tokens`). A presented token is hashed and compared with every entry in constant time;
it is never logged, and never taken from a URL (browsers sign in to the console instead). ``read`` may use the
GET routes, ``send`` every route (``JOBS_METHODS``, ``JOB_METHODS``), ``admin`` everything; a smaller scope is
**403** ``insufficient_scope``. No or an unknown token is **401** with ``WWW-Authenticate: Bearer
realm="chatapp-mass"`` (``error="invalid_token"`` when one was given). The plain ``CHATAPP_API_TOKEN``
(deprecated) is one admin token. A token under 32 characters, a malformed entry or an unknown scope is refused
when the settings are read (:meth:`ApiSettings.from_env`; the handler answers 503 naming the variable). With
``CHATAPP_API_AUTH=fc`` the trigger's own ``function`` authentication (FC checks the signature before the
function runs) stands in for a token (admin). No token configured and no FC auth: every request is refused
(503 ``auth_not_configured``): there are no anonymous writes, nor reads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatapp_mass.adapters.cams import CamsClient, params_in_from_env
from chatapp_mass.adapters.fc import Invoker
from chatapp_mass.adapters.oss import OssClient, OssLocation, SourceError
from chatapp_mass.core.canary import CanaryOptions, CanaryState
from chatapp_mass.core.errors import ChatAppMassError, CsvFileError, OptionsError
from chatapp_mass.core.receipts import BodyError, parse_array
from chatapp_mass.core.tokens import (
    Scope,
    TokenEntry,
    check_length,
    match,
    parse_entries,
    plain_token_entry,
)
from chatapp_mass.entry.http_suppressions import SUPPRESSIONS_METHODS
from chatapp_mass.entry.http_suppressions import Refused as SuppressionsRefused
from chatapp_mass.entry.http_suppressions import route as suppressions_route
from chatapp_mass.runtime import env
from chatapp_mass.services.jobs import (
    Dispatch,
    FunctionSettings,
    cancel_job,
    continue_job,
    env_int,
    finalize,
    pause_job,
    reconcile_job,
    reopen_job,
    report_location,
    resolve_options,
    resume_job,
    start_job,
    write_report_object,
)
from chatapp_mass.services.plan import PlanSettings, plan_job
from chatapp_mass.services.receipts import OptHook, ReceiptService, receipts_of
from chatapp_mass.services.reconcile import ReconcileError, Reconciler, resend_uncertain
from chatapp_mass.services.report import (
    delivery_fingerprint,
    job_summary,
    report_rows,
    utc_timestamp,
    write_report,
)
from chatapp_mass.services.retention import gone_message, rows_gone_at, status_view
from chatapp_mass.services.suppress import opt_out_hook
from chatapp_mass.store.interface import IN_FLIGHT, JobKey, JobRecord, JobStatus, Store

if TYPE_CHECKING:
    from chatapp_mass.services.preview import Preview

log = logging.getLogger(__name__)

_RESERVED_QUERY = {"force", "token", "scheduledat", "timezone", "limit", "preview", "cursor"}
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
JOB_PATH = re.compile(
    r"^/jobs/([A-Za-z0-9_-]{1,64})(/report|/cancel|/pause|/resume|/reconcile|/resend-uncertain)?/?$"
)
# The routes: the methods each path takes and the scope each needs (a 405 answers with its Allow).
JOBS_METHODS = {"GET": Scope.read, "POST": Scope.send}
JOB_METHODS: dict[str, dict[str, Scope]] = {
    "": {"GET": Scope.read},
    "/report": {"GET": Scope.read},
    "/cancel": {"POST": Scope.send},
    "/pause": {"POST": Scope.send},
    "/resume": {"POST": Scope.send},
    "/reconcile": {"POST": Scope.send},
    "/resend-uncertain": {"POST": Scope.send},
}
REALM = 'Bearer realm="chatapp-mass"'
# The receipt pushes: authenticated by the URL's key, not a bearer token (path -> what the body holds)
RECEIPT_ROUTES = {"/receipts": "status", "/receipts/mns": "mns", "/inbound": "inbound"}
UNMATCHED_PATH = "/receipts/unmatched"
RECEIPT_KEY_MIN = 16  # characters: the key is all that guards the receipt URLs

REPORT_URL_SECONDS = 300  # how long a presigned report URL is valid
_REPORTED = frozenset(
    {JobStatus.completed, JobStatus.cancelled, JobStatus.stopped}
)  # finalize wrote a report

# The bodies read as a recipient file (a CSV or an Excel workbook: which one is told by content).
_XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_FILE_TYPES = ("text/csv", "application/csv", "text/plain", _XLSX_TYPE)


# --- settings ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiSettings:
    token: str = ""  # deprecated: one plain token, an admin token (CHATAPP_API_TOKEN)
    auth: str = "token"  # token | fc
    max_body: int = 6 * 1024 * 1024
    repeat_window: float = 600.0
    ingest_function: str = "chatapp-mass-ingest"
    reconcile_seconds: float = 60.0  # how long one reconcile/resend request looks batches up (timeout 120 s)
    tokens: tuple[TokenEntry, ...] = ()  # CHATAPP_API_TOKENS: scope:sha256 entries
    console_secret: str = ""  # CHATAPP_CONSOLE_SECRET: mixed into the console's session key
    receipt_key: str = ""  # CHATAPP_RECEIPT_KEY: the ?key= of the receipt push URLs ("": refused, 503)

    def __post_init__(self) -> None:
        if self.token:  # refused however the settings are made: a short token is guessable
            check_length(self.token, env.CHATAPP_API_TOKEN)
        if self.receipt_key and len(self.receipt_key) < RECEIPT_KEY_MIN:
            raise OptionsError(
                f"{env.CHATAPP_RECEIPT_KEY} is {len(self.receipt_key)} characters: use at least "
                f"{RECEIPT_KEY_MIN} (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )

    @property
    def entries(self) -> tuple[TokenEntry, ...]:
        """Every token the API takes: the hashed entries, and the plain token as an admin one."""
        plain = (plain_token_entry(self.token, env.CHATAPP_API_TOKEN),) if self.token else ()
        return self.tokens + plain

    report_inline_max: int = 1024 * 1024  # bytes of a report object streamed; above: 302 to a presigned URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ApiSettings:
        """OptionsError names the variable (and the entry) that is wrong: a token shorter than 32 characters,
        a hash that is not 64 hex characters, an unknown scope."""
        auth = (environ.get(env.CHATAPP_API_AUTH) or "token").strip().lower()
        if auth not in ("token", "fc"):
            raise OptionsError(f"{env.CHATAPP_API_AUTH}={auth!r}: token or fc")
        return cls(
            token=environ.get(env.CHATAPP_API_TOKEN, "").strip(),
            tokens=parse_entries(environ.get(env.CHATAPP_API_TOKENS, ""), env.CHATAPP_API_TOKENS),
            console_secret=environ.get(env.CHATAPP_CONSOLE_SECRET, ""),
            receipt_key=environ.get(env.CHATAPP_RECEIPT_KEY, "").strip(),
            auth=auth,
            max_body=env_int(environ, env.CHATAPP_API_MAX_BODY, 6 * 1024 * 1024, 1, 32 * 1024 * 1024),
            repeat_window=float(env_int(environ, env.CHATAPP_API_REPEAT_WINDOW, 600, 1, 7 * 86400)),
            ingest_function=environ.get(env.CHATAPP_INGEST_FUNCTION, "chatapp-mass-ingest"),
            reconcile_seconds=float(env_int(environ, env.CHATAPP_API_RECONCILE_SECONDS, 60, 1, 600)),
            report_inline_max=env_int(environ, env.CHATAPP_REPORT_INLINE_MAX, 1024 * 1024, 0, 1 << 40),
        )


# --- the event and the reply (the edge) -----------------------------------------------------------------
class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Http(_Loose):
    method: str = "GET"
    path: str = "/"
    source_ip: str = Field(default="", alias="sourceIp")


class _RequestContext(_Loose):
    http: _Http = Field(default_factory=_Http)
    request_id: str = Field(default="", alias="requestId")
    domain_name: str = Field(default="", alias="domainName")


class HttpEvent(_Loose):
    """The FC3 HTTP trigger event (ALIBABA-FACTS.md §1)."""

    version: str = "v1"
    raw_path: str = Field(default="/", alias="rawPath")
    body: str = ""
    is_base64_encoded: bool = Field(default=False, alias="isBase64Encoded")
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict, alias="queryParameters")
    request_context: _RequestContext = Field(default_factory=_RequestContext, alias="requestContext")

    @property
    def method(self) -> str:
        return self.request_context.http.method.upper()

    @property
    def path(self) -> str:
        return self.request_context.http.path or "/"

    def header(self, name: str) -> str:
        name = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == name), "")

    def body_bytes(self) -> bytes:
        if not self.is_base64_encoded:
            return self.body.encode("utf-8")
        try:
            return base64.b64decode(self.body, validate=True)
        except ValueError:  # binascii.Error: FC sends valid base64; anything else is not a request of ours
            raise ApiError(
                400, "invalid_body", "the body is marked isBase64Encoded but is not base64", "body"
            ) from None

    def query_value(self, name: str) -> str:
        name = name.lower()
        return next((v for k, v in self.query.items() if k.lower() == name), "")


def is_http_event(value: Any) -> bool:
    return (
        isinstance(value, dict) and "requestContext" in value and ("rawPath" in value or "version" in value)
    )


class ApiError(ChatAppMassError):
    def __init__(
        self, status: int, code: str, message: str, field: str = "", headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


def reply(
    status: int,
    body: Any,
    *,
    content_type: str = "application/json; charset=utf-8",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body, indent=2, default=str)
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_type, "Cache-Control": "no-store", **(headers or {})},
        "body": text,
        "isBase64Encoded": False,
    }


def error_reply(error: ApiError) -> dict[str, Any]:
    detail = {"code": error.code, "message": error.message}
    if error.field:
        detail["field"] = error.field
    return reply(error.status, {"error": detail}, headers=error.headers)


# --- submissions ------------------------------------------------------------------------------------------
class _Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    To: str = Field(min_length=1, max_length=128)
    TemplateParams: dict[str, str] | None = None
    Payload: list[str] | None = None
    FlowAction: dict[str, Any] | None = None
    ProductAction: dict[str, Any] | None = None


class Submission(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    options: dict[str, Any] = Field(default_factory=dict)
    recipients: list[_Recipient] | None = None
    source: str | None = None
    scheduled_at: str | None = Field(default=None, alias="scheduledAt")
    time_zone: str | None = Field(default=None, alias="timeZone")
    # send the first N recipients, wait for their receipts, go on only under the failure rate (core.canary)
    canary: CanaryOptions | None = None


def parse_schedule(when: str | None, zone: str | None, *, now: float) -> float:
    """``scheduledAt`` -> epoch seconds (0 = now). ISO 8601 with an offset (``2026-12-24T09:00:00+08:00``),
    or a local time and an IANA ``timeZone``. A time more than 5 minutes past is refused (a typo in the year
    must not send at once)."""
    if not when:
        if zone:
            raise ApiError(400, "invalid_schedule", "timeZone given without scheduledAt", "timeZone")
        return 0.0
    try:
        moment = datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400,
            "invalid_schedule",
            f"scheduledAt {when!r} is not an ISO 8601 time such as 2026-12-24T09:00:00+08:00",
            "scheduledAt",
        ) from None
    if moment.tzinfo is None:
        if not zone:
            raise ApiError(
                400,
                "invalid_schedule",
                f"scheduledAt {when!r} has no UTC offset: add one "
                "(+08:00) or give timeZone (e.g. Asia/Singapore)",
                "scheduledAt",
            )
        try:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(
                400,
                "invalid_schedule",
                f"timeZone {zone!r} is not an IANA time zone (e.g. Europe/Berlin)",
                "timeZone",
            ) from None
    elif zone:
        raise ApiError(
            400, "invalid_schedule", "give either an offset in scheduledAt or timeZone, not both", "timeZone"
        )
    at = moment.timestamp()
    if at < now - 300:
        raise ApiError(400, "invalid_schedule", f"scheduledAt {when!r} is in the past", "scheduledAt")
    return at


def _validation_error(error: ValidationError, where: str) -> ApiError:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = (
            "unknown field (known: options, recipients, source, scheduledAt, timeZone; a recipient: "
            "To, TemplateParams, Payload, FlowAction, ProductAction)"
        )
    return ApiError(400, "invalid_field", f"{where}: {field}: {message}", field)


class JobsApi:
    """One HTTP request in, one FC3 HTTP response dict out."""

    def __init__(
        self,
        store: Store,
        oss: OssClient,
        invoker: Invoker,
        settings: FunctionSettings,
        api: ApiSettings,
        *,
        cams: CamsClient | None = None,
        clock: Callable[[], float] = time.time,
        receipts: ReceiptService | None = None,
        on_opt_out: OptHook | None = None,
        on_opt_in: OptHook | None = None,
    ) -> None:
        """``receipts``: the receipt service (kept by the caller across requests: it caches registrations);
        else one is made on first use, with the opt-out/opt-in hooks given (the suppression list)."""
        self.store, self.oss, self.invoker, self.settings, self.api, self.clock = (
            store,
            oss,
            invoker,
            settings,
            api,
            clock,
        )
        self.cams = cams
        self.dispatch = Dispatch(store, invoker, settings)
        self._receipts = receipts
        self._hooks = (on_opt_out, on_opt_in)

    def handle(self, event: HttpEvent) -> dict[str, Any]:
        try:
            kind = RECEIPT_ROUTES.get(event.path.rstrip("/"))
            if kind is not None:  # CAMS's pushes: the URL's key, not a token
                return self.receive(event, kind)
            return self._route(event, self._authenticate(event))
        except ApiError as error:
            if error.status >= 500:
                log.error("request refused", extra={"code": error.code, "error": error.message})
            return error_reply(error)  # a 401 carries WWW-Authenticate (RFC 6750 §3), set where it is raised

    # --- auth -------------------------------------------------------------------------------------------
    def _authenticate(self, event: HttpEvent) -> Scope:
        """The scope of the request's bearer token (FC auth: admin; FC checked the signature)."""
        if self.api.auth == "fc":
            return Scope.admin
        entries = self.api.entries
        if not entries:
            raise ApiError(
                503,
                "auth_not_configured",
                f"the API has no token configured: set {env.CHATAPP_API_TOKENS} (scope:sha256 entries from "
                f"`chatapp-mass token new --scope admin`) on the function (or {env.CHATAPP_API_AUTH}=fc; "
                f"the plain {env.CHATAPP_API_TOKEN} is deprecated)",
            )
        given = ""
        header = event.header("authorization")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        if not given:
            raise ApiError(
                401,
                "unauthenticated",
                "send Authorization: Bearer <token>",
                "Authorization",
                {"WWW-Authenticate": REALM},
            )
        entry = match(entries, given)
        if entry is None:
            raise ApiError(
                401,
                "invalid_token",
                "the token is not valid (unknown, or removed from CHATAPP_API_TOKENS)",
                "Authorization",
                {"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        return entry.scope

    # --- routing ----------------------------------------------------------------------------------------
    def _route(self, event: HttpEvent, scope: Scope = Scope.admin) -> dict[str, Any]:
        path, method = event.path.rstrip("/") or "/", event.method
        if path == "/jobs":
            self._allowed(method, "/jobs", JOBS_METHODS, scope)
            return self.submit(event) if method == "POST" else self.list_jobs(event)
        if path == "/suppressions":
            self._allowed(method, "/suppressions", SUPPRESSIONS_METHODS, scope)
            return self.suppressions(event)
        if path == UNMATCHED_PATH:
            self._allowed(method, UNMATCHED_PATH, {"GET": Scope.read}, scope)
            return self.unmatched(event)
        match = JOB_PATH.match(event.path)
        if match is None:
            raise ApiError(
                404,
                "not_found",
                f"no route {method} {event.path} (routes: POST /jobs, GET /jobs, "
                "GET /jobs/{id}, GET /jobs/{id}/report, POST /jobs/{id}/cancel|pause|resume|reconcile|"
                "resend-uncertain, GET|POST|DELETE /suppressions, POST /receipts, POST /receipts/mns, POST /inbound, "
                "GET /receipts/unmatched)",
            )
        job_id, action = match.group(1), match.group(2) or ""
        self._allowed(method, f"/jobs/{{id}}{action}", JOB_METHODS[action], scope)
        job = self.store.get_job(job_id)
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id!r}", "id")
        if action in ("/report", "/reconcile", "/resend-uncertain"):
            gone = self._rows_gone(job)  # retention: nothing left to report or look up
            if gone is not None:
                return gone
        if action == "/report":
            return self.report(job)
        if action == "/cancel":
            return self.cancel(job)
        if action == "/pause":
            return self.pause(job)
        if action == "/resume":
            return self.resume(job)
        if action == "/reconcile":
            return self.reconcile(job, event)
        if action == "/resend-uncertain":
            return self.resend_uncertain(job, event)
        return self.status(job, event)

    @staticmethod
    def _allowed(method: str, route: str, methods: dict[str, Scope], scope: Scope) -> None:
        """405 (with Allow) for a method the route does not take; 403 for a token whose scope is too small."""
        needed = methods.get(method)
        if needed is None:
            allow = ", ".join(methods)
            raise ApiError(
                405, "method_not_allowed", f"{method} {route}: use {allow}", "method", {"Allow": allow}
            )
        if not scope.allows(needed):
            raise ApiError(
                403,
                "insufficient_scope",
                f"{method} {route} needs a token of scope {needed.value} (or admin); this one is "
                f"{scope.value}",
                "Authorization",
                {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed.value}"'},
            )

    # --- /suppressions (entry.http_suppressions) ---------------------------------------------------------
    def suppressions(self, event: HttpEvent) -> dict[str, Any]:
        try:
            return reply(
                200, suppressions_route(self.store, event.method, event.body_bytes(), event.query_value)
            )
        except SuppressionsRefused as refused:
            raise ApiError(refused.status, refused.code, refused.message, refused.field) from None

    # --- POST /jobs -------------------------------------------------------------------------------------
    def submit(self, event: HttpEvent) -> dict[str, Any]:
        body = event.body_bytes()
        if len(body) > self.api.max_body:
            raise ApiError(
                413,
                "body_too_large",
                f"the body is {len(body):,} bytes; the limit is "
                f'{self.api.max_body:,}: put the CSV in OSS and submit its key as "source"',
                "body",
            )
        content_type = event.header("content-type").split(";")[0].strip().lower()
        query_options = {k: v for k, v in event.query.items() if k.lower() not in _RESERVED_QUERY}
        now = self.clock()
        if content_type in _FILE_TYPES:  # a CSV, or an Excel workbook (recognised by content either way)
            if not body.strip():
                raise ApiError(400, "empty_body", "the CSV body is empty", "body")
            submission = Submission(
                options=query_options,
                scheduledAt=event.query_value("scheduledAt") or None,
                timeZone=event.query_value("timeZone") or None,
            )
            csv_body: bytes | None = body
        elif content_type in ("application/json", ""):
            try:
                raw = json.loads(body or b"{}")
            except ValueError as error:
                raise ApiError(400, "invalid_json", f"the body is not JSON ({error})", "body") from None
            except RecursionError:  # JSON nested deeper than the parser's recursion limit
                raise ApiError(
                    400,
                    "invalid_json",
                    "the body is nested too deeply: a submission is 3 levels deep",
                    "body",
                ) from None
            if not isinstance(raw, dict):
                raise ApiError(400, "invalid_json", "the body must be a JSON object", "body")
            try:
                submission = Submission.model_validate(raw)
            except ValidationError as error:
                raise _validation_error(error, "body") from None
            submission.options = {**query_options, **submission.options}
            # the schedule may be in the query for any body (a query-only schedule was ignored: sent at once)
            submission.scheduled_at = submission.scheduled_at or event.query_value("scheduledAt") or None
            submission.time_zone = submission.time_zone or event.query_value("timeZone") or None
            if (submission.recipients is None) == (submission.source is None):
                raise ApiError(
                    400,
                    "invalid_field",
                    'give exactly one of "recipients" (a list) or "source" (an OSS key of a CSV)',
                    "recipients",
                )
            csv_body = None
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"Content-Type {content_type!r}: send application/json, text/csv or {_XLSX_TYPE}",
                "Content-Type",
            )
        scheduled_at = parse_schedule(submission.scheduled_at, submission.time_zone, now=now)
        try:
            options, intake = resolve_options(
                [
                    ("options", submission.options),
                    ("the function's CHATAPP_DEFAULT_* environment", self.settings.defaults),
                ]
            )
        except OptionsError as error:
            raise ApiError(400, "invalid_options", str(error), "options") from None
        query_flag(event, "force")  # checked before anything is planned: force=maybe is a typo
        if query_flag(event, "preview"):
            return reply(200, self.preview(submission, csv_body, options, intake).to_json())

        job_id, repeated, digest = self._identity(event, body)
        if repeated is not None:
            return reply(
                200, {**self._links(repeated, event), "status": repeated.status.value, "repeated": True}
            )
        try:
            job = self._create(job_id, submission, csv_body, options, intake, body, scheduled_at, now)
        except BaseException:
            if digest and self.store.get_job(job_id) is None:  # no job made: the same request may come again
                try:
                    self.store.release_request(digest, job_id)
                except ChatAppMassError as error:
                    log.warning("request digest not released", extra={"job_id": job_id, "error": str(error)})
            raise
        log.info(
            "job submitted",
            extra={
                "job_id": job_id,
                "status": job.status.value,
                "valid": job.valid,
                "invalid": job.invalid,
                "duplicate": job.duplicate,
                "suppressed": job.suppressed,
            },
        )
        return reply(
            202,
            {
                **self._links(job, event),
                "status": job.status.value,
                "repeated": False,
                "valid": job.valid,
                "invalid": job.invalid,
                "duplicate": job.duplicate,
                "suppressed": job.suppressed,
            },
            headers={"Location": self._links(job, event)["status_url"]},
        )

    def _create(
        self,
        job_id: str,
        submission: Submission,
        csv_body: bytes | None,
        options: Any,
        intake: Any,
        body: bytes,
        scheduled_at: float,
        now: float,
    ) -> JobRecord:
        """Make the job: planned here (recipients, a CSV or XLSX body), or by the ingest function (a source)."""
        fingerprint = "sha256:" + hashlib.sha256(body).hexdigest()
        if submission.source is not None:
            return self.submit_source(
                job_id,
                submission.source,
                options,
                intake,
                fingerprint,
                scheduled_at,
                canary=submission.canary,
            )
        from chatapp_mass.core.intake import JsonRecipients  # the file readers: only a submission plans

        if csv_body is not None:
            source, read_rows, open_stream = f"http:{job_id}.csv", None, (lambda: io.BytesIO(csv_body))
        else:
            items = [r.model_dump(exclude_none=True) for r in submission.recipients or []]
            source = f"http:{job_id}.json"
            read_rows = lambda: JsonRecipients(items, channel=options.channel_type, intake=intake)
            open_stream = lambda: io.BytesIO(b"")
        try:
            job, _ = plan_job(
                self.store,
                source=source,
                open_stream=open_stream,
                options=options,
                intake=intake,
                settings=PlanSettings(
                    batch_size=self.settings.batch_size,
                    max_request_bytes=self.settings.max_request_bytes,
                    canary=submission.canary,
                ),
                identity=(job_id, fingerprint),
                read_rows=read_rows,
                scheduled_at=scheduled_at,
            )
        except CsvFileError as error:
            where = f"line {error.line}" if error.line else "file"  # no line: the file is not text at all
            raise ApiError(400, "invalid_csv", str(error), where) from None
        status = start_job(self.store, self.dispatch, job_id, now=now)
        if job.batches == 0 and status == JobStatus.running.value:
            finalize(self.store, self.oss, self.settings, job_id)
        return self.store.get_job(job_id) or job

    def _identity(self, event: HttpEvent, body: bytes) -> tuple[str, JobRecord | None, str]:
        """(job id, the existing job if this is a keyed repeat to answer with, the request digest this request
        now holds in the store). Refuses a probable repeat.

        The check is one conditional write (``Store.claim_request``): of identical keyless requests arriving
        together exactly one holds the digest and makes a job; the others are 409. A request with an
        Idempotency-Key (or ``force``) records its digest too, so the same body sent again without a key is a
        probable repeat of it."""
        canonical = json.dumps(
            {
                "body": hashlib.sha256(body).hexdigest(),
                "query": sorted(
                    (k.lower(), v) for k, v in event.query.items() if k.lower() not in ("force", "token")
                ),
            }
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        now = self.clock()
        key = event.header("idempotency-key").strip()
        if key:
            if len(key) > 255:
                raise ApiError(
                    400, "invalid_header", "Idempotency-Key is longer than 255 characters", "Idempotency-Key"
                )
            job_id = "k" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:23]
            existing = self.store.get_job(job_id)
            if existing is not None:
                return job_id, existing, ""
            self.store.claim_request(digest, job_id, at=now, window=self.api.repeat_window, force=True)
            return job_id, None, digest
        force = query_flag(event, "force")
        job_id = "b" + digest[:15] + secrets.token_hex(4)
        held = self.store.claim_request(digest, job_id, at=now, window=self.api.repeat_window, force=force)
        if held is not None:
            raise ApiError(
                409,
                "probable_repeat",
                f"the same request created job {held.job_id} {max(now - held.at, 0):.0f} s ago; send "
                "Idempotency-Key to make repeats safe, or add ?force=true to create another job",
                "body",
            )
        return job_id, None, digest

    def preview(self, submission: Submission, csv_body: bytes | None, options: Any, intake: Any) -> Preview:
        """``POST /jobs?preview=true``: what the submission would send (:mod:`chatapp_mass.services.preview`),
        read as the plan reads it. No job, nothing stored or sent; an OSS source is read here, once."""
        from chatapp_mass.services.preview import preview_json, preview_recipients

        settings = PlanSettings(
            batch_size=self.settings.batch_size, max_request_bytes=self.settings.max_request_bytes
        )
        params_in = self.cams.settings.params_in if self.cams is not None else params_in_from_env()
        try:
            if submission.recipients is not None:
                items = [r.model_dump(exclude_none=True) for r in submission.recipients]
                return preview_json(
                    items, options=options, intake=intake, settings=settings, params_in=params_in
                )
            if csv_body is not None:
                return preview_recipients(
                    io.BytesIO(csv_body),
                    source="http:body.csv",
                    options=options,
                    intake=intake,
                    settings=settings,
                    params_in=params_in,
                )
            location = self.location_of(submission.source or "")
            try:
                with self.oss.open(location) as stream:
                    return preview_recipients(
                        stream,
                        source=location.url,
                        options=options,
                        intake=intake,
                        settings=settings,
                        params_in=params_in,
                    )
            except SourceError as error:
                raise _source_error(location, error) from None
        except CsvFileError as error:
            where = f"line {error.line}" if error.line else "file"
            raise ApiError(400, "invalid_csv", str(error), where) from None

    def location_of(self, source: str) -> OssLocation:
        """A submission's ``source``: ``oss://BUCKET/KEY``, or a key in the function's bucket."""
        if not source.startswith("oss://"):
            key = source.lstrip("/")
            if not key or key.endswith("/") or len(key.encode("utf-8")) > 1023:  # OSS's own rules for a key
                raise ApiError(
                    400,
                    "invalid_field",
                    f"source {source[:80]!r}: give an object's key in the function's bucket "
                    "(1 to 1,023 bytes, e.g. uploads/march.csv) or oss://BUCKET/KEY",
                    "source",
                )
            return OssLocation(self.settings.bucket, key)
        try:
            return OssLocation.parse(source)
        except OptionsError as error:
            raise ApiError(400, "invalid_field", str(error), "source") from None

    def submit_source(
        self,
        job_id: str,
        source: str,
        options: Any,
        intake: Any,
        fingerprint: str,
        scheduled_at: float,
        *,
        canary: CanaryOptions | None = None,
    ) -> JobRecord:
        location = self.location_of(source)
        try:
            head = self.oss.head(location)
        except SourceError as error:
            raise _source_error(location, error) from None
        etag = str(head.get("etag", "")).strip('"')
        job = JobRecord(
            job_id=job_id,
            source=location.url,
            options=options.to_record(),
            intake=intake.model_dump(mode="json"),
            content_sha256=f"etag:{etag}" if etag else fingerprint,
            scheduled_at=scheduled_at,
            canary=CanaryState(options=canary).model_dump_json() if canary else "",
        )
        self.store.create_job(job)
        self.invoker.invoke_async(self.api.ingest_function, {"plan_job": job_id})
        return self.store.get_job(job_id) or job

    # --- GET /jobs, /jobs/{id}, report; cancel -------------------------------------------------------------
    def list_jobs(self, event: HttpEvent) -> dict[str, Any]:
        """``GET /jobs?limit=N&cursor=C``: a page of jobs, newest first, and the cursor of the next page (None:
        this is the last). A job created between two pages is on the first page, not repeated in a later one."""
        text = event.query_value("limit") or "50"
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 200:
            raise ApiError(400, "invalid_parameter", "limit: a whole number from 1 to 200", "limit")
        limit = int(text)
        cursor = event.query_value("cursor")
        jobs = self.store.list_jobs(limit + 1, after=decode_cursor(cursor) if cursor else None)
        page = jobs[:limit]
        return reply(
            200,
            {
                "jobs": [
                    {
                        "job_id": j.job_id,
                        "status": j.status.value,
                        "source": j.source,
                        "valid": j.valid,
                        "created_at": _iso(j.created_at),
                        "scheduled_at": _iso(j.scheduled_at) if j.scheduled_at else None,
                    }
                    for j in page
                ],
                "next_cursor": encode_cursor(JobKey.of(page[-1])) if len(jobs) > limit else None,
            },
        )

    def progress(self, job: JobRecord) -> dict[str, Any]:
        now = self.clock()
        # once the rows are gone (retention), the counts are the job's kept summary, with when they went
        summary = status_view(self.store, job, days=self.settings.retention_days, now=now)
        # the valid recipients left out at send time (suppressed since the plan) are done too
        done = (
            summary["sent"]
            + summary["failed"]
            + summary["uncertain"]
            + summary.get("suppressed", 0)
            - job.suppressed
        )
        elapsed = max(now - max(job.created_at, job.scheduled_at), 1e-6)  # a scheduled job starts late
        rate = summary["sent"] / elapsed if job.status is JobStatus.running else 0.0
        remaining = summary["pending"]
        summary.update(
            {
                "created_at": _iso(job.created_at),
                "updated_at": _iso(job.updated_at),
                "scheduled_at": _iso(job.scheduled_at) if job.scheduled_at else None,
                # while the plan is written, nothing is known of the whole (summary["totals_final"])
                "share_done": (round(done / job.valid, 4) if job.valid else 1.0)
                if summary["totals_final"]
                else None,
                "rate_per_second": round(rate, 1),
                "eta_seconds": round(remaining / rate)
                if rate > 0 and remaining and summary["totals_final"]
                else None,
            }
        )
        return summary

    def status(self, job: JobRecord, event: HttpEvent) -> dict[str, Any]:
        summary = {**self.progress(job), **self._links(job, event)}
        if summary["uncertain"]:  # what an operator can do about them (POST)
            summary["reconcile_url"] = summary["status_url"] + "/reconcile"
            summary["resend_uncertain_url"] = summary["status_url"] + "/resend-uncertain"
        return reply(200, summary)

    def _rows_gone(self, job: JobRecord) -> dict[str, Any] | None:
        """410 Gone, with when and what the job came to, if its rows are gone (retention); else None. Never an
        empty report."""
        gone = rows_gone_at(job, self.store, self.settings.retention_days, now=self.clock())
        if gone is None:
            return None
        return reply(
            410,
            {
                "error": {"code": "rows_purged", "message": gone_message(job, gone)},
                "job_id": job.job_id,
                "rows_purged_at": _iso(gone),
                "summary": job.summary,
            },
        )

    def report(self, job: JobRecord) -> dict[str, Any]:
        presigned = self._presigned_report(job)
        if presigned:
            return reply(
                302,
                {"job_id": job.job_id, "report_url": presigned, "expires_in": REPORT_URL_SECONDS},
                headers={"Location": presigned},
            )
        out = io.StringIO()
        write_report(report_rows(self.store, job), out)
        return reply(
            200,
            out.getvalue(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{job.job_id}.report.csv"'},
        )

    def _presigned_report(self, job: JobRecord) -> str:
        """A presigned URL of a finished job's report object when it is too big to stream, else ""."""
        if job.status not in _REPORTED:  # no report object yet (or an older one): the store has it
            return ""
        base = report_location(self.settings, job)
        location = OssLocation(base.bucket, base.key + ".report.csv")
        try:
            head = self.oss.head(location)
            size = int(head["size"] or 0)
        except SourceError:  # not written (a CLI job), or OSS unreachable: stream from the store as before
            return ""
        if size <= self.api.report_inline_max:
            return ""
        if head.get("meta", {}).get("delivery") != delivery_fingerprint(self.store, job):
            # receipts changed a state since it was written (they come for days): written again, with them
            write_report_object(self.store, self.oss, self.settings, job)
        return self.oss.presign_get(location, REPORT_URL_SECONDS, filename=f"{job.job_id}.report.csv")

    def cancel(self, job: JobRecord) -> dict[str, Any]:
        if job.status in (JobStatus.completed, JobStatus.failed, JobStatus.stopped):
            raise ApiError(409, "job_finished", f"job {job.job_id} is already {job.status.value}", "id")
        current = cancel_job(self.store, job.job_id) or job
        if not self.store.list_batches(job.job_id, IN_FLIGHT):
            finalize(self.store, self.oss, self.settings, job.job_id, status=JobStatus.cancelled)
        return reply(
            202,
            {
                "job_id": job.job_id,
                "status": current.status.value,
                "pending_cancelled": job_summary(self.store, current, delivery=False)["cancelled"],
            },
        )

    def pause(self, job: JobRecord) -> dict[str, Any]:
        if job.status not in (JobStatus.running, JobStatus.ready, JobStatus.scheduled, JobStatus.paused):
            raise ApiError(
                409,
                "not_running",
                f"job {job.job_id} is {job.status.value}: only a running or scheduled job can be paused",
                "id",
            )
        current = pause_job(self.store, job.job_id) or job
        return reply(202, {"job_id": job.job_id, "status": current.status.value, "reason": current.reason})

    def resume(self, job: JobRecord) -> dict[str, Any]:
        if job.status is not JobStatus.paused:
            raise ApiError(409, "not_paused", f"job {job.job_id} is {job.status.value}, not paused", "id")
        current = resume_job(self.store, self.dispatch, job.job_id) or job
        return reply(202, {"job_id": job.job_id, "status": current.status.value})

    # --- receipts (issue 17) ----------------------------------------------------------------------------
    def receipt_service(self) -> ReceiptService:
        if self._receipts is None:
            found = receipts_of(self.store)
            if found is None:
                raise ApiError(503, "no_receipt_store", f"no receipt store for a {type(self.store).__name__}")
            on_opt_out, on_opt_in = self._hooks
            self._receipts = ReceiptService(
                found, on_opt_out or opt_out_hook(self.store), on_opt_in, store=self.store
            )
        return self._receipts

    def _check_receipt_key(self, event: HttpEvent) -> None:
        """The push URL's ``?key=`` against ``CHATAPP_RECEIPT_KEY``, in constant time; never logged."""
        key = self.api.receipt_key
        if not key:
            raise ApiError(
                503,
                "receipts_not_configured",
                f"set {env.CHATAPP_RECEIPT_KEY} on the api function (at least {RECEIPT_KEY_MIN} random "
                "characters) and configure the receipt URL in the CAMS console as "
                f"https://<api trigger>{event.path}?key=<that value>",
            )
        given = event.query_value("key")
        if not given:
            raise ApiError(
                401, "unauthenticated", f"the URL must carry ?key=<{env.CHATAPP_RECEIPT_KEY}>", "key"
            )
        if not hmac.compare_digest(given.encode("utf-8"), key.encode("utf-8")):
            raise ApiError(401, "invalid_key", f"key is not the function's {env.CHATAPP_RECEIPT_KEY}", "key")

    def receive(self, event: HttpEvent, kind: str) -> dict[str, Any]:
        """``POST /receipts``, ``/receipts/mns``, ``/inbound``: decode, record in one bulk write, ack."""
        if event.method != "POST":
            raise ApiError(405, "method_not_allowed", f"{event.method} {event.path}: use POST", "method",
                           {"Allow": "POST"})  # fmt: skip
        self._check_receipt_key(event)
        body = event.body_bytes()
        if len(body) > self.api.max_body:
            raise ApiError(
                413, "body_too_large", f"the body is {len(body):,} bytes; the limit is {self.api.max_body:,}",
                "body",
            )  # fmt: skip
        try:
            items = parse_array(body)
        except BodyError as error:
            raise ApiError(400, "invalid_body", str(error), "body") from None
        service = self.receipt_service()
        if kind == "inbound":
            result = service.inbound(items)
        elif kind == "mns":
            result = service.ingest_mns(items)
        else:
            result = service.ingest(items)
        return reply(200, result.ack())

    def unmatched(self, event: HttpEvent) -> dict[str, Any]:
        """``GET /receipts/unmatched?limit=N``: receipts kept aside (an unregistered TaskId), oldest first."""
        text = event.query_value("limit") or "100"
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 1000:
            raise ApiError(400, "invalid_parameter", "limit: a whole number from 1 to 1000", "limit")
        return reply(200, {"unmatched": self.receipt_service().unmatched(int(text))})

    # --- reconcile, resend ------------------------------------------------------------------------------
    def _reconciler(self) -> Reconciler:
        if self.cams is None:
            raise ApiError(503, "no_cams_client", "this API was built without a CAMS client")
        return Reconciler(self.store, self.cams)

    def reconcile(self, job: JobRecord, event: HttpEvent) -> dict[str, Any]:
        body = _operator_body(event)
        result = reconcile_job(
            self.store,
            self.oss,
            self.settings,
            self._reconciler(),
            job,
            deadline=self.clock() + self.api.reconcile_seconds,
            cust_space_id=body.cust_space_id,
        )
        if result.skipped:
            raise ApiError(409, "not_reconcilable", result.skipped, "id")
        if result.error:
            raise ApiError(
                502, "list_failed", f"{result.error} ({result.left} uncertain batches left as they were)"
            )
        return reply(
            200,
            {
                "job_id": job.job_id,
                **result.to_dict(),
                "uncertain": job_summary(self.store, job, delivery=False)["uncertain"],
            },
        )

    def resend_uncertain(self, job: JobRecord, event: HttpEvent) -> dict[str, Any]:
        body = _operator_body(event)
        try:
            result = resend_uncertain(
                self.store,
                self._reconciler() if body.reconcile else None,
                job,
                reconcile=body.reconcile,
                cust_space_id=body.cust_space_id,
                deadline=self.clock() + self.api.reconcile_seconds,
                before_reopen=lambda: reopen_job(
                    self.store, job.job_id, reason="uncertain batches reopened by an operator"
                ),
            )
        except ReconcileError as error:
            raise ApiError(409, "not_resent", str(error), "reconcile") from None
        status = continue_job(self.store, self.dispatch, job.job_id) if result.batches else job.status.value
        return reply(202, {"job_id": job.job_id, "status": status, **result.to_dict()})

    def _links(self, job: JobRecord, event: HttpEvent) -> dict[str, str]:
        host = event.header("host")
        proto = event.header("x-forwarded-proto") or ("https" if host.endswith(".fcapp.run") else "http")
        base = f"{proto}://{host}" if host else ""
        return {
            "job_id": job.job_id,
            "status_url": f"{base}/jobs/{quote(job.job_id)}",
            "report_url": f"{base}/jobs/{quote(job.job_id)}/report",
        }


class _OperatorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cust_space_id: str | None = Field(default=None, min_length=1)
    reconcile: bool = True


def _operator_body(event: HttpEvent) -> _OperatorBody:
    raw = event.body_bytes().strip()
    try:
        return _OperatorBody.model_validate_json(raw) if raw else _OperatorBody()
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        message = (
            "unknown field (known: cust_space_id, reconcile)"
            if first["type"] == "extra_forbidden"
            else first["msg"]
        )
        raise ApiError(400, "invalid_field", f"body: {field}: {message}", field) from None


def encode_cursor(key: JobKey) -> str:
    """An opaque page cursor: base64url (unpadded) of the last job's place in the listing."""
    text = json.dumps([key.created_at, key.job_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> JobKey:
    """A cursor of :func:`encode_cursor`; 400 naming ``cursor`` for anything else."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raw = None
    valid = (
        isinstance(raw, list)
        and len(raw) == 2
        and isinstance(raw[0], (int, float))
        and not isinstance(raw[0], bool)
        and math.isfinite(raw[0])
        and isinstance(raw[1], str)
        and _JOB_ID.fullmatch(raw[1]) is not None
    )
    if not valid or len(cursor) > 200:
        raise ApiError(
            400,
            "invalid_parameter",
            "cursor: not a cursor this API gave (use next_cursor of the previous page as it is)",
            "cursor",
        )
    return JobKey(float(raw[0]), raw[1])


_FLAG_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


def query_flag(event: HttpEvent, name: str) -> bool:
    """A yes/no query parameter; anything else is refused (``preview=maybe`` must not create a job)."""
    text = event.query_value(name).strip().lower()
    if text not in _FLAG_WORDS:
        raise ApiError(400, "invalid_parameter", f"{name}={text!r}: use true or false (or 1/0, yes/no)", name)
    return _FLAG_WORDS[text]


def _source_error(location: OssLocation, error: SourceError) -> ApiError:
    """A source object that cannot be read: 400 if it never will be (missing, denied), else 503 (try again)."""
    if error.permanent:
        return ApiError(400, "source_not_found", f"{location.url}: {error}", "source")
    return ApiError(503, "oss_unavailable", f"{location.url}: {error}; try again", "source")


def _iso(at: float) -> str:
    return utc_timestamp(at)


def prefers_html(accept: str) -> bool:
    """A browser asks for text/html first; API clients ask for JSON or nothing."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    return bool(kinds) and kinds[0] in ("text/html", "application/xhtml+xml")
