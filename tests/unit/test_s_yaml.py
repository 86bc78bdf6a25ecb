"""The project's s.yaml: what it declares, and that it passes fc3's schema plus the stricter offline checks
of ``chatapp_mass.deploy.validate`` — and that those checks refuse what fc3's loose schema lets through."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from alibaba_localcloud.syaml import functions, load
from chatapp_mass.deploy import packaging
from chatapp_mass.deploy.validate import SCHEMA_PATH, Problem, validate, validate_file

ROOT = Path(__file__).resolve().parents[2]
S_YAML = ROOT / "s.yaml"
ACCOUNT = "1234567890123456"
# What a deployer would export; everything else takes s.yaml's defaults.
ENVIRON = {"CHATAPP_BUCKET": "acme-chatapp", "CHATAPP_TABLESTORE_INSTANCE": "acme-ots"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load(S_YAML, ENVIRON, ACCOUNT)


def props(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return doc["resources"][key]["props"]


# ------------------------------------------------------------------------------------- the project's file


def test_project_s_yaml_has_no_problems(doc: dict[str, Any]) -> None:
    assert validate(doc, ROOT) == []


def test_project_s_yaml_passes_fc3_schema_as_s_verify_would(doc: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    for key in ("ingest", "sender"):
        errors = [e.message for e in Draft7Validator(schema).iter_errors(props(doc, key))]
        assert errors == [], key


def test_schema_copy_matches_the_reference_when_it_is_beside_the_repo() -> None:
    reference = ROOT.parent / "shared" / "reference" / "fc3-props.schema.json"
    if not reference.is_file():
        pytest.skip("no ../shared/reference beside this checkout")
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(reference.read_text())


def test_three_functions_with_the_agreed_keys_names_runtime_and_packages(doc: dict[str, Any]) -> None:
    specs = functions(doc, ROOT)
    assert [s.resource for s in specs] == ["ingest", "sender", "api"]
    assert [s.name for s in specs] == ["chatapp-mass-ingest", "chatapp-mass-sender", "chatapp-mass-api"]
    for spec in specs:
        assert spec.runtime == "python3.12" == packaging.DEFAULT_RUNTIME
        assert spec.handler == "index.handler"
        assert spec.code == ROOT / "build" / spec.resource  # what chatapp_mass.deploy.packaging builds
        assert spec.role == f"acs:ram::{ACCOUNT}:role/chatapp-mass-{spec.resource}"  # a role per function
        assert spec.memory_size % 64 == 0
        dead_letter = f"acs:mns:ap-southeast-1:{ACCOUNT}:/queues/chatapp-mass-dead-letter/messages"
        assert spec.async_config.on_failure == dead_letter
    ingest, sender, api = specs
    assert (ingest.memory_size, ingest.timeout) == (512, 900)
    assert (api.memory_size, api.timeout) == (1024, 120)
    assert api.async_config.max_async_retry_attempts == 0  # the next timer firing does the same work
    assert [(t.type, t.name) for t in api.triggers] == [("http", "api-http"), ("timer", "api-timer")]
    http, timer = api.triggers
    assert http.config["authType"] == "anonymous" and http.config["methods"] == ["GET", "POST", "DELETE"]
    assert timer.config["cronExpression"] == "0 * * * * *" and timer.config["enable"] is True
    assert (sender.memory_size, sender.timeout) == (512, 600)
    assert ingest.async_config.max_async_retry_attempts == 2
    assert sender.async_config.max_async_retry_attempts == 3
    # Explicit, not fc3's 18000 nor the API's implicit 86400.
    assert props(doc, "ingest")["asyncInvokeConfig"]["maxAsyncEventAgeInSeconds"] == 21600
    assert props(doc, "sender")["asyncInvokeConfig"]["maxAsyncEventAgeInSeconds"] == 86400
    assert sender.triggers == []


def test_each_resource_builds_its_own_package_before_deploy(doc: dict[str, Any]) -> None:
    for key in ("ingest", "sender", "api"):
        (step,) = doc["resources"][key]["actions"]["pre-deploy"]
        assert step["run"] == f"python3 -m chatapp_mass.deploy.packaging {key}"
        assert (ROOT / step["path"] / "chatapp_mass" / "deploy" / "packaging.py").is_file()


def test_ingest_oss_trigger(doc: dict[str, Any]) -> None:
    """One trigger per file kind ingest reads (an OSS trigger filters on one suffix): CSV and .xlsx."""
    csv_trigger, xlsx_trigger = functions(doc, ROOT)[0].triggers
    for trigger, suffix in ((csv_trigger, ".csv"), (xlsx_trigger, ".xlsx")):
        assert trigger.type == "oss"
        assert trigger.source_arn == f"acs:oss:ap-southeast-1:{ACCOUNT}:acme-chatapp"
        assert trigger.invocation_role == f"acs:ram::{ACCOUNT}:role/aliyunosseventnotificationrole"
        assert trigger.config == {
            "events": [
                "oss:ObjectCreated:PutObject",
                "oss:ObjectCreated:PostObject",
                "oss:ObjectCreated:CompleteMultipartUpload",
                "oss:ObjectCreated:CopyObject",
            ],
            "filter": {"key": {"prefix": "incoming/", "suffix": suffix}},
        }


def test_environment(doc: dict[str, Any]) -> None:
    for spec in functions(doc, ROOT):
        api_only = (
            {
                "CHATAPP_API_TOKENS": "",
                "CHATAPP_RECEIPT_KEY": "",
                "CHATAPP_API_MAX_BODY": "6291456",
                "CHATAPP_API_REPEAT_WINDOW": "600",
            }
            if spec.name == "chatapp-mass-api"
            else {}
        )
        assert spec.environment == {
            **api_only,
            "CHATAPP_STORE": "tablestore://acme-ots",
            "CHATAPP_TABLESTORE_ENDPOINT": "https://acme-ots.ap-southeast-1.ots.aliyuncs.com",
            "CHATAPP_OSS_ENDPOINT": "https://oss-ap-southeast-1-internal.aliyuncs.com",
            "CHATAPP_BUCKET": "acme-chatapp",
            "CHATAPP_INCOMING_PREFIX": "incoming/",
            "CHATAPP_REPORTS_PREFIX": "reports/",
            "CHATAPP_QPS": "10",
            "CHATAPP_SENDER_FUNCTION": "chatapp-mass-sender",
            "CHATAPP_INGEST_FUNCTION": "chatapp-mass-ingest",
            "CHATAPP_ERROR_THRESHOLD": "0.2",
            "CHATAPP_RECONCILE_AFTER": "60",
            "CHATAPP_LOG_LEVEL": "INFO",
            "CHATAPP_DEFAULT_CHANNEL_TYPE": "",
            "CHATAPP_DEFAULT_TEMPLATE_CODE": "",
            "CHATAPP_DEFAULT_LANGUAGE": "",
            "CHATAPP_DEFAULT_FROM": "",
        }
    # Raw values are strings already (no YAML int/bool sneaking through to FC).
    assert all(isinstance(v, str) for v in props(doc, "ingest")["environmentVariables"].values())


def test_region_and_job_defaults_follow_the_environment() -> None:
    environ = {
        **ENVIRON,
        "ALIBABA_CLOUD_REGION_ID": "cn-hangzhou",
        "CHATAPP_DEFAULT_CHANNEL_TYPE": "whatsapp",
        "CHATAPP_DEFAULT_TEMPLATE_CODE": "T1",
        "CHATAPP_PYTHON": "/opt/py/bin/python3",
    }
    resolved = load(S_YAML, environ, ACCOUNT)
    assert validate(resolved, ROOT) == []
    ingest = props(resolved, "ingest")
    assert ingest["region"] == "cn-hangzhou"
    assert ingest["triggers"][0]["sourceArn"] == f"acs:oss:cn-hangzhou:{ACCOUNT}:acme-chatapp"
    assert (
        ingest["environmentVariables"]["CHATAPP_OSS_ENDPOINT"]
        == "https://oss-cn-hangzhou-internal.aliyuncs.com"
    )
    assert ingest["environmentVariables"]["CHATAPP_DEFAULT_TEMPLATE_CODE"] == "T1"
    assert resolved["resources"]["ingest"]["actions"]["pre-deploy"][0]["run"].startswith(
        "/opt/py/bin/python3 -m"
    )


def test_account_id_is_required() -> None:
    (problem,) = validate_file(S_YAML, ENVIRON, account_id=None)
    assert "AccountID" in problem.message


# -------------------------------------------------------------------- what the stricter checks refuse


def mutated(doc: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> list[Problem]:
    broken = copy.deepcopy(doc)
    change(broken)
    return validate(broken, ROOT)


def messages_at(problems: list[Problem], path: str) -> list[str]:
    return [p.message for p in problems if p.path == path]


def rename(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def test_typo_key_is_refused_naming_its_path(doc: dict[str, Any]) -> None:
    problems = mutated(
        doc, lambda d: rename(props(d, "ingest"), "environmentVariables", "enviromentVariables")
    )
    assert messages_at(problems, "resources.ingest.props.enviromentVariables") == [
        "unknown key (did you mean 'environmentVariables'?)"
    ]
    # fc3's own schema (what `s verify` checks) lets it through:
    assert (
        list(
            Draft7Validator(json.loads(SCHEMA_PATH.read_text())).iter_errors(
                {**props(doc, "ingest"), "enviromentVariables": {}}
            )
        )
        == []
    )


def test_wrong_oss_filter_is_refused_naming_its_path(doc: dict[str, Any]) -> None:
    def flatten_filter(d: dict[str, Any]) -> None:
        props(d, "ingest")["triggers"][0]["triggerConfig"]["filter"] = {
            "prefix": "incoming/",
            "suffix": ".csv",
        }

    problems = mutated(doc, flatten_filter)
    where = "resources.ingest.props.triggers[0].triggerConfig.filter"
    assert messages_at(problems, where) == ["'key' is a required property"]
    assert messages_at(problems, f"{where}.prefix") == ["unknown key (it belongs under 'key': key.prefix)"]
    assert messages_at(problems, f"{where}.suffix")
    # fc3's schema: triggerConfig is an anyOf of eight shapes, and {"type": "object"} (tablestore) takes it.
    trigger = copy.deepcopy(props(doc, "ingest")["triggers"][0])
    trigger["triggerConfig"]["filter"] = {"prefix": "incoming/", "suffix": ".csv"}
    assert (
        list(
            Draft7Validator(json.loads(SCHEMA_PATH.read_text())).iter_errors(
                {**props(doc, "ingest"), "triggers": [trigger]}
            )
        )
        == []
    )


def test_non_string_environment_value_is_refused_naming_its_path(doc: dict[str, Any]) -> None:
    problems = mutated(doc, lambda d: props(d, "sender")["environmentVariables"].update(CHATAPP_QPS=10))
    (message,) = messages_at(problems, "resources.sender.props.environmentVariables.CHATAPP_QPS")
    assert "must be strings" in message and "'10'" in message


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets the dotted ``path`` (list indexes as numbers) of the document to ``value``."""

    def change(d: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = d
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()
_INGEST = "resources.ingest.props"
_TRIGGER = f"{_INGEST}.triggers.0"


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        (_set("versoin", "1"), "versoin", "unknown key"),
        (_set("resources.ingest.compnent", "fc3"), "resources.ingest.compnent", "did you mean 'component'"),
        (_set("resources.ingest.component", "fc3"), "resources.ingest.component", "pin the version"),
        (
            _set("resources.ingest.actions.pre-deploy.0.cwd", "."),
            "resources.ingest.actions.pre-deploy[0].cwd",
            "unknown key",
        ),
        (
            _set("resources.ingest.actions.before-deploy", []),
            "resources.ingest.actions.before-deploy",
            "not a hook",
        ),
        (
            _set(f"{_INGEST}.asyncInvokeConfig.destinationConfig.onFailure.destinaton", "x"),
            f"{_INGEST}.asyncInvokeConfig.destinationConfig.onFailure.destinaton",
            "did you mean 'destination'",
        ),
        (_set(f"{_INGEST}.runtime", "python3.11"), f"{_INGEST}.runtime", "python3.10 or python3.12"),
        (_set(f"{_INGEST}.runtime", "python3.10"), f"{_INGEST}.code", "built for python3.12"),
        (_set(f"{_INGEST}.memorySize", 1000), f"{_INGEST}.memorySize", "multiple of 64"),
        (_set(f"{_INGEST}.timeout", 0), f"{_INGEST}.timeout", "less than the minimum"),
        (_set(f"{_INGEST}.timeout", "900"), f"{_INGEST}.timeout", "not of type 'integer'"),
        (_set(f"{_INGEST}.handler", "handler"), f"{_INGEST}.handler", "MODULE.FUNCTION"),
        (_set(f"{_INGEST}.handler", "main.handler"), f"{_INGEST}.code", "no main.py"),
        (_set(f"{_INGEST}.code", "./build/nothing"), f"{_INGEST}.code", "no index.py"),
        (_set(f"{_INGEST}.code", "./nowhere"), f"{_INGEST}.code", "does not exist"),
        (_set(f"{_INGEST}.role", "chatapp-mass-fc"), f"{_INGEST}.role", "acs:ram::<account id>:role/<name>"),
        (_set(f"{_INGEST}.functionName", "9lives"), f"{_INGEST}.functionName", "starting with a letter"),
        (
            _set("resources.sender.props.functionName", "chatapp-mass-ingest"),
            "resources.sender.props.functionName",
            "also resources.ingest's function name",
        ),
        (
            _set(f"{_INGEST}.environmentVariables.FC_REGION", "x"),
            f"{_INGEST}.environmentVariables.FC_REGION",
            "reserved",
        ),
        (
            _set(f"{_INGEST}.environmentVariables.BIG", "x" * 4000),
            f"{_INGEST}.environmentVariables",
            "Function Compute allows 4,096",
        ),
        (
            _set(f"{_INGEST}.environmentVariables.CHATAPP_BUCKET", "${env('X')}"),
            f"{_INGEST}.environmentVariables.CHATAPP_BUCKET",
            "unresolved",
        ),
        (
            _set(f"{_INGEST}.asyncInvokeConfig.maxAsyncEventAgeInSeconds", _DELETE),
            f"{_INGEST}.asyncInvokeConfig.maxAsyncEventAgeInSeconds",
            "set it explicitly",
        ),
        (
            _set(f"{_INGEST}.asyncInvokeConfig.maxAsyncEventAgeInSeconds", 2592000),
            f"{_INGEST}.asyncInvokeConfig.maxAsyncEventAgeInSeconds",
            "1–604800",
        ),
        (
            _set(f"{_INGEST}.asyncInvokeConfig.maxAsyncRetryAttempts", 9),
            f"{_INGEST}.asyncInvokeConfig.maxAsyncRetryAttempts",
            "0–8",
        ),
        (
            _set(f"{_INGEST}.asyncInvokeConfig.destinationConfig.onFailure.destination", "dead-letter"),
            f"{_INGEST}.asyncInvokeConfig.destinationConfig.onFailure.destination",
            "an ARN",
        ),
        (
            _set(f"{_TRIGGER}.sourceArn", "acs:oss:ap-southeast-1::acme-chatapp"),
            "resources.ingest.props.triggers[0].sourceArn",
            "acs:oss:<region>:<account id>:<bucket>",
        ),
        (
            _set(f"{_TRIGGER}.sourceArn", f"acs:oss:cn-hangzhou:{ACCOUNT}:acme-chatapp"),
            "resources.ingest.props.triggers[0].sourceArn",
            "within one region",
        ),
        (
            _set(f"{_TRIGGER}.invocationRole", "aliyunosseventnotificationrole"),
            "resources.ingest.props.triggers[0].invocationRole",
            "acs:ram::",
        ),
        (
            _set(f"{_TRIGGER}.triggerConfig.events", ["oss:ObjectCreated:Put"]),
            "resources.ingest.props.triggers[0].triggerConfig.events[0]",
            "is not one of",
        ),
        (
            _set(f"{_TRIGGER}.triggerConfig.bucketName", "acme"),
            "resources.ingest.props.triggers[0].triggerConfig.bucketName",
            "unknown key",
        ),
        (
            _set(f"{_TRIGGER}.triggerType", "timer"),
            "resources.ingest.props.triggers[0].triggerConfig",
            "'cronExpression' is a required property",
        ),
        (
            _set(f"{_TRIGGER}.triggerType", "s3"),
            "resources.ingest.props.triggers[0].triggerType",
            "is not one of",
        ),
    ],
)
def test_stricter_checks_name_the_path(
    doc: dict[str, Any], change: Callable[[dict[str, Any]], None], path: str, expected: str
) -> None:
    problems = mutated(doc, change)
    assert any(expected in message for message in messages_at(problems, path)), problems


def test_timer_trigger_checks(doc: dict[str, Any]) -> None:
    def timer(cron: str) -> Callable[[dict[str, Any]], None]:
        def change(d: dict[str, Any]) -> None:
            props(d, "sender")["triggers"] = [
                {
                    "triggerName": "sweep",
                    "triggerType": "timer",
                    "triggerConfig": {"cronExpression": cron, "enable": True, "payload": "{}"},
                },
                {
                    "triggerName": "sweep",
                    "triggerType": "timer",
                    "triggerConfig": {"cronExpression": "@every 5m", "enable": True},
                },
            ]

        return change

    ok = mutated(doc, timer("CRON_TZ=Asia/Shanghai 0 0 8 * * *"))
    assert [str(p) for p in ok] == [
        "resources.sender.props.triggers[1].triggerName: 'sweep' is used by another trigger of this function"
    ]
    bad = mutated(doc, timer("0 8 * * *"))
    assert messages_at(bad, "resources.sender.props.triggers[0].triggerConfig.cronExpression")


# ---------------------------------------------------------------------------------------- command line


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatapp_mass.deploy.validate", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_cli_accepts_the_project_file() -> None:
    result = run_cli("s.yaml", "--account-id", ACCOUNT)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert "s.yaml: OK" in result.stderr


def test_cli_prints_problems_and_exits_1(tmp_path: Path) -> None:
    broken = S_YAML.read_text().replace(
        "      environmentVariables: &environment", "      enviromentVariables: &environment"
    )
    assert broken != S_YAML.read_text()
    path = tmp_path / "s.yaml"
    path.write_text(broken)
    (tmp_path / "functions").symlink_to(ROOT / "functions")
    (tmp_path / "shared").symlink_to(ROOT / "shared")
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    result = run_cli(str(path), "--account-id", ACCOUNT)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "resources.ingest.props.enviromentVariables: unknown key (did you mean 'environmentVariables'?)"
    ]


def test_cli_missing_file_exits_2(tmp_path: Path) -> None:
    assert run_cli(str(tmp_path / "nope.yaml")).returncode == 2


def test_each_role_needs_its_policy_file_and_its_own_role(doc: dict[str, Any], tmp_path: Path) -> None:
    for name in ("functions", "shared"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "deploy").mkdir()
    for key in ("ingest", "sender"):
        (tmp_path / "deploy" / f"ram-policy-{key}.json").write_text(
            (ROOT / "deploy" / f"ram-policy-{key}.json").read_text()
        )
    (tmp_path / "deploy" / "ram-policy-api.json").write_text(
        '{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "fc:InvokeFunction", "Resource": "${nope}"}]}'
    )
    shared = copy.deepcopy(doc)
    shared["resources"]["sender"]["props"]["role"] = shared["resources"]["ingest"]["props"]["role"]
    found = {(p.path, p.message.split(":")[0]) for p in validate(shared, tmp_path)}
    assert ("resources.api.props.role", "deploy/ram-policy-api.json") in found  # ${nope}: no such placeholder
    assert any(
        path == "resources.sender.props.role" and "own role" in message
        for path, message in ((p.path, p.message) for p in validate(shared, tmp_path))
    )
    (tmp_path / "deploy" / "ram-policy-api.json").unlink()
    assert any("no policy for this function's role" in p.message for p in validate(doc, tmp_path))
