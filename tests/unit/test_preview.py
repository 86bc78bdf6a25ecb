"""Issue 15, preview and confirm: the preview service (services/preview.py: counts, refused rows by reason
with at most 3 examples, TemplateParams keys, the first recipient's request as the sender builds it, bounded
memory), ``chatapp-mass check``, the question ``send`` asks on a terminal, ``--yes``, the refusal off a
terminal, and the ``--errors`` file with the rows' own cells. POST /jobs?preview=true: test_http_api.py."""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatapp_mass.adapters.cams import CamsClient, CamsSettings, wire_request
from chatapp_mass.core.intake import Row
from chatapp_mass.core.options import IntakeOptions, parse_job_options
from chatapp_mass.core.outcomes import OutcomeKind, SendOutcome
from chatapp_mass.entry import cli
from chatapp_mass.entry.bootstrap import Services
from chatapp_mass.services.plan import PlanSettings, plan_job
from chatapp_mass.services.preview import (
    EXAMPLES,
    MAX_GROUPS,
    build_preview,
    preview_json,
    preview_recipients,
    preview_text,
)
from chatapp_mass.store.interface import BatchStatus
from chatapp_mass.store.sqlite import SqliteStore

OPTIONS = parse_job_options(
    {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": "8613800000000"}
)
FLAGS = ["--channel-type", "whatsapp", "--template-code", "T1", "--language", "en", "--from", "8613800000000"]
FILE = (
    "to,name,code\n"
    "+8613900000001,Ann,A1\n"  # 2 valid
    "abc,Bob,B2\n"  # 3 InvalidNumber (letters)
    "+8613900000001,Ann again,A1\n"  # 4 Duplicate of 2
    "+8613900000002,,C3\n"  # 5 EmptyParam
    "+86 139 0000 0003,Dee,D4\n"  # 6 valid
    "+8613900000003,Dee,D4\n"  # 7 Duplicate of 6
    "+8613900000004,Eve\n"  # 8 ColumnCount
)


def preview_of(text: str, **kwargs: Any) -> Any:
    return preview_recipients(
        io.BytesIO(text.encode()), source="list.csv", options=OPTIONS, intake=IntakeOptions(), **kwargs
    )


# --- the service ---------------------------------------------------------------------------------------------
def test_counts_groups_keys_and_the_first_recipient() -> None:
    preview = preview_of(FILE)
    assert (preview.rows, preview.valid, preview.invalid, preview.duplicate) == (7, 2, 3, 2)
    assert (preview.channel, preview.template_code, preview.language, preview.from_) == (
        "whatsapp",
        "T1",
        "en",
        "8613800000000",
    )
    assert preview.batches == 1
    groups = {g.code: g for g in preview.reasons}
    assert set(groups) == {"Duplicate", "InvalidNumber", "EmptyParam", "ColumnCount"}
    assert groups["Duplicate"].count == 2 and preview.reasons[0].code == "Duplicate"  # most first
    assert [(e.line, e.to) for e in groups["Duplicate"].examples] == [
        (4, "8613900000001"),
        (7, "8613900000003"),
    ]
    # "same recipient as line 2" and "... line 6" are one reason, said with N
    assert groups["Duplicate"].message == "same recipient as line N"
    assert [(e.line, e.to) for e in groups["InvalidNumber"].examples] == [(3, "abc")]
    assert "'name'" in groups["EmptyParam"].message
    assert [(p.name, p.missing, p.empty) for p in preview.params] == [("name", 0, 0), ("code", 0, 0)]
    assert preview.sample is not None and preview.sample.line == 2
    assert preview.sample.recipient == {
        "To": "8613900000001",
        "TemplateParams": {"name": "Ann", "code": "A1"},
    }
    request = preview.sample.request
    assert request["action"] == "SendChatappMassMessage" and request["params_in"] == "body"
    assert (
        "SenderList" in request["body"] and "SenderList" not in request["query"]
    )  # in the body, not the URL
    assert request["query"]["TemplateCode"] == "T1" and request["query"]["From"] == "8613800000000"


def test_examples_are_capped_at_three_and_the_count_is_whole() -> None:
    rows = "to\n" + "".join(f"bad{i}\n" for i in range(50)) + "+8613900000001\n"
    preview = preview_of(rows)
    (group,) = preview.reasons
    assert group.count == 50 and len(group.examples) == EXAMPLES == 3
    assert [e.line for e in group.examples] == [2, 3, 4]
    text = preview_text(preview)
    assert "... and 47 more" in text and "line 5:" not in text


def test_reason_groups_are_bounded_whatever_the_messages() -> None:
    """Messages that differ in more than numbers (a letter each) still make at most MAX_GROUPS groups: the
    rest join their code's "other reasons" group."""
    rows = [Row(i, f"x{i}", "invalid", "Odd", f"contains {chr(0x4E00 + i)!r}") for i in range(1, 500)]
    preview = build_preview(OPTIONS, iter(rows))
    assert len(preview.reasons) <= MAX_GROUPS + 1
    assert sum(g.count for g in preview.reasons) == 499 == preview.invalid
    assert any(g.message == "other reasons" for g in preview.reasons)


def test_parameter_keys_are_the_union_with_what_each_recipient_lacks() -> None:
    items = [
        {"To": "+8613900000001", "TemplateParams": {"name": "A"}},
        {"To": "+8613900000002", "TemplateParams": {"name": "B", "code": "X"}},
        {"To": "+8613900000003", "TemplateParams": {"name": " ", "code": "Y"}},
        {"To": "+8613900000004"},
    ]
    preview = preview_json(items, options=OPTIONS, intake=IntakeOptions(allow_empty_params=True))
    assert preview.valid == 4
    assert [(p.name, p.missing, p.empty) for p in preview.params] == [("name", 1, 1), ("code", 2, 0)]
    assert "code: 2 valid recipients lack it" in preview_text(preview)


def test_no_valid_recipient_no_sample() -> None:
    preview = preview_of("to\nabc\n")
    assert preview.valid == 0 and preview.sample is None and preview.batches == 0
    assert "nothing would be sent" in preview_text(preview)


def test_a_recipient_too_large_for_a_request_is_invalid_as_in_the_plan() -> None:
    text = "to,note\n+8613900000001," + "x" * 400 + "\n+8613900000002,short\n"
    preview = preview_of(text, settings=PlanSettings(max_request_bytes=300))
    assert (preview.valid, preview.invalid) == (1, 1)
    assert preview.reasons[0].code == "RequestTooLarge"
    assert preview.sample is not None and preview.sample.line == 3


class RecordingSdk:
    """Stands for the SDK's client: records the generic call (body mode) the sender makes."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def call_api(self, params: Any, request: Any, runtime: Any) -> dict[str, Any]:
        self.calls.append(request)
        return {"statusCode": 200, "body": {"Code": "OK", "RequestId": "r", "GroupMessageId": "g"}}


def test_the_sample_request_is_the_one_the_sender_sends(tmp_path: Path) -> None:
    """The planner's stored recipient, handed to CamsClient.prepare as the sender does, goes on the wire as
    the preview's sample says (query and body), TaskId aside (the batch's own, set when it is sent)."""
    source = tmp_path / "list.csv"
    source.write_text(FILE)
    store = SqliteStore(str(tmp_path / "state.db"))
    job, _ = plan_job(
        store,
        source=str(source),
        open_stream=lambda: io.BytesIO(source.read_bytes()),
        options=OPTIONS,
        intake=IntakeOptions(),
    )
    (first,) = store.list_batches(job.job_id, [BatchStatus.pending])[:1]
    line, recipient = store.batch_rows(job.job_id, first.seq)[0]
    client = CamsClient(CamsSettings())
    sdk = RecordingSdk()
    client._sdk = lambda: sdk  # type: ignore[method-assign]
    outcome: SendOutcome = client.prepare(OPTIONS, [recipient])()
    assert outcome.kind is OutcomeKind.sent, outcome
    (sent,) = sdk.calls
    preview = preview_of(FILE)
    assert preview.sample is not None and preview.sample.line == line
    assert preview.sample.request["body"] == sent.body
    assert preview.sample.request["query"] == dict(sent.query)
    store.close()


def test_query_mode_puts_sender_list_in_the_url() -> None:
    request = wire_request(OPTIONS, [{"To": "8613900000001"}], params_in="query").to_dict()
    assert request["body"] == {} and request["query"]["SenderList"] == '[{"To":"8613900000001"}]'


def test_memory_is_bounded_by_design_not_by_the_rows() -> None:
    """100,000 refused rows of distinct messages and 100,000 valid ones: what the preview keeps is counts,
    at most MAX_GROUPS groups of 3 examples, the keys and one sample — the peak does not grow with the rows."""

    def rows(count: int) -> Iterator[Row]:
        for i in range(count):
            yield Row(2 * i + 1, f"bad{i}", "invalid", "InvalidNumber", f"number {i} is odd {i % 997}")
            yield Row(2 * i + 2, f"86139{i:08d}", "valid", "", "", {"name": f"N{i}"})

    def peak(count: int) -> int:
        tracemalloc.start()
        try:
            build_preview(OPTIONS, rows(count))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(2_000), peak(100_000)
    assert large < small * 2 + 200_000, (small, large)


# --- the CLI -------------------------------------------------------------------------------------------------
class Tty(io.StringIO):
    """A terminal stand-in: isatty() says yes."""

    def isatty(self) -> bool:
        return True


class FakeCams:
    """Accepts every call (no check_access: the CLI skips the key check for a fake)."""

    settings = CamsSettings()

    def __init__(self) -> None:
        self.sent: list[list[dict[str, Any]]] = []

    def prepare(self, options: Any, recipients: list[dict[str, Any]], **_: Any) -> Any:
        from chatapp_mass.adapters.cams import PreparedCall

        def call() -> SendOutcome:
            self.sent.append(recipients)
            return SendOutcome(OutcomeKind.sent, code="OK", group_message_id="g")

        return PreparedCall(call, recipients)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    store = SqliteStore(str(tmp_path / "state.db"))
    cams = FakeCams()
    monkeypatch.setattr(cli, "build_services", lambda **_: Services(store=store, cams=cams))  # type: ignore[arg-type]
    (tmp_path / "list.csv").write_text(FILE)
    return {"store": store, "cams": cams, "file": str(tmp_path / "list.csv"), "dir": tmp_path}


def run(
    argv: list[str], *, stdin: io.StringIO | None = None, out: io.StringIO | None = None
) -> tuple[int, str, str]:
    out = out if out is not None else io.StringIO()
    err = io.StringIO()
    code = cli.main(argv, out=out, err=err, stdin=stdin if stdin is not None else io.StringIO())
    return code, out.getvalue(), err.getvalue()


def test_check_prints_the_preview_and_sends_nothing(world: dict[str, Any]) -> None:
    code, out, _ = run(["check", world["file"], *FLAGS])
    assert code == 0
    assert "7 read: 2 valid in 1 call, 3 invalid, 2 duplicate" in out
    assert "Duplicate x2" in out and "line 3: 'abc'" in out
    assert "Template parameters: name, code" in out
    assert 'SenderList=[{"TemplateParams":{"name":"Ann","code":"A1"},"To":"8613900000001"}]' in out
    assert world["cams"].sent == [] and world["store"].list_jobs(10) == []


def test_check_without_a_valid_recipient_exits_1(world: dict[str, Any]) -> None:
    bad = world["dir"] / "bad.csv"
    bad.write_text("to\nabc\n")
    assert run(["check", str(bad), *FLAGS])[0] == 1


def test_send_on_a_terminal_asks_and_yes_sends(world: dict[str, Any]) -> None:
    code, out, _ = run(["send", world["file"], *FLAGS], stdin=Tty("y\n"), out=Tty())
    assert "Preview of" in out and "Send to 2 recipients? [y/N]" in out
    assert code == 0 and len(world["cams"].sent) == 1 and len(world["cams"].sent[0]) == 2


@pytest.mark.parametrize("answer", ["n\n", "\n", "nope\n", ""])
def test_send_on_a_terminal_anything_but_yes_sends_nothing(world: dict[str, Any], answer: str) -> None:
    code, out, _ = run(["send", world["file"], *FLAGS], stdin=Tty(answer), out=Tty())
    assert code == 1 and "nothing sent" in out
    assert world["cams"].sent == [] and world["store"].list_jobs(10) == []


def test_send_off_a_terminal_without_yes_is_refused_before_anything(world: dict[str, Any]) -> None:
    code, out, err = run(["send", world["file"], *FLAGS], stdin=Tty("y\n"), out=io.StringIO())  # out: a pipe
    assert code == 2 and "--yes" in err and "Nothing was planned or sent" in err
    assert world["cams"].sent == [] and world["store"].list_jobs(10) == []
    # flags are checked first: a bad flag says so, not "--yes"
    code, _, err = run(["send", world["file"], *FLAGS, "--batch-size", "5000"])
    assert code == 2 and "--batch-size" in err and "--yes" not in err


def test_yes_sends_without_asking_and_dry_run_needs_no_yes(world: dict[str, Any]) -> None:
    code, out, _ = run(["send", world["file"], *FLAGS, "--dry-run"])
    assert code == 0 and "dry run" in out and world["cams"].sent == []
    code, out, _ = run(["send", world["file"], *FLAGS, "-y"], stdin=Tty(""), out=Tty())
    assert code == 0 and "[y/N]" not in out and len(world["cams"].sent) == 1


def test_errors_file_holds_every_refused_row_with_its_own_cells(world: dict[str, Any]) -> None:
    errors = world["dir"] / "refused.csv"
    code, _, err = run(["check", world["file"], *FLAGS, "--errors", str(errors)])
    assert code == 0 and str(errors) in err
    with open(errors, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "reason", "message", "to", "name", "code"]
    assert [row[:2] for row in rows[1:]] == [
        ["3", "InvalidNumber"],
        ["4", "Duplicate"],
        ["5", "EmptyParam"],
        ["7", "Duplicate"],
        ["8", "ColumnCount"],
    ]
    assert rows[2][3:] == ["+8613900000001", "Ann again", "A1"]  # as written, not normalized
    assert rows[5][3:] == ["+8613900000004", "Eve"]  # a short row: the cells it has
    # send writes it too (with --yes: no preview printed, the file read once more for it)
    again = world["dir"] / "again.csv"
    code, _, _ = run(["send", world["file"], *FLAGS, "--yes", "--errors", str(again)])
    assert code == 0 and again.read_text() == errors.read_text()
