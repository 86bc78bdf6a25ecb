"""State and rules of the local CAMS: accounts, rate limit, validation, fault injection, what it saw.

Longer than 500 lines: the CAMS backend, moto-style: the accounts, the per-account rate, every validation of
SendChatappMassMessage and the ListChatappMessage view, each citing the API page.

No HTTP here: ``responses.py`` parses requests and checks signatures, then calls
:meth:`CamsBackend.send_chatapp_mass_message` (or :meth:`CamsBackend.refuse` for a request it refused
before the service logic). Every call of either is recorded as an :class:`Attempt`.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .._accounts import Account, AccountRegistry
from . import exceptions as exc
from .receipts import OPTION_NAMES as RECEIPT_OPTIONS
from .receipts import ReceiptPusher, Truth

SEND_ACTION = "SendChatappMassMessage"
LIST_ACTION = "ListChatappMessage"
LIST_CHANNELS = frozenset({"whatsapp", "viber"})  # the API page: ListChatappMessage covers these only
# ListChatappMessage filters, as the SDK's request model has them (alibabacloud_cams20200606 5.3.1,
# models/_list_chatapp_message_request.py; StartTimeStr/EndTimeStr, MessageStatus, ClientAcceptStatus and
# the owner fields are not served here). There is no TaskId among them: see ListQuery.
LIST_PAGE_SIZE_MAX = 100  # ASSUMPTION: the page's limit is not documented
DEFAULT_LIST_QPS_LIMIT = 50  # the quota page: ListChatappMessage 50/1(s)
API_VERSION = "2020-06-06"
CHANNEL_TYPES = frozenset({"whatsapp", "viber", "messenger", "instagram"})
PHONE_CHANNELS = frozenset({"whatsapp", "viber"})
LABELS = frozenset({"promotion", "transaction"})
FALLBACK_RULES = frozenset({"undelivered", "sentFailed"})
TTL_RANGE = (30, 1_209_600)
FALLBACK_DURATION_RANGE = (60, 43_200)
DEFAULT_QPS_LIMIT = 10
DEFAULT_MAX_RECIPIENTS = 1_000
# The gateway's limits are not documented. Request line: 16 KiB, a conservative choice (the gateway has
# answered over-long URLs with 414, aliyun/openapi-core-nodejs-sdk issue #55, at an unknown length; Tengine's
# default ``large_client_header_buffers 4 8k`` would refuse even sooner, so a product that keeps its lines
# to a few KB passes either way). Body: 1 MiB, ASSUMPTION: Tengine/nginx's default ``client_max_body_size
# 1m`` (http://nginx.org/en/docs/http/ngx_http_core_module.html#client_max_body_size), answered 413; a
# 1,000-recipient SenderList with its parameters is ~0.1-0.3 MB, well within.
DEFAULT_MAX_REQUEST_LINE = 16 * 1024
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_MAX_CLOCK_SKEW = 15 * 60.0  # the gateway's documented x-acs-date tolerance
NON_JSON_BODY = b"<html><body><h1>502 Bad Gateway</h1><p>local CAMS: injected non-JSON</p></body></html>"
NON_JSON_CODE = "LocalCams.NonJsonReply"  # recorded for a non-JSON reply that refused the call

_PHONE_RE = re.compile(r"[0-9]{6,15}")
_DIGITS_RE = re.compile(r"[0-9]+")


@dataclass
class Attempt:
    """One request that reached the service, accepted or refused (admin calls are not attempts)."""

    seq: int
    arrived_at: float
    access_key_id: str | None
    action: str | None
    params: dict[str, str]
    recipients: list[dict[str, Any]]
    http_status: int
    code: str
    message: str
    request_id: str
    group_message_id: str | None = None
    non_json_reply: bool = False

    @property
    def accepted(self) -> bool:
        return self.code == "OK"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReceivedMessage:
    """One recipient of an accepted call. ``task_id``: the call's ``TaskId`` (a SendChatappMassMessage
    parameter, SDK ``models/_send_chatapp_mass_message_request.py``), recorded per message for tests and
    receipts; ListChatappMessage neither filters by it nor shows it (see :meth:`list_item`, ``ListQuery``).
    ``send_time``: the time ListChatappMessage filters on and shows as ``SendTime`` (see
    ``CamsBackend.send_time_lag``; 0 = ``arrived_at``)."""

    to: str
    template_params: dict[str, Any]
    recipient: dict[str, Any]
    group_message_id: str
    channel_type: str
    template_code: str | None
    template_name: str | None
    language: str
    from_: str
    task_id: str | None
    access_key_id: str | None
    arrived_at: float
    cust_space_id: str | None = None
    message_id: str = ""
    send_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def listed_at(self) -> float:
        return self.send_time or self.arrived_at

    def list_item(self) -> dict[str, Any]:
        """How ListChatappMessage shows it: only fields of the SDK's ``ListChatappMessageResponseBodyData``
        (``models/_list_chatapp_message_response_body.py``). That model has no ``TaskId`` (nor
        ``GroupMessageId``), and its ``from_map`` keeps only its own fields, so neither is shown: a client
        cannot tell which call a listed message came from."""
        return {
            "MessageId": self.message_id,
            "UniqueMessageId": self.message_id,
            "UserNumber": self.to,
            "BusinessNumber": self.from_,
            "ChannelType": self.channel_type,
            "TemplateCode": self.template_code,
            "TemplateName": self.template_name,
            "LanguageCode": self.language,
            "EventAction": "DOWN",
            "MessageStatus": "Sent",
            "MessageType": "TEMPLATE",
            "Type": "template",
            "SendTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.listed_at)),
        }


@dataclass
class Reply:
    """What to answer; ``raw`` (bytes) replaces the JSON body for injected non-JSON replies."""

    http_status: int
    body: Any  # a JSON value; None with ``raw``
    request_id: str
    latency: float = 0.0
    raw: bytes | None = None
    content_type: str = "application/json;charset=utf-8"
    close_connection: bool = False
    drop: bool = False  # close the connection after ``latency`` without answering

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class _InjectedFailure:
    code: str
    message: str | None
    http_status: int


@dataclass
class _NonJson:
    http_status: int
    accept: bool


@dataclass
class _Faults:
    throttle_next: int = 0
    fail_next: deque[_InjectedFailure] = field(default_factory=deque)
    non_json_next: deque[_NonJson] = field(default_factory=deque)
    refuse_all: _InjectedFailure | None = None


def decode_sender_list(raw: str | None) -> list[dict[str, Any]]:
    """The recipients of a SenderList value, best effort (for the record; validation is stricter)."""
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _int_in_range(params: dict[str, str], name: str, bounds: tuple[int, int]) -> None:
    raw = params.get(name)
    if raw is None or raw == "":
        return
    try:
        number = int(raw)
    except ValueError:
        raise exc.InvalidParameterValue(name, f"{raw!r} is not an integer.") from None
    low, high = bounds
    if not low <= number <= high:
        raise exc.InvalidParameterValue(name, f"Valid values: {low} to {high}.")


def validate_send(
    params: dict[str, str],
    *,
    max_recipients: int,
    templates: frozenset[str] | None,
    refused_numbers: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Check one SendChatappMassMessage call as the API pages describe; return its recipients.

    Pure: raises a :class:`~.exceptions.CamsError` for the first problem found. The order of the checks
    is ours (the real order is not documented). One bad recipient refuses the whole call (ASSUMPTION).
    """
    channel = params.get("ChannelType") or ""
    if channel not in CHANNEL_TYPES:
        raise exc.ChannelTypeNotSupport()
    template_code = params.get("TemplateCode") or ""
    template_name = params.get("TemplateName") or ""
    if not template_code and (channel == "viber" or not template_name):
        raise exc.TemplateCodeNotEmpty()
    if not params.get("Language"):
        raise exc.LanguageNotEmpty()
    sender = params.get("From") or ""
    if not sender:
        raise exc.MissingParameter("From")
    if channel == "whatsapp" and not _DIGITS_RE.fullmatch(sender):
        raise exc.FromOnlyNumeric()
    _int_in_range(params, "Ttl", TTL_RANGE)
    _int_in_range(params, "FallBackDuration", FALLBACK_DURATION_RANGE)
    label = params.get("Label")
    if label and label not in LABELS:
        raise exc.InvalidParameterValue("Label", "Valid values: promotion, transaction.")
    rule = params.get("FallBackRule")
    if rule and rule not in FALLBACK_RULES:
        raise exc.InvalidParameterValue("FallBackRule", "Valid values: undelivered, sentFailed.")

    raw_list = params.get("SenderList")
    if raw_list is None or raw_list == "":
        raise exc.MissingParameter("SenderList")
    try:
        recipients = json.loads(raw_list)
    except ValueError:
        raise exc.InvalidParameterValue("SenderList", "It must be a JSON array of objects.") from None
    if not isinstance(recipients, list) or not all(isinstance(item, dict) for item in recipients):
        raise exc.InvalidParameterValue("SenderList", "It must be a JSON array of objects.")
    if not recipients:
        raise exc.MissingParameter("SenderList")
    if len(recipients) > max_recipients:
        raise exc.SenderListOverLimit(
            f"A single request can include up to {max_recipients:,} phone numbers; got {len(recipients):,}."
        )
    for item in recipients:
        to = item.get("To")
        if not isinstance(to, str) or not to:
            raise exc.PhoneNumberError("The phone number is invalid: To is missing.")
        if channel in PHONE_CHANNELS and not _PHONE_RE.fullmatch(to):
            raise exc.PhoneNumberError(f"The phone number is invalid: {to!r} (6 to 15 digits, no '+').")
        if to in refused_numbers:
            raise exc.PhoneNumberError("The phone number is invalid.")  # which one is not said (ASSUMPTION)
        params_value = item.get("TemplateParams")
        if params_value is not None and not isinstance(params_value, dict):
            raise exc.InvalidParameterValue("SenderList", "TemplateParams must be an object.")
        if "ProductAction" in item and channel != "whatsapp":
            raise exc.InvalidParameter("ProductAction is only supported for the whatsapp channel type.")
    if templates is not None:
        known = template_code in templates if template_code else template_name in templates
        if not known:
            raise exc.TemplateNotExist()
    return recipients


@dataclass(frozen=True)
class ListQuery:
    channel: str
    business_number: str
    cust_space_id: str
    index: int
    size: int
    start_ms: int | None = None
    end_ms: int | None = None
    template_code: str | None = None
    user_number: str | None = None
    group_message_id: str | None = None

    def matches(self, message: ReceivedMessage) -> bool:
        """ASSUMPTION: a message sent without CustSpaceId is the account's own space's, which a listing
        names by its id (not known here): it matches any CustSpaceId.

        Not a filter: ``TaskId``. The SDK's request model has no such parameter (its ``from_map`` drops
        one), so the SDK never sends it. A raw request that does is served as if it had not (ASSUMPTION: the
        gateway ignores a parameter the API does not define; no source says; the strict choice, since a
        caller who relies on it gets every call's messages, as they would if it is ignored for real).

        ``StartTime``/``EndTime`` compare ``send_time`` (``arrived_at`` unless ``send_time_lag`` is set).
        ASSUMPTION: the API page says "the start/end time", not of what: the call's acceptance or each
        message's dispatch (``SendTime``). ``send_time_lag`` plays the second reading."""
        at_ms = int(message.listed_at * 1000)
        return (
            message.channel_type == self.channel
            and message.from_ == self.business_number
            and message.cust_space_id in (None, self.cust_space_id)
            and (self.start_ms is None or at_ms >= self.start_ms)
            and (self.end_ms is None or at_ms <= self.end_ms)
            and (self.template_code is None or message.template_code == self.template_code)
            and (self.user_number is None or message.to == self.user_number)
            and (self.group_message_id is None or message.group_message_id == self.group_message_id)
        )


def validate_list(params: dict[str, str]) -> ListQuery:
    """Check one ListChatappMessage call (required: ChannelType whatsapp|viber, BusinessNumber, CustSpaceId,
    Page {"Index", "Size"}); raises a :class:`~.exceptions.CamsError` for the first problem."""
    channel = params.get("ChannelType") or ""
    if channel not in LIST_CHANNELS:
        raise exc.ChannelTypeNotSupport()
    for name in ("BusinessNumber", "CustSpaceId", "Page"):
        if not params.get(name):
            raise exc.MissingParameter(name)
    try:
        page = json.loads(params["Page"])
        index, size = int(page["Index"]), int(page["Size"])
    except (ValueError, TypeError, KeyError):
        raise exc.InvalidParameterValue("Page", 'It must be JSON {"Index": N, "Size": N}.') from None
    if index < 1 or not 1 <= size <= LIST_PAGE_SIZE_MAX:
        raise exc.InvalidParameterValue("Page", f"Index from 1, Size 1 to {LIST_PAGE_SIZE_MAX}.")
    times = {}
    for name in ("StartTime", "EndTime"):
        value = params.get(name)
        if value:
            if not _DIGITS_RE.fullmatch(value):
                raise exc.InvalidParameterValue(name, "A UNIX timestamp in milliseconds.")
            times[name] = int(value)
    return ListQuery(
        channel,
        params["BusinessNumber"],
        params["CustSpaceId"],
        index,
        size,
        times.get("StartTime"),
        times.get("EndTime"),
        params.get("TemplateCode") or None,
        params.get("UserNumber") or None,
        params.get("GroupMessageId") or None,
    )


class CamsBackend(AccountRegistry):
    """The local CAMS account: credentials, rules, fault injection and the record of every attempt.

    Thread-safe: every public method takes the same lock. Randomness (ids, jitter, probabilistic
    throttling) comes from one ``random.Random(seed)``.
    """

    def __init__(
        self,
        *,
        qps_limit: int | None = DEFAULT_QPS_LIMIT,
        max_recipients: int = DEFAULT_MAX_RECIPIENTS,
        latency: float = 0.0,
        latency_jitter: float = 0.0,
        latency_extra_jitter: float = 0.0,
        max_request_line: int = DEFAULT_MAX_REQUEST_LINE,
        max_body: int = DEFAULT_MAX_BODY,
        templates: Iterable[str] | None = None,
        throttle_probability: float = 0.0,
        fail_probability: float = 0.0,
        soft_fail_probability: float = 0.0,
        drop_before_probability: float = 0.0,
        drop_after_probability: float = 0.0,
        spike_probability: float = 0.0,
        spike_latency: float = 3.0,
        max_clock_skew: float | None = DEFAULT_MAX_CLOCK_SKEW,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        receipt_options: dict[str, Any] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.qps_limit = qps_limit
        self.max_recipients = max_recipients
        self.latency = latency
        self.latency_jitter = latency_jitter
        # A benchmark knob, not a property of the service: seconds of extra spread (uniform, ±) added to
        # each reply's latency on top of ``latency_jitter``'s share, to play a network with more jitter
        # (issue 14's "latency jittered by an extra ±100 ms": bench/bench_send.py --jitter 0.1).
        self.latency_extra_jitter = latency_extra_jitter
        self.max_request_line = max_request_line
        self.max_body = max_body
        # The longest request line (method, target, version; no CRLF) of any API request seen, refused or
        # not (admin calls excluded): what tests assert "no request line over N bytes" on.
        self.longest_request_line = 0
        self.templates = templates  # the property normalizes
        # Numbers the service refuses although they look valid (InvalidParameter.PhoneNumberError for the
        # whole call, as for a malformed one): what the sender's batch splitting is tested against.
        self.refused_numbers: frozenset[str] = frozenset()
        self.list_qps_limit: int | None = DEFAULT_LIST_QPS_LIMIT
        # Seconds between a call's arrival and the time ListChatappMessage files its messages under
        # (``SendTime``, the StartTime/EndTime filter): 0 files them at arrival; more plays a service that
        # stamps each message when it dispatches it from a queue (see ListQuery.matches).
        self.send_time_lag = 0.0
        self.throttle_probability = throttle_probability
        # Random faults for the fault suite (tests/faults), each drawn per call: an HTTP 503
        # ServiceUnavailable (nothing received); an HTTP 200 whose Code is a failure (nothing received); the
        # connection dropped before the service sees the call (not an attempt) or after it processed it
        # (recipients received, no reply: the ambiguous case); a latency spike of ``spike_latency`` s.
        self.fail_probability = fail_probability
        self.soft_fail_probability = soft_fail_probability
        self.drop_before_probability = drop_before_probability
        self.drop_after_probability = drop_after_probability
        self.spike_probability = spike_probability
        self.spike_latency = spike_latency
        self.max_clock_skew = max_clock_skew
        self.clock = clock
        self._random = random.Random(seed)
        self._accounts: dict[str, Account] = {}
        self.attempts: list[Attempt] = []
        self.received: list[ReceivedMessage] = []
        self._admitted: dict[str, deque[float]] = {}
        self._nonces: dict[str, float] = {}
        self._faults = _Faults()
        self.list_calls = 0
        self._group_seq = 0
        self._group_base = 8_900_000_100_000_000 + self._random.randrange(10_000) * 100_000_000
        # Delivery receipts and inbound messages (receipts.py): seeded from ``seed`` on a stream of their own,
        # so a seeded run's ids and faults are what they were without receipts. Off until a URL is set.
        receipt_seed = seed if seed is not None else random.SystemRandom().getrandbits(64)
        self.receipts = ReceiptPusher(receipt_seed, clock=clock)
        if receipt_options:
            self.receipts.configure(**receipt_options)

    # --- configuration ---------------------------------------------------------------------------------
    @property
    def templates(self) -> frozenset[str] | None:
        """Known template codes and names; ``None`` accepts any."""
        return self._templates

    @templates.setter
    def templates(self, value: Iterable[str] | None) -> None:
        self._templates = None if value is None else frozenset(value)

    def configure(self, **options: Any) -> None:
        """Apply the admin endpoint's options (the same names as the attributes and fault methods)."""
        with self._lock:
            for name, value in options.items():
                if name in (
                    "latency",
                    "latency_jitter",
                    "latency_extra_jitter",
                    "throttle_probability",
                    "fail_probability",
                    "soft_fail_probability",
                    "drop_before_probability",
                    "drop_after_probability",
                    "spike_probability",
                    "spike_latency",
                    "send_time_lag",
                ):
                    setattr(self, name, float(value))
                elif name == "qps_limit":
                    self.qps_limit = None if value is None else int(value)
                elif name in ("max_request_line", "max_body", "max_recipients"):
                    setattr(self, name, int(value))
                elif name == "templates":
                    self.templates = value
                elif name == "list_qps_limit":
                    self.list_qps_limit = None if value is None else int(value)
                elif name == "refused_numbers":
                    self.refused_numbers = frozenset(str(number) for number in (value or ()))
                elif name == "max_clock_skew":
                    self.max_clock_skew = None if value is None else float(value)
                elif name == "throttle_next":
                    self.throttle_next(int(value))
                elif name == "fail_next":
                    self.fail_next(**_as_kwargs(value, "n"))
                elif name == "refuse_all":
                    if value is None:
                        self.clear_refuse_all()
                    else:
                        self.refuse_all(**_as_kwargs(value, "code"))
                elif name == "reply_non_json_next":
                    self.reply_non_json_next(**_as_kwargs(value, "n"))
                elif name in RECEIPT_OPTIONS:
                    self.receipts.configure(**{name: value})
                else:
                    raise ValueError(f"unknown local CAMS option {name!r}")

    # --- fault injection --------------------------------------------------------------------------------
    def throttle_next(self, n: int = 1) -> None:
        """The next ``n`` calls answer System.LimitControl whatever the rate."""
        with self._lock:
            self._faults.throttle_next += n

    def fail_next(
        self, n: int = 1, code: str = "ServiceUnavailable", message: str | None = None, http_status: int = 200
    ) -> None:
        """The next ``n`` calls (past the rate limit) fail with ``code``; nothing is received."""
        with self._lock:
            for _ in range(n):
                self._faults.fail_next.append(_InjectedFailure(code, message, http_status))

    def refuse_all(
        self, code: str = "Ram.PermissionDeny", message: str | None = None, http_status: int = 400
    ) -> None:
        """Refuse every call with ``code`` (an account-level refusal) until :meth:`clear_refuse_all`."""
        with self._lock:
            self._faults.refuse_all = _InjectedFailure(code, message, http_status)

    def clear_refuse_all(self) -> None:
        with self._lock:
            self._faults.refuse_all = None

    def reply_non_json_next(self, n: int = 1, http_status: int = 200, accept: bool = True) -> None:
        """The next ``n`` calls get a non-JSON body. ``accept=True``: the call is processed (recipients
        received when valid) and only the reply is garbage — the ambiguous case; ``accept=False``: the
        call is refused before the service sees it (a proxy's error page)."""
        with self._lock:
            for _ in range(n):
                self._faults.non_json_next.append(_NonJson(http_status, accept))

    # --- the service ------------------------------------------------------------------------------------
    def send_chatapp_mass_message(
        self, access_key_id: str, params: dict[str, str], arrived_at: float | None = None
    ) -> Reply:
        """One authenticated SendChatappMassMessage call; records it and says what to answer.

        ``arrived_at``: when the request line was read, before the signature check and this lock — a busy
        emulator must not shift (and bunch) arrivals by its own processing time; now if not given."""
        with self._lock:
            arrived_at = self.clock() if arrived_at is None else arrived_at
            request_id = self._request_id()
            recipients = decode_sender_list(params.get("SenderList"))
            faults = self._faults
            error: exc.CamsError | None = None
            if self._chance(self.drop_before_probability):
                return Reply(0, None, request_id, 0.0, drop=True)  # never reached the service
            if faults.refuse_all is not None:
                error = _injected(faults.refuse_all)
            elif faults.throttle_next > 0:
                faults.throttle_next -= 1
                error = exc.SystemLimitControl()
            elif (
                self.throttle_probability > 0
                and self._random.random() < self.throttle_probability
                or not self._admit(access_key_id, arrived_at, self.qps_limit)
            ):
                error = exc.SystemLimitControl()
            elif faults.fail_next:
                error = _injected(faults.fail_next.popleft())
            elif self._chance(self.fail_probability):
                error = exc.error_for("ServiceUnavailable", "injected: the service is unavailable", 503)
            elif self._chance(self.soft_fail_probability):
                error = exc.error_for("System.InternalError", "injected: HTTP 200 with a failure Code", 200)
            if error is not None:
                return self._record_error(
                    error, arrived_at, request_id, access_key_id, SEND_ACTION, params, recipients
                )
            non_json = faults.non_json_next.popleft() if faults.non_json_next else None
            if non_json is not None and not non_json.accept:
                self._append_attempt(
                    arrived_at,
                    access_key_id,
                    SEND_ACTION,
                    params,
                    recipients,
                    non_json.http_status,
                    NON_JSON_CODE,
                    "injected non-JSON reply",
                    request_id,
                    None,
                    non_json_reply=True,
                )
                return Reply(
                    non_json.http_status,
                    None,
                    request_id,
                    self._latency(),
                    raw=NON_JSON_BODY,
                    content_type="text/html",
                )
            try:
                valid = validate_send(
                    params,
                    max_recipients=self.max_recipients,
                    templates=self._templates,
                    refused_numbers=self.refused_numbers,
                )
            except exc.CamsError as error_:
                reply = self._record_error(
                    error_,
                    arrived_at,
                    request_id,
                    access_key_id,
                    SEND_ACTION,
                    params,
                    recipients,
                    non_json=non_json,
                )
                return _mangled(reply, non_json)
            group_message_id = self._group_message_id()
            self._append_attempt(
                arrived_at,
                access_key_id,
                SEND_ACTION,
                params,
                recipients,
                non_json.http_status if non_json else 200,
                "OK",
                "OK",
                request_id,
                group_message_id,
                non_json_reply=non_json is not None,
            )
            first = len(self.received)
            for index, item in enumerate(valid):
                self.received.append(
                    ReceivedMessage(
                        to=item["To"],
                        template_params=dict(item.get("TemplateParams") or {}),
                        recipient=item,
                        group_message_id=group_message_id,
                        channel_type=params["ChannelType"],
                        template_code=params.get("TemplateCode"),
                        template_name=params.get("TemplateName"),
                        language=params["Language"],
                        from_=params["From"],
                        task_id=params.get("TaskId"),
                        access_key_id=access_key_id,
                        arrived_at=arrived_at,
                        cust_space_id=params.get("CustSpaceId"),
                        message_id=f"{group_message_id}{index:04d}",
                        send_time=arrived_at + self.send_time_lag,
                    )
                )
            self.receipts.accept(self.received[first:])
            body = {
                "Code": "OK",
                "Message": "OK",
                "RequestId": request_id,
                "GroupMessageId": group_message_id,
                "AccessDeniedDetail": None,
            }
            if self._chance(self.drop_after_probability):
                return Reply(200, body, request_id, self._latency(), drop=True)  # processed, never answered
            return _mangled(Reply(200, body, request_id, self._latency()), non_json)

    def list_chatapp_message(self, access_key_id: str, params: dict[str, str]) -> Reply:
        """One authenticated ListChatappMessage call, served from what this account received, under its own
        quota (``list_qps_limit``, 50/s on the quota page) and an account-level ``refuse_all``. It is not an
        :class:`Attempt` (those are the sends whose rate the oracle checks); ``list_calls`` counts it."""
        with self._lock:
            self.list_calls += 1
            request_id = self._request_id()
            try:
                if self._faults.refuse_all is not None:
                    raise _injected(self._faults.refuse_all)
                if not self._admit(f"list:{access_key_id}", self.clock(), self.list_qps_limit):
                    raise exc.SystemLimitControl()
                query = validate_list(params)
            except exc.CamsError as error:
                return Reply(error.http_status, error.body(request_id), request_id, 0.0)
            matches = [m for m in self.received if m.access_key_id == access_key_id and query.matches(m)]
            page = matches[(query.index - 1) * query.size : query.index * query.size]
            body = {
                "Code": "OK",
                "Message": "OK",
                "RequestId": request_id,
                "Success": True,
                "Data": [m.list_item() for m in page],
            }
            return Reply(200, body, request_id, self._latency() / 5)

    def refuse(
        self,
        error: exc.CamsError,
        *,
        access_key_id: str | None = None,
        action: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        """Record a request refused before the service logic (signature, unknown action, too long)."""
        with self._lock:
            params = dict(params or {})
            reply = self._record_error(
                error,
                self.clock(),
                self._request_id(),
                access_key_id,
                action,
                params,
                decode_sender_list(params.get("SenderList")),
            )
            if isinstance(error, exc.GatewayPageError):
                reply.raw, reply.content_type = error.html, "text/html"
                reply.close_connection = True
            return reply

    def note_request_line(self, length: int) -> None:
        """Remember the longest request line seen (see ``longest_request_line``)."""
        with self._lock:
            self.longest_request_line = max(self.longest_request_line, length)

    def use_nonce(self, nonce: str) -> bool:
        """False when ``nonce`` was seen within the clock-skew window (a replay)."""
        with self._lock:
            now = self.clock()
            horizon = now - (self.max_clock_skew or DEFAULT_MAX_CLOCK_SKEW)
            while self._nonces:
                oldest_nonce, seen_at = next(iter(self._nonces.items()))
                if seen_at >= horizon:
                    break
                del self._nonces[oldest_nonce]
            if nonce in self._nonces:
                return False
            self._nonces[nonce] = now
            return True

    # --- helpers for tests ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget attempts, received messages, rate windows, nonces, pending faults and the longest line.

        Accounts and configuration (qps_limit, latency, templates, limits) are kept.
        """
        with self._lock:
            self.attempts = []
            self.received = []
            self._admitted.clear()
            self._nonces.clear()
            self._faults = _Faults()
            self.longest_request_line = 0
            self.receipts.forget()

    # --- receipts (receipts.py) -------------------------------------------------------------------------
    def delivery_truth(self) -> dict[tuple[str, str], Truth]:
        """``(task_id, to) -> Truth(status, error_code, error_description)`` for every accepted message: the
        highest status the local CAMS decided for it (sent/delivered/read/failed), whether or not its reports
        were pushed yet. ``task_id`` is the report's TaskId (the call's, or the MessageId without one)."""
        with self._lock:
            messages = list(self.received)
        return self.receipts.truth(messages)

    def opt_outs(self) -> set[tuple[str, str]]:
        """``(task_id, to)`` of the Viber messages whose user the local CAMS decided unsubscribed."""
        with self._lock:
            messages = list(self.received)
        return {(m.task_id or m.message_id, m.to) for m in messages if self.receipts.fate(m).unsubscribed}

    def receipts_pending(self) -> int:
        """Reports not pushed yet (queued, waiting to retry, in flight), and messages not yet turned into them."""
        return self.receipts.pending()

    def wait_receipts_pushed(self, timeout: float) -> bool:
        """Wait until every report is pushed (or given up after its retries); False on ``timeout``."""
        return self.receipts.wait_pushed(timeout)

    def inbound(
        self,
        from_: str,
        to: str,
        text: str,
        channel: str = "whatsapp",
        *,
        cust_space_id: str | None = None,
        name: str = "",
    ) -> dict[str, Any]:
        """Push one inbound (ChatAppInbound) TEXT message from user ``from_`` to business number ``to``
        to ``inbound_url``; returns it."""
        return self.receipts.inbound(from_, to, text, channel=channel, cust_space_id=cust_space_id, name=name)

    def close(self) -> None:
        """Stop the receipt pusher's threads and wait for them (``LocalCams.stop`` calls it)."""
        self.receipts.close()

    def received_count_by_number(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(message.to for message in self.received))

    def max_calls_in_any_window(self, window: float = 1.0, access_key_id: str | None = None) -> int:
        """Most attempts (accepted or refused) whose arrivals fall in any half-open window of ``window`` s.

        The oracle for "never more than N attempts in any sliding second". ``access_key_id`` restricts
        it to one key; by default every attempt counts.
        """
        with self._lock:
            times = sorted(
                a.arrived_at
                for a in self.attempts
                if access_key_id is None or a.access_key_id == access_key_id
            )
        best = 0
        start = 0
        for end, arrived in enumerate(times):
            while arrived - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def snapshot_attempts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [a.to_dict() for a in self.attempts]

    def snapshot_received(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m.to_dict() for m in self.received]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            codes = Counter(a.code for a in self.attempts)
            return {
                "attempts": len(self.attempts),
                "accepted": codes.get("OK", 0),
                "received": len(self.received),
                "codes": dict(codes),
                "max_calls_in_any_window": self.max_calls_in_any_window(),
                "longest_request_line": self.longest_request_line,
            }

    # --- internals --------------------------------------------------------------------------------------
    def _admit(self, key: str, now: float, limit: int | None) -> bool:
        """Sliding 1 s window per key over admitted calls (those not refused by flow control), by arrival.

        Handler threads may judge two calls that arrived a few ms apart in the other order (the kernel's
        stamps are exact, which thread runs first is not), so the window is not assumed sorted: the call is
        admitted if no 1 s window holding it would hold more than ``limit`` admitted calls, counting the
        ones that arrived after it but were judged before (the windows to check end at it or at one of
        those)."""
        if not limit:
            return True
        window = self._admitted.setdefault(key, deque())
        if any(at <= now - 2.0 for at in window):  # out of every window that can hold a call judged now
            kept = [at for at in window if at > now - 2.0]
            window.clear()
            window.extend(kept)
        near = [at for at in window if now - 1.0 < at < now + 1.0]
        for end in [now] + [at for at in near if at > now]:
            if sum(1 for at in near if end - 1.0 < at <= end) >= limit:
                return False
        window.append(now)
        return True

    def _record_error(
        self,
        error: exc.CamsError,
        arrived_at: float,
        request_id: str,
        access_key_id: str | None,
        action: str | None,
        params: dict[str, str],
        recipients: list[dict[str, Any]],
        *,
        non_json: _NonJson | None = None,
    ) -> Reply:
        status = non_json.http_status if non_json else error.http_status
        self._append_attempt(
            arrived_at,
            access_key_id,
            action,
            params,
            recipients,
            status,
            error.code,
            error.message,
            request_id,
            None,
            non_json_reply=non_json is not None,
        )
        return Reply(error.http_status, error.body(request_id), request_id, self._latency())

    def _append_attempt(
        self,
        arrived_at: float,
        access_key_id: str | None,
        action: str | None,
        params: dict[str, str],
        recipients: list[dict[str, Any]],
        http_status: int,
        code: str,
        message: str,
        request_id: str,
        group_message_id: str | None,
        *,
        non_json_reply: bool = False,
    ) -> None:
        self.attempts.append(
            Attempt(
                seq=len(self.attempts) + 1,
                arrived_at=arrived_at,
                access_key_id=access_key_id,
                action=action,
                params=dict(params),
                recipients=recipients,
                http_status=http_status,
                code=code,
                message=message,
                request_id=request_id,
                group_message_id=group_message_id,
                non_json_reply=non_json_reply,
            )
        )

    def _request_id(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4)).upper()

    def _group_message_id(self) -> str:
        self._group_seq += 1
        return str(self._group_base + self._group_seq)

    def _chance(self, probability: float) -> bool:
        return probability > 0 and self._random.random() < probability

    def _latency(self) -> float:
        if self._chance(self.spike_probability):
            return self.spike_latency
        if self.latency <= 0:
            return 0.0
        spread = self.latency * self.latency_jitter
        latency = self.latency + self._random.uniform(-spread, spread)
        if self.latency_extra_jitter > 0:  # drawn only when set: seeded runs without it stay as they were
            latency += self._random.uniform(-self.latency_extra_jitter, self.latency_extra_jitter)
        return max(0.0, latency)


def _injected(failure: _InjectedFailure) -> exc.CamsError:
    return exc.error_for(failure.code, failure.message, failure.http_status)


def _mangled(reply: Reply, non_json: _NonJson | None) -> Reply:
    if non_json is None:
        return reply
    reply.http_status = non_json.http_status
    reply.raw = NON_JSON_BODY
    reply.content_type = "text/html"
    return reply


def _as_kwargs(value: Any, first: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    return {first: value}
