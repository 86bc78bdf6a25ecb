"""What CAMS tells us after a call: ChatAppStatus reports (receipts) and ChatAppInbound messages, decoded.

Pure: JSON values in, events and named skip reasons out. The HTTP routes (``entry.http_api``) and any MNS
consumer share these decoders; :mod:`chatapp_mass.services.receipts` acts on what they return.

Wire shapes accepted (also written for the local CAMS in /tmp/receipts-wire.md while issue 17 is built):

- **HTTP push** (``POST /receipts``): a JSON **array** of ChatAppStatus reports, several per request
  (ALIBABA-FACTS §6; docs ``chatappstatus-1``). A report: ``MessageId``, ``To``, ``Status``, ``Timestamp``
  (ms; an int or a digit string) required; ``TaskId`` (missing: the docs say it defaults to ``MessageId``),
  ``From``, ``StatusDescription``, ``ErrorCode``, ``ErrorDescription`` (a number is taken as its text),
  ``ConversationType``, ``ConversationId``, ``MsgFrameType``, ``Type``, ``OriginPhoneNumber``,
  ``TemplateCode``, ``TemplateName``, ``Language``, ``CustSpaceId`` optional; other keys ignored.
- **MNS form** (``POST /receipts/mns``, :func:`decode_mns`): a JSON array of MNS messages as the local CAMS
  posts an MNS batch, ``[{"MessageId": "<mns id>", "MessageBody": "<report JSON>", ...}]``: ONE report per
  MNS message (docs ``chatappstatus``: the message body is the report). ``MessageBody`` is the report's JSON
  text, or that text base64-encoded (the MNS SDKs' default), or (leniently) the JSON object itself.
- **ChatAppInbound** (``POST /inbound``, :func:`decode_inbound`): a JSON array of mobile-originated messages
  (docs ``chatappinbound``): ``MessageId``, ``From`` (the user), ``Type`` required; ``To``, ``Timestamp``,
  ``Message`` (TEXT: the text; other types: an object or its JSON text, kept as is), ``DisplayName``,
  ``Name``, ``CustSpaceId``, ``WabaId`` optional (the docs' own sample misspells ``"Timestamp "``).

``Status`` (case-insensitive): ``Sent``, ``Delivered``, ``Read``, ``Failed`` are delivery states;
``Deleted`` (not pushed by WhatsApp) is kept only as a count; Viber's ``unsubscribe`` / ``subscribe`` are
opt-out / opt-in of the user. ASSUMPTION (docs silent on which number a Viber (un)subscribe names): the user
is ``To``, as in every other status report. Anything else is skipped, named.

Numbers: ``To`` (and an inbound ``From``) that are phone-like (digits once ``+``, spaces, ``-``, ``.``,
``(`` and ``)`` are gone) become digits only, the wire form the store keys recipients by; anything else (a
Messenger or Instagram id) is kept as given, trimmed.

A list is decoded item by item: a bad item is skipped and counted under a named reason (``missing-To``,
``invalid-Timestamp``, ``unknown-status``, ``mns-body-not-json`` ...), never failing the good ones.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chatapp_mass.core.errors import ChatAppMassError

#: The delivery states a report's Status maps to, and what else a Status may say.
DELIVERY = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}
DELETED, SUBSCRIBE, UNSUBSCRIBE = "deleted", "subscribe", "unsubscribe"
DEFAULT_STOP_WORDS = ("STOP", "UNSUBSCRIBE", "STOPALL", "CANCEL", "END", "QUIT")
_PHONE_PUNCTUATION = str.maketrans("", "", "+ -.()\t")
# Bounds that keep a report storable on both backends (a Tablestore primary key column holds at most 1 KB,
# an integer 64 bits): an id longer than ID_MAX is no id CAMS gives (skipped, named); a Timestamp past
# year 33658 is no time; an error text is kept, cut at TEXT_MAX characters.
ID_MAX = 256
TEXT_MAX = 1024
TIMESTAMP_MAX = 10**15


class BodyError(ChatAppMassError):
    """A receipt or inbound body that is not a JSON array (the HTTP route answers 400 with this text)."""


def parse_array(body: bytes) -> list[Any]:
    """The JSON array a push carries; :class:`BodyError` says what it is instead."""
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BodyError("the body is not UTF-8 text") from None
    except RecursionError:
        raise BodyError("the body is nested too deeply") from None
    except ValueError as error:
        raise BodyError(f"the body is not JSON ({error})") from None
    if not isinstance(value, list):
        raise BodyError(f"the body must be a JSON array of reports, not a JSON {_json_type(value)}")
    return value


def wire_number(text: str) -> str:
    """``+65 8123-4567`` -> ``6581234567``; a non-phone id (Messenger, Instagram) trimmed, as given."""
    text = text.strip()
    digits = text.translate(_PHONE_PUNCTUATION)
    return digits if digits.isdigit() and digits.isascii() else text


def stop_words(setting: str | None) -> frozenset[str]:
    """``CHATAPP_STOP_WORDS`` (comma-separated; unset or blank: :data:`DEFAULT_STOP_WORDS`), case-folded."""
    words = [w.strip() for w in (setting or "").split(",") if w.strip()] or list(DEFAULT_STOP_WORDS)
    return frozenset(w.casefold() for w in words)


# --- the models (the edge) ------------------------------------------------------------------------------
def _text(value: Any) -> Any:
    """A code sent as a number (``131026``) is its text; None is empty."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)


class StatusReport(_Wire):
    """One ChatAppStatus report (ALIBABA-FACTS §6)."""

    message_id: str = Field(alias="MessageId", min_length=1, max_length=ID_MAX)
    to: str = Field(alias="To", min_length=1, max_length=ID_MAX)
    status: str = Field(alias="Status", min_length=1, max_length=ID_MAX)
    timestamp: int = Field(alias="Timestamp", ge=0, le=TIMESTAMP_MAX)
    task_id: str = Field(default="", alias="TaskId", max_length=ID_MAX)
    from_: str = Field(default="", alias="From")
    status_description: str = Field(default="", alias="StatusDescription")
    error_code: str = Field(default="", alias="ErrorCode")
    error_description: str = Field(default="", alias="ErrorDescription")
    conversation_type: str = Field(default="", alias="ConversationType")
    conversation_id: str = Field(default="", alias="ConversationId")
    msg_frame_type: str = Field(default="", alias="MsgFrameType")
    type: str = Field(default="", alias="Type")
    origin_phone_number: str = Field(default="", alias="OriginPhoneNumber")
    template_code: str = Field(default="", alias="TemplateCode")
    template_name: str = Field(default="", alias="TemplateName")
    language: str = Field(default="", alias="Language")
    cust_space_id: str = Field(default="", alias="CustSpaceId")

    @field_validator(
        "message_id",
        "to",
        "task_id",
        "from_",
        "status_description",
        "error_code",
        "error_description",
        "conversation_type",
        "conversation_id",
        "msg_frame_type",
        "type",
        "origin_phone_number",
        "template_code",
        "template_name",
        "language",
        "cust_space_id",
        mode="before",
    )
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        return _text(value)

    @field_validator("error_code", "error_description", "status_description", mode="after")
    @classmethod
    def _cut(cls, value: str) -> str:
        return value[:TEXT_MAX]  # a report is not lost for a long text: it is kept cut


class MnsMessage(_Wire):
    """One MNS message of a batch: its body is one report."""

    message_id: str = Field(default="", alias="MessageId")
    message_body: str | dict[str, Any] = Field(alias="MessageBody")


class InboundMessage(_Wire):
    """One ChatAppInbound (mobile-originated) message (docs ``chatappinbound``)."""

    message_id: str = Field(alias="MessageId", min_length=1, max_length=ID_MAX)
    from_: str = Field(alias="From", min_length=1, max_length=ID_MAX)
    type: str = Field(alias="Type", min_length=1, max_length=ID_MAX)
    to: str = Field(default="", alias="To", max_length=ID_MAX)
    timestamp: int = Field(default=0, alias="Timestamp", ge=0, le=TIMESTAMP_MAX)
    message: Any = Field(default="", alias="Message")
    display_name: str = Field(default="", alias="DisplayName")
    name: str = Field(default="", alias="Name")
    cust_space_id: str = Field(default="", alias="CustSpaceId")
    waba_id: str = Field(default="", alias="WabaId")

    @field_validator(
        "message_id", "from_", "to", "display_name", "name", "cust_space_id", "waba_id", mode="before"
    )
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        return _text(value)

    @property
    def text(self) -> str:
        """The text of a TEXT message ("" for any other type)."""
        return self.message if self.type.upper() == "TEXT" and isinstance(self.message, str) else ""


# --- what decoding gives --------------------------------------------------------------------------------
class StatusEvent(NamedTuple):
    """A decoded report: ``kind`` is a delivery state (:data:`DELIVERY` values), ``deleted``, ``subscribe`` or
    ``unsubscribe``; ``to`` in the wire form; ``task_id`` as sent (``MessageId`` when the report has none)."""

    task_id: str
    to: str
    message_id: str
    kind: str
    at_ms: int
    error_code: str = ""
    error_description: str = ""
    from_: str = ""


@dataclass
class DecodedReports:
    events: list[StatusEvent] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> items


@dataclass
class DecodedInbound:
    messages: list[InboundMessage] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def _reason(error: ValidationError) -> str:
    """``missing-To``, ``invalid-Timestamp``: the first problem, by the wire's field name."""
    first = error.errors()[0]
    where = str(first["loc"][0]) if first["loc"] else "item"
    return f"{'missing' if first['type'] == 'missing' else 'invalid'}-{where}"


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


def decode_report(item: Any) -> StatusEvent | str:
    """One report -> its event, or the named reason it is skipped."""
    if not isinstance(item, dict):
        return "not-an-object"
    try:
        report = StatusReport.model_validate(item)
    except ValidationError as error:
        return _reason(error)
    status = report.status.casefold()
    kind = DELIVERY.get(status) or (status if status in (DELETED, SUBSCRIBE, UNSUBSCRIBE) else "")
    if not kind:
        return "unknown-status"
    return StatusEvent(
        report.task_id or report.message_id,
        wire_number(report.to),
        report.message_id,
        kind,
        report.timestamp,
        report.error_code,
        report.error_description,
        wire_number(report.from_) if report.from_ else "",
    )


def decode_reports(items: Iterable[Any]) -> DecodedReports:
    """The HTTP push form: a list of reports."""
    decoded = DecodedReports()
    for item in items:
        event = decode_report(item)
        if isinstance(event, str):
            decoded.skipped[event] += 1
        else:
            decoded.events.append(event)
    return decoded


def mns_body(item: Any) -> dict[str, Any] | str:
    """The report an MNS message carries (its body: JSON text, base64 of it, or the object), or a reason."""
    if not isinstance(item, dict):
        return "not-an-object"
    try:
        message = MnsMessage.model_validate(item)
    except ValidationError as error:
        return "mns-" + _reason(error)
    body = message.message_body
    if isinstance(body, dict):
        return body
    value = _json_or_none(body)
    if value is None:
        try:
            value = _json_or_none(base64.b64decode(body, validate=True).decode("utf-8"))
        except (binascii.Error, ValueError):  # ValueError: UnicodeDecodeError
            value = None
    if value is None:
        return "mns-body-not-json"
    return value if isinstance(value, dict) else "mns-body-not-object"


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def decode_mns(items: Iterable[Any]) -> DecodedReports:
    """The MNS form: a list of MNS messages, one report in each body."""
    decoded = DecodedReports()
    for item in items:
        body = mns_body(item)
        event = decode_report(body) if isinstance(body, dict) else body
        if isinstance(event, str):
            decoded.skipped[event] += 1
        else:
            decoded.events.append(event)
    return decoded


def decode_inbound(items: Iterable[Any]) -> DecodedInbound:
    """ChatAppInbound: a list of messages; ``From`` (and ``To``) in the wire form."""
    decoded = DecodedInbound()
    for item in items:
        if not isinstance(item, dict):
            decoded.skipped["not-an-object"] += 1
            continue
        try:
            message = InboundMessage.model_validate(item)
        except ValidationError as error:
            decoded.skipped[_reason(error)] += 1
            continue
        message.from_ = wire_number(message.from_)
        message.to = wire_number(message.to) if message.to else ""
        decoded.messages.append(message)
    return decoded


def is_stop(message: InboundMessage, words: frozenset[str]) -> bool:
    """A TEXT message that is, trimmed and case-folded, exactly one of the stop words: `` Stop `` is an
    opt-out, "stop by tomorrow" is not."""
    return message.text.strip().casefold() in words
