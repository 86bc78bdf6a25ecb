"""Receipts in: the decoders (core.receipts: every bad item skipped under its named reason, the good ones kept)
and the service (services.receipts: forward-only, repeats, out of order, unknown TaskIds kept aside, Viber
(un)subscribe and STOP words to the opt-out hooks), on a real SQLite store."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from chatapp_mass.core.receipts import (
    BodyError,
    decode_inbound,
    decode_mns,
    decode_reports,
    parse_array,
    stop_words,
    wire_number,
)
from chatapp_mass.services.receipts import ReceiptService
from chatapp_mass.store.interface import JobRecord
from chatapp_mass.store.receipts import DeliveryStatus
from chatapp_mass.store.receipts_sqlite import SqliteReceipts
from chatapp_mass.store.sqlite import SqliteStore


def report(
    to: str, status: str, at: int = 1_765_000_000_000, task: str = "111", **more: Any
) -> dict[str, Any]:
    return {"MessageId": f"m-{to}", "TaskId": task, "From": "8613800000000", "To": to, "Status": status,
            "Timestamp": at, **more}  # fmt: skip


# --- the decoders -----------------------------------------------------------------------------------------
def test_every_bad_item_is_named_and_the_good_ones_kept() -> None:
    items = [
        report("+65 8123-4567", "Delivered"),
        "not a report",
        {"MessageId": "m", "Status": "Read", "Timestamp": 1},  # no To
        report("6581230000", "Read", at="soon"),  # type: ignore[arg-type]
        report("6581230001", "Accepted"),
        {**report("6581230002", "Failed", ErrorCode=131026, ErrorDescription="Receiver is incapable")},
        {**report("6581230003", "READ", at="1765000000001"), "TaskId": ""},  # no TaskId: MessageId
        report("6581230004", "deleted"),
        report("6581230005", "unsubscribe"),
        {"To": "1", "Status": "Sent", "Timestamp": 5},  # no MessageId
        report("page-scoped-ID", "Sent"),
    ]
    decoded = decode_reports(items)
    assert dict(decoded.skipped) == {
        "not-an-object": 1,
        "missing-To": 1,
        "invalid-Timestamp": 1,
        "unknown-status": 1,
        "missing-MessageId": 1,
    }
    events = {e.to: e for e in decoded.events}
    assert list(events) == [
        "6581234567",
        "6581230002",
        "6581230003",
        "6581230004",
        "6581230005",
        "page-scoped-ID",
    ]
    assert events["6581234567"].kind == "delivered" and events["6581234567"].task_id == "111"
    assert (events["6581230002"].error_code, events["6581230002"].error_description) == (
        "131026",
        "Receiver is incapable",
    )
    assert events["6581230003"].task_id == "m-6581230003" and events["6581230003"].at_ms == 1765000000001
    assert [events[n].kind for n in ("6581230004", "6581230005")] == ["deleted", "unsubscribe"]


def test_mns_bodies_as_json_text_base64_or_object() -> None:
    body = report("6581230000", "Read")
    items = [
        {"MessageId": "q1", "MessageBody": json.dumps(body), "ReceiptHandle": "h"},
        {"MessageId": "q2", "MessageBody": base64.b64encode(json.dumps(body).encode()).decode()},
        {"MessageId": "q3", "MessageBody": body},
        {"MessageId": "q4", "MessageBody": "not json at all"},
        {"MessageId": "q5", "MessageBody": "[1, 2]"},
        {"MessageId": "q6"},
        {"MessageId": "q7", "MessageBody": json.dumps({**body, "Status": "Opened"})},
        7,
    ]
    decoded = decode_mns(items)
    assert len(decoded.events) == 3 and {e.kind for e in decoded.events} == {"read"}
    assert dict(decoded.skipped) == {
        "mns-body-not-json": 1,
        "mns-body-not-object": 1,
        "mns-missing-MessageBody": 1,
        "unknown-status": 1,
        "not-an-object": 1,
    }


def test_a_body_that_is_not_a_json_array_is_refused_by_name() -> None:
    assert parse_array(b'[{"a": 1}]') == [{"a": 1}]
    for body, says in [(b"{}", "not a JSON object"), (b"nope", "not JSON"), (b"\xff", "not UTF-8"),
                       (b"[" * 100_000, "nested too deeply")]:  # fmt: skip
        with pytest.raises(BodyError, match=says):
            parse_array(body)


def test_inbound_messages_and_stop_words() -> None:
    decoded = decode_inbound(
        [
            {
                "MessageId": "i1",
                "From": "+65 8123 4567",
                "To": "8613800000000",
                "Type": "TEXT",
                "Message": " Stop ",
            },
            {"MessageId": "i2", "From": "6581230000", "Type": "IMAGE", "Message": {"id": "x"}},
            {"MessageId": "i3", "Type": "TEXT", "Message": "STOP"},
            ["no"],
        ]
    )
    assert dict(decoded.skipped) == {"missing-From": 1, "not-an-object": 1}
    first, second = decoded.messages
    assert (first.from_, first.text, second.text) == ("6581234567", " Stop ", "")
    assert stop_words(None) == {"stop", "unsubscribe", "stopall", "cancel", "end", "quit"}
    assert stop_words(" Halt, ARRÊT ,") == {"halt", "arrêt"}
    assert wire_number(" +1 (212) 555-0100 ") == "12125550100" and wire_number("psid_123") == "psid_123"


# --- the service ------------------------------------------------------------------------------------------
class Hooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str], str]] = []

    def out(self, space: str, numbers: list[str], reason: str) -> None:
        self.calls.append(("out", space, sorted(numbers), reason))

    def into(self, space: str, numbers: list[str], reason: str) -> None:
        self.calls.append(("in", space, sorted(numbers), reason))


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(str(tmp_path / "r.db"))


def service(store: SqliteStore, hooks: Hooks | None = None, **kwargs: Any) -> ReceiptService:
    hooks = hooks or Hooks()
    return ReceiptService(SqliteReceipts(store), hooks.out, hooks.into, store=store, **kwargs)


def test_states_only_move_forward_whatever_the_order_and_repeats(store: SqliteStore) -> None:
    svc = service(store)
    svc.receipts.register_task("111", "job1", 0)
    numbers = [f"65812{i:05d}" for i in range(40)]
    reports = [
        report(n, s, at=1000 + k) for n in numbers for k, s in enumerate(["Sent", "Delivered", "Read"])
    ]
    reports += [report(n, "Failed", at=2000) for n in numbers[:10]]  # a failure after Read: ignored
    reports += reports[:50]  # repeats
    random.Random(7).shuffle(reports)
    for start in range(0, len(reports), 37):  # several requests
        svc.ingest(reports[start : start + 37])
    states = svc.receipts.states("111")
    assert {s.status for s in states.values()} == {DeliveryStatus.read} and len(states) == 40
    assert {s.at_ms for s in states.values()} == {1002}
    again = svc.ingest(reports)
    assert (again.accepted, again.changed, again.unchanged) == (len(reports), 0, len(reports))
    assert svc.unmatched() == []


def test_a_failure_keeps_its_code_and_a_later_delivery_overrides_it(store: SqliteStore) -> None:
    svc = service(store)
    svc.receipts.register_task("111", "job1", 0)
    svc.ingest([report("6581230000", "Failed", at=5, ErrorCode="131026", ErrorDescription="incapable")])
    state = svc.receipts.states("111")["6581230000"]
    assert (state.status, state.error_code, state.error_description) == (
        DeliveryStatus.failed,
        "131026",
        "incapable",
    )
    svc.ingest([report("6581230000", "Delivered", at=6)])
    assert svc.receipts.states("111")["6581230000"].status is DeliveryStatus.delivered


def test_unknown_task_ids_are_stored_and_kept_aside_then_joined_by_a_late_registration(
    store: SqliteStore,
) -> None:
    svc = service(store)
    result = svc.ingest([report("6581230000", "Delivered", task="999"), report("6581230001", "Read", task="999"),
                         report("6581230002", "Deleted", task="999"), {"bad": 1}])  # fmt: skip
    assert (result.accepted, result.skipped, result.unmatched, result.deleted) == (3, 1, 2, 1)
    assert result.ack() == {"code": 0, "msg": "success", "accepted": 3, "skipped": 1}
    assert [(u["task_id"], u["to"], u["status"], u["reason"]) for u in svc.unmatched()] == [
        ("999", "6581230000", "delivered", "unregistered TaskId"),
        ("999", "6581230001", "read", "unregistered TaskId"),
    ]
    svc.receipts.register_task("999", "late-job", 2)  # a registration after its receipts
    assert set(svc.receipts.states("999")) == {"6581230000", "6581230001"}
    assert svc.ingest([report("6581230000", "Read", task="999")]).unmatched == 0  # registered now
    assert len(svc.unmatched()) == 2  # what was kept aside stays listed for the operator


def test_viber_unsubscribe_and_subscribe_reach_the_hooks_in_the_job_space(store: SqliteStore) -> None:
    hooks = Hooks()
    svc = service(store, hooks)
    store.create_job(JobRecord("jobS", "x.csv", {"ChannelType": "viber", "CustSpaceId": "cams-1"}, {}, "h"))
    svc.receipts.register_task("222", "jobS", 0)
    svc.ingest(
        [
            report("380501110001", "unsubscribe", task="222", at=10),
            report("380501110002", "unsubscribe", task="222", at=10),
            report("380501110002", "subscribe", task="222", at=11),  # later: opted back in
            report("380501110003", "subscribe", task="222", at=12),
            report("380501110003", "unsubscribe", task="222", at=9),  # earlier, arriving later in the list
            report("380501110004", "unsubscribe", task="unknown", at=10),  # no job: the default space
        ]
    )
    assert sorted(hooks.calls) == [
        ("in", "cams-1", ["380501110002", "380501110003"], "subscribe"),
        ("out", "cams-1", ["380501110001"], "unsubscribe"),
        ("out", "default", ["380501110004"], "unsubscribe"),
    ]
    assert svc.receipts.states("222") == {}  # (un)subscribe is no delivery state


def test_stop_words_in_inbound_messages_opt_the_sender_out(store: SqliteStore) -> None:
    hooks = Hooks()
    svc = service(store, hooks, words=stop_words("STOP,Quit"))
    result = svc.inbound(
        [
            {"MessageId": "1", "From": "+65 8123 0000", "Type": "TEXT", "Message": "  stop "},
            {
                "MessageId": "2",
                "From": "6581230001",
                "Type": "TEXT",
                "Message": "QUIT",
                "CustSpaceId": "cams-9",
            },
            {"MessageId": "3", "From": "6581230002", "Type": "TEXT", "Message": "stop by tomorrow?"},
            {"MessageId": "4", "From": "6581230003", "Type": "REPLY", "Message": {"text": "STOP"}},
            {"MessageId": "5", "From": "6581230004", "Type": "TEXT", "Message": "cancel"},  # not a word here
            {"MessageId": "6", "Type": "TEXT", "Message": "STOP"},
        ]
    )
    assert (result.accepted, result.skipped, result.opted_out) == (5, 1, 2)
    assert sorted(hooks.calls) == [
        ("out", "cams-9", ["6581230001"], "stop-keyword"),
        ("out", "default", ["6581230000", "6581230001"], "stop-keyword"),
    ]


def test_without_hooks_opt_events_are_counted_only(store: SqliteStore) -> None:
    svc = ReceiptService(SqliteReceipts(store))
    result = svc.ingest([report("380501110001", "unsubscribe")])
    assert (result.accepted, result.opted_out) == (1, 1)
    assert svc.inbound([{"MessageId": "1", "From": "1", "Type": "TEXT", "Message": "STOP"}]).opted_out == 1


def test_registrations_are_cached_in_the_process(store: SqliteStore) -> None:
    receipts = SqliteReceipts(store)
    calls: list[str] = []
    original = receipts.task

    def counted(task_id: str) -> Any:
        calls.append(task_id)
        return original(task_id)

    receipts.task = counted  # type: ignore[method-assign]
    svc = ReceiptService(receipts)
    receipts.register_task("111", "job1", 0)
    for _ in range(3):
        svc.ingest(
            [report(f"6581230{i:03d}", "Sent") for i in range(100)] + [report("1", "Sent", task="nope")]
        )
    assert sorted(calls) == [
        "111",
        "nope",
        "nope",
        "nope",
    ]  # one look-up per distinct id; a miss is asked again
