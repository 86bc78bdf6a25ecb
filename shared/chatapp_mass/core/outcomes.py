"""The one place where a CAMS reply, or a failure to get one, becomes a decision.

Classification goes by the reply's ``Code`` whatever the HTTP status:

==============  =====================================================  =======================================
kind            when                                                   what the sender does
==============  =====================================================  =======================================
sent            ``Code == "OK"`` (CAMS accepted the batch)             batch ``sent``
throttled       ``System.LimitControl``, ``Throttling*``               retry within the rate; never a failure
fatal           account- or template-level refusal (see FATAL_CODES)   batch ``failed``; the job stops
recipient       a refusal caused by one recipient (RECIPIENT_CODES)    batch split in halves until the bad
                                                                       one is alone; it alone ``failed``
failed          any other refusal (``InvalidParameter.*``, other 4xx)  batch ``failed`` with code and message
uncertain       HTTP 5xx, read timeout, reset after sending, non-JSON  batch ``uncertain``; never resent
                                                                       automatically
not_sent        connection refused / connect timeout, DNS failure, or  retry within the rate (backoff)
                any failure before the request was written (the HTTP
                layer saw no request leave: ``adapters.transport``)
credentials     credentials could not be loaded (no keys, no profile,  batch back to ``pending``; the run
                an unreadable role): raised before any byte left        stops, saying which keys to set
==============  =====================================================  =======================================

A failure raised before any byte of the request left is never ``uncertain``: CAMS cannot have seen it.

One non-JSON reply is not ambiguous: the gateway's own HTML page for a request it refused as too large
before any API logic — 414 (request line) or 413 (body). The OpenAPI gateway (Tengine) answers an over-long
URL with ``<title>414 Request-URI Too Large</title>`` (aliyun/openapi-core-nodejs-sdk issue #55, quoted in
ALIBABA-FACTS); HTTP says a 413/414 request was not processed (RFC 9110 §15.5.14, §15.5.15). Such a batch is
``failed`` with code ``RequestURITooLong`` / ``RequestEntityTooLarge`` and what to do: nothing was sent, and
the same request would be refused again.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from enum import Enum
from typing import Any


class OutcomeKind(str, Enum):
    sent = "sent"
    throttled = "throttled"
    fatal = "fatal"
    failed = "failed"
    uncertain = "uncertain"
    not_sent = "not_sent"
    recipient = "recipient"
    credentials = "credentials"


CREDENTIALS_CODE = "CredentialsNotLoaded"
# What to do about it, in the words of the SDK's default credential chain (README "Credentials and endpoint").
CREDENTIALS_FIX = (
    "set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (plus ALIBABA_CLOUD_SECURITY_TOKEN for "
    "STS keys), or a profile in ~/.alibabacloud/credentials.ini (ALIBABA_CLOUD_PROFILE picks one), or run "
    "where a RAM role is attached"
)


THROTTLE_CODES = frozenset({"System.LimitControl", "Throttling", "Throttling.User", "Throttling.Api"})
# Refusals that every other batch of the job would get too: stop the job instead of failing a million rows
# one batch at a time.
FATAL_CODES = frozenset(
    {
        "Ram.PermissionDeny",
        "Product.Unsubscript",
        "Unknown.ResourceOwnerId",
        "Forbidden.RAM",
        "NoPermission",
        "InvalidAccessKeyId",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Mismatch",
        "InvalidSecurityToken.MalFormed",
        "DetailError.TemplateNotExist",
    }
)
FATAL_PREFIXES = ("Authentication.", "InvalidSecurityToken.", "InvalidAccessKeyId.", "Template.")
# Refusals of the whole call for what one recipient holds: the others are fine, so the batch is split to
# isolate it (parts.split_batch). A number our own check (phonenumbers) accepts can still be one CAMS
# refuses. Whether the reply names the number is not documented, so it is found by halving.
RECIPIENT_CODES = frozenset({"InvalidParameter.PhoneNumberError"})


@dataclass(frozen=True)
class SendOutcome:
    kind: OutcomeKind
    code: str = ""
    message: str = ""
    request_id: str = ""
    group_message_id: str = ""
    http_status: int | None = None

    @property
    def reached_service(self) -> bool:
        return self.kind not in (OutcomeKind.not_sent, OutcomeKind.credentials)


def credentials_outcome(detail: str) -> SendOutcome:
    """Credentials could not be loaded: nothing was signed, so nothing was sent."""
    return SendOutcome(
        OutcomeKind.credentials,
        code=CREDENTIALS_CODE,
        message=f"no Alibaba Cloud credentials, nothing sent: {detail[:300]}. To fix: {CREDENTIALS_FIX}",
    )


def is_credentials_error(exc: BaseException) -> bool:
    """``alibabacloud_credentials`` (and Tea's) ``CredentialException``, anywhere in the chain: raised while
    loading credentials, before a request is signed (matched by name: both SDKs define one)."""
    return any(type(e).__name__ == "CredentialException" for e in _chain(exc))


def nothing_left(outcome: SendOutcome, detail: str) -> SendOutcome:
    """``outcome`` (no usable reply) re-read knowing the request never left (see ``adapters.transport``)."""
    if (
        outcome.kind is not OutcomeKind.uncertain
        or outcome.http_status is not None
        or outcome.code in ("ReadTimeout", "NonJsonReply")
    ):
        return outcome  # a reply (or the wait for one) means the request did leave: keep it as it was
    return SendOutcome(
        OutcomeKind.not_sent,
        code="NotSent",
        message=f"failed before the request left ({detail}): {outcome.message}"[:500],
        http_status=outcome.http_status,
    )


def is_throttle_code(code: str) -> bool:
    return code in THROTTLE_CODES or code.startswith("Throttling")


def is_fatal_code(code: str) -> bool:
    return code in FATAL_CODES or code.startswith(FATAL_PREFIXES)


def classify_reply(http_status: int, body: dict[str, Any]) -> SendOutcome:
    """A reply that arrived and parsed as JSON."""
    code = str(body.get("Code") or body.get("code") or "")
    message = str(body.get("Message") or body.get("message") or "")
    request_id = str(body.get("RequestId") or body.get("requestId") or "")

    def outcome(kind: OutcomeKind, group_message_id: str = "") -> SendOutcome:
        return SendOutcome(kind, code, message, request_id, group_message_id, http_status)

    if code == "OK" and http_status < 300:
        return outcome(OutcomeKind.sent, group_message_id=str(body.get("GroupMessageId") or ""))
    if is_throttle_code(code):
        return outcome(OutcomeKind.throttled)
    if is_fatal_code(code):
        return outcome(OutcomeKind.fatal)
    if code in RECIPIENT_CODES:
        return outcome(OutcomeKind.recipient)
    if http_status >= 500:
        return outcome(OutcomeKind.uncertain)
    return outcome(OutcomeKind.failed)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes/contexts, and the reasons urllib3 and requests tuck into ``args``."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        for linked in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            getattr(current, "inner_exception", None),
        ):
            if isinstance(linked, BaseException):
                todo.append(linked)
        todo.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return seen


# The title of the gateway's HTML page for a request refused as too large (see the module docstring); the
# other spellings are HTTP's and nginx's names for the same statuses.
_TOO_LARGE_PAGE = re.compile(
    r"<title>\s*(41[34])\s+(?:Request-URI Too Large|Request-URI Too Long|URI Too Long|Request Entity Too Large|"
    r"Payload Too Large|Content Too Large)\s*</title>",
    re.IGNORECASE,
)
_TOO_LARGE = {
    414: (
        "RequestURITooLong",
        "the CAMS gateway refused the request line as too long (HTTP 414) before processing it: nothing was "
        "sent. Send SenderList in the body (CHATAPP_CAMS_PARAMS_IN=body, the default), or lower "
        "--max-request-bytes / --batch-size",
    ),
    413: (
        "RequestEntityTooLarge",
        "the CAMS gateway refused the request body as too large (HTTP 413) before processing it: nothing was "
        "sent. Lower --max-request-bytes or --batch-size",
    ),
}


def gateway_refusal(page: str) -> SendOutcome | None:
    """The outcome of a non-JSON reply that is the gateway's 413/414 page, else None."""
    match = _TOO_LARGE_PAGE.search(page[:4096])
    if match is None:
        return None
    status = int(match.group(1))
    code, message = _TOO_LARGE[status]
    return SendOutcome(OutcomeKind.failed, code=code, message=message, http_status=status)


def classify_transport_error(exc: BaseException) -> SendOutcome:
    """A call that got no usable reply. The SDK wraps all of these alike (``UnretryableException``, the
    transport error in ``__context__``), so the chain is searched for what really happened.

    ``requests`` and ``urllib3`` are imported here, not with the module: only a failed SDK call gets here, and
    the SDK has loaded them by then; a function that never calls CAMS never pays for them at a cold start."""
    import requests
    import urllib3.exceptions

    chain = _chain(exc)
    if is_credentials_error(exc):
        culprit = next(e for e in chain if type(e).__name__ == "CredentialException")
        return credentials_outcome(str(culprit))
    name = type(chain[-1]).__name__
    text = f"{name}: {chain[-1]}"[:500]
    not_json = [e for e in chain if isinstance(e, json.JSONDecodeError)]
    if not_json:
        # the SDK read an error reply as JSON and failed (tea-openapi do_request): the page is the error's doc
        refusal = gateway_refusal(not_json[0].doc)
        if refusal is not None:
            return refusal
        return SendOutcome(OutcomeKind.uncertain, code="NonJsonReply", message="the reply was not JSON")
    if any(
        isinstance(e, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError) for e in chain
    ):
        return SendOutcome(OutcomeKind.uncertain, code="ReadTimeout", message=text)
    nothing_sent = (
        requests.exceptions.ConnectTimeout,
        urllib3.exceptions.ConnectTimeoutError,
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.NameResolutionError,
        ConnectionRefusedError,
        socket.gaierror,  # a name that does not resolve, should a layer not wrap it
    )
    if any(isinstance(e, nothing_sent) for e in chain):
        return SendOutcome(OutcomeKind.not_sent, code="ConnectFailed", message=text)
    return SendOutcome(OutcomeKind.uncertain, code="TransportError", message=text)
