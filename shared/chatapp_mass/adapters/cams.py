"""The official CAMS SDK, wrapped once: ``CamsClient.send(options, recipients) -> SendOutcome``.

- One attempt per call: the SDK's own retries are off (no ``retry_options``, ``autoretry=False``); every
  retry is the engine's decision, made within the rate limit.
- Credentials: an explicit ``alibabacloud_credentials`` client from the composition root (the demo and the
  tests pass the local cloud's), else the SDK's default chain (STS environment variables in Function
  Compute, ``~/.alibabacloud`` profiles on a laptop). Never keys in code.
- ``CHATAPP_CAMS_ENDPOINT``: a URL (``http://127.0.0.1:8123``) gives protocol and host:port; a bare host
  means HTTPS. Region from ``ALIBABA_CLOUD_REGION_ID`` (default ``ap-southeast-1``).
- **Where the parameters travel** (``CHATAPP_CAMS_PARAMS_IN``, :func:`params_in_from_env`). ``body``
  (default): ``SenderList`` (up to 1,000 recipients of JSON, ~0.1 MB encoded) and ``FallBackContent`` go in an
  ``application/x-www-form-urlencoded`` body, the other parameters in the query, through the SDK's generic
  call path (``client.call_api`` with the very ``Params`` the SDK's own method uses, ``req_body_type=
  'formData'``). Signature V3 covers the body through its hash: tea-openapi 0.4.6 ``client.py::do_request``
  builds the body with ``Utils.to_form`` and sets ``x-acs-content-sha256`` to its SHA-256, which
  ``get_authorization`` signs; the V3 signature document ("Request syntax and signature method V3",
  https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature) defines
  RequestBody and ``x-acs-content-sha256`` = hex(SHA-256(payload)). The request line stays ~1 KB. ``query``:
  the SDK's own ``send_chatapp_mass_message_with_options`` (everything in the URL, ~100 KB request lines for a
  full batch; the gateway has answered long URLs with an HTML 414, ALIBABA-FACTS), for an account whose
  gateway refuses bodies; batches are then planned under a URL budget (``planning.request_budget``). The
  reply is parsed with the SDK's ``SendChatappMassMessageResponse`` either way.
- SDK clients are built lazily, one per thread (nothing is created at import or construction).
- ``TaskId``: the job's own (``--task-id``) when it has one, else the one the caller passes (the engine:
  :func:`batch_task_id` of the batch being called), so receipts and the console can tell one batch's call
  from another's. ListChatappMessage can neither filter by it nor return it (see :func:`batch_task_id`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chatapp_mass.adapters.openapi import PerThreadClient
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.options import JobOptions
from chatapp_mass.core.outcomes import (
    OutcomeKind,
    SendOutcome,
    classify_reply,
    classify_transport_error,
    credentials_outcome,
)
from chatapp_mass.core.planning import PARAMS_IN_BODY, PARAMS_IN_CHOICES, PARAMS_IN_QUERY
from chatapp_mass.runtime import env

# The SendChatappMassMessage parameters that can be long, sent in the body in ``body`` mode: the recipients,
# and the fallback SMS text. The rest (channel, sender, template, task id...) are a few dozen bytes each.
BODY_PARAMETERS = frozenset({"SenderList", "FallBackContent"})
SEND_ACTION = "SendChatappMassMessage"
API_VERSION = "2020-06-06"


def params_in_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """``CHATAPP_CAMS_PARAMS_IN``: ``body`` (default) or ``query``; anything else is an error."""
    value = (environ.get(env.CHATAPP_CAMS_PARAMS_IN) or PARAMS_IN_BODY).strip().lower()
    if value not in PARAMS_IN_CHOICES:
        raise OptionsError(
            f"{env.CHATAPP_CAMS_PARAMS_IN}={value!r}: use body (SenderList in a form body, the "
            "default) or query (everything in the URL, for a gateway that refuses bodies)"
        )
    return value


@dataclass(frozen=True)
class CamsSettings:
    region_id: str = env.DEFAULT_REGION
    endpoint: str | None = None  # host[:port]; None = the SDK's endpoint for the region
    protocol: str = "HTTPS"
    connect_timeout_ms: int = 5_000
    read_timeout_ms: int = 30_000
    params_in: str = PARAMS_IN_BODY  # body | query: where SenderList travels (see the module docstring)

    def __post_init__(self) -> None:
        if self.params_in not in PARAMS_IN_CHOICES:
            raise OptionsError(f"params_in={self.params_in!r}: use body or query")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> CamsSettings:
        region = environ.get(env.ALIBABA_CLOUD_REGION_ID) or env.DEFAULT_REGION
        endpoint, protocol = parse_endpoint(environ.get(env.CHATAPP_CAMS_ENDPOINT))
        overrides.setdefault("params_in", params_in_from_env(environ))
        return cls(region_id=region, endpoint=endpoint, protocol=protocol, **overrides)


def parse_endpoint(value: str | None) -> tuple[str | None, str]:
    """``http://127.0.0.1:8123`` -> ("127.0.0.1:8123", "HTTP"); ``cams.example.com`` -> (that, "HTTPS")."""
    if not value or not value.strip():
        return None, "HTTPS"
    value = value.strip()
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"{env.CHATAPP_CAMS_ENDPOINT}={value!r}: use http(s)://host[:port] or a bare host"
            )
        return parts.netloc, parts.scheme.upper()
    return value.rstrip("/"), "HTTPS"


TASK_ID_DIGITS = 18  # < 2**63: fits a signed 64-bit integer, should the service hold TaskId as one


def batch_task_id(job_id: str, seq: int) -> str:
    """The ``TaskId`` of the SendChatappMassMessage call that sends batch ``seq`` of ``job_id`` (a part: its
    own seq, since a part is sent by its own call): deterministic, so the same batch's retries carry the same
    id and anyone holding the job id and the seq can compute it.

    Digits only, 18 of them (a SHA-256 of ``job_id:seq``): the API pages give no format or length for
    ``TaskId`` ("The custom task ID", examples ``10000****`` and ``100000001``; reference
    cams-SendChatappMassMessage*.txt), so the id is shaped like their examples, which is accepted whether
    the service holds it as a string or a number (the strict choice). 10**18 values: two batches share an
    id with odds ~n**2 / 2e18 (n batches ever sent by the account).

    What it can and cannot do: ChatAppStatus receipts carry ``TaskId`` (ALIBABA-FACTS §6), so a receipt
    names its batch; ListChatappMessage does **not**: its request has no ``TaskId`` parameter and its items
    no ``TaskId`` field (SDK ``alibabacloud_cams20200606`` 5.3.1, ``models/_list_chatapp_message_request.py``,
    ``_list_chatapp_message_response_body.py``; the ``from_map`` of both drops unknown keys), so reconciling
    cannot use it (see ``reconcile``)."""
    digest = hashlib.sha256(f"{job_id}:{seq}".encode()).digest()
    return str(int.from_bytes(digest[:8], "big") % 10**TASK_ID_DIGITS).zfill(TASK_ID_DIGITS)


def send_parameters(
    options: JobOptions, recipients: list[dict[str, Any]], *, task_id: str | None = None
) -> dict[str, Any]:
    """The SendChatappMassMessage parameters of one call, by the API's names: the job's options, ``TaskId``
    (the job's own, else ``task_id``) and ``SenderList``. What :meth:`CamsClient.prepare` sends."""
    params = options.to_api()
    if task_id and "TaskId" not in params:
        params["TaskId"] = task_id
    return {**params, "SenderList": recipients}


@dataclass(frozen=True)
class WireRequest:
    """One SendChatappMassMessage request as it goes on the wire (see :func:`wire_request`): the query
    string's parameters and the form body's (``SenderList`` as the compact JSON text the SDK writes)."""

    action: str
    version: str
    method: str
    params_in: str
    query: dict[str, str]
    body: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "version": self.version,
            "method": self.method,
            "params_in": self.params_in,
            "query": self.query,
            "body": self.body,
        }


def wire_request(
    options: JobOptions,
    recipients: list[dict[str, Any]],
    *,
    params_in: str = PARAMS_IN_BODY,
    task_id: str | None = None,
) -> WireRequest:
    """The request :meth:`CamsClient.prepare` builds for these recipients, without a client or credentials
    (a preview shows it): the same parameters (:func:`send_parameters`), converted by the SDK's own models
    as the call converts them (:func:`_shrink_fields`). ``body`` mode: ``SenderList`` and ``FallBackContent``
    in the form body, the rest in the query; ``query`` mode: everything in the query (the body is empty).
    Signature, timestamps and nonces are the SDK's, added when it sends."""
    from alibabacloud_cams20200606 import models
    from alibabacloud_tea_openapi.utils import Utils

    request = models.SendChatappMassMessageRequest().from_map(
        send_parameters(options, recipients, task_id=task_id)
    )
    if params_in == PARAMS_IN_QUERY:
        query, body = Utils.query(_shrink_fields(request)), None
    else:
        _params, built = _body_call(request)  # the very request the body-mode call sends
        query, body = built.query, built.body
    return WireRequest(
        SEND_ACTION,
        API_VERSION,
        "POST",
        params_in,
        {str(k): str(v) for k, v in (query or {}).items()},
        {str(k): str(v) for k, v in (body or {}).items()},
    )


@dataclass(frozen=True)
class PreparedCall:
    """One built SendChatappMassMessage request; calling it makes one attempt (it may be called again)."""

    attempt: Callable[[], SendOutcome]
    recipients: list[dict[str, Any]]
    # True: the request goes out through http.client, so ``transport.departing`` holds its first byte
    # until its slot and sees it leave; a fake without HTTP is called at its slot by the engine instead.
    gated: bool = False

    def __call__(self) -> SendOutcome:
        return self.attempt()


class CamsClient:
    def __init__(self, settings: CamsSettings, credential: Any = None) -> None:
        self.settings = settings

        def sdk_class() -> Any:
            from alibabacloud_cams20200606.client import Client

            return Client

        self._client = PerThreadClient(
            sdk_class,
            credential=credential,
            region_id=settings.region_id,
            protocol=settings.protocol,
            endpoint=settings.endpoint,
            connect_timeout_ms=settings.connect_timeout_ms,
            read_timeout_ms=settings.read_timeout_ms,
        )

    def _runtime(self) -> Any:
        """Every call's runtime options: no SDK retry (the engine decides: a resend may be a duplicate), this
        client's connect and read timeouts."""
        from darabonba.runtime import RuntimeOptions

        return RuntimeOptions(
            autoretry=False,
            max_attempts=0,
            connect_timeout=self.settings.connect_timeout_ms,
            read_timeout=self.settings.read_timeout_ms,
        )

    def _sdk(self) -> Any:
        return self._client.get()

    def prepare(
        self, options: JobOptions, recipients: list[dict[str, Any]], *, task_id: str | None = None
    ) -> PreparedCall:
        """Everything before the wire: imports, this thread's SDK client, the request. Returns the call.

        ``task_id`` (:func:`batch_task_id`) is sent as ``TaskId`` unless the job has its own (``--task-id``,
        ``options.task_id``): that one is the user's, for their receipts, and is never replaced.

        The engine prepares *before* it takes a slot from the rate limiter and calls right after, so the
        time between "slot taken" and "request arrives" is the network alone (the first call on a thread
        otherwise spends ~0.5 s importing the SDK models, and a burst of such calls lands in one window).
        """
        from alibabacloud_cams20200606 import models
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
        from darabonba.core import DaraCore

        sdk = self._sdk()
        request = models.SendChatappMassMessageRequest().from_map(
            send_parameters(options, recipients, task_id=task_id)
        )
        runtime = self._runtime()
        if self.settings.params_in == PARAMS_IN_QUERY:

            def attempt() -> Any:
                return sdk.send_chatapp_mass_message_with_options(request, runtime)
        else:
            try:  # built here, before the slot; an error is raised by the attempt, as the SDK's method would
                built: tuple[Any, Any] | BaseException = _body_call(request)
            except Exception as error:  # noqa: BLE001 - raised again by attempt()
                built = error

            def attempt() -> Any:  # parsed as the SDK's own method parses it
                if isinstance(built, BaseException):
                    raise built
                return DaraCore.from_map(
                    models.SendChatappMassMessageResponse(), sdk.call_api(*built, runtime)
                )

        def call() -> SendOutcome:
            try:
                response = attempt()
            except AlibabaCloudException as error:  # an HTTP 4xx/5xx reply that parsed as JSON
                if _unsigned(error):
                    return credentials_outcome(str(error.message or error.code))
                body = error.data if isinstance(error.data, dict) else {}
                body = {
                    **body,
                    "Code": body.get("Code") or error.code,
                    "Message": body.get("Message") or error.message,
                }
                return classify_reply(error.status_code or 500, body)
            except Exception as error:  # transport, non-JSON reply: the SDK wraps them all alike
                return classify_transport_error(error)
            body = response.body.to_map() if response.body is not None else {}
            return classify_reply(response.status_code or 200, body)

        return PreparedCall(call, recipients, gated=True)

    def send(
        self, options: JobOptions, recipients: list[dict[str, Any]], *, task_id: str | None = None
    ) -> SendOutcome:
        """One SendChatappMassMessage attempt, classified. Never raises for a service or transport failure."""
        return self.prepare(options, recipients, task_id=task_id)()

    @property
    def call_timeout(self) -> float:
        """The longest one call can wait, in seconds: connecting, then the reply (the read timeout)."""
        return (self.settings.connect_timeout_ms + self.settings.read_timeout_ms) / 1000

    def check_access(self, options: JobOptions, *, clock: Callable[[], float] = time.time) -> AccessCheck:
        """Before a send plans anything: can credentials be loaded, does the endpoint answer, and are the keys
        accepted — without sending a message. One ``ListChatappMessage`` (read-only, the call ``reconcile``
        already makes; its own quota, not the send rate): page 1 of size 1, the job's From, the last minute.

        Only a refusal of the keys themselves (:data:`KEY_REFUSAL_PREFIXES`) or no connection stops the run:
        any other reply — OK, a missing ``CustSpaceId`` or an unsupported channel (Messenger, Instagram: the
        API lists WhatsApp and Viber only), even ``Ram.PermissionDeny`` for listing — means the gateway
        authenticated the keys, and the send goes on. Where a gateway checks parameters before the signature
        the check is weaker (it lets the run go on, and the first send finds the keys refused: the kill switch);
        it never stops a run whose keys work."""
        from alibabacloud_cams20200606 import models
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException

        now_ms = int(clock() * 1000)
        query: dict[str, Any] = {
            "ChannelType": options.channel_type.value
            if options.channel_type.uses_phone_numbers
            else "whatsapp",
            "BusinessNumber": options.from_,
            "Page": {"Index": 1, "Size": 1},
            "StartTime": now_ms - 60_000,
            "EndTime": now_ms,
        }
        if options.cust_space_id:
            query["CustSpaceId"] = options.cust_space_id
        runtime = self._runtime()
        try:
            request = models.ListChatappMessageRequest().from_map(query)
            self._sdk().list_chatapp_message_with_options(request, runtime)
        except AlibabaCloudException as error:
            if _unsigned(error):
                outcome = credentials_outcome(str(error.message or error.code))
                return AccessCheck("credentials", outcome.code, outcome.message)
            code = str(error.code or "")
            if code.startswith(KEY_REFUSAL_PREFIXES):
                return AccessCheck("refused", code, str(error.message or "")[:300])
            return AccessCheck("", code)
        except Exception as error:  # noqa: BLE001 - classified: credentials, transport, non-JSON reply
            outcome = classify_transport_error(error)
            if outcome.kind is OutcomeKind.credentials:
                return AccessCheck("credentials", outcome.code, outcome.message)
            if outcome.kind is OutcomeKind.not_sent:
                return AccessCheck("unreachable", outcome.code, outcome.message)
            return AccessCheck("", outcome.code, outcome.message)  # a reply or a wait: the endpoint is there
        return AccessCheck("")

    def list_messages(self, query: dict[str, Any]) -> ListPage:
        """One ListChatappMessage page (``query``: the API's parameter names, ``Page`` a dict). Never raises
        for a service or transport failure: the page says what went wrong (``ok`` False, ``code``)."""
        from alibabacloud_cams20200606 import models
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException

        request = models.ListChatappMessageRequest().from_map(query)
        runtime = self._runtime()
        try:
            response = self._sdk().list_chatapp_message_with_options(request, runtime)
        except AlibabaCloudException as error:
            if _unsigned(error):
                outcome = credentials_outcome(str(error.message or error.code))
                return ListPage(False, outcome.code, outcome.message)
            return ListPage(False, str(error.code or "Error"), str(error.message or "")[:300])
        except Exception as error:  # transport, non-JSON reply
            outcome = classify_transport_error(error)
            return ListPage(False, outcome.code, outcome.message)
        body = response.body.to_map() if response.body is not None else {}
        if body.get("Code") != "OK":
            return ListPage(False, str(body.get("Code") or "Error"), str(body.get("Message") or ""))
        return ListPage(True, "OK", "", [dict(item) for item in body.get("Data") or []])


# Codes by which the gateway refuses the keys themselves (unknown key, wrong secret, bad or expired token, a
# clock too far off to sign), whatever the API. A permission refusal (Ram.PermissionDeny) is not one: it is
# per API, and a role may send without being allowed to list.
KEY_REFUSAL_PREFIXES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSecurityToken",
    "MissingSecurityToken",
    "InvalidTimeStamp",
)


@dataclass(frozen=True)
class AccessCheck:
    """What :meth:`CamsClient.check_access` found: ``problem`` is "" (go on), ``credentials`` (none could be
    loaded), ``refused`` (the gateway refused the keys) or ``unreachable`` (no connection to the endpoint)."""

    problem: str
    code: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def _unsigned(error: Any) -> bool:
    """tea-openapi's own ``InvalidCredentials`` (no credential client at all): raised before signing, with
    no HTTP status, unlike every error it makes of a reply (``client.py::call_api``/``do_request``)."""
    return error.status_code is None and error.code == "InvalidCredentials"


def _body_call(request: Any) -> tuple[Any, Any]:
    """The generic-call ``Params`` and ``OpenApiRequest`` of one SendChatappMassMessage with the long
    parameters (:data:`BODY_PARAMETERS`) in a form body. The request is converted exactly as the SDK's own
    method converts it (``alibabacloud_cams20200606`` 5.3.1 ``client.py::send_chatapp_mass_message_with_options``:
    ``validate()``, ``Utils.convert`` to the shrink request, ``SenderList`` as compact JSON with
    ``array_to_string_with_specified_style(..., 'json')``); only where each parameter goes differs."""
    from alibabacloud_tea_openapi.utils import Utils
    from alibabacloud_tea_openapi.utils_models import OpenApiRequest, Params

    fields = _shrink_fields(request)
    query = Utils.query({name: value for name, value in fields.items() if name not in BODY_PARAMETERS})
    body = {name: value for name, value in fields.items() if name in BODY_PARAMETERS}
    params = Params(
        action=SEND_ACTION,
        version=API_VERSION,
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    return params, OpenApiRequest(query=query, body=body or None)


def _shrink_fields(request: Any) -> dict[str, Any]:
    """A SendChatappMassMessageRequest's parameters as the SDK's own method converts them
    (``validate()``, ``Utils.convert`` to the shrink request, ``SenderList`` as compact JSON with
    ``array_to_string_with_specified_style(..., 'json')``), by the API's names; unset ones left out."""
    from alibabacloud_cams20200606 import models
    from alibabacloud_tea_openapi.utils import Utils

    request.validate()
    shrink = models.SendChatappMassMessageShrinkRequest()
    Utils.convert(request, shrink)
    if request.sender_list is not None:
        shrink.sender_list_shrink = Utils.array_to_string_with_specified_style(
            request.sender_list, "SenderList", "json"
        )
    return {name: value for name, value in shrink.to_map().items() if value is not None}


@dataclass(frozen=True)
class ListPage:
    ok: bool
    code: str
    message: str
    items: list[dict[str, Any]] = field(default_factory=list)
