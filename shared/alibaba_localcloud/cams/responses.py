"""HTTP in, reply out: parse the request, check the ACS3-HMAC-SHA256 signature, call the backend.

The signature is recomputed exactly as ``alibabacloud_tea_openapi`` 0.4.6 computes it
(``utils.get_authorization``, ``get_canonical_query_string``, ``get_canonicalized_headers`` and
``client.do_request``)::

    CanonicalRequest = METHOD \\n URI \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders
                       \\n HexPayloadHash
    StringToSign     = "ACS3-HMAC-SHA256\\n" + hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(secret, StringToSign))

CanonicalQuery: keys sorted, ``key=quote(value, safe='~')`` joined by '&' (the wire uses ``urlencode``, so
'+' on the wire is a space); the query's parameters only. CanonicalHeaders: only the headers the client
listed in ``SignedHeaders`` (transport headers such as Accept-Encoding and Content-Length are added after
signing), lower-cased,
``name:value.strip()``; repeated headers joined by ',' after sorting. HexPayloadHash is the
``x-acs-content-sha256`` header, which must equal sha256(body).

**Parameters in the body.** An RPC operation's parameters may travel in the query or in an
``application/x-www-form-urlencoded`` body, which the signature covers through its hash: V3 signature document
("Request syntax and signature method V3", https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature
: RequestBody, ``x-acs-content-sha256`` = hex SHA-256 of the payload, HashedRequestPayload), and tea-openapi 0.4.6
``client.py::do_request``: with ``req_body_type='formData'`` the body is ``Utils.to_form(body)`` (urlencoded,
keys sorted), ``content-type: application/x-www-form-urlencoded``, and its hash is ``x-acs-content-sha256``.
So the parameters are the query's plus the form body's (:func:`request_params`). ASSUMPTIONS (no source says
how the gateway merges): a body of another content type carries no parameters; a parameter given in both
places is refused (``InvalidParameter``, naming it) rather than one silently winning.

No business rules here: those live in :mod:`.models`.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from .. import ram
from .._accounts import DEFAULT_REGION, Account
from .._http import HttpRequest, is_loopback, json_object
from . import exceptions as exc
from .models import API_VERSION, LIST_ACTION, SEND_ACTION, CamsBackend, Reply

SIGNATURE_ALGORITHM = "ACS3-HMAC-SHA256"
REQUIRED_SIGNED_HEADERS = frozenset(
    {
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    }
)
ADMIN_PREFIX = "/_localcams/"


def parse_query(query_string: str) -> dict[str, str]:
    """Query parameters as the SDK meant them ('+' is a space; on a repeated key the last one wins)."""
    return dict(parse_qsl(query_string, keep_blank_values=True))


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def request_params(request: HttpRequest) -> dict[str, str]:
    """The operation's parameters: the query's, plus a form body's (see the module docstring)."""
    params = parse_query(request.query_string)
    content_type = (request.header("content-type") or "").split(";", 1)[0].strip().lower()
    if not request.body or content_type != FORM_CONTENT_TYPE:
        return params
    try:
        form = parse_query(request.body.decode("utf-8"))
    except UnicodeDecodeError:
        raise exc.InvalidParameter("The form body is not UTF-8.") from None
    both = sorted(set(params) & set(form))
    if both:
        raise exc.InvalidParameter(
            f"Parameters given both in the query and in the body: {', '.join(both)}. Send each once."
        )
    return {**params, **form}


def canonical_query_string(params: dict[str, str]) -> str:
    return "&".join(f"{key}={quote(params[key], safe='~', encoding='utf-8')}" for key in sorted(params))


def canonical_headers(request: HttpRequest, signed_headers: list[str]) -> str:
    lines = []
    for name in signed_headers:
        values = sorted(value.strip() for value in request.header_values(name))
        lines.append(f"{name}:{','.join(values)}\n")
    return "".join(lines)


def string_to_sign(
    request: HttpRequest, params: dict[str, str], signed_headers: list[str], payload_hash: str
) -> str:
    canonical_request = "\n".join(
        [
            request.method,
            request.path,
            canonical_query_string(params),
            canonical_headers(request, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        ]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{SIGNATURE_ALGORITHM}\n{digest}"


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    signed_headers: list[str]
    signature: str


def _parse_authorization(value: str | None) -> _Authorization:
    if not value:
        raise exc.IncompleteSignature("The Authorization header is missing.")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != SIGNATURE_ALGORITHM:
        raise exc.InvalidSignatureMethod(
            f"Specified signature method is not valid: {algorithm!r} (the local CAMS checks "
            f"{SIGNATURE_ALGORITHM})."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, item = part.strip().partition("=")
        if sep:
            fields[key] = item
    credential, signed, signature = (
        fields.get("Credential"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    )
    if not credential or not signed or not signature:
        raise exc.IncompleteSignature(
            "The Authorization header needs Credential, SignedHeaders and Signature."
        )
    return _Authorization(credential, signed.split(";"), signature.lower())


def _claimed_access_key(value: str | None) -> str | None:
    """The Credential of an Authorization header, for the record even when the request is refused."""
    try:
        return _parse_authorization(value).access_key_id
    except exc.CamsError:
        return None


def _check_timestamp(value: str, max_skew: float | None) -> None:
    try:
        signed_at = calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        raise exc.InvalidTimeStampFormat() from None
    if max_skew is not None and abs(time.time() - signed_at) > max_skew:
        raise exc.InvalidTimeStampExpired()


class CamsResponse:
    """The CAMS API endpoint (``POST /`` with ``x-acs-action``)."""

    def __init__(self, backend: CamsBackend) -> None:
        self.backend = backend

    def dispatch(self, request: HttpRequest) -> Reply:
        query = parse_query(request.query_string)
        params = query
        action = request.header("x-acs-action")
        claimed_key = _claimed_access_key(request.header("authorization"))
        try:
            if (
                action not in (SEND_ACTION, LIST_ACTION)
                or request.header("x-acs-version") != API_VERSION
                or request.path != "/"
                or request.method not in ("POST", "GET")
            ):
                raise exc.InvalidApiNotFound()
            authorization = _parse_authorization(request.header("authorization"))
            account = self._authenticate(request, query, authorization)
            params = request_params(request)
            self.authorize(account, f"cams:{action}")
        except exc.CamsError as error:
            return self.backend.refuse(error, access_key_id=claimed_key, action=action, params=params)
        # a role's requests count against (and list the messages of) the account it belongs to
        if action == LIST_ACTION:
            return self.backend.list_chatapp_message(account.tenant, params)
        return self.backend.send_chatapp_mass_message(account.tenant, params, arrived_at=request.arrived_at)

    def authorize(self, account: Account, action: str, resource: str | None = None) -> None:
        """A role's request, refused (403 ``Forbidden.RAM``) unless its policy allows ``action``. CAMS has no
        resource-level authorization: the resource is the account's ``acs:cams:REGION:ACCOUNT:*``."""
        if account.policy is None:
            return
        owner = self.backend.account_id
        region = getattr(self.backend, "region_id", DEFAULT_REGION)
        decision = account.authorize(action, resource or ram.cams_resource(region, owner))
        if not decision.allowed:
            raise exc.ForbiddenRam(action, decision.value, owner, account.role or account.access_key_id)

    def too_long(self) -> Reply:
        return self.backend.refuse(
            exc.RequestURITooLong(f"The request line is longer than {self.backend.max_request_line:,} bytes.")
        )

    def too_large(self, length: int) -> Reply:
        return self.backend.refuse(
            exc.RequestEntityTooLarge(
                f"The request body of {length:,} bytes is larger than {self.backend.max_body:,} bytes."
            )
        )

    def _authenticate(
        self, request: HttpRequest, params: dict[str, str], authorization: _Authorization
    ) -> Account:
        account = self.backend.account(authorization.access_key_id)
        if account is None:
            raise exc.InvalidAccessKeyIdNotFound()
        signed = authorization.signed_headers
        missing = sorted(REQUIRED_SIGNED_HEADERS - set(signed))
        if missing:
            raise exc.IncompleteSignature(f"SignedHeaders must include {', '.join(missing)}.")
        if signed != sorted(signed) or any(name != name.lower() for name in signed):
            raise exc.IncompleteSignature("SignedHeaders must be lower-case and sorted.")
        absent = [name for name in signed if not request.header_values(name)]
        if absent:
            raise exc.IncompleteSignature(f"Signed headers are absent from the request: {', '.join(absent)}.")
        unsigned = sorted(
            {key.lower() for key, _ in request.headers if key.lower().startswith("x-acs-")} - set(signed)
        )
        if unsigned:
            raise exc.IncompleteSignature(f"Every x-acs-* header must be signed: {', '.join(unsigned)}.")
        payload_hash = (request.header("x-acs-content-sha256") or "").lower()
        if payload_hash != hashlib.sha256(request.body).hexdigest():
            raise exc.SignatureDoesNotMatch("x-acs-content-sha256 does not match the request body.")
        expected = sign(account.access_key_secret, string_to_sign(request, params, signed, payload_hash))
        if not hmac.compare_digest(expected, authorization.signature):
            raise exc.SignatureDoesNotMatch()
        self._check_token(account, request.header("x-acs-security-token"))
        _check_timestamp(request.header("x-acs-date") or "", self.backend.max_clock_skew)
        if not self.backend.use_nonce(request.header("x-acs-signature-nonce") or ""):
            raise exc.SignatureNonceUsed()
        return account

    def _check_token(self, account: Account, token: str | None) -> None:
        if account.security_token is None:
            if token:
                raise exc.InvalidSecurityTokenMalformed(
                    "A security token was sent with a long-term AccessKey."
                )
            return
        if not token:
            raise exc.MissingSecurityToken()
        if hmac.compare_digest(token.encode("utf-8"), account.security_token.encode("utf-8")):
            return
        if self.backend.token_belongs_to_another_account(token, account.access_key_id):
            raise exc.InvalidSecurityTokenMismatch()
        raise exc.InvalidSecurityTokenMalformed()


class AdminResponse:
    """Unsigned test endpoints under ``/_localcams/``, answered to loopback clients only.

    GET  /_localcams/attempts  every attempt (JSON list of Attempt fields)
    GET  /_localcams/received  every accepted recipient (JSON list of ReceivedMessage fields)
    GET  /_localcams/stats     counts, codes and max_calls_in_any_window
    POST /_localcams/config    JSON object: latency, latency_jitter, latency_extra_jitter, qps_limit, throttle_next,
                               throttle_probability, fail_next, refuse_all, reply_non_json_next,
                               templates, max_request_line, max_body, max_recipients, max_clock_skew,
                               list_qps_limit, send_time_lag
                               and the receipt options (receipts.py ReceiptOptions): receipt_url, mns_url,
                               inbound_url, receipt_mode, failed_share, read_share, duplicate_share,
                               unsubscribe_share, sent_delay, delivered_delay, read_delay ([low, high] s),
                               push_batch, mns_batch, push_workers, push_timeout, push_interval,
                               retry_delays, retry_scale
    POST /_localcams/reset     forget attempts, received, windows, pending faults and queued receipts
    GET  /_localcams/receipts  {"stats": pending, pushed by status, abandoned...; "truth": [{task_id, to,
                               status, error_code, error_description}]} (CamsBackend.delivery_truth)
    POST /_localcams/inbound   {"from", "to", "text", "channel"?, "cust_space_id"?, "name"?}: push one
                               ChatAppInbound TEXT message to inbound_url; answers it
    """

    def __init__(self, backend: CamsBackend) -> None:
        self.backend = backend

    def dispatch(self, request: HttpRequest) -> Reply:
        if not is_loopback(request.client_host):
            return _json(403, {"Code": "Forbidden", "Message": "Admin endpoints answer loopback only."})
        route = (request.method, request.path)
        if route == ("GET", ADMIN_PREFIX + "attempts"):
            return _json(200, self.backend.snapshot_attempts())
        if route == ("GET", ADMIN_PREFIX + "received"):
            return _json(200, self.backend.snapshot_received())
        if route == ("GET", ADMIN_PREFIX + "stats"):
            return _json(200, self.backend.stats())
        if route == ("GET", ADMIN_PREFIX + "receipts"):
            truth = [
                {"task_id": task_id, "to": to, **t._asdict()}
                for (task_id, to), t in sorted(self.backend.delivery_truth().items())
            ]
            return _json(200, {"stats": self.backend.receipts.stats(), "truth": truth})
        if route == ("POST", ADMIN_PREFIX + "inbound"):
            try:
                body = json_object(request.body)
                message = self.backend.inbound(
                    str(body["from"]),
                    str(body["to"]),
                    str(body["text"]),
                    str(body.get("channel") or "whatsapp"),
                    cust_space_id=body.get("cust_space_id"),
                    name=str(body.get("name") or ""),
                )
            except KeyError as missing:
                return _json(400, {"Code": "InvalidInbound", "Message": f"{missing} is required."})
            except (ValueError, TypeError) as error:
                return _json(400, {"Code": "InvalidInbound", "Message": str(error)})
            return _json(200, message)
        if route == ("POST", ADMIN_PREFIX + "reset"):
            self.backend.reset()
            return _json(200, {"ok": True})
        if route == ("POST", ADMIN_PREFIX + "config"):
            try:
                self.backend.configure(**json_object(request.body))
            except (ValueError, TypeError) as error:
                return _json(400, {"Code": "InvalidConfig", "Message": str(error)})
            return _json(200, {"ok": True})
        return _json(
            404, {"Code": "NotFound", "Message": f"No admin endpoint {request.method} {request.path}."}
        )


def _json(status: int, body: Any) -> Reply:
    return Reply(status, body, request_id="")
