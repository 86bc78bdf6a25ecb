"""The RAM policy evaluator (alibaba_localcloud.ram): grammar, wildcards, deny wins, case rules, placeholders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alibaba_localcloud import ram
from alibaba_localcloud.ram import Decision, Policy, PolicyError

ROOT = Path(__file__).resolve().parents[2]
VALUES = {"region": "ap-southeast-1", "accountId": "1000000000000001", "bucket": "b", "instance": "inst"}


def policy(*statements: dict[str, Any]) -> Policy:
    return Policy.parse({"Version": "1", "Statement": list(statements)})


def allow(action: Any, resource: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action: Any, resource: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


OBJ = "acs:oss:ap-southeast-1:1000000000000001:b/incoming/a.csv"


def test_default_deny_and_allow() -> None:
    p = policy(allow("oss:GetObject", "acs:oss:*:1000000000000001:b/incoming/*"))
    assert p.evaluate("oss:GetObject", OBJ) is Decision.ALLOW
    assert p.evaluate("oss:PutObject", OBJ) is Decision.IMPLICIT_DENY
    assert p.evaluate("oss:GetObject", OBJ.replace("incoming", "reports")) is Decision.IMPLICIT_DENY


def test_explicit_deny_wins_in_any_order() -> None:
    for statements in (
        [allow("oss:*", "*"), deny("oss:GetObject", "acs:oss:*:*:b/incoming/*")],
        [deny("oss:GetObject", "acs:oss:*:*:b/incoming/*"), allow("oss:*", "*")],
    ):
        p = policy(*statements)
        assert p.evaluate("oss:GetObject", OBJ) is Decision.EXPLICIT_DENY
        assert p.evaluate("oss:PutObject", OBJ) is Decision.ALLOW


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("*", "anything:at/all", True),
        ("acs:oss:*:*:b/*", "acs:oss:r:1:b/x/y/z.csv", True),  # * crosses ':' and '/'
        ("acs:oss:*:*:b/*", "acs:oss:r:1:b", False),
        ("acs:oss:*:*:b*", "acs:oss:r:1:b", True),  # * matches nothing too
        ("b/incoming/?.csv", "b/incoming/a.csv", True),
        ("b/incoming/?.csv", "b/incoming/ab.csv", False),  # ? is exactly one character
        ("b/incoming/?.csv", "b/incoming/.csv", False),
        ("b/a.csv", "b/a.CSV", False),  # resources compare case-sensitively
        ("b/[a].csv", "b/[a].csv", True),  # other characters are literal
        ("b/a.csv", "b/aXcsv", False),
    ],
)
def test_wildcards(pattern: str, value: str, matches: bool) -> None:
    assert ram.wildcard_match(pattern, value) is matches


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        ("oss:GetObject", "oss:GetObject", True),
        ("OSS:GetObject", "oss:GetObject", True),  # the service code case-insensitively
        ("oss:GetObject", "OSS:GetObject", True),
        ("oss:getobject", "oss:GetObject", False),  # the action name as written (strict)
        ("oss:Get*", "oss:GetObject", True),
        ("oss:Get*", "oss:PutObject", False),
        ("ots:*Row", "ots:BatchWriteRow", True),
        ("ots:?etRow", "ots:GetRow", True),
        ("o*:GetRow", "ots:GetRow", True),
        ("*", "cams:SendChatappMassMessage", True),
        ("oss:*", "ots:GetRow", False),
    ],
)
def test_actions(pattern: str, action: str, matches: bool) -> None:
    assert ram.action_matches(pattern, action) is matches


def test_action_and_resource_lists() -> None:
    p = policy(
        allow(
            ["ots:GetRow", "ots:PutRow"],
            ["acs:ots:*:*:instance/i/table/a", "acs:ots:*:*:instance/i/table/b*"],
        )
    )
    for action in ("ots:GetRow", "ots:PutRow"):
        for table in ("a", "b", "bc"):
            assert p.evaluate(action, f"acs:ots:r:1:instance/i/table/{table}").allowed
    assert not p.evaluate("ots:GetRow", "acs:ots:r:1:instance/i/table/c").allowed
    assert not p.evaluate("ots:DeleteRow", "acs:ots:r:1:instance/i/table/a").allowed


def test_a_statement_needs_both_action_and_resource_to_match() -> None:
    p = policy(allow("oss:GetObject", "acs:oss:*:*:b/in/*"), allow("oss:PutObject", "acs:oss:*:*:b/out/*"))
    assert not p.evaluate("oss:GetObject", "acs:oss:r:1:b/out/x").allowed
    assert not p.evaluate("oss:PutObject", "acs:oss:r:1:b/in/x").allowed


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"Statement": [allow("a:b", "*")]}, "Version"),
        ({"Version": "2", "Statement": [allow("a:b", "*")]}, "Version"),
        ({"Version": 1, "Statement": [allow("a:b", "*")]}, "Version"),
        ({"Version": "1", "Statement": []}, "non-empty"),
        ({"Version": "1", "Statement": allow("a:b", "*")}, "list"),
        ({"Version": "1", "Statement": [{"Effect": "allow", "Action": "a:b", "Resource": "*"}]}, "Effect"),
        ({"Version": "1", "Statement": [{"Effect": "Allow", "Resource": "*"}]}, "Action and Resource"),
        ({"Version": "1", "Statement": [{"Effect": "Allow", "Action": "a:b"}]}, "Action and Resource"),
        ({"Version": "1", "Statement": [allow([], "*")]}, "non-empty"),
        ({"Version": "1", "Statement": [allow("a:b", [""])]}, "non-empty"),
        ({"Version": "1", "Statement": [allow("GetObject", "*")]}, "<service>:<ActionName>"),
        ({"Version": "1", "Statement": [allow(7, "*")]}, "Action"),
        ({"Version": "1", "Statement": [{**allow("a:b", "*"), "Condition": {}}]}, "Condition"),
        (
            {"Version": "1", "Statement": [{"Effect": "Allow", "NotAction": "a:b", "Resource": "*"}]},
            "NotAction",
        ),
        ({"Version": "1", "Statement": [{**allow("a:b", "*"), "Principal": "*"}]}, "Principal"),
        ({"Version": "1", "Statement": [{**allow("a:b", "*"), "Sid": "x"}]}, "Sid"),
        ({"Version": "1", "Statement": [allow("a:b", "*")], "Id": "x"}, "Id"),
        ("not json", "not JSON"),
        ([], "JSON object"),
    ],
)
def test_documents_ram_refuses_are_refused_naming_the_element(document: Any, says: str) -> None:
    with pytest.raises(PolicyError, match=says.replace("[", r"\[")):
        Policy.parse(
            document
            if isinstance(document, str)
            else json.dumps(document)
            if isinstance(document, list)
            else document
        )


def test_placeholders_are_filled_and_a_missing_value_is_named() -> None:
    statement = (
        '{"Effect": "Allow", "Action": "oss:GetObject", "Resource": "acs:oss:*:${accountId}:${bucket}/*"}'
    )
    text = '{"Version": "1", "Statement": [' + statement + "]}"
    p = Policy.parse(ram.fill(text, VALUES))
    assert p.statements[0].resources == ("acs:oss:*:1000000000000001:b/*",)
    with pytest.raises(PolicyError, match=r"\$\{bucket\}"):
        ram.fill(text, {"accountId": "1"})


def test_without_removes_one_statement() -> None:
    p = policy(allow("a:b", "*"), allow("c:d", "*"))
    assert p.without(0).evaluate("a:b", "x") is Decision.IMPLICIT_DENY
    assert p.without(0).evaluate("c:d", "x") is Decision.ALLOW
    assert Policy.parse(p.as_json()) == Policy(p.statements, "policy")


@pytest.mark.parametrize("key", ["ingest", "sender", "api", "init"])
def test_the_project_policies_parse_with_only_the_four_placeholders(key: str) -> None:
    loaded = ram.load(ROOT / "deploy" / f"ram-policy-{key}.json", VALUES)
    assert loaded.statements
    for statement in loaded.statements:
        assert statement.effect == "Allow"
        assert all(r == "*" or ":1000000000000001:" in r for r in statement.resources), (
            "narrowed to the account"
        )


def test_resource_names() -> None:
    assert ram.oss_resource("r", "1", "b", "k/x") == "acs:oss:r:1:b/k/x"
    assert ram.oss_resource("r", "1", "b") == "acs:oss:r:1:b"
    assert ram.ots_resource("r", "1", "Inst", "t") == "acs:ots:r:1:instance/inst/table/t"
    assert ram.fc_resource("r", "1", "f") == "acs:fc:r:1:functions/f"
