"""The client's classification of every reply kind, with `responses` stubbing the HTTP layer under the real SDK."""

from __future__ import annotations

import hashlib
import json
import os
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"

from chatapp_mass.adapters.cams import CamsClient, CamsSettings, parse_endpoint  # noqa: E402
from chatapp_mass.core.errors import OptionsError  # noqa: E402
from chatapp_mass.core.options import parse_job_options  # noqa: E402
from chatapp_mass.core.outcomes import OutcomeKind, classify_reply  # noqa: E402
from chatapp_mass.entry.bootstrap import static_credential  # noqa: E402

URL = "http://cams.test:8123/"
OPTIONS = parse_job_options(
    {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": "8613800000000"}
)
RECIPIENTS = [{"To": "8613800000001", "TemplateParams": {"name": "Ana"}}]


@pytest.fixture
def client() -> CamsClient:
    return CamsClient(
        CamsSettings(endpoint="cams.test:8123", protocol="HTTP", connect_timeout_ms=500, read_timeout_ms=500),
        credential=static_credential("AKID", "secret", "sts-token"),
    )


def reply(status: int, body: object) -> None:
    responses.add(
        responses.POST,
        URL,
        body=json.dumps(body) if not isinstance(body, str) else body,
        status=status,
        content_type="application/json",
    )


@responses.activate
def test_ok_is_sent_with_group_message_id_and_the_sender_list_in_a_signed_form_body(
    client: CamsClient,
) -> None:
    reply(200, {"Code": "OK", "Message": "OK", "RequestId": "R1", "GroupMessageId": "8900001"})
    outcome = client.send(OPTIONS, RECIPIENTS, task_id="123")
    assert outcome.kind is OutcomeKind.sent
    assert (outcome.group_message_id, outcome.request_id) == ("8900001", "R1")
    sent = responses.calls[0].request
    assert "SendChatappMassMessage" in sent.headers["x-acs-action"]
    assert sent.headers["x-acs-security-token"] == "sts-token"
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    body = sent.body.encode() if isinstance(sent.body, str) else sent.body
    assert sent.headers["x-acs-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert "x-acs-content-sha256" in sent.headers["Authorization"]  # signed
    form = dict(parse_qsl(body.decode()))
    assert set(form) == {"SenderList"}
    assert json.loads(form["SenderList"]) == RECIPIENTS
    query = dict(parse_qsl(urlsplit(sent.url).query))
    assert "SenderList" not in query
    assert (query["ChannelType"], query["From"], query["TaskId"]) == ("whatsapp", "8613800000000", "123")


@responses.activate
def test_the_fallback_text_travels_in_the_body_too(client: CamsClient) -> None:
    reply(200, {"Code": "OK", "Message": "OK", "RequestId": "R1", "GroupMessageId": "8900001"})
    text = "Your code is 1234 & more " * 40
    options = parse_job_options({**OPTIONS.to_api(), "FallBackId": "F1", "FallBackContent": text})
    assert client.send(options, RECIPIENTS).kind is OutcomeKind.sent
    sent = responses.calls[0].request
    body = sent.body.encode() if isinstance(sent.body, str) else sent.body
    assert dict(parse_qsl(body.decode()))["FallBackContent"] == text.strip()
    query = dict(parse_qsl(urlsplit(sent.url).query))
    assert "FallBackContent" not in query and query["FallBackId"] == "F1"
    assert len(sent.url) < 1024


@responses.activate
def test_query_mode_sends_everything_in_the_url_as_the_sdk_does() -> None:
    client = CamsClient(
        CamsSettings(endpoint="cams.test:8123", protocol="HTTP", params_in="query"),
        credential=static_credential("AKID", "secret", "sts-token"),
    )
    reply(200, {"Code": "OK", "Message": "OK", "RequestId": "R1", "GroupMessageId": "8900001"})
    assert client.send(OPTIONS, RECIPIENTS).kind is OutcomeKind.sent
    sent = responses.calls[0].request
    assert not sent.body
    assert json.loads(dict(parse_qsl(urlsplit(sent.url).query))["SenderList"]) == RECIPIENTS


def test_where_the_parameters_travel_comes_from_the_environment() -> None:
    assert CamsSettings.from_env({}).params_in == "body"
    assert CamsSettings.from_env({"CHATAPP_CAMS_PARAMS_IN": " Query "}).params_in == "query"
    with pytest.raises(OptionsError, match="CHATAPP_CAMS_PARAMS_IN='url': use body"):
        CamsSettings.from_env({"CHATAPP_CAMS_PARAMS_IN": "url"})


# The gateway's page for an over-long URL, as quoted in aliyun/openapi-core-nodejs-sdk issue #55.
TENGINE_414 = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n<html>\r\n<head><title>414 Request-URI Too Large'
    '</title></head>\r\n<body bgcolor="white">\r\n<h1>414 Request-URI Too Large</h1>\r\n<p>The requested '
    "URL's length exceeds the capacity limit for this server. Sorry for the inconvenience.<br/>\r\n</p>\r\n"
    "<hr/>Powered by Tengine</body>\r\n</html>\r\n"
)


@responses.activate
@pytest.mark.parametrize(
    ("status", "page", "code"),
    [
        (414, TENGINE_414, "RequestURITooLong"),
        (
            413,
            TENGINE_414.replace("414 Request-URI Too Large", "413 Request Entity Too Large"),
            "RequestEntityTooLarge",
        ),
    ],
)
def test_the_gateways_html_too_large_pages_are_clear_refusals(
    client: CamsClient, status: int, page: str, code: str
) -> None:
    responses.add(responses.POST, URL, body=page, status=status, content_type="text/html")
    outcome = client.send(OPTIONS, RECIPIENTS)
    assert (outcome.kind, outcome.code, outcome.http_status) == (OutcomeKind.failed, code, status)
    assert "nothing was sent" in outcome.message and "--max-request-bytes" in outcome.message
    assert len(responses.calls) == 1


@responses.activate
def test_other_html_error_pages_stay_uncertain(client: CamsClient) -> None:
    responses.add(
        responses.POST,
        URL,
        body="<html><head><title>502 Bad Gateway</title></head></html>",
        status=502,
        content_type="text/html",
    )
    assert client.send(OPTIONS, RECIPIENTS).kind is OutcomeKind.uncertain


@responses.activate
@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "System.LimitControl", OutcomeKind.throttled),
        (200, "System.LimitControl", OutcomeKind.throttled),
        (400, "Throttling.User", OutcomeKind.throttled),
        (400, "Ram.PermissionDeny", OutcomeKind.fatal),
        (400, "Product.Unsubscript", OutcomeKind.fatal),
        (400, "Unknown.ResourceOwnerId", OutcomeKind.fatal),
        (401, "Authentication.NoAuth", OutcomeKind.fatal),
        (400, "SignatureDoesNotMatch", OutcomeKind.fatal),
        (200, "DetailError.TemplateNotExist", OutcomeKind.fatal),
        (400, "InvalidParameter.PhoneNumberError", OutcomeKind.recipient),
        (200, "InvalidParameter.PhoneNumberError", OutcomeKind.recipient),
        (404, "SomethingElse", OutcomeKind.failed),
        (500, "InternalError", OutcomeKind.uncertain),
        (503, "ServiceUnavailable", OutcomeKind.uncertain),
    ],
)
def test_classified_by_code_whatever_the_status(
    client: CamsClient, status: int, code: str, kind: OutcomeKind
) -> None:
    reply(status, {"Code": code, "Message": "m", "RequestId": "R2"})
    outcome = client.send(OPTIONS, RECIPIENTS)
    assert outcome.kind is kind
    assert outcome.code == code
    assert len(responses.calls) == 1, "the SDK must never retry a send on its own"


@responses.activate
def test_non_json_reply_is_uncertain(client: CamsClient) -> None:
    reply(200, "<html>gateway</html>")
    assert client.send(OPTIONS, RECIPIENTS).kind is OutcomeKind.uncertain


@responses.activate
def test_non_json_5xx_is_uncertain(client: CamsClient) -> None:
    reply(502, "Bad Gateway")
    outcome = client.send(OPTIONS, RECIPIENTS)
    assert outcome.kind is OutcomeKind.uncertain
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (requests.exceptions.ConnectTimeout("connect timed out"), OutcomeKind.not_sent),
        (requests.exceptions.ConnectionError(ConnectionRefusedError(111, "refused")), OutcomeKind.not_sent),
        (requests.exceptions.ReadTimeout("read timed out"), OutcomeKind.uncertain),
        (
            requests.exceptions.ConnectionError(ConnectionResetError(104, "reset by peer")),
            OutcomeKind.uncertain,
        ),
    ],
)
def test_transport_failures(client: CamsClient, error: Exception, kind: OutcomeKind) -> None:
    responses.add(responses.POST, URL, body=error)
    assert client.send(OPTIONS, RECIPIENTS).kind is kind
    assert len(responses.calls) == 1


def test_refused_connection_on_a_real_socket_is_not_sent() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = CamsClient(
        CamsSettings(endpoint=f"127.0.0.1:{port}", protocol="HTTP"),
        credential=static_credential("AKID", "secret"),
    )
    assert client.send(OPTIONS, RECIPIENTS).kind is OutcomeKind.not_sent


def test_classify_reply_ok_needs_success_status() -> None:
    assert classify_reply(200, {"Code": "OK"}).kind is OutcomeKind.sent
    assert classify_reply(500, {"Code": "OK"}).kind is OutcomeKind.uncertain


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8123", ("127.0.0.1:8123", "HTTP")),
        ("https://cams.example.com", ("cams.example.com", "HTTPS")),
        ("cams.ap-southeast-1.aliyuncs.com", ("cams.ap-southeast-1.aliyuncs.com", "HTTPS")),
        ("", (None, "HTTPS")),
        (None, (None, "HTTPS")),
    ],
)
def test_parse_endpoint(value: str | None, expected: tuple[str | None, str]) -> None:
    assert parse_endpoint(value) == expected


def test_settings_from_env() -> None:
    settings = CamsSettings.from_env(
        {"CHATAPP_CAMS_ENDPOINT": "http://127.0.0.1:9", "ALIBABA_CLOUD_REGION_ID": "cn-x"}
    )
    assert (settings.endpoint, settings.protocol, settings.region_id) == ("127.0.0.1:9", "HTTP", "cn-x")
    assert CamsSettings.from_env({}).region_id == "ap-southeast-1"
