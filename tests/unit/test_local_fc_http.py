"""The local FC's HTTP triggers over real HTTP (``requests`` and ``http.client`` on loopback): the FC3 event a
request becomes, the reply a handler's result becomes, the trigger's methods and auth type, the body limit,
errors, the records, and how LocalFc and LocalCloud publish the endpoints. Every function here is a tiny
handler written into a temporary directory (built layout: its code directory alone)."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

import requests  # noqa: E402

from alibaba_localcloud.fc import LocalFc  # noqa: E402
from alibaba_localcloud.fc.http_trigger import function_reply, query_parameters  # noqa: E402
from alibaba_localcloud.fc.models import SYNC_PAYLOAD_LIMIT  # noqa: E402
from alibaba_localcloud.syaml import FunctionSpec, TriggerSpec  # noqa: E402

ACCOUNT = "1234567890123456"
REGION = "ap-southeast-1"
BODY_LIMIT = 64 * 1024

#: one handler, routed by the decoded path, so the module's tests share one warm instance
API = """
import base64
import json
import os
import time


def handler(event, context):
    request = json.loads(event)
    path = request["requestContext"]["http"]["path"]
    if path == "/struct":
        headers = {"Content-Type": "application/json", "X-Many": ["a", "b"], "X-Number": 7,
                   "Content-Length": "999", "x-fc-request-id": "forged"}
        return {"statusCode": 201, "headers": headers, "body": json.dumps({"created": True})}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if path == "/plain":
        return "just text"
    if path == "/no-content":
        return {"statusCode": 204, "body": "dropped"}
    if path == "/bad-status":
        return {"statusCode": "teapot", "body": ""}
    if path == "/boom":
        raise RuntimeError("kaboom")
    if path == "/crash":
        os._exit(3)
    if path == "/sleep":
        time.sleep(5)
    return event  # the event itself: a JSON object without statusCode, so the reply body as it is
"""


def function(
    code: Path, name: str, *, config: dict[str, Any] | None = None, http: bool = True, timeout: int = 3
) -> FunctionSpec:
    if config is None:
        config = {"authType": "anonymous", "methods": ["GET", "POST"]}
    triggers = [TriggerSpec(name=f"{name}-http", type="http", config=config)] if http else []
    return FunctionSpec(
        resource=name,
        name=name,
        runtime="python3.10",
        handler="index.handler",
        code=code,
        timeout=timeout,
        triggers=triggers,
    )


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fc-http") / "api"
    directory.mkdir()
    (directory / "index.py").write_text(API, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def fc(code: Path) -> Iterator[LocalFc]:
    specs = [
        function(code, "api", timeout=1),
        function(
            code,
            "everything",
            config={
                "authType": "anonymous",
                "methods": ["GET", "POST", "HEAD", "PATCH", "OPTIONS", "PUT", "DELETE"],
            },
        ),
        function(code, "signed", config={"authType": "function", "methods": ["GET"]}),
        function(code, "plain", http=False),
    ]
    with LocalFc(
        s_yaml=None,
        functions=specs,
        project_root=code.parent,
        source_layout=False,
        account_id=ACCOUNT,
        region_id=REGION,
        http_body_limit=BODY_LIMIT,
    ) as local:
        yield local


@pytest.fixture
def api(fc: LocalFc) -> str:
    return fc.http_endpoint("api")


def record_of(fc: LocalFc, request_id: str) -> Any:
    (record,) = [r for r in fc.backend.records() if r.request_id == request_id]
    return record


# --- the event ----------------------------------------------------------------------------------------------
def test_event_has_the_fc3_shape(fc: LocalFc, api: str) -> None:
    reply = requests.post(
        api + "/a%20b/c?x=1", data=b"hello", headers={"Content-Type": "text/plain", "User-Agent": "probe/1.0"}
    )
    assert reply.status_code == 200
    event = reply.json()
    request_id = reply.headers["x-fc-request-id"]
    context = event.pop("requestContext")
    assert event == {
        "version": "v1",
        "rawPath": "/a%20b/c",
        "body": "hello",
        "isBase64Encoded": False,
        "headers": event["headers"],
        "queryParameters": {"x": "1"},
    }
    assert event["headers"]["Content-Type"] == "text/plain" and event["headers"]["User-Agent"] == "probe/1.0"
    assert event["headers"]["Content-Length"] == "5"
    trigger = fc.http_triggers["api"]
    assert context["http"] == {
        "method": "POST",
        "path": "/a b/c",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "probe/1.0",
    }
    assert context["accountId"] == ACCOUNT and context["requestId"] == request_id
    assert context["domainName"] == f"{trigger.url_id}.{REGION}.fcapp.run"
    assert context["domainPrefix"] == trigger.url_id and context["triggerId"] == trigger.trigger_id
    assert context["timeEpoch"].isdigit() and len(context["timeEpoch"]) == 13
    assert context["time"] == _iso_second(int(context["timeEpoch"]) / 1000)
    assert set(context) == {
        "accountId",
        "domainName",
        "domainPrefix",
        "http",
        "requestId",
        "time",
        "timeEpoch",
        "triggerId",
    }


def _iso_second(timestamp: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def test_query_and_repeated_headers_are_decoded_and_joined(api: str) -> None:
    connection = _connection(api)
    connection.putrequest(
        "GET", "/q?tag=a&tag=b%2Cc&space=a+b%20c&empty=&caf%C3%A9=%E2%9C%93", skip_accept_encoding=True
    )
    connection.putheader("X-Repeat", "one")
    connection.putheader("x-repeat", "two")
    connection.putheader("X-CamelCase-Header", "kept")
    connection.endheaders()
    event = json.loads(connection.getresponse().read())
    connection.close()
    assert event["queryParameters"] == {"tag": "a,b,c", "space": "a b c", "empty": "", "café": "✓"}
    assert event["headers"]["X-Repeat"] == "one,two" and "x-repeat" not in event["headers"]
    assert event["headers"]["X-CamelCase-Header"] == "kept"
    assert event["body"] == "" and event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("body", "content_type", "encoded"),
    [
        (bytes(range(256)), "text/plain", True),  # not UTF-8
        (b"looks like text", "application/octet-stream", True),  # binary content type
        (b"\x89PNG-ish but utf8", "image/png", True),
        ("héllo ✓".encode(), "application/json; charset=utf-8", False),
        (b"no content type at all", None, False),
    ],
)
def test_body_is_text_or_base64(api: str, body: bytes, content_type: str | None, encoded: bool) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    event = requests.post(api + "/echo", data=body, headers=headers).json()
    assert event["isBase64Encoded"] is encoded
    assert (base64.b64decode(event["body"]) if encoded else event["body"].encode()) == body


def test_a_chunked_body_is_read_whole(api: str) -> None:
    event = requests.post(
        api + "/echo", data=iter([b"chunk-1 ", b"chunk-2"]), headers={"Content-Type": "text/plain"}
    ).json()
    assert event["headers"]["Transfer-Encoding"] == "chunked"
    assert event["body"] == "chunk-1 chunk-2"


# --- the reply ----------------------------------------------------------------------------------------------
def test_a_response_struct_sets_status_headers_and_body(fc: LocalFc, api: str) -> None:
    reply = requests.get(api + "/struct")
    assert reply.status_code == 201
    assert reply.json() == {"created": True}
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.raw.headers.getlist("X-Many") == ["a", "b"] and reply.headers["X-Number"] == "7"
    assert reply.headers["Content-Length"] == str(len(reply.content))  # the function's 999 is FC's to set
    request_id = reply.headers["x-fc-request-id"]
    assert request_id != "forged" and record_of(fc, request_id).status == "ok"


def test_a_base64_response_body_is_decoded(api: str) -> None:
    reply = requests.get(api + "/binary")
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "image/png"
    assert reply.content == bytes(range(256))


def test_anything_else_is_200_with_the_result_as_it_is(api: str) -> None:
    reply = requests.get(api + "/plain")
    assert (reply.status_code, reply.content) == (200, b"just text")
    assert "x-fc-request-id" in reply.headers


def test_a_204_has_no_body_and_the_connection_stays_usable(api: str) -> None:
    connection = _connection(api)
    connection.request("GET", "/no-content")
    first = connection.getresponse()
    assert (first.status, first.read(), first.getheader("Content-Length")) == (204, b"", None)
    connection.request("GET", "/plain")
    second = connection.getresponse()
    assert (second.status, second.read()) == (200, b"just text")
    connection.close()


def test_a_malformed_response_struct_is_a_502(api: str) -> None:
    reply = requests.get(api + "/bad-status")
    assert reply.status_code == 502
    assert reply.json()["ErrorCode"] == "InvalidFunctionResponse" and "x-fc-request-id" in reply.headers


def test_the_reply_rules_without_http() -> None:
    assert function_reply(b'{"statusCode": 202}').status == 202
    assert function_reply(b'{"statusCode": "404", "body": "gone"}').body == b"gone"
    assert function_reply(b'{"no": "statusCode"}').body == b'{"no": "statusCode"}'
    assert function_reply(b"[1, 2]").status == 200
    assert query_parameters("a=1&a=2&b") == {"a": "1,2", "b": ""}


# --- methods, auth, limits --------------------------------------------------------------------------------
def test_a_method_the_trigger_does_not_allow_is_405_with_allow(fc: LocalFc, api: str) -> None:
    before = len(fc.backend.records("api"))
    reply = requests.put(api + "/echo", data=b"x")
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "GET, POST"
    assert reply.json()["ErrorCode"] == "MethodNotAllowed" and "x-fc-request-id" in reply.headers
    assert requests.delete(api + "/echo").status_code == 405
    assert len(fc.backend.records("api")) == before  # never reached the function


def test_head_patch_and_options_are_served_when_allowed(fc: LocalFc) -> None:
    url = fc.http_endpoint("everything")
    assert requests.patch(url + "/echo", data=b"p").json()["requestContext"]["http"]["method"] == "PATCH"
    assert requests.options(url + "/echo").json()["requestContext"]["http"]["method"] == "OPTIONS"
    connection = _connection(url)
    connection.request("HEAD", "/plain")
    head = connection.getresponse()
    assert (head.status, head.read(), head.getheader("Content-Length")) == (200, b"", str(len(b"just text")))
    connection.request("GET", "/plain")  # the HEAD reply left the connection in step
    assert connection.getresponse().read() == b"just text"
    connection.close()


def test_function_auth_is_not_emulated_403(fc: LocalFc) -> None:
    reply = requests.get(fc.http_endpoint("signed") + "/echo")
    assert reply.status_code == 403
    assert "only anonymous" in reply.json()["ErrorMessage"] and "x-fc-request-id" in reply.headers
    assert fc.backend.records("signed") == []


def test_a_body_over_the_limit_is_413_and_one_at_the_limit_is_served(fc: LocalFc, api: str) -> None:
    with requests.Session() as session:
        too_large = session.post(api + "/echo", data=b"x" * (BODY_LIMIT + 1))
        assert too_large.status_code == 413
        assert too_large.json()["ErrorCode"] == "EntityTooLarge" and "x-fc-request-id" in too_large.headers
        chunked = session.post(api + "/echo", data=iter([b"y" * BODY_LIMIT, b"z"]))
        assert chunked.status_code == 413
        at_limit = session.post(api + "/echo", data=b"x" * BODY_LIMIT, headers={"Content-Type": "text/plain"})
        assert at_limit.status_code == 200 and len(at_limit.json()["body"]) == BODY_LIMIT
        assert record_of(fc, at_limit.headers["x-fc-request-id"]).trigger == "http"


def test_the_default_body_limit_is_fcs_32_mb(code: Path) -> None:
    with LocalFc(s_yaml=None, functions=[function(code, "api")], source_layout=False) as local:
        assert local.backend.http_body_limit == SYNC_PAYLOAD_LIMIT == 32 * 1024 * 1024
        reply = requests.post(local.http_endpoint("api") + "/echo", data=b"\0" * (SYNC_PAYLOAD_LIMIT + 1))
        assert reply.status_code == 413
        assert local.backend.records() == []


# --- errors ------------------------------------------------------------------------------------------------
def test_a_handler_exception_is_502_with_the_request_id(fc: LocalFc, api: str) -> None:
    reply = requests.get(api + "/boom")
    assert reply.status_code == 502
    body = reply.json()
    assert body["ErrorCode"] == "UnhandledInvocationError" and "kaboom" in body["ErrorMessage"]
    assert reply.headers["x-fc-error-type"] == "UnhandledInvocationError"
    record = record_of(fc, reply.headers["x-fc-request-id"])
    assert (record.status, record.trigger, record.kind) == ("error", "http", "sync")
    assert "kaboom" in (record.error or "")


@pytest.mark.parametrize(("path", "status"), [("/crash", "crash"), ("/sleep", "timeout")])
def test_a_crash_or_timeout_is_502(fc: LocalFc, api: str, path: str, status: str) -> None:
    reply = requests.get(api + path)
    assert reply.status_code == 502 and reply.json()["ErrorCode"] == "UnhandledInvocationError"
    assert record_of(fc, reply.headers["x-fc-request-id"]).status == status
    assert requests.get(api + "/plain").status_code == 200  # a new instance serves the next request


def test_an_injected_system_error_keeps_its_status(fc: LocalFc, api: str) -> None:
    fc.backend.fail_next("api", code="ResourceThrottled")
    reply = requests.get(api + "/plain")
    assert reply.status_code == 503 and reply.json()["ErrorCode"] == "ResourceThrottled"
    assert record_of(fc, reply.headers["x-fc-request-id"]).status == "system_error"


# --- records and endpoints ---------------------------------------------------------------------------------
def test_the_invocation_is_recorded_with_trigger_http(fc: LocalFc, api: str) -> None:
    reply = requests.get(api + "/echo?r=1")
    record = record_of(fc, reply.headers["x-fc-request-id"])
    assert (record.function, record.kind, record.trigger, record.status) == ("api", "sync", "http", "ok")
    assert record.payload_size == len(json.dumps(reply.json(), ensure_ascii=False).encode())


def test_http_endpoints_name_every_http_triggered_function(fc: LocalFc) -> None:
    endpoints = fc.http_endpoints
    assert list(endpoints) == ["api", "everything", "signed"]
    ports = {urlsplit(url).port for url in endpoints.values()}
    assert len(ports) == 3 and fc.port not in ports
    assert all(urlsplit(url).hostname == "127.0.0.1" for url in endpoints.values())
    assert fc.http_endpoint("api") == endpoints["api"]
    assert fc.describe()["http"] == endpoints
    with pytest.raises(KeyError, match="'plain' has no HTTP trigger"):
        fc.http_endpoint("plain")


def test_the_triggers_stop_with_the_fc(code: Path) -> None:
    local = LocalFc(s_yaml=None, functions=[function(code, "api")], source_layout=False).start()
    url = local.http_endpoint("api")
    assert requests.get(url + "/plain").status_code == 200
    local.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/plain", timeout=5)


def test_two_http_triggers_on_one_function_are_refused(code: Path) -> None:
    spec = function(code, "api")
    second = TriggerSpec("second", "http", {"methods": ["GET"]})
    twice = dataclasses.replace(spec, triggers=[*spec.triggers, second])
    with pytest.raises(ValueError, match="two HTTP triggers"):
        LocalFc(s_yaml=None, functions=[twice], source_layout=False)


def test_local_cloud_publishes_the_first_http_endpoint(code: Path, tmp_path: Path) -> None:
    from chatapp_mass.entry.localcloud import API_URL_VARIABLE, LocalCloud, write_env_file

    s_yaml = tmp_path / "s.yaml"
    common = f"region: {REGION}, runtime: python3.10, handler: index.handler, code: {code}"
    web = "[{triggerName: web, triggerType: http, triggerConfig: {authType: anonymous, methods: [GET]}}]"
    s_yaml.write_text(
        f"""
edition: 3.0.0
name: http-test
resources:
  quiet:
    component: fc3
    props: {{functionName: quiet, {common}}}
  api:
    component: fc3
    props: {{functionName: api, {common}, triggers: {web}}}
  second:
    component: fc3
    props: {{functionName: second, {common}, triggers: {web}}}
""",
        encoding="utf-8",
    )
    with LocalCloud(s_yaml=str(s_yaml), fc_options={"source_layout": False}) as cloud:
        assert cloud.fc is not None
        described = cloud.describe()
        assert described["http"] == cloud.fc.http_endpoints and list(described["http"]) == ["api", "second"]
        assert described["env"][API_URL_VARIABLE] == cloud.fc.http_endpoint("api")
        env_file = tmp_path / "cloud.env"
        write_env_file(str(env_file), cloud.environment())
        assert f"export {API_URL_VARIABLE}={cloud.fc.http_endpoint('api')}\n" in env_file.read_text()
        event = requests.get(described["env"][API_URL_VARIABLE] + "/echo").json()
        assert event["requestContext"]["http"]["path"] == "/echo"
        assert API_URL_VARIABLE not in cloud.fc.backend.environment_overrides  # not given to the functions


# --- helpers ----------------------------------------------------------------------------------------------
def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
