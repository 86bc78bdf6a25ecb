"""The local FC 3.0, driven by the REAL ``alibabacloud_fc20230330`` SDK (and ``oss2`` for OSS triggers) over
real HTTP on loopback. Every test uses its own small s.yaml and handlers (written to a temporary project),
never the project's s.yaml."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

from alibabacloud_fc20230330 import models as fc_models  # noqa: E402
from alibabacloud_fc20230330.client import Client  # noqa: E402
from alibabacloud_tea_openapi import models as open_api_models  # noqa: E402
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException  # noqa: E402
from darabonba.runtime import RuntimeOptions  # noqa: E402

from alibaba_localcloud.fc import LocalFc, oss_trigger_matches  # noqa: E402
from alibaba_localcloud.syaml import TriggerSpec  # noqa: E402

from speed import budget  # noqa: E402

ACCOUNT = "1234567890123456"
REGION = "ap-southeast-1"

S_YAML = """
edition: 3.0.0
name: fc-test
access: default
vars:
  region: ap-southeast-1
  role: acs:ram::${config('AccountID')}:role/chatapp-fc
  python: &python {region: ap-southeast-1, runtime: python3.10, handler: index.handler}
resources:
  echo:
    component: fc3
    props:
      <<: *python
      functionName: echo
      code: ./build/echo
      role: ${vars.role}
      memorySize: 1024
      environmentVariables: {GREETING: hello, OVERRIDDEN: from-s-yaml}
  inspect310:
    component: fc3
    props: {<<: *python, functionName: inspect310, code: ./build/inspect310, role: "${vars.role}",
            environmentVariables: {GREETING: hello, OVERRIDDEN: from-s-yaml}}
  inspect312:
    component: fc3
    props: {<<: *python, runtime: python3.12, functionName: inspect312, code: ./build/inspect312,
            role: "${vars.role}", memorySize: 2048, timeout: 9}
  norole:
    component: fc3
    props: {<<: *python, runtime: python3.12, functionName: norole, code: ./build/norole}
  fails:
    component: fc3
    props:
      <<: *python
      functionName: fails
      code: ./build/fails
      asyncInvokeConfig:
        maxAsyncRetryAttempts: 2
        destinationConfig:
          onFailure: {destination: "acs:fc:${vars.region}::functions/dlq"}
  dlq:
    component: fc3
    props: {<<: *python, functionName: dlq, code: ./build/dlq}
  crashy:
    component: fc3
    props:
      <<: *python
      functionName: crashy
      code: ./build/crashy
      asyncInvokeConfig:
        destinationConfig:
          onSuccess: {destination: "acs:mns:ap-southeast-1::/queues/done/messages"}
  sleepy:
    component: fc3
    props: {<<: *python, functionName: sleepy, code: ./build/sleepy, timeout: 1, memorySize: 1024}
  aged:
    component: fc3
    props:
      <<: *python
      functionName: aged
      code: ./build/aged
      asyncInvokeConfig:
        maxAsyncRetryAttempts: 8
        maxAsyncEventAgeInSeconds: 1
        destinationConfig:
          onFailure: {destination: "acs:mns:ap-southeast-1::/queues/dead/messages"}
  uploads:
    component: fc3
    props:
      <<: *python
      functionName: uploads
      code: ./build/uploads
      triggers:
        - triggerName: csv-upload
          triggerType: oss
          sourceArn: acs:oss:${vars.region}:${config('AccountID')}:fc-inbox
          invocationRole: acs:ram::${config('AccountID')}:role/aliyunosseventnotificationrole
          triggerConfig:
            events: [oss:ObjectCreated:PutObject, oss:ObjectCreated:PostObject]
            filter: {key: {prefix: incoming/, suffix: .csv}}
        - triggerName: tick
          triggerType: timer
          triggerConfig: {cronExpression: "0 0 8 * * *", enable: true, payload: "sweep"}
        - triggerName: disabled-tick
          triggerType: timer
          triggerConfig: {cronExpression: "0 0 9 * * *", enable: false}
  broken:
    component: fc3
    props: {<<: *python, functionName: broken, code: ./build/broken}
  deletes:
    component: fc3
    props:
      <<: *python
      functionName: deletes
      code: ./build/deletes
      triggers:
        - triggerName: csv-delete
          triggerType: oss
          sourceArn: acs:oss:${vars.region}:${config('AccountID')}:fc-inbox
          triggerConfig:
            events: [oss:ObjectRemoved:DeleteObject]
            filter: {key: {prefix: incoming/, suffix: .csv}}
"""

ECHO = "def handler(event, context):\n    return event\n"
BUILT_ECHO = "def handler(event, context):\n    return b'built:' + event\n"
INSPECT = """
import os
import sys


def handler(event, context):
    import testlib  # from <project>/shared: on sys.path in the source layout

    out = {
        "env": dict(os.environ), "cwd": os.getcwd(), "shared": testlib.MARK, "path": sys.path[:2],
        "request_id": context.request_id, "region": context.region, "account_id": context.account_id,
        "function": {k: getattr(context.function, k)
                     for k in ("name", "handler", "memory", "timeout", "version_id", "qualifier")},
        "has_credentials": hasattr(context, "credentials"), "has_service": hasattr(context, "service"),
        "has_logger": hasattr(context, "logger"),
    }
    if hasattr(context, "credentials"):
        c = context.credentials
        out["credentials"] = [c.access_key_id, c.access_key_secret, c.security_token]
    if hasattr(context, "logger"):
        context.logger.info("from the logger")
    print("inspected")
    return out
"""
FAILS = 'def handler(event, context):\n    raise ValueError("boom: " + event.decode())\n'
RECORDER = """
import json
import os


def handler(event, context):
    name = os.path.join(os.environ["OUT_DIR"], os.environ["FC_FUNCTION_NAME"] + ".jsonl")
    with open(name, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"request_id": context.request_id, "event": json.loads(event)}) + "\\n")
    return "recorded"
"""
CRASHY = """
import json
import os

from chatapp_mass.runtime import faults


def handler(event, context):
    if json.loads(event or b"{}").get("reach", True):
        faults.checkpoint("test.crash")
    with open(os.path.join(os.environ["OUT_DIR"], "crashy.txt"), "a", encoding="utf-8") as handle:
        handle.write(context.request_id + "\\n")
    return "survived"
"""
SLEEPY = """
import json
import os
import time


def handler(event, context):
    started = time.time()
    time.sleep(float(event or b"0"))
    with open(os.path.join(os.environ["OUT_DIR"], "sleepy.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"started": started, "ended": time.time(), "pid": os.getpid()}) + "\\n")
    return "slept"
"""
HANDLERS = {
    "echo": ECHO,
    "inspect310": INSPECT,
    "inspect312": INSPECT,
    "norole": INSPECT,
    "fails": FAILS,
    "dlq": RECORDER,
    "crashy": CRASHY,
    "sleepy": SLEEPY,
    "aged": FAILS,
    "uploads": RECORDER,
    "deletes": RECORDER,
    "broken": "import not_a_module  # fails at import\n",
}


# --- fixtures -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fc-project")
    (root / "s.yaml").write_text(S_YAML, encoding="utf-8")
    for key, source in HANDLERS.items():
        (root / "functions" / key).mkdir(parents=True)
        (root / "functions" / key / "index.py").write_text(source, encoding="utf-8")
    (root / "shared" / "testlib").mkdir(parents=True)
    (root / "shared" / "testlib" / "__init__.py").write_text('MARK = "shared-on-path"\n', encoding="utf-8")
    (root / "build" / "echo").mkdir(parents=True)
    (root / "build" / "echo" / "index.py").write_text(BUILT_ECHO, encoding="utf-8")
    return root


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def make_fc(project: Path, out: Path) -> Iterator[Callable[..., LocalFc]]:
    started: list[LocalFc] = []

    def make(**options: Any) -> LocalFc:
        options.setdefault("retry_base_delay", 0.05)
        options.setdefault("retry_max_delay", 0.2)
        options.setdefault("crash_module", "chatapp_mass.runtime.faults")  # the crashy function's checkpoints
        overrides = {"OUT_DIR": str(out), "OVERRIDDEN": "from-overrides", **options.pop("overrides", {})}
        fc = LocalFc(
            s_yaml=project / "s.yaml",
            environ={},
            account_id=ACCOUNT,
            environment_overrides=overrides,
            **options,
        ).start()
        started.append(fc)
        return fc

    yield make
    for fc in started:
        fc.stop()


@pytest.fixture
def fc(make_fc: Callable[..., LocalFc]) -> LocalFc:
    return make_fc()


def client_for(
    fc: LocalFc, *, access_key_id: str | None = None, secret: str | None = None, token: str | None = None
) -> Client:
    c = fc.credentials
    return Client(
        open_api_models.Config(
            access_key_id=access_key_id or c.access_key_id,
            access_key_secret=secret or c.access_key_secret,
            security_token=token or c.security_token,
            endpoint=fc.host_port,
            protocol="HTTP",
            region_id=fc.region_id,
        )
    )


def invoke(
    fc: LocalFc,
    function: str,
    body: bytes = b"",
    *,
    async_: bool = False,
    delay: int | None = None,
    tail: bool = False,
    qualifier: str | None = None,
    client: Client | None = None,
) -> Any:
    headers = fc_models.InvokeFunctionHeaders(
        x_fc_invocation_type="Async" if async_ else None,
        x_fc_log_type="Tail" if tail else None,
        common_headers={"x-fc-async-delay": str(delay)} if delay is not None else None,
    )
    return (client or client_for(fc)).invoke_function_with_options(
        function, fc_models.InvokeFunctionRequest(body=body, qualifier=qualifier), headers, RuntimeOptions()
    )


def lines(path: Path) -> list[dict[str, Any]]:
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    )


# --- sync and async -------------------------------------------------------------------------------------------
def test_sync_echo_returns_the_handler_result_on_a_warm_instance(fc: LocalFc) -> None:
    first = invoke(fc, "echo", b"hello \x00 bytes", tail=True)
    assert first.status_code == 200
    assert first.body.read() == b"hello \x00 bytes"
    second = invoke(fc, "echo", b"again")
    assert second.body.read() == b"again"
    records = fc.backend.records("echo")
    assert [r.request_id for r in records] == [
        first.headers["x-fc-request-id"],
        second.headers["x-fc-request-id"],
    ]
    assert all(r.kind == "sync" and r.trigger == "api" and r.status == "ok" for r in records)
    assert records[0].instance_id == records[1].instance_id  # warm
    assert [c.function for c in fc.backend.cold_starts] == ["echo"]
    assert fc.backend.cold_starts[0].seconds > 0 and fc.backend.cold_starts[0].import_seconds is not None
    assert invoke(fc, "echo", b"x", qualifier="LATEST").status_code == 200


def test_async_is_accepted_with_202_then_runs(fc: LocalFc) -> None:
    reply = invoke(fc, "echo", b"later", async_=True)
    assert reply.status_code == 202
    request_id = reply.headers["x-fc-request-id"]
    assert fc.backend.wait_idle(10)
    (record,) = fc.backend.records("echo")
    assert (record.request_id, record.kind, record.status, record.attempt) == (request_id, "async", "ok", 1)
    assert record.payload_size == 5


def test_built_layout_runs_the_s_yaml_code_directory(make_fc: Callable[..., LocalFc]) -> None:
    fc = make_fc(source_layout=False)
    assert invoke(fc, "echo", b"x").body.read() == b"built:x"


@pytest.mark.parametrize("function", ["inspect310", "inspect312"])
def test_environment_and_context_are_fcs(
    make_fc: Callable[..., LocalFc], project: Path, function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # never inherited
    fc = make_fc(overrides={"http_proxy": "http://proxy.invalid:3128"})
    reply = invoke(fc, function, b"{}", tail=True)
    seen = json.loads(reply.body.read())
    env, c = seen["env"], fc.credentials
    code_dir = str(project / "functions" / function)
    assert env["OVERRIDDEN"] == "from-overrides"
    assert env.get("GREETING") == ("hello" if function == "inspect310" else None)
    assert (
        env["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        env["ALIBABA_CLOUD_SECURITY_TOKEN"],
    ) == (c.access_key_id, c.access_key_secret, c.security_token)
    memory = "512" if function == "inspect310" else "2048"
    assert {k: env[k] for k in env if k.startswith("FC_") and k != "FC_INSTANCE_ID"} == {
        "FC_ACCOUNT_ID": ACCOUNT,
        "FC_FUNCTION_HANDLER": "index.handler",
        "FC_FUNCTION_MEMORY_SIZE": memory,
        "FC_FUNCTION_NAME": function,
        "FC_REGION": REGION,
        "FC_FUNC_CODE_PATH": code_dir,
    }
    assert env["FC_INSTANCE_ID"] == fc.backend.records(function)[0].instance_id
    assert env["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] == "true"
    assert not {k for k in env if k.lower().endswith("_proxy")}
    assert seen["cwd"] == code_dir and seen["shared"] == "shared-on-path"
    assert seen["path"] == [code_dir, str(project / "shared")]
    assert (seen["request_id"], seen["region"], seen["account_id"]) == (
        reply.headers["x-fc-request-id"],
        REGION,
        ACCOUNT,
    )
    assert seen["function"] == {
        "name": function,
        "handler": "index.handler",
        "memory": int(memory),
        "timeout": 3 if function == "inspect310" else 9,
        "version_id": None,
        "qualifier": "LATEST",
    }
    log_tail = base64.b64decode(reply.headers["x-fc-log-result"]).decode()
    assert "inspected" in log_tail
    if function == "inspect310":
        assert seen["has_credentials"] and seen["has_service"] and not seen["has_logger"]
        assert seen["credentials"] == [c.access_key_id, c.access_key_secret, c.security_token]
    else:
        assert not seen["has_credentials"] and not seen["has_service"] and seen["has_logger"]
        assert "[INFO] from the logger" in log_tail and reply.headers["x-fc-request-id"] in log_tail


def test_a_function_without_a_role_gets_no_credentials(fc: LocalFc) -> None:
    env = json.loads(invoke(fc, "norole", b"{}").body.read())["env"]
    assert not {k for k in env if k.startswith("ALIBABA_CLOUD_ACCESS_KEY") or k.endswith("SECURITY_TOKEN")}


# --- refusals -------------------------------------------------------------------------------------------------
def refusal(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises((ClientException, ServerException)) as caught:
        call()
    error = caught.value
    return error.status_code, error.code, str(error.data.get("Message"))


def test_signature_key_and_token_are_checked(fc: LocalFc) -> None:
    assert refusal(lambda: invoke(fc, "echo", client=client_for(fc, secret="wrong")))[:2] == (
        403,
        "SignatureNotMatch",
    )
    status, code, message = refusal(
        lambda: invoke(fc, "echo", client=client_for(fc, access_key_id="STS.nobody"))
    )
    assert (status, code, message) == (403, "InvalidAccessKeyID", "invalid access key ID 'STS.nobody'")
    assert refusal(lambda: invoke(fc, "echo", client=client_for(fc, token="CAIS.other")))[:2] == (
        403,
        "AccessDenied",
    )
    assert fc.backend.records() == []


def test_unknown_function_unknown_alias_and_bad_headers(fc: LocalFc) -> None:
    assert refusal(lambda: invoke(fc, "nope")) == (404, "FunctionNotFound", "function 'nope' does not exist.")
    assert refusal(lambda: invoke(fc, "echo", qualifier="prod"))[:2] == (404, "AliasNotFound")
    assert refusal(lambda: invoke(fc, "echo", async_=True, delay=3601))[:2] == (400, "InvalidArgument")


def test_async_payload_over_128_kb_is_refused(fc: LocalFc) -> None:
    assert invoke(fc, "echo", b"x" * 131072, async_=True).status_code == 202
    status, code, message = refusal(lambda: invoke(fc, "echo", b"x" * 131073, async_=True))
    assert (status, code) == (400, "EntityTooLarge") and "131072 bytes" in message
    assert invoke(fc, "echo", b"x" * 131073).status_code == 200  # sync allows 32 MB
    assert fc.backend.wait_idle(10)


# --- failures, retries, destinations --------------------------------------------------------------------------
def test_sync_handler_error_is_200_with_the_error_type(fc: LocalFc) -> None:
    reply = invoke(fc, "fails", b"now")
    assert reply.status_code == 200 and reply.headers["x-fc-error-type"] == "UnhandledInvocationError"
    error = json.loads(reply.body.read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "boom: now")
    assert fc.backend.records("fails")[0].status == "error"


def test_async_error_is_retried_then_the_failure_destination_function_gets_it(fc: LocalFc, out: Path) -> None:
    request_id = invoke(fc, "fails", b"payload-1", async_=True).headers["x-fc-request-id"]
    assert fc.backend.wait_idle(10)
    attempts = fc.backend.records("fails")
    assert [(r.attempt, r.status, r.request_id) for r in attempts] == [
        (1, "error", request_id),
        (2, "error", request_id),
        (3, "error", request_id),
    ]  # 1 + 2 retries
    assert attempts[0].error == "ValueError: boom: payload-1"
    (delivered,) = lines(out / "dlq.jsonl")
    record = delivered["event"]
    assert record["requestContext"] == {
        "requestId": request_id,
        "condition": "RetriesExhausted",
        "functionArn": f"acs:fc:{REGION}:{ACCOUNT}:functions/fails",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == "payload-1"
    assert record["responseContext"]["functionError"] == "UnhandledInvocationError"
    assert json.loads(record["responsePayload"])["errorType"] == "ValueError"
    (dlq,) = fc.backend.records("dlq")
    assert (dlq.trigger, dlq.status) == ("destination", "ok")
    assert [d.target_function for d in fc.backend.destinations] == ["dlq"]


def test_a_crash_point_kills_the_instance_and_the_event_is_retried_on_a_new_one(
    fc: LocalFc, out: Path
) -> None:
    fc.backend.crash_next("crashy", "test.crash")
    request_id = invoke(fc, "crashy", b"{}", async_=True).headers["x-fc-request-id"]
    assert fc.backend.wait_idle(10)
    crashed, retried = fc.backend.records("crashy")
    assert (crashed.status, crashed.attempt, retried.status, retried.attempt) == ("crash", 1, "ok", 2)
    assert "exit code 86" in (crashed.error or "")
    assert crashed.instance_id != retried.instance_id  # the worker was replaced
    assert [c.instance_id for c in fc.backend.cold_starts] == [crashed.instance_id, retried.instance_id]
    assert (out / "crashy.txt").read_text().split() == [request_id]  # the crashed attempt never got past it
    (success,) = fc.backend.destinations
    assert (success.condition, success.target_function) == ("Success", None)  # an MNS queue: recorded only
    reply = invoke(fc, "crashy", b"{}")  # unarmed now: the warm replacement serves it
    assert reply.body.read() == b"survived"


def test_an_invocation_that_never_reaches_the_point_does_not_use_it_up(fc: LocalFc) -> None:
    fc.backend.crash_next("crashy", "test.crash")
    assert invoke(fc, "crashy", b'{"reach": false}').body.read() == b"survived"
    assert "x-fc-error-type" in invoke(fc, "crashy", b"{}").headers  # the first to reach it dies
    assert invoke(fc, "crashy", b"{}").body.read() == b"survived"


def test_of_instances_reaching_an_armed_point_at_once_only_as_many_die_as_were_armed(fc: LocalFc) -> None:
    fc.backend.crash_next("crashy", "test.crash", 2)
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: invoke(fc, "crashy", b"{}"), range(6)))
    assert sum("x-fc-error-type" in r.headers for r in replies) == 2
    assert [r.status for r in fc.backend.records("crashy")].count("crash") == 2


def test_a_sync_crash_is_an_unhandled_error(fc: LocalFc) -> None:
    fc.backend.crash_next("crashy", "test.crash")
    reply = invoke(fc, "crashy", b"{}")
    assert reply.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert "exited unexpectedly" in json.loads(reply.body.read())["errorMessage"]


def test_a_handler_that_fails_to_import_fails_each_invocation(fc: LocalFc) -> None:
    for _ in range(2):
        reply = invoke(fc, "broken", b"{}")
        assert reply.headers["x-fc-error-type"] == "UnhandledInvocationError"
        assert json.loads(reply.body.read())["errorType"] == "ModuleNotFoundError"
    assert [c.ok for c in fc.backend.cold_starts] == [False, False]  # no instance survives a failed import
    assert [r.status for r in fc.backend.records("broken")] == ["error", "error"]


def test_a_throttled_event_is_retried_without_using_up_the_retries(fc: LocalFc) -> None:
    fc.backend.fail_next("fails", 2, code="ResourceExhausted")  # 429: concurrency limit exceeded
    invoke(fc, "fails", b"x", async_=True)
    assert fc.backend.wait_idle(10)
    statuses = [(r.status, r.attempt) for r in fc.backend.records("fails")]
    assert statuses == [("system_error", 1), ("system_error", 1), ("error", 1), ("error", 2), ("error", 3)]
    assert [d.condition for d in fc.backend.destinations] == ["RetriesExhausted"]
    fc.backend.fail_next("echo", code="InternalServerError")
    assert refusal(lambda: invoke(fc, "echo", b"x"))[:2] == (500, "InternalServerError")


@pytest.mark.parametrize("code", ["InternalServerError", "ResourceThrottled", "SomePlatformFailure"])
def test_an_async_system_error_goes_to_the_failure_destination_without_a_retry(
    fc: LocalFc, out: Path, code: str
) -> None:
    fc.backend.fail_next("fails", 1, code=code)
    request_id = invoke(fc, "fails", b"payload-s", async_=True).headers["x-fc-request-id"]
    assert fc.backend.wait_idle(10)
    assert [(r.status, r.attempt) for r in fc.backend.records("fails")] == [("system_error", 1)]  # once
    (delivered,) = lines(out / "dlq.jsonl")
    record = delivered["event"]
    assert record["requestContext"] == {
        "requestId": request_id,
        "condition": "SystemError",
        "functionArn": f"acs:fc:{REGION}:{ACCOUNT}:functions/fails",
        "approximateInvokeCount": 0,
    }  # the function never ran
    status = {"InternalServerError": 500, "ResourceThrottled": 503}.get(code, 500)
    assert record["responseContext"] == {"statusCode": status, "errorCode": code}
    assert record["requestPayload"] == "payload-s"
    invoke(fc, "fails", b"next", async_=True)  # the fault is used up: the next event runs, and is retried
    assert fc.backend.wait_idle(10)
    assert [r.status for r in fc.backend.records("fails")][1:] == ["error", "error", "error"]


def test_an_instance_the_platform_cannot_spawn_is_a_system_error(
    make_fc: Callable[..., LocalFc], out: Path, tmp_path: Path
) -> None:
    fc = make_fc(python=str(tmp_path / "no-such-python"))
    assert refusal(lambda: invoke(fc, "echo", b"x"))[:2] == (500, "InternalServerError")
    invoke(fc, "fails", b"payload-p", async_=True)
    assert fc.backend.wait_idle(10)
    assert [r.status for r in fc.backend.records("fails")] == ["system_error"]  # not retried
    assert [(d.condition, d.target_function) for d in fc.backend.destinations] == [("SystemError", "dlq")]
    assert "could not start an instance of fails" in (fc.backend.records("fails")[0].error or "")


def test_duplicate_delivery_runs_the_same_event_twice(fc: LocalFc) -> None:
    fc.backend.duplicate_next("echo")
    request_id = invoke(fc, "echo", b"dup", async_=True).headers["x-fc-request-id"]
    invoke(fc, "echo", b"single", async_=True)
    assert fc.backend.wait_idle(10)
    runs = fc.backend.records("echo")
    assert sorted((r.request_id == request_id, r.duplicate) for r in runs) == [
        (False, False),
        (True, False),
        (True, True),
    ]


def test_an_event_older_than_its_max_age_is_dropped(make_fc: Callable[..., LocalFc]) -> None:
    fc = make_fc(retry_base_delay=0.4, retry_max_delay=0.8)  # attempts at 0, 0.4, 1.2 s: the third is too old
    request_id = invoke(fc, "aged", b"old", async_=True).headers["x-fc-request-id"]
    assert fc.backend.wait_idle(10)
    assert [r.status for r in fc.backend.records("aged")] == ["error", "error", "dropped"]
    (dropped,) = fc.backend.destinations
    assert (dropped.condition, dropped.destination, dropped.target_function) == (
        "EventAgeExceeded",
        "acs:mns:ap-southeast-1::/queues/dead/messages",
        None,
    )
    assert dropped.payload["requestContext"]["requestId"] == request_id
    assert dropped.payload["requestContext"]["approximateInvokeCount"] == 2


def test_async_delay_postpones_the_first_attempt(fc: LocalFc) -> None:
    accepted = time.time()
    invoke(fc, "echo", b"delayed", async_=True, delay=1)
    assert [f for _, f, _ in fc.backend.scheduled()] == ["echo"]
    assert fc.backend.wait_idle(0.2)  # work scheduled for later is not waited for by default
    assert fc.backend.records() == []
    assert fc.backend.wait_idle(10, include_delayed=True)
    (record,) = fc.backend.records("echo")
    assert record.started - accepted >= 1.0


# --- instances ------------------------------------------------------------------------------------------------
def test_never_more_instances_busy_than_the_bound(make_fc: Callable[..., LocalFc], out: Path) -> None:
    fc = make_fc(max_instances={"sleepy": 2})
    for _ in range(6):
        invoke(fc, "sleepy", b"0.25", async_=True)
    assert fc.backend.wait_idle(15)
    runs = lines(out / "sleepy.jsonl")
    assert len(runs) == 6
    edges = sorted([(r["started"], 1) for r in runs] + [(r["ended"], -1) for r in runs])
    busy = peak = 0
    for _, step in edges:
        busy += step
        peak = max(peak, busy)
    assert peak == 2 and fc.backend.peak_busy("sleepy") == 2
    assert len({r["pid"] for r in runs}) == 2 and len(fc.backend.cold_starts) == 2  # warm reuse


def test_the_function_timeout_kills_the_instance(fc: LocalFc) -> None:
    reply = invoke(fc, "sleepy", b"5")  # asks to sleep 5 s; its timeout is 1 s
    assert reply.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert "timed out after 1 seconds" in json.loads(reply.body.read())["errorMessage"]
    (record,) = fc.backend.records("sleepy")
    # killed at its timeout: not before it, and long before the 5 s sleep would have ended (a budget: the
    # machine may be busy; tests/speed.py)
    assert record.status == "timeout" and 0.9 <= record.duration < min(budget(2), 4.5)
    assert invoke(fc, "sleepy", b"0").body.read() == b"slept"
    assert len(fc.backend.cold_starts) == 2  # the killed instance was not reused


def test_gb_seconds_sum_duration_times_memory(fc: LocalFc) -> None:
    invoke(fc, "sleepy", b"0.2")  # 1024 MB
    invoke(fc, "echo", b"x")  # 1024 MB
    sleepy = fc.backend.gb_seconds("sleepy")
    assert 0.2 <= sleepy < 0.5
    total = sum(r.duration * r.memory_size / 1024 for r in fc.backend.invocations)
    assert fc.backend.gb_seconds() == pytest.approx(total)


# --- triggers -------------------------------------------------------------------------------------------------
def test_oss_trigger_fires_on_matching_bucket_event_and_key(
    make_fc: Callable[..., LocalFc], out: Path
) -> None:
    import oss2

    from alibaba_localcloud.oss import LocalOss

    with LocalOss(buckets=("fc-inbox", "elsewhere"), account_id=ACCOUNT) as oss:
        fc = make_fc(oss_backend=oss.backend)
        inbox = oss.oss2_bucket("fc-inbox")
        inbox.put_object("incoming/list.csv", b"to\n")
        inbox.put_object("incoming/list.txt", b"to\n")  # wrong suffix
        inbox.put_object("archive/list.csv", b"to\n")  # wrong prefix
        oss.oss2_bucket("elsewhere").put_object("incoming/list.csv", b"to\n")  # wrong bucket
        inbox.delete_object("incoming/list.csv")
        # events the trigger does not subscribe to (its list: PutObject, PostObject) are not delivered
        inbox.copy_object("fc-inbox", "archive/list.csv", "incoming/copied.csv")
        upload_id = inbox.init_multipart_upload("incoming/parts.csv").upload_id
        part = inbox.upload_part("incoming/parts.csv", upload_id, 1, b"to\n")
        inbox.complete_multipart_upload("incoming/parts.csv", upload_id, [oss2.models.PartInfo(1, part.etag)])
        assert [e["events"][0]["eventName"] for e in oss.backend.events][-2:] == [
            "ObjectCreated:CopyObject",
            "ObjectCreated:CompleteMultipartUpload",
        ]
        assert fc.backend.wait_idle(10)
    (run,) = fc.backend.records()
    assert (run.function, run.trigger, run.kind, run.status) == ("uploads", "oss", "async", "ok")
    (delivered,) = lines(out / "uploads.jsonl")
    (event,) = delivered["event"]["events"]
    assert event["eventName"] == "ObjectCreated:PutObject"
    assert (event["oss"]["bucket"]["name"], event["oss"]["object"]["key"]) == (
        "fc-inbox",
        "incoming/list.csv",
    )


def test_oss_trigger_matching_rules() -> None:
    trigger = TriggerSpec(
        "t",
        "oss",
        {"events": ["oss:ObjectCreated:*"], "filter": {"key": {"prefix": "in/", "suffix": ".csv"}}},
        source_arn="acs:oss:ap-southeast-1:1:b",
    )

    def record(name: str, key: str, bucket: str = "b") -> dict[str, Any]:
        return {"eventName": name, "oss": {"bucket": {"name": bucket}, "object": {"key": key}}}

    assert oss_trigger_matches(trigger, record("ObjectCreated:PostObject", "in/a.csv"))
    assert oss_trigger_matches(trigger, record("ObjectCreated:CompleteMultipartUpload", "in/x/y.csv"))
    assert not oss_trigger_matches(trigger, record("ObjectRemoved:DeleteObject", "in/a.csv"))
    assert not oss_trigger_matches(trigger, record("ObjectCreated:PutObject", "in/a.csv", bucket="c"))
    assert not oss_trigger_matches(trigger, record("ObjectCreated:PutObject", "in/a.csv.bak"))


def test_timer_trigger_fires_on_demand(fc: LocalFc, out: Path) -> None:
    request_id = fc.backend.fire_timer("uploads", "tick")
    assert fc.backend.wait_idle(10)
    (delivered,) = lines(out / "uploads.jsonl")
    assert delivered["request_id"] == request_id
    event = delivered["event"]
    assert (event["triggerName"], event["payload"]) == ("tick", "sweep")
    assert time.strptime(event["triggerTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert fc.backend.records("uploads")[0].trigger == "timer"
    with pytest.raises(ValueError, match="disabled"):
        fc.backend.fire_timer("uploads", "disabled-tick")


# --- inspection from another process --------------------------------------------------------------------------
def admin(fc: LocalFc, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
    with urllib.request.urlopen(
        urllib.request.Request(f"{fc.endpoint}/_localfc/{path}", data=data, method=method), timeout=10
    ) as reply:
        return json.loads(reply.read())


def test_admin_endpoints(fc: LocalFc) -> None:
    admin(fc, "POST", "crash_next", {"function": "crashy", "point": "test.crash"})
    invoke(fc, "crashy", b"{}", async_=True)
    assert admin(fc, "POST", "wait_idle", {"timeout": 10}) == {"idle": True}
    assert [r["status"] for r in admin(fc, "GET", "invocations")] == ["crash", "ok"]
    stats = admin(fc, "GET", "stats")["functions"]["crashy"]
    assert (stats["invocations"], stats["cold_starts"], stats["peak_busy"]) == (2, 2, 1)
    assert "uploads" in [f["name"] for f in admin(fc, "GET", "functions")]
    admin(fc, "POST", "reset")
    assert admin(fc, "GET", "invocations") == []


def test_the_module_serves_alone(project: Path) -> None:
    env = dict(os.environ, ALIBABA_CLOUD_ACCOUNT_ID=ACCOUNT)
    with subprocess.Popen(
        [sys.executable, "-m", "alibaba_localcloud.fc", "--s-yaml", str(project / "s.yaml")],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            info = json.loads(process.stdout.readline())
            assert info["service"] == "fc" and "echo" in info["functions"]
            assert info["endpoint"].startswith("http://127.0.0.1:")
        finally:
            process.terminate()
            assert process.wait(10) == 0


def test_local_cloud_runs_the_functions_against_its_services(project: Path, out: Path) -> None:
    from chatapp_mass.entry.localcloud import LocalCloud

    with LocalCloud(
        s_yaml=str(project / "s.yaml"), bucket="fc-inbox", function_environment={"OUT_DIR": str(out)}
    ) as cloud:
        assert cloud.fc is not None
        variables = cloud.environment()
        assert variables["CHATAPP_FC_ENDPOINT"] == cloud.fc.endpoint
        assert cloud.describe()["fc"]["endpoint"] == cloud.fc.endpoint
        seen = json.loads(invoke(cloud.fc, "inspect312", b"{}").body.read())["env"]
        for name in (
            "CHATAPP_FC_ENDPOINT",
            "CHATAPP_OSS_ENDPOINT",
            "CHATAPP_CAMS_ENDPOINT",
            "CHATAPP_TABLESTORE_ENDPOINT",
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_SECURITY_TOKEN",
        ):
            assert seen[name] == variables[name]
        assert seen["OUT_DIR"] == str(out)
        cloud.oss.oss2_bucket("fc-inbox").put_object("incoming/a.csv", b"to\n")
        assert cloud.fc.backend.wait_idle(10)
        assert [(r.function, r.trigger) for r in cloud.fc.backend.records("uploads")] == [("uploads", "oss")]
    with LocalCloud() as plain:
        assert plain.fc is None and "CHATAPP_FC_ENDPOINT" not in plain.environment()  # no s_yaml: no FC
