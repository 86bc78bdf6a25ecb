"""An FC 3.0 HTTP trigger of a built-in runtime: the request becomes an event, the handler's result a reply.
No sockets here (``server.py`` serves each trigger on its own loopback port); this decides.

The event (reference/ALIBABA-FACTS.md §1; FC's "Use an HTTP trigger to invoke a function" page, and
devsapp/fc3 ``event-template/http.json`` for ``requestContext.triggerId``), as JSON bytes::

    {"version": "v1",
     "rawPath": "/a%20b",                        # the path as the client sent it (still URL-encoded)
     "body": "...", "isBase64Encoded": false,    # "" without a body; base64 with true when binary (below)
     "headers": {"Content-Type": "text/plain", "X-Many": "1,2"},  # as the client spelled them; "," joins
     "queryParameters": {"q": "a b", "many": "1,2"},              # URL-decoded; repeats joined by ","
     "requestContext": {
         "accountId": "1234567890123456",
         "domainName": "<url id>.<region>.fcapp.run", "domainPrefix": "<url id>",
         "http": {"method": "GET", "path": "/a b", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                  "userAgent": "..."},
         "requestId": "1-...",                   # the invocation's id (also x-fc-request-id and the record's)
         "time": "2023-09-05T06:41:11Z",         # ISO 8601 UTC to the second, as the FC page's example
         "timeEpoch": "1693896071895",           # milliseconds, a string
         "triggerId": "<uuid>"}}

The url id and trigger id are stable fakes (derived from account, region, function and trigger name). A
body is base64-encoded when it is not valid UTF-8, when it has a ``Content-Encoding`` other than identity,
or when its ``Content-Type`` is binary (:data:`BINARY_CONTENT_TYPES`); FC's page only says "binary" —
which content types FC counts as binary is this emulator's ASSUMPTION. Headers are passed as received
(FC replaces some hop-by-hop ones with its own; not modelled).

The reply (UNVERIFIED, per the facts file: FC documents the response struct but not what it does with
anything else):

- a JSON object with ``statusCode`` (100–599): that status, ``headers`` (a map; a list value becomes one
  header line per item), ``body`` (a string, base64-decoded when ``isBase64Encoded``; absent: empty);
  anything malformed there is a 502 ``InvalidFunctionResponse`` (ASSUMED code). Response headers FC sets
  itself are dropped, as are ``x-fc-*`` ones (FC's HTTP trigger limits, quoted at
  https://developer.aliyun.com/ask/647205: connection, content-length, content-encoding, date, keep-alive,
  proxy-authenticate, server, trailer, transfer-encoding, upgrade).
- anything else (a plain string, bytes, a JSON object without ``statusCode``, a list): 200 with the result as
  it is — the rule this emulator ASSUMES.
- the handler raised, its instance crashed or it timed out: 502, ``x-fc-error-type:
  UnhandledInvocationError``, body ``{"ErrorCode": "UnhandledInvocationError", "ErrorMessage": ...}``
  (ASSUMED shape). A refusal before the function ran (injected system error): that error's status and code.

Every reply carries ``x-fc-request-id``. ``triggerConfig.methods`` is honoured (405 with ``Allow``; no
``methods``: every method); ``authType`` ``anonymous`` is served, ``function`` and ``jwt`` are answered 403
(not emulated: the product uses an anonymous trigger and its own bearer token); ``disableURLInternet`` is
ignored. FC allows one HTTP trigger per function (same source); a second is refused when the emulator starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from alibaba_localcloud.syaml import FunctionSpec, TriggerSpec

from .._http import HttpRequest
from . import exceptions as exc
from .models import UNHANDLED, FcBackend, new_request_id

HTTP_TRIGGER = "http"
ANONYMOUS = "anonymous"
#: the methods an FC HTTP trigger can allow (triggerConfig.methods)
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS")
#: content types whose body goes to the function base64-encoded even when it happens to be UTF-8 (ASSUMED)
BINARY_CONTENT_TYPES = (
    "application/octet-stream",
    "application/zip",
    "application/gzip",
    "application/pdf",
    "application/x-protobuf",
    "application/protobuf",
    "application/grpc",
    "application/vnd.android.package-archive",
)
BINARY_CONTENT_TYPE_PREFIXES = ("image/", "audio/", "video/", "font/")
#: response headers FC sets itself, dropped from what the function returns (plus every ``x-fc-*``)
FC_OWNED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "content-encoding",
        "date",
        "keep-alive",
        "proxy-authenticate",
        "server",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
REQUEST_ID_HEADER = "x-fc-request-id"
_JSON = "application/json"
_URL_ID_CHARACTERS = re.compile(r"[^a-z0-9-]+")


@dataclass
class HttpReply:
    """What the trigger answers: a status, header lines in order (a name may repeat), and the body (not sent
    for HEAD, but its length is)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)


class InvalidFunctionResponse(ValueError):
    """The handler returned a response struct (it has ``statusCode``) that cannot be sent."""


# --- the trigger ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpTrigger:
    """One function's HTTP trigger as s.yaml configures it, with the stable fake ids its events carry."""

    function: str
    name: str
    methods: tuple[str, ...]  # upper case; empty: every method
    auth_type: str
    qualifier: str | None
    trigger_id: str
    url_id: str
    region_id: str

    @classmethod
    def from_spec(
        cls, function: str, trigger: TriggerSpec, *, account_id: str, region_id: str
    ) -> HttpTrigger:
        """ValueError for a ``triggerConfig`` FC would refuse (a method it does not know, a non-list)."""
        config = trigger.config
        methods = config.get("methods") or []
        if not isinstance(methods, (list, tuple)):
            raise ValueError(
                f"HTTP trigger {trigger.name!r} of {function}: triggerConfig.methods must be a list"
            )
        upper = tuple(dict.fromkeys(str(method).upper() for method in methods))
        unknown = [method for method in upper if method not in HTTP_METHODS]
        if unknown:
            raise ValueError(
                f"HTTP trigger {trigger.name!r} of {function}: unknown methods {unknown} "
                f"(FC allows {', '.join(HTTP_METHODS)})"
            )
        seed = f"{account_id}:{region_id}:{function}:{trigger.name}"
        digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()
        prefix = _URL_ID_CHARACTERS.sub("-", function.lower()).strip("-")[:40] or "function"
        return cls(
            function=function,
            name=trigger.name,
            methods=upper,
            auth_type=str(config.get("authType") or ANONYMOUS).lower(),
            qualifier=trigger.qualifier,
            trigger_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"fc-local:{seed}")),
            url_id=f"{prefix}-{digest[:10]}",
            region_id=region_id,
        )

    @property
    def domain_name(self) -> str:
        return f"{self.url_id}.{self.region_id}.fcapp.run"

    def allows(self, method: str) -> bool:
        return not self.methods or method.upper() in self.methods


def http_triggers(
    specs: Iterable[FunctionSpec], *, account_id: str, region_id: str
) -> dict[str, HttpTrigger]:
    """The HTTP trigger of every function that has one, by function name, in s.yaml order. ValueError for a
    function with two (FC allows one per function)."""
    triggers: dict[str, HttpTrigger] = {}
    for spec in specs:
        for trigger in spec.triggers:
            if trigger.type != HTTP_TRIGGER:
                continue
            if spec.name in triggers:
                raise ValueError(
                    f"function {spec.name} has two HTTP triggers ({triggers[spec.name].name!r}, "
                    f"{trigger.name!r}); FC allows one per function"
                )
            triggers[spec.name] = HttpTrigger.from_spec(
                spec.name, trigger, account_id=account_id, region_id=region_id
            )
    return triggers


# --- request -> event ---------------------------------------------------------------------------------------
def http_event(
    request: HttpRequest,
    trigger: HttpTrigger,
    *,
    account_id: str,
    request_id: str,
    received_at: float,
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """The FC3 HTTP trigger event for ``request`` (shape: module docstring)."""
    body, encoded = event_body(
        request.body, request.header("content-type"), request.header("content-encoding")
    )
    return {
        "version": "v1",
        "rawPath": request.path,
        "body": body,
        "isBase64Encoded": encoded,
        "headers": joined_headers(request.headers),
        "queryParameters": query_parameters(request.query_string),
        "requestContext": {
            "accountId": account_id,
            "domainName": trigger.domain_name,
            "domainPrefix": trigger.url_id,
            "http": {
                "method": request.method,
                "path": unquote(request.path),
                "protocol": protocol,
                "sourceIp": request.client_host,
                "userAgent": request.header("user-agent") or "",
            },
            "requestId": request_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(received_at)),
            "timeEpoch": str(int(received_at * 1000)),
            "triggerId": trigger.trigger_id,
        },
    }


def event_body(raw: bytes, content_type: str | None, content_encoding: str | None = None) -> tuple[str, bool]:
    """``(body, isBase64Encoded)``: text as it is, binary (see the module docstring) as base64."""
    if not raw:
        return "", False
    if not is_binary(content_type, content_encoding):
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(raw).decode("ascii"), True


def is_binary(content_type: str | None, content_encoding: str | None = None) -> bool:
    if content_encoding and content_encoding.strip().lower() not in ("", "identity"):
        return True  # gzip'd text is bytes to the function
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type in BINARY_CONTENT_TYPES or media_type.startswith(BINARY_CONTENT_TYPE_PREFIXES)


def joined_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """One entry per header name (the first spelling the client used), repeated values joined by ","."""
    spelling: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        spelling.setdefault(key, name)
        values.setdefault(key, []).append(value)
    return {spelling[key]: ",".join(parts) for key, parts in values.items()}


def query_parameters(query_string: str) -> dict[str, str]:
    """URL-decoded (``+`` is a space), repeated keys joined by ","."""
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        values.setdefault(key, []).append(value)
    return {key: ",".join(parts) for key, parts in values.items()}


# --- result -> reply ----------------------------------------------------------------------------------------
def function_reply(result: bytes) -> HttpReply:
    """Map what the handler returned (bytes, as the worker encoded it) to the reply (rules: module docstring).
    InvalidFunctionResponse for a response struct that cannot be sent."""
    struct = _response_struct(result)
    if struct is None:
        return HttpReply(200, [], result)
    status = struct["statusCode"]
    if isinstance(status, str) and status.strip().isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidFunctionResponse(f"statusCode must be an integer from 100 to 599, not {status!r}")
    return HttpReply(status, _response_headers(struct.get("headers")), _response_body(struct))


def _response_struct(result: bytes) -> dict[str, Any] | None:
    if not result.lstrip().startswith(b"{"):
        return None
    try:
        parsed = json.loads(result)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) and "statusCode" in parsed else None


def _response_headers(headers: Any) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if not isinstance(headers, Mapping):
        raise InvalidFunctionResponse(f"headers must be a map, not {type(headers).__name__}")
    lines: list[tuple[str, str]] = []
    for name, value in headers.items():
        name = str(name)
        if name.lower() in FC_OWNED_RESPONSE_HEADERS or name.lower().startswith("x-fc-"):
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (dict, list)) or item is None:
                raise InvalidFunctionResponse(f"header {name!r} must be a string, not {item!r}")
            text = _scalar(item)
            if "\r" in text or "\n" in text:
                raise InvalidFunctionResponse(f"header {name!r} has a line break")
            lines.append((name, text))
    return lines


def _response_body(struct: Mapping[str, Any]) -> bytes:
    body = struct.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise InvalidFunctionResponse(f"body must be a string, not {type(body).__name__}")
    if struct.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidFunctionResponse("isBase64Encoded is true but body is not base64") from None
    return body.encode("utf-8")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def error_reply(
    status: int, code: str, message: str, request_id: str, extra: Iterable[tuple[str, str]] = ()
) -> HttpReply:
    """An answer the emulator itself gives (not the function's): JSON ``{"ErrorCode", "ErrorMessage"}``."""
    body = json.dumps({"ErrorCode": code, "ErrorMessage": message}).encode("utf-8")
    return HttpReply(status, [("Content-Type", _JSON), *extra, (REQUEST_ID_HEADER, request_id)], body)


# --- the decisions ------------------------------------------------------------------------------------------
class HttpTriggerResponse:
    """One trigger's endpoint: check the method and the auth type, invoke the function with the event,
    shape the reply. The body size limit is the server's (it must refuse before reading the body)."""

    def __init__(self, backend: FcBackend, trigger: HttpTrigger) -> None:
        self.backend = backend
        self.trigger = trigger

    def dispatch(self, request: HttpRequest, *, received_at: float, protocol: str = "HTTP/1.1") -> HttpReply:
        request_id = new_request_id()
        trigger = self.trigger
        if not trigger.allows(request.method):
            return error_reply(
                405,
                "MethodNotAllowed",
                f"method {request.method} is not allowed by HTTP trigger {trigger.name!r} "
                f"(triggerConfig.methods: {', '.join(trigger.methods)})",
                request_id,
                [("Allow", ", ".join(trigger.methods))],
            )
        if trigger.auth_type != ANONYMOUS:
            return error_reply(
                403,
                "AccessDenied",
                f"HTTP trigger {trigger.name!r} of {trigger.function} has authType "
                f"{trigger.auth_type!r}: the local FC serves only anonymous HTTP triggers "
                f"(signature and JWT authentication are not emulated)",
                request_id,
            )
        event = http_event(
            request,
            trigger,
            account_id=self.backend.account_id,
            request_id=request_id,
            received_at=received_at,
            protocol=protocol,
        )
        payload = json.dumps(event, ensure_ascii=False).encode("utf-8")
        try:
            result = self.backend.invoke_sync(
                trigger.function, payload, qualifier=trigger.qualifier, trigger="http", request_id=request_id
            )
        except exc.FcError as failure:
            return error_reply(failure.http_status, failure.code, failure.message, request_id)
        outcome = result.outcome
        if outcome.status != "ok":
            error = outcome.error or {}
            message = str(error.get("errorMessage") or outcome.status)
            if error.get("errorType"):
                message = f"{error['errorType']}: {message}"
            return error_reply(502, UNHANDLED, message, request_id, [("x-fc-error-type", UNHANDLED)])
        try:
            reply = function_reply(outcome.body)
        except InvalidFunctionResponse as error:
            return error_reply(502, "InvalidFunctionResponse", str(error), request_id)
        reply.headers.append((REQUEST_ID_HEADER, request_id))
        return reply

    def too_large(self) -> HttpReply:
        limit = self.backend.http_body_limit
        return error_reply(413, exc.EntityTooLarge.code, exc.EntityTooLarge(limit).message, new_request_id())
