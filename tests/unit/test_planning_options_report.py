from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatapp_mass.core import planning
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.options import (
    IntakeOptions,
    Recipient,
    job_identity,
    parse_intake_options,
    parse_job_options,
)
from chatapp_mass.core.planning import BatchPlanner, encoded_size, sender_json
from chatapp_mass.services.report import neutralize

BASE = {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": "8613800000000"}


# --- options ---------------------------------------------------------------------------------------------
def test_minimal_options_to_api() -> None:
    assert parse_job_options(BASE).to_api() == BASE


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"ChannelType": "sms"}, "ChannelType"),
        ({"TemplateCode": None}, "TemplateName"),
        ({"FallBackDuration": 59}, "FallBackDuration"),
        ({"FallBackDuration": 43201}, "FallBackDuration"),
        ({"FallBackRule": "never"}, "FallBackRule"),
        ({"Ttl": 60}, "Ttl"),
        ({"Label": "promotion"}, "Label"),
        ({"Tag": "x"}, "Tag"),
        ({"Language": ""}, "Language"),
        ({"Bogus": 1}, "Bogus"),
    ],
)
def test_wrong_option_is_named(change: dict[str, object], names: str) -> None:
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(OptionsError) as error:
        parse_job_options(data)
    assert names in str(error.value)


def test_viber_rules() -> None:
    viber = {**BASE, "ChannelType": "viber", "Ttl": 30, "Label": "transaction", "Tag": "t"}
    assert parse_job_options(viber).to_api()["Ttl"] == 30
    with pytest.raises(OptionsError, match="Viber needs TemplateCode"):
        parse_job_options({**viber, "TemplateCode": None, "TemplateName": "n"} | {})  # type: ignore[operator]
    with pytest.raises(OptionsError, match="Ttl"):
        parse_job_options({**viber, "Ttl": 1209601})


def test_error_names_the_cli_flag() -> None:
    with pytest.raises(OptionsError, match="--fall-back-duration"):
        parse_job_options({**BASE, "FallBackDuration": 1}, {"FallBackDuration": "--fall-back-duration"})


def test_recipient_column_is_trimmed_and_not_blank() -> None:
    assert parse_intake_options({"recipient_column": "  Phone Number "}).recipient_column == "Phone Number"
    assert parse_intake_options({}).recipient_column is None
    with pytest.raises(OptionsError, match="--recipient-column: String should have at least 1 character"):
        parse_intake_options({"recipient_column": "  "}, {"recipient_column": "--recipient-column"})


def test_identity_without_a_recipient_column_is_what_it_was_before_the_option() -> None:
    """Jobs made before --recipient-column existed keep their ids, so rerunning the same send resumes."""
    import hashlib

    options = parse_job_options(BASE)
    before = {"default_country": None, "allow_empty_params": False, "delimiter": None}
    canonical = json.dumps(
        {"file": "abc", "options": options.to_api(), "intake": before}, sort_keys=True, separators=(",", ":")
    )
    assert (
        job_identity("abc", options, IntakeOptions()) == hashlib.sha256(canonical.encode()).hexdigest()[:24]
    )
    assert job_identity("abc", options, IntakeOptions(recipient_column="Cell")) != job_identity(
        "abc", options, IntakeOptions()
    )


def test_default_country_checked() -> None:
    assert parse_intake_options({"default_country": "cn"}).default_country == "CN"
    with pytest.raises(OptionsError, match="default_country|--default-country"):
        parse_intake_options({"default_country": "XX"})


def test_product_action_limits() -> None:
    items = [{"ProductRetailerId": f"p{i}"} for i in range(31)]
    with pytest.raises(ValueError, match="at most 30"):
        Recipient.model_validate(
            {"To": "1", "ProductAction": {"Sections": [{"Title": "a", "ProductItems": items}]}}
        )
    with pytest.raises(ValueError):
        Recipient.model_validate({"To": "1", "ProductAction": {"Sections": [{"Title": "a"}] * 11}})
    recipient = Recipient.model_validate({"To": "1", "ProductAction": {"Sections": [{"Title": "a"}]}})
    from chatapp_mass.core.options import ChannelType

    recipient.check_channel(ChannelType.whatsapp)
    with pytest.raises(ValueError, match="whatsapp"):
        recipient.check_channel(ChannelType.viber)


def test_identity_ignores_sending_knobs_but_not_template() -> None:
    options = parse_job_options(BASE)
    same = job_identity("abc", options, IntakeOptions())
    assert same == job_identity("abc", parse_job_options(dict(BASE)), IntakeOptions())
    assert same != job_identity("abd", options, IntakeOptions())
    assert same != job_identity("abc", parse_job_options({**BASE, "TemplateCode": "T2"}), IntakeOptions())
    assert same != job_identity("abc", options, IntakeOptions(default_country="CN"))


# --- planning --------------------------------------------------------------------------------------------
def test_encoded_size_matches_the_sdk_wire_form() -> None:
    items = [{"To": "8613800000001", "TemplateParams": {"name": 'Zoë, "quoted"'}}, {"To": "447400123456"}]
    wire = quote_plus(json.dumps(items, ensure_ascii=False, separators=(",", ":")))
    assert len(wire) == sum(encoded_size(i) for i in items) - len(quote_plus(",")) + len(quote_plus("[]"))
    assert sender_json(items[1]) == '{"To":"447400123456"}'


@given(
    sizes=st.lists(st.integers(min_value=10, max_value=900), min_size=1, max_size=400),
    max_recipients=st.integers(min_value=1, max_value=1000),
    max_bytes=st.integers(min_value=1000, max_value=20000),
)
def test_batches_respect_both_bounds_and_keep_order(
    sizes: list[int], max_recipients: int, max_bytes: int
) -> None:
    planner = BatchPlanner(max_recipients, max_bytes)
    lines = [2 + 3 * i for i in range(len(sizes))]  # rows between recipients may be invalid ones
    assigned = [planner.assign(size, line) for size, line in zip(sizes, lines, strict=True)]
    assert assigned == sorted(assigned) and assigned[0] == 0
    assert sum(planner.sizes) == len(sizes)
    for seq, count in enumerate(planner.sizes):
        members = [s for s, a in zip(sizes, assigned, strict=True) if a == seq]
        assert len(members) == count <= max_recipients
        member_lines = [line for line, a in zip(lines, assigned, strict=True) if a == seq]
        assert planner.lines[seq] == (member_lines[0], member_lines[-1])
        assert sum(members) + len(quote_plus("[]")) <= max_bytes
        # a batch is only closed when the next recipient would not fit
        if seq + 1 < len(planner.sizes):
            nxt = sizes[assigned.index(seq + 1)]
            assert count == max_recipients or sum(members) + nxt + len(quote_plus("[]")) > max_bytes


def test_planner_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError):
        BatchPlanner(1001)
    with pytest.raises(ValueError):
        BatchPlanner(10, 10).assign(5000)


# --- report ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("+44 20 7946 0958", "+44 20 7946 0958"),
        ("8613800000000", "8613800000000"),
        ("", ""),
        ("plain", "plain"),
    ],
)
def test_neutralize(cell: str, expected: str) -> None:
    assert neutralize(cell) == expected


# --- the request budget: where SenderList travels ----------------------------------------------------------
def test_the_budget_follows_where_the_parameters_travel() -> None:
    from chatapp_mass.core.planning import BODY_BUDGET, QUERY_BUDGET, request_budget
    from chatapp_mass.services.jobs import FunctionSettings

    assert request_budget("body") == BODY_BUDGET and request_budget("query") == QUERY_BUDGET
    assert QUERY_BUDGET + 4096 <= 16 * 1024 < BODY_BUDGET <= 1024 * 1024 - 100_000
    with pytest.raises(ValueError, match="'body' or 'query'"):
        request_budget("url")
    assert FunctionSettings.from_env({}).max_request_bytes == BODY_BUDGET
    assert FunctionSettings.from_env({"CHATAPP_CAMS_PARAMS_IN": "query"}).max_request_bytes == QUERY_BUDGET
    with pytest.raises(OptionsError, match="CHATAPP_CAMS_PARAMS_IN"):
        FunctionSettings.from_env({"CHATAPP_CAMS_PARAMS_IN": "header"})


def test_a_full_batch_of_typical_recipients_is_bounded_by_count_in_the_body_and_by_bytes_in_the_url() -> None:
    from chatapp_mass.core.planning import BODY_BUDGET, QUERY_BUDGET

    sizes = [
        encoded_size({"To": f"86139{i:08d}", "TemplateParams": {"name": f"Customer {i}", "code": "A1B2"}})
        for i in range(2000)
    ]
    for budget, expected_full in ((BODY_BUDGET, 1000), (QUERY_BUDGET, None)):
        planner = BatchPlanner(1000, budget)
        for size in sizes:
            planner.assign(size)
        if expected_full:
            assert planner.sizes == [1000, 1000]
        else:
            assert 50 < max(planner.sizes) < 200


# -- the SenderList item's JSON and its URL-encoded size, computed directly ---------------------------------
_json_text = st.text(st.characters(codec="utf-8"), max_size=12)
_recipients = st.one_of(
    st.builds(
        lambda to, params: {"To": to, "TemplateParams": params},
        _json_text,
        st.dictionaries(_json_text, _json_text),
    ),
    st.builds(
        lambda params, to: {"TemplateParams": params, "To": to},
        st.dictionaries(_json_text, _json_text),
        _json_text,
    ),
    st.dictionaries(
        _json_text, st.one_of(_json_text, st.integers(), st.none(), st.dictionaries(_json_text, _json_text))
    ),
    st.builds(
        lambda to, params: {"To": to, "TemplateParams": params},
        _json_text,
        st.dictionaries(st.integers(), st.integers()),
    ),
)


@settings(max_examples=500, deadline=None)
@given(_recipients)
def test_sender_json_and_encoded_size_are_json_dumps_and_quote_plus(recipient: dict[str, Any]) -> None:
    text = json.dumps(recipient, ensure_ascii=False, separators=(",", ":"))
    assert planning.sender_json(recipient) == text
    assert planning.url_encoded_length(text) == len(quote_plus(text))
    assert planning.encoded_size(recipient) == len(quote_plus(text)) + len(quote_plus(","))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        _json_text | st.sampled_from(["%s", "%%", "%(x)s", '"', "\\", "\u2028"]), max_size=4, unique=True
    ),
    st.data(),
)
def test_a_files_own_encoder_writes_what_sender_json_writes(keys: list[str], data: st.DataObject) -> None:
    """intake_sender_json(keys) for the reader's rows ({"To": to} plus, with parameter columns, every key
    in order): the bytes and the size of sized_sender_json, '%' in a header name and escapes included."""
    to = data.draw(_json_text)
    params = {key: data.draw(_json_text) for key in keys} if keys else None
    recipient: dict[str, Any] = {"To": to, "TemplateParams": params} if params else {"To": to}
    assert planning.intake_sender_json(tuple(keys))(to, params) == planning.sized_sender_json(recipient)


def test_url_encoded_length_counts_every_byte_as_quote_plus_does() -> None:
    text = "".join(chr(code) for code in range(1, 0x250)) + " \u20ac\U0001f600~_.-+%&="
    assert planning.url_encoded_length(text) == len(quote_plus(text))


def test_send_takes_recipient_column_from_the_command_line() -> None:
    from chatapp_mass.entry.cli import build_parser
    from chatapp_mass.entry.send import job_inputs_from_args

    flags = ["send", "x.csv", "--channel-type", "whatsapp", "--template-code", "T", "--language", "en"]
    flags += ["--from", "8613800000000"]
    args = build_parser().parse_args([*flags, "--recipient-column", "Phone Number"])
    assert job_inputs_from_args(args)[1].recipient_column == "Phone Number"
    assert job_inputs_from_args(build_parser().parse_args(flags))[1].recipient_column is None
    with pytest.raises(OptionsError, match="^--recipient-column: "):
        job_inputs_from_args(build_parser().parse_args([*flags, "--recipient-column", " "]))
