"""RAM identity policies: parse one, fill its placeholders, and decide a request ``(action, resource)``.

What the local cloud's emulators use to refuse what a role's policy does not allow. The grammar and the
evaluation are RAM's, per "Policy structure and syntax" (alibabacloud.com/help/en/ram/user-guide/
policy-structure-and-syntax, doc 93739), "Policy elements" (doc 93738) and "How RAM evaluates policies"
(help.aliyun.com/en/ram/policy-evaluation-process):

- ``Version`` is ``"1"`` (the only valid value); ``Statement`` a non-empty list of statements.
- A statement has ``Effect`` (``Allow`` | ``Deny``), ``Action`` and ``Resource``, each ``"*"``, one string or a
  list of strings (the grammar's ``<statement>``; it has no ``Sid``).
- Deny by default; an explicit ``Deny`` that matches wins over any ``Allow`` (:class:`Decision`).
- Action: ``<ram-code>:<action-name>``; ``*`` matches any run of characters (also none), ``?`` one character.
  The service code (``oss``, ``ots``, ``cams``, ``fc``, ``mns``) compares case-insensitively.
- Resource: an ARN (``acs:<service>:<region>:<account>:<relative id>``) or ``*``, with the same wildcards.

ASSUMPTIONS (strict choices where the docs say nothing clear):
    The action name after the colon compares case-sensitively (``oss:getobject`` does not grant
    ``oss:GetObject``); resources compare case-sensitively (OSS object keys are case-sensitive).
    ``NotAction``, ``NotResource``, ``Principal`` (resource policies) and ``Condition`` are refused when a
    policy is parsed: none of this project's policies uses them, and a policy that did would otherwise be
    evaluated wrongly here. Support an operator when a policy needs it, with its own tests.
    An unknown key in a statement, an empty list, a non-string action or resource, an action without a
    service code: the policy is refused (RAM refuses such documents in CreatePolicy).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


class PolicyError(ValueError):
    """A policy document RAM would refuse (or this evaluator does not support); says where and why."""


class Decision(str, enum.Enum):
    """The outcome, named as RAM's access-denied details name the refusals (``NoPermissionType``)."""

    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"

    @property
    def allowed(self) -> bool:
        return self is Decision.ALLOW


_STATEMENT_KEYS = frozenset({"Effect", "Action", "Resource"})
_UNSUPPORTED = ("NotAction", "NotResource", "Principal", "Condition")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@lru_cache(maxsize=4096)
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in text)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """RAM's wildcards: ``*`` any run of characters (also none, also ``:`` and ``/``), ``?`` exactly one."""
    return _pattern(pattern, ignore_case).fullmatch(value) is not None


def action_matches(pattern: str, action: str) -> bool:
    """``oss:Get*`` against ``oss:GetObject``: the service code case-insensitively, the name as written."""
    if pattern == "*":
        return True
    p_service, _, p_name = pattern.partition(":")
    service, _, name = action.partition(":")
    return wildcard_match(p_service, service, ignore_case=True) and wildcard_match(p_name, name)


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]
    resources: tuple[str, ...]

    def matches(self, action: str, resource: str) -> bool:
        return any(action_matches(p, action) for p in self.actions) and any(
            wildcard_match(p, resource) for p in self.resources
        )

    def as_json(self) -> dict[str, Any]:
        return {"Effect": self.effect, "Action": list(self.actions), "Resource": list(self.resources)}


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]
    name: str = "policy"

    @classmethod
    def parse(cls, document: Mapping[str, Any] | str, *, name: str = "policy") -> Policy:
        """A policy from its JSON text or decoded document; :class:`PolicyError` names the element at fault."""
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError as error:
                raise PolicyError(f"{name}: not JSON ({error})") from None
        if not isinstance(document, Mapping):
            raise PolicyError(f"{name}: a policy is a JSON object with Version and Statement")
        extra = sorted(set(document) - {"Version", "Statement"})
        if extra:
            raise PolicyError(
                f"{name}: unknown top-level element(s) {extra}; a policy has Version and Statement"
            )
        if document.get("Version") != "1":
            raise PolicyError(
                f'{name}: Version must be "1" (the only valid value), not {document.get("Version")!r}'
            )
        raw = document.get("Statement")
        if not isinstance(raw, list) or not raw:
            raise PolicyError(f"{name}: Statement must be a non-empty list of statements")
        return cls(tuple(_statement(item, f"{name}: Statement[{i}]") for i, item in enumerate(raw)), name)

    def evaluate(self, action: str, resource: str) -> Decision:
        """Deny by default; an explicit Deny that matches wins over every Allow."""
        allowed = False
        for statement in self.statements:
            if statement.matches(action, resource):
                if statement.effect == "Deny":
                    return Decision.EXPLICIT_DENY
                allowed = True
        return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY

    def without(self, index: int) -> Policy:
        """The policy minus its statement ``index`` (tests proving each statement necessary)."""
        kept = self.statements[:index] + self.statements[index + 1 :]
        return Policy(kept, f"{self.name} without Statement[{index}]")

    def as_json(self) -> dict[str, Any]:
        return {"Version": "1", "Statement": [s.as_json() for s in self.statements]}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise PolicyError(f"{where}: a non-empty string or a non-empty list of non-empty strings")
    return tuple(items)


def _statement(item: Any, where: str) -> Statement:
    if not isinstance(item, Mapping):
        raise PolicyError(f"{where}: a statement is a JSON object")
    for key in _UNSUPPORTED:
        if key in item:
            raise PolicyError(
                f"{where}.{key}: not supported by this evaluator (no project policy uses it); "
                "write the statement with Effect, Action and Resource"
            )
    extra = sorted(set(item) - _STATEMENT_KEYS)
    if extra:
        raise PolicyError(f"{where}: unknown element(s) {extra}")
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f'{where}.Effect must be "Allow" or "Deny", not {effect!r}')
    if "Action" not in item or "Resource" not in item:
        raise PolicyError(f"{where}: Action and Resource are required")
    actions = _strings(item["Action"], f"{where}.Action")
    for action in actions:
        if action != "*" and (":" not in action or not action.partition(":")[0]):
            raise PolicyError(f"{where}.Action {action!r}: write <service>:<ActionName>, e.g. oss:GetObject")
    resources = _strings(item["Resource"], f"{where}.Resource")
    return Statement(effect, actions, resources)


def fill(text: str, values: Mapping[str, str], *, name: str = "policy") -> str:
    """``${region}``-style placeholders replaced by ``values``; one without a value is a :class:`PolicyError`."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - set(values))
    if missing:
        raise PolicyError(f"{name}: no value for placeholder(s) {', '.join('${' + m + '}' for m in missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def load(path: str | Path, values: Mapping[str, str]) -> Policy:
    """A policy file with its placeholders filled (``deploy/ram-policy-*.json``)."""
    path = Path(path)
    return Policy.parse(fill(path.read_text(encoding="utf-8"), values, name=str(path)), name=str(path))


def as_policy(document: Policy | Mapping[str, Any] | str, values: Mapping[str, str], *, name: str) -> Policy:
    """A policy from a parsed one, a document or JSON text (placeholders filled from ``values``)."""
    if isinstance(document, Policy):
        return document
    text = document if isinstance(document, str) else json.dumps(document)
    return Policy.parse(fill(text, values, name=name), name=name)


# --- the resource names the emulators authorize against ------------------------------------------------------
def oss_resource(region: str, account: str, bucket: str | None = None, key: str | None = None) -> str:
    """``acs:oss:REGION:ACCOUNT:BUCKET[/KEY]``; no bucket (ListBuckets): ``acs:oss:REGION:ACCOUNT:*``."""
    if bucket is None:
        return f"acs:oss:{region}:{account}:*"
    return f"acs:oss:{region}:{account}:{bucket}" + (f"/{key}" if key is not None else "")


def ots_resource(region: str, account: str, instance: str, table: str | None = None) -> str:
    """``acs:ots:REGION:ACCOUNT:instance/INSTANCE[/table/TABLE]`` (instance names in lower case, as the
    Tablestore "Custom RAM policy" page asks of policies)."""
    base = f"acs:ots:{region}:{account}:instance/{instance.lower()}"
    return base if table is None else f"{base}/table/{table}"


def fc_resource(region: str, account: str, function: str) -> str:
    return f"acs:fc:{region}:{account}:functions/{function}"


def cams_resource(region: str, account: str) -> str:
    """CAMS has no resource-level authorization: its actions are granted on ``*`` (any resource)."""
    return f"acs:cams:{region}:{account}:*"


def first_denied(policy: Policy, requests: Sequence[tuple[str, str]]) -> tuple[str, str, Decision] | None:
    """The first ``(action, resource)`` of ``requests`` the policy refuses, with why; None when all are allowed."""
    for action, resource in requests:
        decision = policy.evaluate(action, resource)
        if not decision.allowed:
            return action, resource, decision
    return None
