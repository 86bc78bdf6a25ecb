"""Delivery receipts (ChatAppStatus) and inbound messages (ChatAppInbound), pushed as the service pushes them.

Longer than 500 lines: the fate of a message (pure, per message), the report shapes of both documented
channels (HTTP push and the MNS form) and inbound messages, and the pusher (queue, batching, worker pool,
retries) belong together: each rule cites its source here, and one file keeps the push path readable.

**What happens to an accepted message** (:func:`decide`): ``Sent``, then ``Delivered`` or ``Failed`` (share
``failed_share``), then ``Read`` after ``Delivered`` (share ``read_share``); Viber messages are followed by an
``unsubscribe`` report with ``unsubscribe_share`` (the user blocked the business account). Each step comes
after a delay drawn from its range (``sent_delay``, ``delivered_delay``, ``read_delay``). The draws come from
a ``random.Random`` seeded with the backend's seed and the message's ``(TaskId, To)``: the same seed gives
every recipient the same fate whatever order concurrent callers reached the service in (a shared stream would
not), and the backend's own stream (request ids, faults) is left as it was.

Sources: ChatAppStatus, HTTP form (https://www.alibabacloud.com/help/en/chatapp/developer-reference/chatappstatus-1:
a POST of a JSON **array** of reports, UTF-8; the template example's fields and ``Type`` "TEMPLATE"; the
ErrorDescription form ``131026:Receiver is incapable of receiving this message(Message Undeliverable.)``) and
MNS form (https://www.alibabacloud.com/help/en/chatapp/developer-reference/chatappstatus: one report per
message body; Status values Sent, Delivered, Read, Failed, Deleted (never pushed by WhatsApp), Viber
subscribe/unsubscribe; ``TaskId`` defaults to the MessageId); ChatAppInbound (HTTP:
https://www.alibabacloud.com/help/en/chatapp/developer-reference/chatappinbound, MNS: .../chatappinbound-1);
the 3 s rule (ALIBABA-FACTS §6, https://www.alibabacloud.com/help/es/chatapp/developer-reference/chatappstatus-1).
The error codes: Meta's WhatsApp error codes page
(https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).

ASSUMPTIONS (the docs are silent; each is the strict choice, and the product is written against it):

- a report's ``TaskId`` is the call's ``TaskId`` as sent (the ``MessageId`` when the call had none, as the
  page says of an unset TaskId); ``MessageId`` is the per-recipient id the local CAMS gave the message;
- duplicates: a report is pushed twice with ``duplicate_share`` (the page warns reports may repeat);
  out of order: every ``push_interval`` the due reports are shuffled before they are cut into requests, and
  requests go out on ``push_workers`` connections at once, so a ``Read`` can arrive before its ``Delivered``;
- retries: a push answered slower than ``push_timeout`` (3 s) or not 2xx is retried after 1, 5 and 10
  minutes (``retry_delays``, times ``retry_scale`` for tests), then given up (counted in ``abandoned``) -- the
  rule of the SMS receipt push (https://help.aliyun.com/zh/sms/developer-reference/smsreport-2), CAMS says
  nothing; the acknowledgement body is not read;
- Viber failures carry no ErrorCode (the Meta codes are WhatsApp's; no Viber table is documented), only an
  ErrorDescription; ``ConversationType`` ("marketing") is given for WhatsApp only; no ``CustSpaceId`` in a
  status report (the ChatAppStatus pages do not list it; ChatAppInbound's do);
- the MNS form: the local CAMS POSTs a JSON array of up to ``mns_batch`` (16, MNS BatchReceiveMessage's
  limit) MNS messages to ``mns_url`` -- what an MNS consumer would hand on (MessageId, ReceiptHandle,
  MessageBodyMD5 in upper-case hex, MessageBody = the report JSON as a string, EnqueueTime,
  FirstDequeueTime, NextVisibleTime, DequeueCount, Priority). A retried push is a redelivery: the same MNS
  MessageId with DequeueCount + 1. Inbound messages always go to ``inbound_url`` as an HTTP push;
- a message accepted while no receipt URL is set gets no reports (as a service with no receipt
  configuration), but its fate is decided all the same: :meth:`ReceiptPusher.truth` covers every message.
"""

from __future__ import annotations

import hashlib
import heapq
import http.client
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

SENT, DELIVERED, READ, FAILED, UNSUBSCRIBE = "Sent", "Delivered", "Read", "Failed", "unsubscribe"
# The product's forward-only order (issue 17 design): the truth of a (TaskId, To) is its highest-ranked status.
RANK = {SENT: 1, FAILED: 2, DELIVERED: 3, READ: 4}
STATUS_DESCRIPTIONS = {
    SENT: "The message was sent.",
    DELIVERED: "The message was delivered to the recipient's device.",
    READ: "The message was read by the recipient.",
    FAILED: "Message delivery failed.",
    UNSUBSCRIBE: "The user has blocked the business account.",
}

# WhatsApp's asynchronous delivery failures a template can meet, from Meta's error codes page (see the module
# docstring), with how often the local CAMS picks each among its failures (ASSUMPTION: the mix is ours). The
# first description is the ChatAppStatus page's own example; the others follow its "code:text" form with
# Meta's title. Not used: 131047 (re-engagement: free-form messages only, and the local CAMS sends templates)
# and 131051 (unsupported message type: not a template's fate).
WHATSAPP_FAILURES: tuple[tuple[str, str, int], ...] = (
    ("131026", "131026:Receiver is incapable of receiving this message(Message Undeliverable.)", 60),
    ("131049", "131049:This message was not delivered to maintain healthy ecosystem engagement.", 20),
    ("130472", "130472:User's number is part of an experiment", 10),
    ("131048", "131048:Spam rate limit hit", 10),
)
VIBER_FAILURE = ("", "Message delivery failed.")
RECEIPT_MODES = frozenset({"http", "mns"})
MNS_BATCH_MAX = 16  # MNS BatchReceiveMessage returns at most 16 messages
THREAD_NAME = "local-cams-push"


class Accepted(Protocol):
    """What a report needs of an accepted message (``models.ReceivedMessage``)."""

    to: str
    message_id: str
    task_id: str | None
    from_: str
    channel_type: str
    template_code: str | None
    template_name: str | None
    language: str
    arrived_at: float


@dataclass
class ReceiptOptions:
    """Every knob, by the name ``CamsBackend.configure`` and the admin endpoint take."""

    receipt_url: str | None = None  # ChatAppStatus HTTP push (receipt_mode "http")
    mns_url: str | None = None  # ChatAppStatus in MNS form (receipt_mode "mns")
    inbound_url: str | None = None  # ChatAppInbound HTTP push
    receipt_mode: str = "http"
    failed_share: float = 0.10
    read_share: float = 0.6
    duplicate_share: float = 0.05
    unsubscribe_share: float = 0.0  # Viber messages only
    sent_delay: tuple[float, float] = (0.05, 0.15)
    delivered_delay: tuple[float, float] = (0.05, 0.2)
    read_delay: tuple[float, float] = (0.05, 0.15)
    push_batch: int = 100
    mns_batch: int = MNS_BATCH_MAX
    push_workers: int = 4
    push_timeout: float = 3.0
    push_interval: float = 0.1
    retry_delays: tuple[float, ...] = (60.0, 300.0, 600.0)
    retry_scale: float = 1.0

    @property
    def status_url(self) -> str | None:
        return self.mns_url if self.receipt_mode == "mns" else self.receipt_url

    def updated(self, options: Mapping[str, Any]) -> ReceiptOptions:
        """A copy with ``options`` applied, each checked; ValueError names the option and what it takes."""
        changes: dict[str, Any] = {}
        for name, value in options.items():
            if name in ("receipt_url", "mns_url", "inbound_url"):
                if value is not None and not (isinstance(value, str) and value.startswith("http")):
                    raise ValueError(f"{name} must be an http(s) URL or null, not {value!r}")
                changes[name] = value or None
            elif name == "receipt_mode":
                if value not in RECEIPT_MODES:
                    raise ValueError(f"receipt_mode must be one of {sorted(RECEIPT_MODES)}, not {value!r}")
                changes[name] = value
            elif name in ("failed_share", "read_share", "duplicate_share", "unsubscribe_share"):
                share = float(value)
                if not 0.0 <= share <= 1.0:
                    raise ValueError(f"{name} must be between 0 and 1, not {value!r}")
                changes[name] = share
            elif name in ("sent_delay", "delivered_delay", "read_delay"):
                changes[name] = _range(name, value)
            elif name in ("push_batch", "mns_batch", "push_workers"):
                number = int(value)
                high = MNS_BATCH_MAX if name == "mns_batch" else 10_000
                if not 1 <= number <= high:
                    raise ValueError(f"{name} must be from 1 to {high}, not {value!r}")
                changes[name] = number
            elif name in ("push_timeout", "push_interval", "retry_scale"):
                seconds = float(value)
                if seconds < 0 or (name != "retry_scale" and seconds == 0):
                    raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
                changes[name] = seconds
            elif name == "retry_delays":
                delays = tuple(float(v) for v in value)
                if any(d < 0 for d in delays):
                    raise ValueError(f"retry_delays must be non-negative seconds, not {value!r}")
                changes[name] = delays
            else:
                raise ValueError(f"unknown local CAMS receipt option {name!r}")
        return replace(self, **changes)


OPTION_NAMES = frozenset(f.name for f in fields(ReceiptOptions))


def _range(name: str, value: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be [low, high] seconds, not {value!r}") from None
    if not 0 <= low <= high:
        raise ValueError(f"{name} must be [low, high] seconds with 0 <= low <= high, not {value!r}")
    return (low, high)


# --- the fate of one message (pure) ----------------------------------------------------------------------
class Event(NamedTuple):
    status: str
    at: float  # when it happened (the report's Timestamp)


@dataclass(frozen=True)
class Fate:
    """What happened to one message, as the local CAMS decided it."""

    events: tuple[Event, ...]
    error_code: str = ""
    error_description: str = ""
    duplicated: tuple[bool, ...] = ()  # per event: pushed twice
    duplicate_lag: tuple[float, ...] = ()  # per event: how long after the first the copy is due

    @property
    def final(self) -> str:
        """The highest-ranked delivery status (an ``unsubscribe`` is not a delivery status)."""
        return max((e.status for e in self.events if e.status in RANK), key=RANK.__getitem__)

    @property
    def unsubscribed(self) -> bool:
        return any(e.status == UNSUBSCRIBE for e in self.events)


def task_key(message: Accepted) -> str:
    """The report's ``TaskId``: the call's, or the MessageId when the call had none (the ChatAppStatus page)."""
    return message.task_id or message.message_id


def decide(seed: int, message: Accepted, options: ReceiptOptions) -> Fate:
    """The fate of ``message``: a pure function of the seed, its (TaskId, To), its arrival and the options."""
    rng = random.Random(f"{seed}/{message.task_id or ''}/{message.to}")

    def after(start: float, bounds: tuple[float, float]) -> float:
        return start + rng.uniform(*bounds)

    sent_at = after(message.arrived_at, options.sent_delay)
    events = [Event(SENT, sent_at)]
    code = description = ""
    if rng.random() < options.failed_share:
        events.append(Event(FAILED, after(sent_at, options.delivered_delay)))
        if message.channel_type == "whatsapp":
            code, description = _pick_failure(rng)
        else:
            code, description = VIBER_FAILURE
    else:
        delivered_at = after(sent_at, options.delivered_delay)
        events.append(Event(DELIVERED, delivered_at))
        if rng.random() < options.read_share:
            events.append(Event(READ, after(delivered_at, options.read_delay)))
    if message.channel_type == "viber" and rng.random() < options.unsubscribe_share:
        events.append(Event(UNSUBSCRIBE, after(events[-1].at, options.read_delay)))
    duplicated = tuple(rng.random() < options.duplicate_share for _ in events)
    lags = tuple(rng.uniform(0.0, options.delivered_delay[1]) for _ in events)
    return Fate(tuple(events), code, description, duplicated, lags)


def _pick_failure(rng: random.Random) -> tuple[str, str]:
    point = rng.randrange(sum(weight for _, _, weight in WHATSAPP_FAILURES))
    for code, description, weight in WHATSAPP_FAILURES:
        if point < weight:
            return code, description
        point -= weight
    raise AssertionError("unreachable")


def status_report(message: Accepted, event: Event, fate: Fate) -> dict[str, Any]:
    """One ChatAppStatus report, with the fields of the HTTP page's template example (module docstring)."""
    report: dict[str, Any] = {
        "MessageId": message.message_id,
        "TaskId": task_key(message),
        "From": message.from_,
        "To": message.to,
        "OriginPhoneNumber": message.from_,
        "Timestamp": int(event.at * 1000),
        "Status": event.status,
        "StatusDescription": STATUS_DESCRIPTIONS[event.status],
        "MsgFrameType": "template",
        "Type": "TEMPLATE",
        "Language": message.language,
    }
    if message.template_code:
        report["TemplateCode"] = message.template_code
    if message.template_name:
        report["TemplateName"] = message.template_name
    if message.channel_type == "whatsapp":
        report["ConversationType"] = "marketing"
    if event.status == FAILED:
        if fate.error_code:
            report["ErrorCode"] = fate.error_code
        report["ErrorDescription"] = fate.error_description
    return report


def inbound_message(
    message_id: str,
    from_: str,
    to: str,
    text: str,
    *,
    at: float,
    channel: str = "whatsapp",
    cust_space_id: str | None = None,
    name: str = "",
) -> dict[str, Any]:
    """One ChatAppInbound message of Type TEXT (the HTTP page's example; CustSpaceId, and WabaId for
    WhatsApp, as the MNS page lists them). ``From`` is the user, ``To`` the business number."""
    message: dict[str, Any] = {
        "MessageId": message_id,
        "From": from_,
        "To": to,
        "DisplayName": name or from_,
        "Name": name or from_,
        "Type": "TEXT",
        "Message": text,
        "Timestamp": int(at * 1000),
    }
    if cust_space_id:
        message["CustSpaceId"] = cust_space_id
    if channel == "whatsapp":
        message["WabaId"] = "local-waba"
    return message


def mns_message(
    body: str, mns_id: str, *, enqueued_ms: int, now_ms: int, dequeue_count: int
) -> dict[str, Any]:
    """One MNS message carrying one report (see the module docstring's MNS assumption)."""
    return {
        "MessageId": mns_id,
        "ReceiptHandle": f"{mns_id}-{dequeue_count}-{now_ms}",
        "MessageBodyMD5": hashlib.md5(body.encode("utf-8")).hexdigest().upper(),
        "MessageBody": body,
        "EnqueueTime": enqueued_ms,
        "FirstDequeueTime": now_ms,
        "NextVisibleTime": now_ms + 30_000,
        "DequeueCount": dequeue_count,
        "Priority": 8,
    }


class Truth(NamedTuple):
    """What the local CAMS says happened to a (TaskId, To): the final status in the product's words."""

    status: str  # sent | delivered | read | failed
    error_code: str = ""
    error_description: str = ""


def truth_of(fates: Iterable[tuple[str, str, Fate]]) -> dict[tuple[str, str], Truth]:
    """``(task_id, to) -> Truth``: the highest-ranked status over every message of that key."""
    best: dict[tuple[str, str], tuple[int, Truth]] = {}
    for task_id, to, fate in fates:
        final = fate.final
        rank = RANK[final]
        error = (fate.error_code, fate.error_description) if final == FAILED else ("", "")
        held = best.get((task_id, to))
        if held is None or rank > held[0]:
            best[(task_id, to)] = (rank, Truth(final.lower(), *error))
    return {key: truth for key, (_, truth) in best.items()}


# --- the pusher ------------------------------------------------------------------------------------------
@dataclass(order=True)
class _Item:
    due: float
    seq: int
    kind: str = field(compare=False)  # "status" | "inbound"
    payload: dict[str, Any] = field(compare=False)
    attempts: int = field(default=0, compare=False)
    mns_id: str = field(default="", compare=False)
    enqueued_at: float = field(default=0.0, compare=False)


@dataclass
class PushRecord:
    """One POST the pusher made (the URL without its query: it carries the key)."""

    at: float
    kind: str  # "status" | "mns" | "inbound"
    url: str
    count: int
    http_status: int | None
    elapsed: float
    ok: bool
    error: str = ""


class ReceiptPusher:
    """Turns accepted messages into reports and pushes them; thread-safe; one background thread (plus the
    ``push_workers`` pool) while there is work, none after :meth:`close`.

    ``accept`` is what the send path calls (cheap: the fates are decided on the pusher's thread). ``clock`` is
    the backend's: report Timestamps and due times use it."""

    def __init__(self, seed: int, *, clock: Callable[[], float] = time.time) -> None:
        self.seed = seed
        self.clock = clock
        self.options = ReceiptOptions()
        self._cond = threading.Condition(threading.Lock())
        self._inbox: deque[Accepted] = deque()
        self._queue: list[_Item] = []  # a heap by due time
        self._in_flight = 0
        self._seq = 0
        self._fates: dict[tuple[str, str, str], Fate] = {}
        self._shuffle = random.Random(f"{seed}/push")
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.pushes: deque[PushRecord] = deque(maxlen=100_000)
        self.pushed: Counter[str] = (
            Counter()
        )  # reports pushed (acknowledged 2xx in time), by Status/"inbound"
        self.abandoned = 0  # reports given up after the last retry
        self.unrouted = 0  # reports whose URL was unset by the time they were due

    # --- configuration ----------------------------------------------------------------------------------
    def configure(self, **options: Any) -> None:
        with self._cond:
            self.options = self.options.updated(options)

    # --- what the service calls -------------------------------------------------------------------------
    def accept(self, messages: Sequence[Accepted]) -> None:
        """Messages the service just accepted: reports will follow if a status URL is set now."""
        if not messages:
            return
        with self._cond:
            if self.options.status_url is None:
                return
            self._inbox.extend(messages)
            self._wake()

    def inbound(
        self,
        from_: str,
        to: str,
        text: str,
        *,
        channel: str = "whatsapp",
        cust_space_id: str | None = None,
        name: str = "",
    ) -> dict[str, Any]:
        """Push one inbound (mobile-originated) TEXT message from user ``from_`` to business number ``to``."""
        with self._cond:
            if self.options.inbound_url is None:
                raise ValueError("no inbound_url is set: configure inbound_url first")
            now = self.clock()
            self._seq += 1
            message_id = f"in-{self.seed & 0xFFFF:04x}{self._seq:012d}"
            payload = inbound_message(
                message_id, from_, to, text, at=now, channel=channel, cust_space_id=cust_space_id, name=name
            )
            self._push_item("inbound", payload, now)
            self._wake()
            return payload

    # --- truth for tests --------------------------------------------------------------------------------
    def fate(self, message: Accepted) -> Fate:
        key = (message.task_id or "", message.to, message.message_id)
        with self._cond:
            fate = self._fates.get(key)
            options = self.options
        if fate is None:
            fate = decide(self.seed, message, options)
            with self._cond:
                fate = self._fates.setdefault(key, fate)
        return fate

    def truth(self, messages: Iterable[Accepted]) -> dict[tuple[str, str], Truth]:
        return truth_of((task_key(m), m.to, self.fate(m)) for m in messages)

    def pending(self) -> int:
        """Reports not yet pushed (queued, waiting to retry, or in flight), plus accepted messages not yet
        turned into reports."""
        with self._cond:
            return self._pending_locked()

    def wait_pushed(self, timeout: float) -> bool:
        """Wait until nothing is pending; False if ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending_locked() == 0, timeout)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            records = list(self.pushes)
            return {
                "pending": self._pending_locked(),
                "pushed": dict(self.pushed),
                "abandoned": self.abandoned,
                "unrouted": self.unrouted,
                "pushes": len(records),
                "failed_pushes": sum(1 for r in records if not r.ok),
                "push_errors": dict(Counter(r.error for r in records if not r.ok)),  # why (each then retried)
            }

    def forget(self) -> None:
        """Drop what is queued and the decided fates (``CamsBackend.reset``); in-flight pushes finish."""
        with self._cond:
            self._inbox.clear()
            self._queue.clear()
            self._fates.clear()
            self.pushes.clear()
            self.pushed.clear()
            self.abandoned = self.unrouted = 0
            self._cond.notify_all()

    # --- lifecycle --------------------------------------------------------------------------------------
    def open(self) -> None:
        """Allow the background thread again (``LocalCams.start``); it starts when there is work."""
        with self._cond:
            self._closed = False
            if self._pending_locked():
                self._wake()

    def close(self) -> None:
        """Stop the thread and the worker pool and wait for them (in-flight pushes end within
        ``push_timeout``). Queued reports stay queued for a later :meth:`open`."""
        with self._cond:
            self._closed = True
            thread, pool = self._thread, self._pool
            self._stop.set()
            self._cond.notify_all()
        if thread is not None:
            thread.join()
        if pool is not None:
            pool.shutdown(wait=True)
        with self._cond:
            if self._thread is thread:
                self._thread, self._pool = None, None
            self._stop = threading.Event()

    # --- internals --------------------------------------------------------------------------------------
    def _pending_locked(self) -> int:
        return len(self._inbox) + len(self._queue) + self._in_flight

    def _wake(self) -> None:
        """Called with the lock held: start the thread if it is not running."""
        if self._closed:
            return
        if self._thread is None:
            self._pool = ThreadPoolExecutor(
                self.options.push_workers, thread_name_prefix=f"{THREAD_NAME}-worker"
            )
            self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _push_item(self, kind: str, payload: dict[str, Any], due: float, mns_id: str = "") -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Item(due, self._seq, kind, payload, 0, mns_id, due))

    def _run(self) -> None:
        stop = self._stop
        while not stop.is_set():
            self._expand()
            batches = self._take_due()
            for kind, url, items in batches:
                assert self._pool is not None
                self._pool.submit(self._deliver, kind, url, items, stop)
            # a fixed window, not woken by each call or push: under load a window gathers full requests
            # (and reports of one message, shuffled together), as a service pushing on a schedule would
            stop.wait(self.options.push_interval)

    def _expand(self) -> None:
        """Turn the inbox's messages into timed reports (and their duplicates)."""
        with self._cond:
            messages = list(self._inbox)
        if not messages:
            return
        items: list[tuple[str, dict[str, Any], float, str]] = []
        for message in messages:
            fate = self.fate(message)
            for index, event in enumerate(fate.events):
                report = status_report(message, event, fate)
                items.append(("status", report, event.at, self._mns_id()))
                if fate.duplicated and fate.duplicated[index]:
                    items.append(("status", report, event.at + fate.duplicate_lag[index], self._mns_id()))
        with self._cond:
            for kind, payload, due, mns_id in items:
                self._push_item(kind, payload, due, mns_id)
            for _ in range(min(len(messages), len(self._inbox))):  # forget() may have cleared it
                self._inbox.popleft()
            self._cond.notify_all()

    def _mns_id(self) -> str:
        with self._cond:
            return f"{self._shuffle.getrandbits(128):032X}"

    def _take_due(self) -> list[tuple[str, str, list[_Item]]]:
        """The due items, shuffled (out-of-order arrival), cut into requests by destination."""
        with self._cond:
            now = self.clock()
            due: list[_Item] = []
            while self._queue and self._queue[0].due <= now:
                due.append(heapq.heappop(self._queue))
            if not due:
                return []
            self._shuffle.shuffle(due)
            options = self.options
            groups: dict[tuple[str, str], list[_Item]] = {}
            for item in due:
                if item.kind == "inbound":
                    kind, url = "inbound", options.inbound_url
                else:
                    kind, url = (
                        ("mns", options.mns_url)
                        if options.receipt_mode == "mns"
                        else (
                            "status",
                            options.receipt_url,
                        )
                    )
                if url is None:
                    self.unrouted += 1
                    continue
                groups.setdefault((kind, url), []).append(item)
            batches = []
            for (kind, url), items in groups.items():
                size = options.mns_batch if kind == "mns" else options.push_batch
                for start in range(0, len(items), size):
                    batches.append((kind, url, items[start : start + size]))
            self._in_flight += sum(len(items) for _, _, items in batches)
            self._cond.notify_all()
            return batches

    def _deliver(self, kind: str, url: str, items: list[_Item], stop: threading.Event) -> None:
        if stop.is_set():  # closing: back to the queue unsent, so close() does not wait on a backlog
            with self._cond:
                self._in_flight -= len(items)
                for item in items:
                    heapq.heappush(self._queue, item)
                self._cond.notify_all()
            return
        now = self.clock()
        if kind == "mns":
            body = [
                mns_message(
                    json.dumps(item.payload, ensure_ascii=False, separators=(",", ":")),
                    item.mns_id,
                    enqueued_ms=int(item.enqueued_at * 1000),
                    now_ms=int(now * 1000),
                    dequeue_count=item.attempts + 1,
                )
                for item in items
            ]
        else:
            body = [item.payload for item in items]
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        with self._cond:
            timeout = self.options.push_timeout
        status, elapsed, error = post_json(url, data, timeout)
        ok = status is not None and 200 <= status < 300 and elapsed <= timeout
        if status is not None and not ok and not error:
            error = f"HTTP {status}" if not 200 <= status < 300 else f"answered after {elapsed:.2f} s"
        with self._cond:
            self.pushes.append(
                PushRecord(now, kind, url.split("?", 1)[0], len(items), status, elapsed, ok, error)
            )
            self._in_flight -= len(items)
            if ok:
                for item in items:
                    self.pushed["inbound" if item.kind == "inbound" else item.payload["Status"]] += 1
            else:
                self._retry_locked(items)
            self._cond.notify_all()

    def _retry_locked(self, items: list[_Item]) -> None:
        delays, scale, now = self.options.retry_delays, self.options.retry_scale, self.clock()
        for item in items:
            item.attempts += 1
            if item.attempts > len(delays):
                self.abandoned += 1
                continue
            item.due = now + delays[item.attempts - 1] * scale
            heapq.heappush(self._queue, item)


def post_json(url: str, data: bytes, timeout: float) -> tuple[int | None, float, str]:
    """POST ``data`` (a JSON array, UTF-8) to ``url``; (HTTP status or None, seconds taken, error text).
    http.client, not urllib: a loopback push must not go through an HTTP(S)_PROXY of the environment."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    started = time.monotonic()
    connection = connection_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        connection.request(
            "POST", target, body=data, headers={"Content-Type": "application/json;charset=utf-8"}
        )
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started, ""
    except (OSError, http.client.HTTPException) as error:
        return None, time.monotonic() - started, f"{type(error).__name__}: {error}"
    finally:
        connection.close()
