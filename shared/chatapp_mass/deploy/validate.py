"""Check an s.yaml (Serverless Devs 3, component fc3) offline, stricter than ``s verify``.

Longer than 500 lines: one short, independent check per rule of s.yaml (schema, runtimes, triggers, roles and
their policies, environment), listed in one place as ``s verify`` lists its findings.

``s verify`` (and ``s deploy`` with ``validation: true``) checks each fc3 resource's props against fc3's
JSON schema (``deploy/fc3-props.schema.json``, a copy of devsapp/fc3 ``src/schema.json``, MIT). That schema
is loose — no ``additionalProperties: false`` anywhere, and ``triggerConfig`` is an ``anyOf`` of eight
shapes — so a typo such as ``enviromentVariables`` or an OSS trigger with ``filter.prefix`` passes and
deploys something else than meant. On top of the schema this checks:

- unknown keys at every level: the document, each resource, each action, and inside props by walking the
  schema's ``properties`` (a close match is suggested);
- each ``triggerConfig`` against the definition for its own ``triggerType``, unknown keys included;
  OSS ``sourceArn`` shaped ``acs:oss:<region>:<uid>:<bucket>`` in the function's region, role ARNs shaped
  ``acs:ram::<uid>:role/<name>``, timer cron of six fields (or ``@every``), trigger names unique;
- a function with a role has its policy, ``deploy/ram-policy-<key>.json``: a RAM policy the local cloud's
  evaluator accepts (``alibaba_localcloud.ram``) with only the placeholders ``${region}``, ``${accountId}``,
  ``${bucket}``, ``${instance}``; and no two functions share a role (each has only what it calls);
- no ``${...}`` left unresolved;
- ``code``: a directory that exists, or ``build/<key>`` — the package ``chatapp_mass.deploy.packaging``
  builds from ``functions/<key>/``, which must then hold the handler's module (``index.py``); a function
  built that way must use the builder's runtime;
- ``environmentVariables``: names, string values, no ``FC_*`` (reserved), at most 4 KB in all;
- runtime python3.10 or python3.12; memory a multiple of 64 in 128–32768; timeouts and async settings in
  range (``maxAsyncEventAgeInSeconds`` within the FC API's 1–604800, narrower than fc3's schema);
- the component pinned to a version (``fc3@X.Y.Z``), function names valid and unique.

Every problem names the key path it is at, e.g.
``resources.ingest.props.enviromentVariables: unknown key (did you mean 'environmentVariables'?)``.

Command line: ``python -m chatapp_mass.deploy.validate [s.yaml] [--account-id UID] [--env-file FILE]``
prints the problems and exits 1 if there are any (2 if the file cannot be read at all).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from alibaba_localcloud.syaml import ACCOUNT_ID_ENV, SYamlError, load
from chatapp_mass.deploy import packaging

SCHEMA_PATH = packaging.PROJECT_ROOT / "deploy" / "fc3-props.schema.json"
PLACEHOLDER_ACCOUNT_ID = "1234567890123456"

ALLOWED_RUNTIMES = ("python3.10", "python3.12")
ENV_TOTAL_LIMIT = 4096  # bytes, counted as the JSON object FC is sent (conservative)
MAX_ASYNC_EVENT_AGE = 604800  # FC 2023-03-30 API (fc3's schema allows 2592000)

TOP_LEVEL_KEYS = (
    "edition",
    "name",
    "access",
    "vars",
    "resources",
    "actions",
    "template",
    "flow",
    "validation",
)
RESOURCE_KEYS = ("component", "props", "actions", "access")
ACTION_KEYS = ("run", "path", "plugin", "args", "component")
HOOK = re.compile(r"^(pre|post|success|fail|complete)-[A-Za-z0-9_-]+$")

TRIGGER_CONFIG_DEFINITIONS = {
    "oss": "IOssTriggerConfig",
    "log": "ILogTriggerConfig",
    "timer": "ITimerTriggerConfig",
    "http": "IHttpTriggerConfig",
    "mns_topic": "IMnsTriggerConfig",
    "cdn_events": "ICdnTriggerConfig",
    "tablestore": "IOtsConfig",
    "eventbridge": "IEventBridge",
}

PINNED_COMPONENT = re.compile(r"^fc3@\d+\.\d+\.\d+$")
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
ROLE_ARN = re.compile(r"^acs:ram::(\d+):role/([A-Za-z0-9.@_-]{1,64})$")
OSS_SOURCE_ARN = re.compile(r"^acs:oss:([a-z0-9-]+):(\d+):([a-z0-9][a-z0-9-]{1,61}[a-z0-9])$")
DESTINATION_ARN = re.compile(r"^acs:(mns|fc|eventbridge|mq):[a-z0-9-]+:\d*:\S+$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HANDLER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\.([A-Za-z_][A-Za-z0-9_]*)$")
CRON_EVERY = re.compile(r"^@every\s+\d+[smh]$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the s.yaml: where (a key path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# ------------------------------------------------------------------------------------------- entry points


def validate_file(
    path: str | os.PathLike[str] = "s.yaml",
    environ: Mapping[str, str] | None = None,
    account_id: str | None = None,
    project_root: str | os.PathLike[str] | None = None,
) -> list[Problem]:
    """Resolve ``path`` with :func:`syaml.load` and :func:`validate` it (an unresolvable file is one problem)."""
    source = Path(path)
    try:
        doc = load(source, environ, account_id)
    except SYamlError as exc:
        return [Problem("<file>", str(exc))]
    return validate(doc, source.resolve().parent if project_root is None else Path(project_root))


def validate(doc: Mapping[str, Any], project_root: str | os.PathLike[str]) -> list[Problem]:
    """Every problem of a resolved s.yaml document, in document order."""
    root = Path(project_root).resolve()
    problems: list[Problem] = []
    problems += _unresolved(doc, "")
    problems += _unknown(doc, TOP_LEVEL_KEYS, "")
    if doc.get("edition") != "3.0.0":
        problems.append(
            Problem("edition", f"must be '3.0.0' (Serverless Devs 3), not {doc.get('edition')!r}")
        )
    if "actions" in doc:
        problems += _actions(doc["actions"], "actions")
    resources = doc.get("resources")
    if not isinstance(resources, Mapping) or not resources:
        problems.append(Problem("resources", "must be a mapping of at least one resource"))
        return problems
    names: dict[str, str] = {}
    roles: dict[str, str] = {}
    for key, resource in resources.items():
        where = f"resources.{key}"
        if not isinstance(resource, Mapping):
            problems.append(Problem(where, "must be a mapping with component and props"))
            continue
        problems += _unknown(resource, RESOURCE_KEYS, where)
        if "actions" in resource:
            problems += _actions(resource["actions"], f"{where}.actions")
        component = str(resource.get("component", ""))
        if not component.startswith("fc3"):
            continue
        if not PINNED_COMPONENT.match(component):
            problems.append(
                Problem(
                    f"{where}.component",
                    f"{component!r}: pin the version (fc3@X.Y.Z) so a "
                    f"deploy does not take whatever fc3 publishes next",
                )
            )
        props = resource.get("props")
        if not isinstance(props, Mapping):
            problems.append(Problem(f"{where}.props", "must be a mapping"))
            continue
        problems += _props(props, f"{where}.props", str(key), root)
        role = props.get("role")
        if isinstance(role, str):
            if role.lower() in roles:
                problems.append(
                    Problem(
                        f"{where}.props.role",
                        f"{role!r} is also resources.{roles[role.lower()]}'s role: give each function its "
                        f"own role and policy (deploy/ram-policy-{key}.json)",
                    )
                )
            roles[role.lower()] = str(key)
        name = props.get("functionName")
        if isinstance(name, str):
            if name in names:
                problems.append(
                    Problem(
                        f"{where}.props.functionName",
                        f"{name!r} is also resources.{names[name]}'s function name",
                    )
                )
            names[name] = str(key)
    return problems


# ------------------------------------------------------------------------------------------------- props
POLICY_PLACEHOLDERS = {"region": "r", "accountId": "1", "bucket": "b", "instance": "i"}


def _role_policy(key: str, where: str, root: Path) -> list[Problem]:
    """The role's policy file: present, and a RAM policy (placeholders as deploy/README.md fills them)."""
    from alibaba_localcloud import ram

    path = root / "deploy" / f"ram-policy-{key}.json"
    if not path.is_file():
        return [Problem(where, f"no policy for this function's role: write {path.relative_to(root)}")]
    try:
        ram.load(path, POLICY_PLACEHOLDERS)
    except (ram.PolicyError, OSError) as error:
        return [Problem(where, f"{path.relative_to(root)}: {error}")]
    return []


def _props(props: Mapping[str, Any], where: str, key: str, root: Path) -> list[Problem]:
    schema = _schema()
    problems = list(_schema_errors(props, schema, where, skip=("environmentVariables", "triggers")))
    problems += _unknown_in(props, schema, schema, where, skip=("triggers",))

    name = props.get("functionName")
    if isinstance(name, str) and not FUNCTION_NAME.match(name):
        problems.append(
            Problem(
                f"{where}.functionName",
                f"{name!r}: letters, digits, '_' and '-', starting "
                f"with a letter or '_', at most 64 characters",
            )
        )
    runtime = props.get("runtime")
    if runtime not in ALLOWED_RUNTIMES:
        problems.append(
            Problem(f"{where}.runtime", f"{runtime!r}: this project runs on {' or '.join(ALLOWED_RUNTIMES)}")
        )
    handler = props.get("handler")
    handler_match = HANDLER.match(handler) if isinstance(handler, str) else None
    if not handler_match:
        problems.append(
            Problem(f"{where}.handler", f"{handler!r}: must be MODULE.FUNCTION, e.g. index.handler")
        )
    problems += _code(
        props.get("code"), handler_match.group(1) if handler_match else None, runtime, f"{where}.code", root
    )
    role = props.get("role")
    if role is not None and not (isinstance(role, str) and ROLE_ARN.match(role)):
        problems.append(Problem(f"{where}.role", f"{role!r}: must be acs:ram::<account id>:role/<name>"))
    elif role is not None:
        problems += _role_policy(key, f"{where}.role", root)
    problems += _environment(props.get("environmentVariables"), f"{where}.environmentVariables")
    problems += _async(props.get("asyncInvokeConfig"), f"{where}.asyncInvokeConfig")
    triggers = props.get("triggers")
    if isinstance(triggers, list):
        seen: set[str] = set()
        for index, trigger in enumerate(triggers):
            problems += _trigger(trigger, f"{where}.triggers[{index}]", props.get("region"), seen)
    elif triggers is not None:
        problems.append(Problem(f"{where}.triggers", "must be a list of triggers"))
    return problems


def _code(code: Any, module: str | None, runtime: Any, where: str, root: Path) -> list[Problem]:
    if isinstance(code, Mapping):  # {ossBucketName, ossObjectName, src}: the schema checks the shape
        return []
    if not isinstance(code, str) or not code:
        return [Problem(where, "missing: a directory (or .zip) relative to s.yaml")]
    path = (root / code).resolve()
    build = root / "build"
    if path.parent == build:  # a package chatapp_mass.deploy.packaging builds from functions/<key>/
        key = path.name
        source = root / "functions" / key
        problems = []
        if module is not None and not (source / f"{module.replace('.', '/')}.py").is_file():
            problems.append(
                Problem(
                    where,
                    f"{code!r} is built from functions/{key}/, which has no "
                    f"{module.replace('.', '/')}.py for the handler",
                )
            )
        if runtime != packaging.DEFAULT_RUNTIME:
            problems.append(
                Problem(
                    where,
                    f"{code!r} is built for {packaging.DEFAULT_RUNTIME} (the builder's "
                    f"runtime) but the function's runtime is {runtime!r}",
                )
            )
        return problems
    if not path.exists():
        return [Problem(where, f"{code!r} does not exist (relative to {root})")]
    return []


def _environment(environment: Any, where: str) -> list[Problem]:
    if environment is None:
        return []
    if not isinstance(environment, Mapping):
        return [Problem(where, "must be a mapping of NAME: 'string value'")]
    problems = []
    for name, value in environment.items():
        path = f"{where}.{name}"
        if not isinstance(name, str) or not ENV_NAME.match(name):
            problems.append(
                Problem(path, "not a valid variable name (letters, digits, '_'; not starting with a digit)")
            )
        elif name.startswith("FC_"):
            problems.append(Problem(path, "FC_* names are reserved by Function Compute"))
        if not isinstance(value, str):
            problems.append(
                Problem(
                    path,
                    f"{value!r} is not a string ({type(value).__name__}): environment "
                    f"values must be strings (quote it in YAML: '{_yaml_text(value)}')",
                )
            )
    size = len(
        json.dumps(
            {str(k): v if isinstance(v, str) else _yaml_text(v) for k, v in environment.items()},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
    )
    if size > ENV_TOTAL_LIMIT:
        problems.append(Problem(where, f"{size:,} bytes in all: Function Compute allows {ENV_TOTAL_LIMIT:,}"))
    return problems


def _async(config: Any, where: str) -> list[Problem]:
    if not isinstance(config, Mapping):
        return []
    problems = []
    retries = config.get("maxAsyncRetryAttempts")
    if retries is not None and not (
        isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries <= 8
    ):
        problems.append(Problem(f"{where}.maxAsyncRetryAttempts", f"{retries!r}: a whole number, 0–8"))
    age = config.get("maxAsyncEventAgeInSeconds")
    if age is None:
        problems.append(
            Problem(
                f"{where}.maxAsyncEventAgeInSeconds",
                "set it explicitly: the FC API's default is 86400 s, fc3's schema says 18000",
            )
        )
    elif not (isinstance(age, int) and not isinstance(age, bool) and 1 <= age <= MAX_ASYNC_EVENT_AGE):
        problems.append(
            Problem(
                f"{where}.maxAsyncEventAgeInSeconds",
                f"{age!r}: a whole number of seconds, 1–{MAX_ASYNC_EVENT_AGE} (FC API)",
            )
        )
    destinations = config.get("destinationConfig")
    if isinstance(destinations, Mapping):
        for outcome, destination in destinations.items():
            arn = destination.get("destination") if isinstance(destination, Mapping) else None
            if not (isinstance(arn, str) and DESTINATION_ARN.match(arn)):
                problems.append(
                    Problem(
                        f"{where}.destinationConfig.{outcome}.destination",
                        f"{arn!r}: an ARN of an MNS queue/topic, FC function, EventBridge bus "
                        f"or RocketMQ topic (acs:mns:REGION:UID:/queues/NAME/messages, ...)",
                    )
                )
    return problems


# ----------------------------------------------------------------------------------------------- triggers


def _trigger(trigger: Any, where: str, region: Any, seen: set[str]) -> list[Problem]:
    schema = _schema()
    if not isinstance(trigger, Mapping):
        return [Problem(where, "must be a mapping with triggerName, triggerType and triggerConfig")]
    trigger_schema = schema["definitions"]["ITrigger"]
    problems = list(
        _schema_errors(
            trigger, {**trigger_schema, "definitions": schema["definitions"]}, where, skip=("triggerConfig",)
        )
    )
    problems += _unknown_in(trigger, trigger_schema, schema, where, skip=("triggerConfig",))
    name = trigger.get("triggerName")
    if isinstance(name, str):
        if name in seen:
            problems.append(
                Problem(f"{where}.triggerName", f"{name!r} is used by another trigger of this function")
            )
        seen.add(name)
    kind = trigger.get("triggerType")
    config = trigger.get("triggerConfig")
    definition = TRIGGER_CONFIG_DEFINITIONS.get(kind) if isinstance(kind, str) else None
    if definition is None or config is None:
        return problems  # the schema errors above name the missing or unknown type
    config_schema = schema["definitions"][definition]
    config_where = f"{where}.triggerConfig"
    problems += _schema_errors(config, {**config_schema, "definitions": schema["definitions"]}, config_where)
    problems += _unknown_in(config, config_schema, schema, config_where)
    role = trigger.get("invocationRole")
    if role is not None and not (isinstance(role, str) and ROLE_ARN.match(role)):
        problems.append(
            Problem(f"{where}.invocationRole", f"{role!r}: must be acs:ram::<account id>:role/<name>")
        )
    if kind == "oss":
        problems += _oss_trigger(trigger, where, region)
    elif kind == "timer" and isinstance(config, Mapping):
        problems += _cron(config.get("cronExpression"), f"{config_where}.cronExpression")
    return problems


def _oss_trigger(trigger: Mapping[str, Any], where: str, region: Any) -> list[Problem]:
    arn = trigger.get("sourceArn")
    match = OSS_SOURCE_ARN.match(arn) if isinstance(arn, str) else None
    if not match:
        return [
            Problem(
                f"{where}.sourceArn", f"{arn!r}: an OSS trigger needs acs:oss:<region>:<account id>:<bucket>"
            )
        ]
    if region is not None and match.group(1) != region:
        return [
            Problem(
                f"{where}.sourceArn",
                f"the bucket's region {match.group(1)!r} is not the function's "
                f"region {region!r}: OSS triggers work within one region",
            )
        ]
    return []


def _cron(expression: Any, where: str) -> list[Problem]:
    if not isinstance(expression, str):
        return []  # the schema names the missing or mistyped value
    text = expression.strip()
    if text.startswith("CRON_TZ="):
        text = text.split(None, 1)[1] if " " in text else ""
    if CRON_EVERY.match(text) or len(text.split()) == 6:
        return []
    return [
        Problem(
            where,
            f"{expression!r}: six fields, seconds first (e.g. '0 0 8 * * *', UTC unless "
            f"'CRON_TZ=Asia/Shanghai ' prefixes it), or '@every 5m'",
        )
    ]


# ------------------------------------------------------------------------------------- schema machinery


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    try:
        schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SystemExit(f"{SCHEMA_PATH}: cannot read fc3's schema ({exc.strerror or exc})") from exc
    return schema


def _schema_errors(
    value: Any, schema: Mapping[str, Any], where: str, skip: Sequence[str] = ()
) -> Iterator[Problem]:
    """jsonschema's errors, each at its key path; errors under a key in ``skip`` are left to stricter checks."""
    try:
        from jsonschema import Draft7Validator
    except ImportError as exc:  # a dev dependency (requirements-dev.txt)
        raise SystemExit("the s.yaml check needs jsonschema: pip install -r requirements-dev.txt") from exc
    validator = Draft7Validator(schema)
    for error in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
        parts = list(error.absolute_path)
        if parts and parts[0] in skip:
            continue
        yield Problem(_join(where, parts), _short(error))


def _short(error: Any) -> str:
    if error.validator == "anyOf":
        return f"{_brief(error.instance)} matches none of the allowed shapes"
    if error.validator == "enum":
        return f"{_brief(error.instance)} is not one of {', '.join(map(str, error.validator_value))}"
    return str(error.message)


def _unknown_in(
    value: Any, node: Mapping[str, Any], schema: Mapping[str, Any], where: str, skip: Sequence[str] = ()
) -> list[Problem]:
    """Keys the schema does not declare, walking ``properties``, ``items``, ``additionalProperties``."""
    node = _deref(node, schema)
    problems: list[Problem] = []
    if "anyOf" in node:
        branch = _branch_for(value, node["anyOf"], schema)
        return _unknown_in(value, branch, schema, where, skip) if branch is not None else []
    if isinstance(value, Mapping):
        properties = node.get("properties")
        additional = node.get("additionalProperties")
        if properties is None and additional is None:
            return []  # an open object (e.g. {"type": "object"}): nothing to compare against
        for key, item in value.items():
            path = _join(where, [key])
            if key in skip:
                continue
            if properties is not None and key in properties:
                problems += _unknown_in(item, properties[key], schema, path)
            elif isinstance(additional, Mapping):
                problems += _unknown_in(item, additional, schema, path)
            elif additional is not True:
                problems.append(Problem(path, "unknown key" + _suggest(str(key), properties or {}, schema)))
    elif isinstance(value, list):
        items = node.get("items")
        for index, item in enumerate(value):
            item_schema = items[min(index, len(items) - 1)] if isinstance(items, list) and items else items
            if isinstance(item_schema, Mapping):
                problems += _unknown_in(item, item_schema, schema, f"{where}[{index}]")
    return problems


def _deref(node: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _branch_for(
    value: Any, branches: Sequence[Mapping[str, Any]], schema: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The ``anyOf`` branch of the value's JSON type that declares most of its keys."""
    kind = "object" if isinstance(value, Mapping) else "array" if isinstance(value, list) else None
    candidates = [b for b in (_deref(b, schema) for b in branches) if b.get("type") == kind]
    if not candidates:
        return None
    if kind == "object":
        return max(candidates, key=lambda b: len(set(value) & set(b.get("properties") or {})))
    return candidates[0]


def _suggest(key: str, known: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.7)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if schema is not None:  # one level too high, as in an OSS filter's prefix (it belongs in filter.key)
        for name, node in known.items():
            if isinstance(node, Mapping) and key in (_deref(node, schema).get("properties") or {}):
                return f" (it belongs under {name!r}: {name}.{key})"
    return f" (known here: {', '.join(sorted(known))})" if known else ""


# -------------------------------------------------------------------------------------------- the rest


def _unknown(value: Mapping[str, Any], known: Sequence[str], where: str) -> list[Problem]:
    return [
        Problem(_join(where, [key]), "unknown key" + _suggest(str(key), dict.fromkeys(known)))
        for key in value
        if key not in known
    ]


def _actions(actions: Any, where: str) -> list[Problem]:
    if not isinstance(actions, Mapping):
        return [Problem(where, "must be a mapping of hook (pre-deploy, success-deploy, ...) to steps")]
    problems = []
    for hook, steps in actions.items():
        path = f"{where}.{hook}"
        if not HOOK.match(str(hook)):
            problems.append(
                Problem(
                    path,
                    "not a hook: pre-<command>, success-<command>, fail-<command>, "
                    "complete-<command> (or post-<command>)",
                )
            )
        if not isinstance(steps, list):
            problems.append(Problem(path, "must be a list of steps ({run, path} or {plugin, args})"))
            continue
        for index, step in enumerate(steps):
            step_path = f"{path}[{index}]"
            if not isinstance(step, Mapping):
                problems.append(Problem(step_path, "must be a mapping: {run: COMMAND, path: DIRECTORY}"))
                continue
            problems += _unknown(step, ACTION_KEYS, step_path)
            if sum(k in step for k in ("run", "plugin", "component")) != 1:
                problems.append(Problem(step_path, "needs exactly one of run, plugin, component"))
    return problems


def _unresolved(value: Any, where: str) -> list[Problem]:
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in _unresolved(item, _join(where, [key]))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _unresolved(item, f"{where}[{index}]")]
    if isinstance(value, str) and "${" in value:
        return [Problem(where or "<top>", f"{value!r} still holds an unresolved ${{...}} expression")]
    return []


def _join(where: str, parts: Sequence[Any]) -> str:
    path = where
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
    return path or "<top>"


def _brief(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _yaml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# ------------------------------------------------------------------------------------------ command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatapp_mass.deploy.validate",
        description="Check an s.yaml (component fc3) offline against fc3's schema and stricter rules.",
    )
    parser.add_argument("path", nargs="?", default="s.yaml", help="the s.yaml (default ./s.yaml)")
    parser.add_argument(
        "--account-id",
        default=None,
        help=f"for ${{config('AccountID')}} (default ${ACCOUNT_ID_ENV}, else a placeholder)",
    )
    parser.add_argument("--env-file", default=None, help="KEY=value lines added to the environment")
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if args.env_file:
        for line in Path(args.env_file).read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#"):
                environ[key.strip()] = value.strip()
    account_id = args.account_id or environ.get(ACCOUNT_ID_ENV)
    if not account_id:
        account_id = PLACEHOLDER_ACCOUNT_ID
        print(
            f"(no account id given: --account-id or {ACCOUNT_ID_ENV}; checking with {account_id})",
            file=sys.stderr,
        )
    if not Path(args.path).is_file():
        print(f"{args.path}: no such file", file=sys.stderr)
        return 2
    problems = validate_file(args.path, environ, account_id)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {args.path}", file=sys.stderr)
        return 1
    print(f"{args.path}: OK", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
