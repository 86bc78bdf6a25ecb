"""HTTP in, reply out: the FC 3.0 ``InvokeFunction`` API and the admin endpoints. No rules here.

``InvokeFunction`` as ``alibabacloud_fc20230330`` 4.8.3 calls it (``Client.invoke_function_with_options``):
ROA ``POST /2023-03-30/functions/{percent-encoded name}/invocations[?qualifier=Q]``, body
``application/octet-stream``, headers ``x-fc-invocation-type`` (Sync, the default, or Async),
``x-fc-log-type`` (None or Tail), ``x-fc-async-task-id``, and — through ``common_headers``, as the SDK has
no field for it — ``x-fc-async-delay`` (seconds, 0–3600). It is signed with ACS3-HMAC-SHA256 exactly like
the CAMS RPC call (same ``do_request``), so the local CAMS's verification is reused as it is.

Replies: Sync — 200, ``x-fc-request-id``, the handler's result as the body; when the invocation failed
(raised, crashed, timed out) still 200 but with ``x-fc-error-type: UnhandledInvocationError`` and the
error JSON as the body (as FC does); ``x-fc-log-result`` (base64 of the last 4 KB of output) with
``x-fc-log-type: Tail``. Async — 202 with ``x-fc-request-id`` and no body (202 is UNVERIFIED for FC 3.0;
commonly observed). Refusals — the FC error JSON (:mod:`.exceptions`) with its status.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote

from .. import ram
from .._accounts import Account
from .._http import HttpRequest, is_loopback, json_object
from ..cams import exceptions as cams_exc
from ..cams.responses import CamsResponse, _parse_authorization, parse_query
from . import exceptions as exc
from .models import UNHANDLED, FcBackend, SyncResult, new_request_id
from .worker import LOG_TAIL_BYTES

API_VERSION = "2023-03-30"
ADMIN_PREFIX = "/_localfc/"
_INVOKE_PATH = re.compile(r"^/2023-03-30/functions/(?P<name>[^/]+)/invocations/?$")
_JSON = "application/json"


@dataclass
class Reply:
    http_status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = _JSON


def error_reply(error: exc.FcError, request_id: str) -> Reply:
    body = json.dumps(error.body(request_id)).encode("utf-8")
    return Reply(error.http_status, body, {"x-fc-request-id": request_id})


def fc_error_for(error: cams_exc.CamsError, access_key_id: str | None) -> exc.FcError:
    """The FC refusal for one of the local CAMS's signature checks (mapping: see :mod:`.exceptions`)."""
    if isinstance(error, cams_exc.InvalidAccessKeyIdNotFound):
        return exc.InvalidAccessKeyID(access_key_id or "")
    if isinstance(
        error, (cams_exc.SignatureDoesNotMatch, cams_exc.IncompleteSignature, cams_exc.InvalidSignatureMethod)
    ):
        signature_error = exc.SignatureNotMatch()
        if not isinstance(error, cams_exc.SignatureDoesNotMatch):
            signature_error.message = f"{signature_error.message} ({error.message})"
        return signature_error
    if isinstance(error, cams_exc.InvalidTimeStampFormat):
        return exc.InvalidArgument(f"x-acs-date: {error.message}")
    return exc.AccessDenied(f"{error.code}: {error.message}")


class InvokeResponse:
    """The FC API endpoint: authenticate, route, call the backend, shape the reply."""

    def __init__(self, backend: FcBackend) -> None:
        self.backend = backend
        # the local CAMS's checks need account(), use_nonce(), max_clock_skew and
        # token_belongs_to_another_account() of its backend: FcBackend has all four
        self._signature = CamsResponse(cast(Any, backend))

    def dispatch(self, request: HttpRequest) -> Reply:
        request_id = new_request_id()
        try:
            params = parse_query(request.query_string)
            account = self._authenticate(request, params)
            match = _INVOKE_PATH.match(request.path)
            if request.method != "POST" or match is None:
                raise exc.PathNotSupported(request.method, request.path)
            function = unquote(match["name"])
            self._authorize(account, function)
            return self._invoke(function, request, params)
        except exc.FcError as error:
            return error_reply(error, request_id)

    def _authenticate(self, request: HttpRequest, params: dict[str, str]) -> Account:
        access_key_id = None
        try:
            authorization = _parse_authorization(request.header("authorization"))
            access_key_id = authorization.access_key_id
            return self._signature._authenticate(request, params, authorization)
        except cams_exc.CamsError as error:
            raise fc_error_for(error, access_key_id) from None

    def _authorize(self, account: Account, function: str) -> None:
        """A role's InvokeFunction, refused unless its policy allows ``fc:InvokeFunction`` on
        ``acs:fc:REGION:ACCOUNT:functions/NAME`` (the FC 3.0 "RAM authorization" page, api-fc-2023-03-30-ram).
        The refusal is 403 ``AccessDenied`` (FC error codes page). ASSUMPTIONS: the message's wording; a
        qualifier is authorized as the function itself."""
        if account.policy is None:
            return
        resource = ram.fc_resource(self.backend.region_id, self.backend.account_id, function)
        decision = account.authorize("fc:InvokeFunction", resource)
        if not decision.allowed:
            principal = account.role or account.access_key_id
            self.backend.denials.append((principal, "fc:InvokeFunction", resource, decision.value))
            raise exc.AccessDenied(
                f"the caller is not authorized to perform 'fc:InvokeFunction' on resource '{resource}' "
                f"({decision.value}; principal {principal})"
            )

    def _invoke(self, function: str, request: HttpRequest, params: dict[str, str]) -> Reply:
        invocation_type = (request.header("x-fc-invocation-type") or "Sync").strip()
        qualifier = params.get("qualifier") or None
        if invocation_type.lower() == "async":
            request_id = self.backend.invoke_async(
                function,
                request.body,
                delay=_async_delay(request.header("x-fc-async-delay")),
                qualifier=qualifier,
                task_id=request.header("x-fc-async-task-id"),
            )
            return Reply(202, b"", {"x-fc-request-id": request_id})
        if invocation_type.lower() != "sync":
            raise exc.InvalidArgument(f"x-fc-invocation-type must be Sync or Async, not {invocation_type!r}")
        result = self.backend.invoke_sync(function, request.body, qualifier=qualifier)
        return sync_reply(result, tail=(request.header("x-fc-log-type") or "").lower() == "tail")


def _async_delay(value: str | None) -> float:
    if value is None or value.strip() == "":
        return 0
    try:
        delay = int(value)
    except ValueError:
        raise exc.InvalidArgument(
            f"x-fc-async-delay must be an integer number of seconds, not {value!r}"
        ) from None
    if not 0 <= delay <= 3600:
        raise exc.InvalidArgument(f"x-fc-async-delay must be between 0 and 3600, not {delay}")
    return delay


def sync_reply(result: SyncResult, *, tail: bool) -> Reply:
    outcome = result.outcome
    headers = {"x-fc-request-id": result.request_id}
    if tail:
        log_tail = outcome.log.encode("utf-8", errors="replace")[-LOG_TAIL_BYTES:]
        headers["x-fc-log-result"] = base64.b64encode(log_tail).decode("ascii")
    if outcome.status == "ok":
        return Reply(200, outcome.body, headers, "application/octet-stream")
    headers["x-fc-error-type"] = UNHANDLED
    return Reply(200, json.dumps(outcome.error or {}).encode("utf-8"), headers)


class AdminResponse:
    """Unsigned test endpoints under ``/_localfc/``, answered to loopback clients only.

    GET  /_localfc/functions       name, resource, runtime, handler, memory, timeout, triggers per function
    GET  /_localfc/invocations     every InvocationRecord (JSON list)
    GET  /_localfc/cold_starts     every ColdStart
    GET  /_localfc/destinations    every DestinationRecord
    GET  /_localfc/stats           per-function counts, statuses, cold starts, peak busy, GB-seconds
    POST /_localfc/crash_next      {"function", "point", "n"}
    POST /_localfc/fail_next       {"function", "n", "code", "message"}
    POST /_localfc/duplicate_next  {"function", "n"}
    POST /_localfc/fire_timer      {"function", "trigger"}  -> {"request_id"}
    GET  /_localfc/scheduled       queued events: [due time, function, request id]
    POST /_localfc/wait_idle       {"timeout", "include_delayed"}  -> {"idle": bool}
    POST /_localfc/reset           forget records, faults and queued events
    """

    def __init__(self, backend: FcBackend) -> None:
        self.backend = backend
        b = backend
        self._routes: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
            ("GET", "functions"): lambda _: [_function_info(b, name) for name in b.function_names],
            ("GET", "invocations"): lambda _: [r.to_dict() for r in b.records()],
            ("GET", "cold_starts"): lambda _: [vars(c) for c in list(b.cold_starts)],
            ("GET", "destinations"): lambda _: [d.to_dict() for d in list(b.destinations)],
            ("GET", "stats"): lambda _: b.stats(),
            ("POST", "crash_next"): lambda o: b.crash_next(o["function"], o["point"], int(o.get("n", 1))),
            ("POST", "fail_next"): lambda o: b.fail_next(
                o["function"], int(o.get("n", 1)), o.get("code", "InternalServerError"), o.get("message")
            ),
            ("POST", "duplicate_next"): lambda o: b.duplicate_next(o["function"], int(o.get("n", 1))),
            ("POST", "fire_timer"): lambda o: {"request_id": b.fire_timer(o["function"], o["trigger"])},
            ("GET", "scheduled"): lambda _: b.scheduled(),
            ("POST", "wait_idle"): lambda o: {
                "idle": b.wait_idle(
                    float(o.get("timeout", 10.0)), include_delayed=bool(o.get("include_delayed"))
                )
            },
            ("POST", "reset"): lambda _: b.reset(),
        }

    def dispatch(self, request: HttpRequest) -> Reply:
        if not is_loopback(request.client_host):
            return _json(403, {"Code": "Forbidden", "Message": "Admin endpoints answer loopback only."})
        route = self._routes.get((request.method, request.path[len(ADMIN_PREFIX) :]))
        if route is None:
            return _json(
                404, {"Code": "NotFound", "Message": f"No admin endpoint {request.method} {request.path}."}
            )
        try:
            result = route(json_object(request.body) if request.method == "POST" else {})
        except exc.FcError as error:
            return error_reply(error, "")
        except (ValueError, TypeError, KeyError) as error:
            return _json(400, {"Code": "InvalidArgument", "Message": f"{type(error).__name__}: {error}"})
        return _json(200, {"ok": True} if result is None else result)


def _function_info(backend: FcBackend, name: str) -> dict[str, Any]:
    spec = backend.spec(name)
    return {
        "name": spec.name,
        "resource": spec.resource,
        "runtime": spec.runtime,
        "handler": spec.handler,
        "memory_size": spec.memory_size,
        "timeout": spec.timeout,
        "triggers": [{"name": t.name, "type": t.type} for t in spec.triggers],
    }


def _json(status: int, body: Any) -> Reply:
    return Reply(status, json.dumps(body).encode("utf-8"))
