"""The HTTP API's contract: the OpenAPI 3.1 document of :mod:`chatapp_mass.entry.http_api`.

Built, not written: the request bodies are the API's own pydantic models (:class:`~.http_api.Submission`, the
operator body), the replies are the pydantic models below (the API builds its replies as dicts; these say what
those dicts hold, and the fuzzer, ``tests/e2e/test_api_fuzz.py``, checks every reply it gets against them), and
:data:`ROUTES` is the route table. Served at ``GET /openapi.json`` (no token) and kept in the repository as
``docs/openapi.json`` (a test compares the two); regenerate it with ``chatapp-mass openapi > docs/openapi.json``.

Not the Alibaba OpenAPI SDK wrapper: that is :mod:`chatapp_mass.adapters.openapi`.

Longer than 500 lines: it is the contract written down as data (a reply model per reply, an entry per route
with its statuses), with no logic beyond turning them into the document; split, one route's shape would live
in two places.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from chatapp_mass.store.interface import JobStatus

if TYPE_CHECKING:
    from chatapp_mass.entry.http_api import HttpEvent

OPENAPI_PATH = "/openapi.json"
REF = "#/components/schemas/{model}"
TITLE = "ChatApp Mass Sender API"
VERSION = "1"
JSON = "application/json"
CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
REALM = "chatapp-mass"
#: the ``id`` path parameter (http_api.JOB_PATH)
JOB_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"


# --- the replies ------------------------------------------------------------------------------------------
class _Reply(BaseModel):
    # open: a reply may carry more than is listed (a client must ignore what it does not know)
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Reply):
    code: str = Field(
        description="what went wrong, for programs: invalid_field, invalid_json, invalid_parameter, "
        "invalid_options, invalid_schedule, invalid_csv, invalid_header, empty_body, body_too_large, "
        "unsupported_media_type, unauthenticated, invalid_token, forbidden, insufficient_scope, not_found, "
        "job_not_found, method_not_allowed, probable_repeat, job_finished, not_running, not_paused, "
        "not_reconcilable, not_resent, source_not_found, oss_unavailable, list_failed, no_cams_client, "
        "auth_not_configured, rows_purged, no_suppression_list, invalid_body, invalid_key, "
        "receipts_not_configured, no_receipt_store"
    )
    message: str = Field(description="what went wrong and what to do, for people")
    field: str | None = Field(
        default=None, description="the body field, parameter or header at fault (absent when none is)"
    )


class ErrorReply(_Reply):
    """Every refusal: a 4xx (or 5xx) status and this body."""

    error: ErrorDetail


class JobCreated(_Reply):
    """``POST /jobs``: the job created (202), or the one an Idempotency-Key already named (200, repeated)."""

    job_id: str
    status: JobStatus
    status_url: str
    report_url: str
    repeated: bool
    valid: int | None = Field(default=None, description="valid recipients so far (a new job only)")
    invalid: int | None = None
    duplicate: int | None = None
    suppressed: int | None = Field(default=None, description="rows on the suppression list when planned")


class JobListItem(_Reply):
    job_id: str
    status: JobStatus
    source: str
    valid: int
    created_at: str
    scheduled_at: str | None


class JobList(_Reply):
    """``GET /jobs``: newest first, ``limit`` a page; ``next_cursor`` (null on the last page) is the ``cursor``
    of the next page."""

    jobs: list[JobListItem]
    next_cursor: str | None


class DeliveryFigures(_Reply):
    """What the receipts said of the accepted recipients: cumulative, a funnel (``delivered`` includes
    ``read``; ``sent`` = at least Sent); each rate is over ``accepted``."""

    accepted: int = Field(description="recipients CAMS accepted (the job's sent)")
    sent: int
    delivered: int
    read: int
    failed: int
    awaiting: int = Field(description="accepted, with no final receipt yet (none, or only Sent)")
    failed_codes: dict[str, int] = Field(description="the failed by ErrorCode, most first (at most 10)")
    delivered_rate: float
    read_rate: float
    failed_rate: float


class JobState(_Reply):
    """``GET /jobs/{id}``: the job's state and its counts in recipients."""

    job_id: str
    status: JobStatus
    reason: str
    source: str
    channel: str | None
    template: str | None
    totals_final: bool = Field(description="false while the plan is still being written: counts so far")
    rows: int
    valid: int
    invalid: int
    duplicate: int
    batches: int
    suppressed: int = Field(
        description="recipients not sent because their number is on the suppression list of the job's space "
        "(when planned, or added since and left out of the call); never counted as failed"
    )
    sent: int
    failed: int
    uncertain: int
    cancelled: int
    pending: int
    delivery: DeliveryFigures
    created_at: str
    updated_at: str
    scheduled_at: str | None
    share_done: float | None
    rate_per_second: float
    eta_seconds: int | None
    status_url: str
    report_url: str
    reconcile_url: str | None = Field(default=None, description="when some recipients are uncertain")
    resend_uncertain_url: str | None = Field(default=None, description="when some recipients are uncertain")
    finished_at: str | None = Field(default=None, description="when the job finished (its summary kept)")
    rows_purged_at: str | None = Field(
        default=None,
        description="when its rows went (CHATAPP_RETENTION_DAYS): the counts are then the job's kept summary",
    )
    retention: str | None = Field(default=None, description="rows purged on <date>, for people")


class JobPurged(_Reply):
    """``GET /jobs/{id}/report`` of a job whose rows are gone (retention): 410, when, and what it came to."""

    error: ErrorDetail
    job_id: str
    rows_purged_at: str
    summary: dict[str, Any] = Field(
        description="counts by report status (sent, failed, uncertain, pending, invalid, duplicate, "
        "cancelled), rows, valid, batches, finished_at, status: kept when the job finished"
    )


class JobCancelled(_Reply):
    job_id: str
    status: JobStatus
    pending_cancelled: int


class JobPaused(_Reply):
    job_id: str
    status: JobStatus
    reason: str


class JobResumed(_Reply):
    job_id: str
    status: JobStatus


class ReconcileCounts(_Reply):
    batches: int = Field(description="uncertain batches looked at")
    found: int = Field(description="recipients CAMS has: now sent")
    not_found: int = Field(description="recipients CAMS does not have: still uncertain")
    queries: int
    left: int = Field(description="uncertain batches not looked at in time: call again")
    skipped: str
    error: str


class JobReconciled(ReconcileCounts):
    job_id: str
    uncertain: int


class ReceiptAck(_Reply):
    """``POST /receipts``, ``/receipts/mns``, ``/inbound``: received (ASSUMPTION: the SMS receipt ack)."""

    code: int = Field(description="0")
    msg: str = Field(description="success")
    accepted: int = Field(description="items decoded and applied")
    skipped: int = Field(description="items that were not a report (or message) and were skipped")


class UnmatchedReceipt(_Reply):
    task_id: str
    to: str
    message_id: str
    status: str
    at_ms: int
    error_code: str
    error_description: str
    reason: str


class UnmatchedReceipts(_Reply):
    """``GET /receipts/unmatched``: receipts whose TaskId no job registered, oldest first."""

    unmatched: list[UnmatchedReceipt]


class JobResent(_Reply):
    job_id: str
    status: JobStatus
    reconciled: ReconcileCounts
    resent_batches: int
    resent_recipients: int


class SuppressedNumber(_Reply):
    number: str = Field(description="E.164 digits without '+'")
    reason: str = Field(description="operator, unsubscribe, stop-keyword or import")
    at: str = Field(description="when it was added (UTC, ISO 8601)")
    source: str


class SuppressionList(_Reply):
    """``GET /suppressions``: a space's numbers in number order; ``next_cursor`` (null on the last page) is the
    ``cursor`` of the next page."""

    space: str
    numbers: list[SuppressedNumber]
    next_cursor: str | None


class SuppressionsAdded(_Reply):
    space: str
    requested: int = Field(description="distinct numbers in the request")
    added: int = Field(description="of them, not on the list before (the others keep their first reason)")


class SuppressionsRemoved(_Reply):
    space: str
    requested: int
    removed: int = Field(description="of them, on the list before")


# --- the route table --------------------------------------------------------------------------------------
Scope = Literal["read", "send", "none", "key"]  # key: the URL's ?key= (the receipt pushes), no token


@dataclass(frozen=True)
class Reply:
    description: str
    model: type[BaseModel] | None = ErrorReply
    content: dict[str, Any] | None = None  # a media type -> schema map instead of a model's JSON
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation_id: str
    summary: str
    replies: dict[int, Reply]
    scope: Scope = "read"
    parameters: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | None = None  # the requestBody object


def _query(name: str, schema: dict[str, Any], description: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **more,
    }


_STRING = {"type": "string"}
_FLAG = {"type": "boolean"}
_JOB_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
    "description": "the job's id (job_id of POST /jobs)",
}
_SPACE = _query(
    "space",
    {"type": "string", "minLength": 1, "maxLength": 64},
    "the list's space: the jobs' CustSpaceId, or default",
)
_LOCATION = {"description": "where the resource is", "required": True, "schema": _STRING}
_PURGED = Reply("the job's rows were purged (CHATAPP_RETENTION_DAYS): when, and its kept summary", JobPurged)
_NOT_FOUND = Reply("no such job (or no such route)")
_CONFLICT = Reply("the job is not in a state that allows this")
_BAD_BODY = Reply("the body is not valid (the field named)")
_RECEIPT_REPLIES = {
    200: Reply("received: every item applied or skipped (counted)", ReceiptAck),
    400: Reply("the body is not a JSON array (invalid_body)"),
    401: Reply("no ?key=, or not the function's CHATAPP_RECEIPT_KEY (unauthenticated, invalid_key)"),
    405: Reply(
        "a method other than POST", headers={"Allow": {"required": True, "schema": {"type": "string"}}}
    ),
    413: Reply("the body is larger than CHATAPP_API_MAX_BODY"),
    503: Reply("CHATAPP_RECEIPT_KEY is not set on the function (receipts_not_configured)"),
}


def _array_of(model: str, description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {JSON: {"schema": {"type": "array", "items": {"$ref": REF.format(model=model)}}}},
    }


SUBMIT_PARAMETERS = (
    _query("force", _FLAG, "true: create a job even when the same request created one in the repeat window"),
    _query("preview", _FLAG, "true: answer with what would be sent (counts, refused rows); create no job"),
    _query(
        "scheduledAt",
        _STRING,
        "with a CSV or workbook body: when to start (ISO 8601 with an offset, or local time with timeZone)",
    ),
    _query("timeZone", _STRING, "with a CSV or workbook body: the IANA zone of a scheduledAt without offset"),
    _query("sheet", _STRING, "with a workbook body: the sheet to read (default the first)"),
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 255},
        "description": "a repeat with the same key answers the same job (200, repeated) instead of a new one",
    },
)

ROUTES: tuple[Route, ...] = (
    Route(
        "get",
        "/openapi.json",
        "getOpenApi",
        "This document (no token needed)",
        {200: Reply("the OpenAPI document", model=None, content={JSON: {"schema": {"type": "object"}}})},
        scope="none",
    ),
    Route(
        "post",
        "/jobs",
        "createJob",
        "Create a job from recipients in the body, a CSV or workbook body, or a CSV in OSS",
        {
            200: Reply(
                "the job an Idempotency-Key already named (repeated: true), or with preview=true the preview",
                model=None,
                content={
                    JSON: {
                        "schema": {
                            "anyOf": [
                                {"$ref": REF.format(model="JobCreated")},
                                {"$ref": REF.format(model="Preview")},
                            ]
                        }
                    }
                },
            ),
            202: Reply(
                "the job, created: planned (recipients, CSV) or being planned (source)",
                JobCreated,
                headers={"Location": _LOCATION},
            ),
            400: Reply(
                "the body, an option, the schedule or the file is not valid (the field or line named)"
            ),
            409: Reply(
                "the same request created a job within the repeat window (probable_repeat): ?force=true"
            ),
            413: Reply("the body is larger than CHATAPP_API_MAX_BODY: put the file in OSS and send source"),
            415: Reply("a Content-Type other than JSON, CSV or a workbook"),
        },
        scope="send",
        parameters=SUBMIT_PARAMETERS,
        body={
            "required": False,
            "description": "JSON: the options and the recipients (or an OSS source). A CSV or a workbook: the "
            "recipients, with the options in the query by their API or CLI names (?channelType=whatsapp&"
            "templateCode=...); what is not given comes from the function's CHATAPP_DEFAULT_* settings.",
            "content": {
                JSON: {"schema": {"$ref": REF.format(model="Submission")}},
                CSV: {"schema": {"type": "string"}},
                XLSX: {"schema": {"type": "string", "contentMediaType": XLSX}},
            },
        },
    ),
    Route(
        "get",
        "/jobs",
        "listJobs",
        "Recent jobs, newest first, a page at a time",
        {200: Reply("a page of jobs", JobList), 400: Reply("limit or cursor is not valid (the one named)")},
        parameters=(
            _query(
                "limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "jobs per page"
            ),
            _query("cursor", _STRING, "next_cursor of the page before (opaque)"),
        ),
    ),
    Route(
        "get",
        "/jobs/{id}",
        "getJob",
        "A job's state and counts",
        {200: Reply("the job", JobState), 404: _NOT_FOUND},
        parameters=(_JOB_ID,),
    ),
    Route(
        "get",
        "/jobs/{id}/report",
        "getJobReport",
        "The per-recipient report CSV (a large one: a redirect to a short-lived presigned OSS URL)",
        {
            200: Reply(
                "the report",
                model=None,
                content={CSV: {"schema": {"type": "string"}}},
                headers={"Content-Disposition": {"required": True, "schema": _STRING}},
            ),
            302: Reply(
                "a report over CHATAPP_REPORT_INLINE_MAX: Location is a V4-presigned OSS URL valid 300 s",
                model=None,
                headers={"Location": _LOCATION},
            ),
            404: _NOT_FOUND,
            410: _PURGED,
        },
        parameters=(_JOB_ID,),
    ),
    Route(
        "post",
        "/jobs/{id}/cancel",
        "cancelJob",
        "Stop dispatching: batches not yet sent become cancelled",
        {202: Reply("cancelled", JobCancelled), 404: _NOT_FOUND, 409: _CONFLICT},
        scope="send",
        parameters=(_JOB_ID,),
    ),
    Route(
        "post",
        "/jobs/{id}/pause",
        "pauseJob",
        "Stop dispatching resumably",
        {202: Reply("paused", JobPaused), 404: _NOT_FOUND, 409: _CONFLICT},
        scope="send",
        parameters=(_JOB_ID,),
    ),
    Route(
        "post",
        "/jobs/{id}/resume",
        "resumeJob",
        "Go on with a paused job",
        {202: Reply("resumed", JobResumed), 404: _NOT_FOUND, 409: _CONFLICT},
        scope="send",
        parameters=(_JOB_ID,),
    ),
    Route(
        "post",
        "/jobs/{id}/reconcile",
        "reconcileJob",
        "Look the job's uncertain batches up in ListChatappMessage (WhatsApp, Viber); sends nothing",
        {
            200: Reply("what was found", JobReconciled),
            400: _BAD_BODY,
            404: _NOT_FOUND,
            409: _CONFLICT,
            410: _PURGED,
            502: Reply("ListChatappMessage kept failing (list_failed): the batches are left as they were"),
        },
        scope="send",
        parameters=(_JOB_ID,),
        body={"required": False, "content": {JSON: {"schema": {"$ref": REF.format(model="OperatorBody")}}}},
    ),
    Route(
        "post",
        "/jobs/{id}/resend-uncertain",
        "resendUncertain",
        "Send again what is still uncertain (reconciled first unless reconcile is false)",
        {202: Reply("reopened", JobResent), 400: _BAD_BODY, 404: _NOT_FOUND, 409: _CONFLICT, 410: _PURGED},
        scope="send",
        parameters=(_JOB_ID,),
        body={"required": False, "content": {JSON: {"schema": {"$ref": REF.format(model="OperatorBody")}}}},
    ),
    Route(
        "get",
        "/suppressions",
        "listSuppressions",
        "The suppression list of a space (numbers never sent to again), a page at a time",
        {
            200: Reply("a page of numbers", SuppressionList),
            400: Reply("space, limit or cursor is not valid (the one named)"),
        },
        parameters=(
            _SPACE,
            _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                "numbers per page",
            ),
            _query("cursor", _STRING, "next_cursor of the page before (opaque)"),
        ),
    ),
    Route(
        "post",
        "/receipts",
        "pushReceipts",
        "ChatAppStatus receipts as CAMS pushes them over HTTP (the callback URL carries ?key=)",
        _RECEIPT_REPLIES,
        scope="key",
        body=_array_of(
            "StatusReport",
            "a JSON array of ChatAppStatus reports; an item that is not one is skipped and counted",
        ),
    ),
    Route(
        "post",
        "/suppressions",
        "addSuppressions",
        "Put numbers on a space's suppression list (read as recipients are; idempotent)",
        {
            200: Reply("added", SuppressionsAdded),
            400: Reply("the body or a number is not valid (the one named)"),
        },
        scope="send",
        body={
            "required": True,
            "content": {JSON: {"schema": {"$ref": REF.format(model="SuppressionsBody")}}},
        },
    ),
    Route(
        "delete",
        "/suppressions",
        "removeSuppressions",
        "Take numbers off a space's suppression list (a JSON body, or ?number=&space=)",
        {
            200: Reply("removed", SuppressionsRemoved),
            400: Reply("the body, the number or the space is not valid (the one named)"),
        },
        scope="send",
        parameters=(
            _query("number", _STRING, "without a body: the one number to remove"),
            _SPACE,
        ),
        body={
            "required": False,
            "content": {JSON: {"schema": {"$ref": REF.format(model="SuppressionsBody")}}},
        },
    ),
    Route(
        "post",
        "/receipts/mns",
        "pushMnsReceipts",
        "ChatAppStatus receipts as an MNS batch: one report per message body (JSON, or base64 of it)",
        _RECEIPT_REPLIES,
        scope="key",
        body=_array_of("MnsMessage", "a JSON array of MNS messages; a body that is not a report is skipped"),
    ),
    Route(
        "post",
        "/inbound",
        "pushInbound",
        "ChatAppInbound messages as CAMS pushes them; a STOP word opts its sender out",
        _RECEIPT_REPLIES,
        scope="key",
        body=_array_of(
            "InboundMessage", "a JSON array of inbound messages; an item that is not one is skipped"
        ),
    ),
    Route(
        "get",
        "/receipts/unmatched",
        "listUnmatchedReceipts",
        "Receipts whose TaskId no job registered (kept aside), oldest first",
        {200: Reply("the receipts", UnmatchedReceipts), 400: Reply("limit is not valid")},
        parameters=(
            _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                "at most this many",
            ),
        ),
    ),
)

_AUTH_REPLIES = {
    401: Reply(
        "no token, or not a valid one",
        headers={
            "WWW-Authenticate": {
                "description": f'Bearer realm="{REALM}" (with error="invalid_token" when a token was sent)',
                "required": True,
                "schema": _STRING,
            }
        },
    ),
    403: Reply("the token's scope does not allow this route (insufficient_scope)"),
    503: Reply("the function has no token configured (auth_not_configured)"),
}

DESCRIPTION = f"""\
Send WhatsApp, Viber, Messenger and Instagram templates to many recipients through Alibaba Cloud CAMS.

**Authentication**: `Authorization: Bearer <token>`. A token has a scope: `read` (the GET routes), `send` (also
the POST and DELETE routes) or `admin` (everything). No or a bad token: 401 with
`WWW-Authenticate: Bearer realm="{REALM}"`; a token whose scope does not reach the route: 403
`insufficient_scope`. `GET /openapi.json` needs no token.
The receipt pushes (`POST /receipts`, `/receipts/mns`, `/inbound`: CAMS's ChatAppStatus and ChatAppInbound)
take no token: their URL carries `?key=<CHATAPP_RECEIPT_KEY>` (missing or wrong: 401; not set: 503).

**Errors**: every refusal is `{{"error": {{"code", "message", "field"?}}}}` with its status. A method a path does
not have: 405 with `Allow`.
"""


# --- building ---------------------------------------------------------------------------------------------
def _component_models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    from chatapp_mass.core.receipts import InboundMessage, MnsMessage, StatusReport
    from chatapp_mass.entry.http_api import Submission, _OperatorBody
    from chatapp_mass.entry.http_suppressions import SuppressionsBody
    from chatapp_mass.services.preview import Preview

    replies: list[type[BaseModel]] = [
        ErrorReply,
        JobCreated,
        JobList,
        JobState,
        JobPurged,
        JobCancelled,
        JobPaused,
        JobResumed,
        JobReconciled,
        JobResent,
        Preview,
        SuppressionList,
        SuppressionsAdded,
        SuppressionsRemoved,
        ReceiptAck,
        UnmatchedReceipts,
    ]
    requests: list[type[BaseModel]] = [
        Submission,
        _OperatorBody,
        SuppressionsBody,
        StatusReport,
        MnsMessage,
        InboundMessage,
    ]
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in requests]
    return modes + [(m, "serialization") for m in replies]


def _components() -> dict[str, Any]:
    _, top = models_json_schema(_component_models(), ref_template=REF)
    schemas: dict[str, Any] = top["$defs"]
    # the API's private names, public in the contract
    renames = {"_OperatorBody": "OperatorBody", "_Recipient": "Recipient"}
    text = json.dumps(schemas)
    for old, new in renames.items():
        text = text.replace(REF.format(model=old), REF.format(model=new))
    schemas = {renames.get(name, name): schema for name, schema in json.loads(text).items()}
    for name, schema in schemas.items():
        if schema.get("title") in renames:
            schema["title"] = name
    # what http_api.submit checks beyond the model: exactly one of recipients (a list) or source (a string)
    schemas["Submission"]["oneOf"] = [
        {"required": ["recipients"], "properties": {"recipients": {"type": "array"}}},
        {"required": ["source"], "properties": {"source": {"type": "string"}}},
    ]
    return dict(sorted(schemas.items()))


def _response(reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.headers:
        out["headers"] = reply.headers
    if reply.content is not None:
        out["content"] = reply.content
    elif reply.model is not None:
        out["content"] = {JSON: {"schema": {"$ref": REF.format(model=reply.model.__name__)}}}
    return out


def _operation(route: Route) -> dict[str, Any]:
    replies = dict(route.replies)
    if route.scope not in ("none", "key"):
        replies = {**replies, **_AUTH_REPLIES}
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
    }
    if route.scope == "none":
        operation["security"] = []
    elif route.scope == "key":
        operation["security"] = [{"receiptKey": []}]
        operation["description"] = (
            "No bearer token: the URL's `?key=` must be the function's CHATAPP_RECEIPT_KEY."
        )
    else:
        operation["description"] = f"Scope: `{route.scope}` (or `admin`)."
    if route.parameters:
        operation["parameters"] = list(route.parameters)
    if route.body is not None:
        operation["requestBody"] = route.body
    operation["responses"] = {str(status): _response(replies[status]) for status in sorted(replies)}
    return operation


def build_document(server: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document (a JSON-ready dict)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "receiptKey": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "key",
                    "description": "the receipt push URLs' secret: CHATAPP_RECEIPT_KEY",
                },
            },
        },
    }


@functools.cache
def document_text() -> str:
    """The document as kept in ``docs/openapi.json``: indented, keys in a stable order, a final newline
    (built once per process)."""
    return json.dumps(build_document(), indent=2, ensure_ascii=False) + "\n"


def serve_document(event: HttpEvent) -> dict[str, Any]:
    """``GET /openapi.json``: the document, to anyone (the api function's front serves it before the token
    check: :func:`chatapp_mass.entry.console.serve`)."""
    from chatapp_mass.entry.http_api import ApiError, error_reply, reply

    if event.method != "GET":
        return error_reply(ApiError(405, "method_not_allowed", f"{event.method} {OPENAPI_PATH}: use GET"))
    return reply(200, document_text())


def main() -> int:
    """``python -m chatapp_mass.entry.openapi`` (or ``chatapp-mass openapi``): the document on stdout."""
    import sys

    sys.stdout.write(document_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
