"""Read a Serverless Devs 3 ``s.yaml`` (component fc3) and resolve its ``${...}`` expressions offline.

What ``s preview`` renders, for the expressions this project uses:

- ``${env('X')}`` / ``${env('X', 'default')}`` (single or double quotes): the environment variable ``X``;
  a missing variable without a default is an error. A ``.env`` file next to ``s.yaml`` supplies values
  the environment lacks (Serverless Devs loads it with dotenv, which never overrides the environment).
- ``${vars.a.b}``: the top-level ``vars`` section (which may itself use expressions).
- ``${resources.NAME.props.KEY...}``: another resource's (resolved) props.
- ``${this.props.KEY...}`` / ``${this.name}``: the resource the expression sits in.
- ``${config('AccountID')}``: the account id given to :func:`load` or ``ALIBABA_CLOUD_ACCOUNT_ID``.

An expression that is the whole string keeps the type of what it resolves to (a number stays a number, a
mapping a mapping); expressions embedded in a longer string are interpolated with ``str()``. An unresolved
expression raises :class:`SYamlError` naming it and the key path it sits at, like ``s preview``'s
``${vars.nope} not found``.

Assumption (UNVERIFIED against Serverless Devs' own parser): a dotted path walks mappings by key and
lists by a numeric segment (``${vars.list.0}``).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID_ENV = "ALIBABA_CLOUD_ACCOUNT_ID"
FC3_COMPONENT_PREFIX = "fc3"

# Defaults of the fc3 component / the FC 2023-03-30 API (reference/ALIBABA-FACTS.md §3–4).
DEFAULT_MEMORY_SIZE = 512
DEFAULT_TIMEOUT = 3
DEFAULT_MAX_ASYNC_RETRY_ATTEMPTS = 3
DEFAULT_MAX_ASYNC_EVENT_AGE = 86400  # the API doc's default; the fc3 schema says 18000: set it explicitly

_EXPRESSION = re.compile(r"\$\{([^{}]*)\}")
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.DOTALL)
_PATH = re.compile(r"^\s*([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*$")


class SYamlError(ValueError):
    """The s.yaml cannot be read or one of its expressions cannot be resolved."""


# --------------------------------------------------------------------------------------------- loading


def load(
    path: str | os.PathLike[str] = "s.yaml",
    environ: Mapping[str, str] | None = None,
    account_id: str | None = None,
) -> dict[str, Any]:
    """Read ``path`` and return the document with every ``${...}`` expression resolved."""
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SYamlError(f"{source}: cannot read ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise SYamlError(f"{source}: not valid YAML ({exc})") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SYamlError(f"{source}: the top level must be a mapping, not {type(raw).__name__}")
    env = dict(_dotenv(source.parent / ".env"))
    env.update(os.environ if environ is None else environ)
    return resolve(raw, environ=env, account_id=account_id, source=str(source))


def resolve(
    raw: dict[str, Any],
    environ: Mapping[str, str],
    account_id: str | None = None,
    source: str = "s.yaml",
) -> dict[str, Any]:
    """Resolve every expression of an already parsed document (see the module docstring)."""
    resolved = _Resolver(raw, environ, account_id, source).value(raw, ())
    assert isinstance(resolved, dict)
    return resolved


def _dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file (comments, ``export`` and surrounding quotes allowed)."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _key_path(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "<top>"


class _Resolver:
    """Resolves expressions lazily, following references through the raw document (cycles detected)."""

    def __init__(
        self, raw: dict[str, Any], environ: Mapping[str, str], account_id: str | None, source: str
    ) -> None:
        self.raw = raw
        self.environ = environ
        self.account_id = account_id
        self.source = source
        self.in_progress: list[tuple[str | int, ...]] = []

    # A value at ``path`` of the raw document: containers recursively, strings by expression.
    def value(self, node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, dict):
            return {key: self.value(item, (*path, key)) for key, item in node.items()}
        if isinstance(node, list):
            return [self.value(item, (*path, index)) for index, item in enumerate(node)]
        if isinstance(node, str):
            return self.string(node, path)
        return node

    def string(self, text: str, path: tuple[str | int, ...]) -> Any:
        whole = _EXPRESSION.fullmatch(text.strip())
        if whole and text.strip() == text:
            return self.expression(whole.group(1), path)

        def interpolate(match: re.Match[str]) -> str:
            resolved = self.expression(match.group(1), path)
            return resolved if isinstance(resolved, str) else _scalar_text(resolved)

        return _EXPRESSION.sub(interpolate, text)

    def expression(self, expr: str, path: tuple[str | int, ...]) -> Any:
        call = _CALL.match(expr)
        if call:
            return self.call(call.group(1), call.group(2), expr, path)
        dotted = _PATH.match(expr)
        if not dotted:
            raise self.error(f"${{{expr}}} is not an expression s.yaml supports", path)
        parts = dotted.group(1).split(".")
        head = parts[0]
        if head == "vars":
            return self.lookup(("vars",), parts[1:], expr, path)
        if head == "resources":
            return self.lookup(("resources",), parts[1:], expr, path)
        if head == "this":
            resource = _enclosing_resource(path)
            if resource is None:
                raise self.error(f"${{{expr}}}: 'this' is only defined inside a resource", path)
            if parts[1:] == ["name"]:
                return resource
            return self.lookup(("resources", resource), parts[1:], expr, path)
        raise self.error(f"${{{expr}}} not found", path)

    def call(self, name: str, arg_text: str, expr: str, path: tuple[str | int, ...]) -> Any:
        try:
            args: tuple[Any, ...] = ast.literal_eval(f"({arg_text},)") if arg_text.strip() else ()
        except (ValueError, SyntaxError) as exc:
            raise self.error(f"${{{expr}}}: cannot read the arguments ({exc})", path) from exc
        if name == "env" and 1 <= len(args) <= 2 and isinstance(args[0], str):
            if args[0] in self.environ:
                return self.environ[args[0]]
            if len(args) == 2:
                return args[1]
            raise self.error(f"${{{expr}}} not found: set the environment variable {args[0]}", path)
        if name == "config" and args == ("AccountID",):
            account = self.account_id or self.environ.get(ACCOUNT_ID_ENV)
            if not account:
                raise self.error(f"${{{expr}}} not found: pass account_id or set {ACCOUNT_ID_ENV}", path)
            return account
        raise self.error(f"${{{expr}}} is not an expression s.yaml supports", path)

    def lookup(
        self, base: tuple[str | int, ...], parts: list[str], expr: str, path: tuple[str | int, ...]
    ) -> Any:
        """Walk ``base + parts`` in the raw document, resolving each step, and return the resolved value."""
        target: tuple[str | int, ...] = base
        node: Any = self.raw
        for step in base:
            node = node.get(step) if isinstance(node, dict) else None
        for part in parts:
            if isinstance(node, str):  # an expression that may resolve to a mapping or list
                node = self.resolved_at(node, target, expr, path)
            key: str | int = part
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                key = int(part)
                node = node[key]
            else:
                raise self.error(f"${{{expr}}} not found", path)
            target = (*target, key)
        if node is None and not parts:
            raise self.error(f"${{{expr}}} not found", path)
        return self.resolved_at(node, target, expr, path)

    def resolved_at(
        self, node: Any, target: tuple[str | int, ...], expr: str, path: tuple[str | int, ...]
    ) -> Any:
        if target in self.in_progress:
            cycle = " -> ".join(_key_path(p) for p in (*self.in_progress, target))
            raise self.error(f"${{{expr}}} refers to itself ({cycle})", path)
        self.in_progress.append(target)
        try:
            return self.value(node, target)
        finally:
            self.in_progress.pop()

    def error(self, message: str, path: tuple[str | int, ...]) -> SYamlError:
        return SYamlError(f"{self.source}: {message} (at {_key_path(path)})")


def _enclosing_resource(path: tuple[str | int, ...]) -> str | None:
    if len(path) >= 2 and path[0] == "resources":
        return str(path[1])
    return None


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


# ------------------------------------------------------------------------------------------- functions


@dataclass(frozen=True)
class TriggerSpec:
    """One trigger of a function, as s.yaml declares it (``config`` is ``triggerConfig`` verbatim)."""

    name: str
    type: str
    config: dict[str, Any]
    source_arn: str | None = None
    invocation_role: str | None = None
    qualifier: str | None = None


@dataclass(frozen=True)
class AsyncConfig:
    """``asyncInvokeConfig``: retries, event age, destinations (ARNs, None when not configured)."""

    max_async_retry_attempts: int = DEFAULT_MAX_ASYNC_RETRY_ATTEMPTS
    max_async_event_age_in_seconds: int = DEFAULT_MAX_ASYNC_EVENT_AGE
    on_success: str | None = None
    on_failure: str | None = None


@dataclass(frozen=True)
class FunctionSpec:
    """What the FC emulator (and the packaging checks) need to know of one fc3 resource."""

    resource: str
    name: str
    runtime: str
    handler: str
    code: Path
    memory_size: int = DEFAULT_MEMORY_SIZE
    timeout: int = DEFAULT_TIMEOUT
    environment: dict[str, str] = field(default_factory=dict)
    role: str | None = None
    async_config: AsyncConfig = field(default_factory=AsyncConfig)
    triggers: list[TriggerSpec] = field(default_factory=list)


def functions(doc: Mapping[str, Any], project_root: str | os.PathLike[str]) -> list[FunctionSpec]:
    """Every resource whose ``component`` starts with ``fc3``, in file order, from a resolved document."""
    root = Path(project_root).resolve()
    resources = doc.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise SYamlError("s.yaml: 'resources' must be a mapping")
    return [
        _function(key, resource, root)
        for key, resource in resources.items()
        if isinstance(resource, Mapping)
        and str(resource.get("component", "")).startswith(FC3_COMPONENT_PREFIX)
    ]


def _function(key: str, resource: Mapping[str, Any], root: Path) -> FunctionSpec:
    props = resource.get("props") or {}
    where = f"s.yaml: resources.{key}.props"

    def required(name: str) -> str:
        value = props.get(name)
        if not isinstance(value, str) or not value:
            raise SYamlError(f"{where}.{name} is missing (a non-empty string is required)")
        return value

    environment = props.get("environmentVariables") or {}
    if not isinstance(environment, Mapping):
        raise SYamlError(f"{where}.environmentVariables must be a mapping of strings")
    return FunctionSpec(
        resource=key,
        name=required("functionName"),
        runtime=required("runtime"),
        handler=required("handler"),
        code=_code_path(props.get("code"), root, where),
        memory_size=int(props.get("memorySize") or DEFAULT_MEMORY_SIZE),
        timeout=int(props.get("timeout") or DEFAULT_TIMEOUT),
        environment={str(k): _scalar_text(v) for k, v in environment.items()},
        role=props.get("role"),
        async_config=_async_config(props.get("asyncInvokeConfig") or {}),
        triggers=[
            _trigger(item, f"{where}.triggers[{i}]") for i, item in enumerate(props.get("triggers") or [])
        ],
    )


def _code_path(code: Any, root: Path, where: str) -> Path:
    if isinstance(code, Mapping):
        code = code.get("src")
    if not isinstance(code, str) or not code:
        raise SYamlError(f"{where}.code is missing (a directory relative to s.yaml)")
    path = Path(code)
    return path if path.is_absolute() else (root / path).resolve()


def _async_config(config: Mapping[str, Any]) -> AsyncConfig:
    destinations = config.get("destinationConfig") or {}

    def destination(name: str) -> str | None:
        value = (destinations.get(name) or {}).get("destination")
        return str(value) if value else None

    retries = config.get("maxAsyncRetryAttempts")
    age = config.get("maxAsyncEventAgeInSeconds")
    return AsyncConfig(
        max_async_retry_attempts=DEFAULT_MAX_ASYNC_RETRY_ATTEMPTS if retries is None else int(retries),
        max_async_event_age_in_seconds=DEFAULT_MAX_ASYNC_EVENT_AGE if age is None else int(age),
        on_success=destination("onSuccess"),
        on_failure=destination("onFailure"),
    )


def _trigger(item: Any, where: str) -> TriggerSpec:
    if not isinstance(item, Mapping) or not item.get("triggerName") or not item.get("triggerType"):
        raise SYamlError(f"{where} needs triggerName, triggerType and triggerConfig")
    return TriggerSpec(
        name=str(item["triggerName"]),
        type=str(item["triggerType"]),
        config=dict(item.get("triggerConfig") or {}),
        source_arn=item.get("sourceArn"),
        invocation_role=item.get("invocationRole"),
        qualifier=item.get("qualifier"),
    )
