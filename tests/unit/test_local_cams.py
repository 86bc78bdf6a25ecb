"""The local CAMS, driven by the REAL SDK over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

from alibabacloud_cams20200606 import models as m  # noqa: E402
from alibabacloud_cams20200606.client import Client  # noqa: E402
from alibabacloud_credentials.client import Client as CredClient  # noqa: E402
from alibabacloud_credentials.models import Config as CredConfig  # noqa: E402
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException  # noqa: E402
from alibabacloud_tea_openapi.utils import Utils  # noqa: E402
from alibabacloud_tea_openapi.utils_models import Config, OpenApiRequest, Params  # noqa: E402
from darabonba.exceptions import UnretryableException  # noqa: E402
from darabonba.runtime import RuntimeOptions  # noqa: E402

from alibaba_localcloud.cams import CamsBackend, LocalCams  # noqa: E402
from alibaba_localcloud.cams.models import Attempt  # noqa: E402

FROM = "8613800000000"
REQUEST_ID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


# --- helpers ----------------------------------------------------------------------------------------------
def make_client(
    cams: LocalCams,
    *,
    secret: str | None = None,
    token: str | None | bool = True,
    access_key_id: str | None = None,
) -> Client:
    c = cams.credentials
    security_token = c.security_token if token is True else (token or None)
    if security_token:
        cred_config = CredConfig(
            type="sts",
            access_key_id=access_key_id or c.access_key_id,
            access_key_secret=secret or c.access_key_secret,
            security_token=security_token,
        )
    else:
        cred_config = CredConfig(
            type="access_key",
            access_key_id=access_key_id or c.access_key_id,
            access_key_secret=secret or c.access_key_secret,
        )
    return Client(
        Config(
            credential=CredClient(cred_config),
            endpoint=cams.host_port,
            protocol="HTTP",
            region_id=c.region_id,
        )
    )


def request(
    channel: str = "whatsapp", n: int = 1, *, to: list[str] | None = None, **fields: Any
) -> m.SendChatappMassMessageRequest:
    numbers = to if to is not None else [f"86139{i:08d}" for i in range(n)]
    senders = fields.pop("sender_list", None)
    if senders is None:
        senders = [
            m.SendChatappMassMessageRequestSenderList(to=number, template_params={"name": f"N{i}"})
            for i, number in enumerate(numbers)
        ]
    base: dict[str, Any] = {"channel_type": channel, "template_code": "T1", "language": "en", "from_": FROM}
    base.update(fields)
    return m.SendChatappMassMessageRequest(sender_list=senders, **base)


def send(client: Client, req: m.SendChatappMassMessageRequest, **runtime: Any) -> Any:
    return client.send_chatapp_mass_message_with_options(req, RuntimeOptions(**runtime))


def send_in_body(
    client: Client,
    req: m.SendChatappMassMessageRequest,
    body_fields: tuple[str, ...] = ("SenderList",),
    **runtime: Any,
) -> m.SendChatappMassMessageResponse:
    """The SDK's generic call path with ``body_fields`` in a form body (as the product sends), the rest in
    the query; the response parsed with the SDK's own model."""
    shrink = m.SendChatappMassMessageShrinkRequest()
    Utils.convert(req, shrink)
    shrink.sender_list_shrink = Utils.array_to_string_with_specified_style(
        req.sender_list, "SenderList", "json"
    )
    fields = {k: v for k, v in shrink.to_map().items() if v is not None}
    query = Utils.query({k: v for k, v in fields.items() if k not in body_fields})
    body = {k: v for k, v in fields.items() if k in body_fields}
    params = Params(
        action="SendChatappMassMessage",
        version="2020-06-06",
        protocol="HTTPS",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    result = client.call_api(params, OpenApiRequest(query=query, body=body), RuntimeOptions(**runtime))
    return m.SendChatappMassMessageResponse().from_map(result)


def raw_call(
    cams: LocalCams,
    query: dict[str, str],
    *,
    action: str = "SendChatappMassMessage",
    date: str | None = None,
    nonce: str | None = None,
    tamper: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    sent_body: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    """Sign with the SDK's own signer, send with http.client (optionally with a tampered query, or a body
    other than the signed one: ``sent_body``)."""
    c = cams.credentials
    headers = {
        "host": cams.host_port,
        "x-acs-version": "2020-06-06",
        "x-acs-action": action,
        "user-agent": "test",
        "x-acs-date": date or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "accept": "application/json",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "x-acs-accesskey-id": c.access_key_id,
        "x-acs-security-token": c.security_token or "",
    }
    if content_type:
        headers["content-type"] = content_type
    signable = SimpleNamespace(method="POST", pathname="/", query=dict(query), headers=headers)
    headers["Authorization"] = Utils.get_authorization(
        signable, "ACS3-HMAC-SHA256", headers["x-acs-content-sha256"], c.access_key_id, c.access_key_secret
    )
    sent_query = dict(query, **(tamper or {}))
    connection = http.client.HTTPConnection(cams.host, cams.port, timeout=10)
    try:
        connection.request(
            "POST",
            "/?" + urlencode(sent_query),
            body=body if sent_body is None else sent_body,
            headers=headers,
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def raw_post(cams: LocalCams, target: str, body: bytes = b"") -> tuple[int, str, bytes]:
    """An unsigned POST (the gateway's own limits come before any signature check): status, type, body."""
    connection = http.client.HTTPConnection(cams.host, cams.port, timeout=30)
    try:
        connection.request(
            "POST",
            target,
            body=body,
            headers={"x-acs-action": "SendChatappMassMessage", "x-acs-version": "2020-06-06"},
        )
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def admin(cams: LocalCams, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        cams.endpoint + "/_localcams/" + path, data=data, method="GET" if body is None else "POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


QUERY = {
    "ChannelType": "whatsapp",
    "TemplateCode": "T1",
    "Language": "en",
    "From": FROM,
    "SenderList": json.dumps([{"To": "8613900000001", "TemplateParams": {"name": "A"}}]),
}


@pytest.fixture
def client(local_cams: LocalCams) -> Client:
    return make_client(local_cams)


@pytest.fixture
def frozen() -> Iterator[tuple[LocalCams, list[float]]]:
    """A local CAMS whose clock only moves when the test moves it."""
    now = [1_000.0]
    with LocalCams(clock=lambda: now[0]) as cams:
        yield cams, now


# --- happy path -------------------------------------------------------------------------------------------
def test_accepts_a_call_and_records_it(local_cams: LocalCams, client: Client) -> None:
    senders = [
        m.SendChatappMassMessageRequestSenderList(to="8613900000001", template_params={"name": "Ana b+c&é"}),
        m.SendChatappMassMessageRequestSenderList(to="8613900000002", template_params={"name": "Bo"}),
    ]
    response = send(client, request(sender_list=senders, task_id="job-1"))

    assert response.status_code == 200
    body = response.body
    assert (body.code, body.message, body.access_denied_detail) == ("OK", "OK", None)
    assert REQUEST_ID.fullmatch(body.request_id)
    assert body.group_message_id.isdigit()
    [attempt] = local_cams.backend.attempts
    assert (attempt.code, attempt.http_status, attempt.action) == ("OK", 200, "SendChatappMassMessage")
    assert attempt.access_key_id == local_cams.credentials.access_key_id
    assert attempt.request_id == body.request_id and attempt.group_message_id == body.group_message_id
    assert attempt.params["TaskId"] == "job-1" and attempt.params["From"] == FROM
    assert [r["To"] for r in attempt.recipients] == ["8613900000001", "8613900000002"]
    received = local_cams.backend.received
    assert [(r.to, r.template_params) for r in received] == [
        ("8613900000001", {"name": "Ana b+c&é"}),
        ("8613900000002", {"name": "Bo"}),
    ]
    assert received[0].recipient == {"To": "8613900000001", "TemplateParams": {"name": "Ana b+c&é"}}
    assert {r.group_message_id for r in received} == {body.group_message_id}
    assert local_cams.backend.received_count_by_number() == {"8613900000001": 1, "8613900000002": 1}


def test_success_body_has_the_documented_fields(local_cams: LocalCams) -> None:
    status, body = raw_call(local_cams, QUERY)
    assert status == 200
    assert set(body) == {"Code", "Message", "RequestId", "GroupMessageId", "AccessDeniedDetail"}
    assert body["AccessDeniedDetail"] is None


def test_a_thousand_recipients_fit_in_a_form_body_with_a_short_request_line(
    local_cams: LocalCams, client: Client
) -> None:
    response = send_in_body(client, request(n=1000, task_id="t-1"))
    assert (response.status_code, response.body.code) == (200, "OK")
    assert response.body.group_message_id.isdigit()
    assert len(local_cams.backend.received) == 1000
    [attempt] = local_cams.backend.attempts
    assert attempt.params["TaskId"] == "t-1" and attempt.params["From"] == FROM  # from the query
    assert len(attempt.recipients) == 1000  # from the body
    assert len(urlencode({"SenderList": attempt.params["SenderList"]})) > 65536
    assert 0 < local_cams.backend.longest_request_line < 1024


def test_the_sdks_query_form_of_a_thousand_recipients_gets_the_gateways_html_414(
    local_cams: LocalCams, client: Client
) -> None:
    with pytest.raises(UnretryableException) as caught:  # the SDK cannot parse an HTML error page
        send(client, request(n=1000))
    assert "<title>414 Request-URI Too Large</title>" in str(caught.value)
    assert local_cams.backend.received == []
    assert local_cams.backend.attempts[-1].code == "RequestURITooLong"
    assert local_cams.backend.longest_request_line > 65536  # recorded whole, though refused at 16 KiB


def test_concurrent_calls_are_all_recorded() -> None:
    with LocalCams(qps_limit=None) as cams:
        client = make_client(cams)
        errors: list[BaseException] = []

        def call(i: int) -> None:
            try:
                assert send(client, request(to=[f"86137{i:08d}"])).body.code == "OK"
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(cams.backend.attempts) == 16
        assert len(cams.backend.received_count_by_number()) == 16


# --- credentials and signature ----------------------------------------------------------------------------
def test_sts_token_is_required(local_cams: LocalCams) -> None:
    with pytest.raises(ClientException) as caught:
        send(make_client(local_cams, token=None), request())
    assert (caught.value.status_code, caught.value.code) == (400, "MissingSecurityToken")
    assert local_cams.backend.attempts[-1].code == "MissingSecurityToken"
    assert local_cams.backend.received == []


def test_wrong_sts_token_is_refused(local_cams: LocalCams) -> None:
    with pytest.raises(ClientException) as caught:
        send(make_client(local_cams, token="CAIS.not-the-token"), request())
    assert caught.value.code == "InvalidSecurityToken.Malformed"


def test_token_of_another_account_is_a_mismatch(local_cams: LocalCams) -> None:
    local_cams.backend.add_account("STS.other", "other-secret", "CAIS.other-token")
    with pytest.raises(ClientException) as caught:
        send(make_client(local_cams, token="CAIS.other-token"), request())
    assert caught.value.code == "InvalidSecurityToken.MismatchWithAccessKey"


def test_long_term_keys_work_without_a_token() -> None:
    with LocalCams(sts=False) as cams:
        assert cams.credentials.security_token is None
        assert send(make_client(cams, token=None), request()).body.code == "OK"


def test_wrong_secret_is_a_signature_error(local_cams: LocalCams) -> None:
    with pytest.raises(ClientException) as caught:
        send(make_client(local_cams, secret="not-the-secret"), request())
    assert (caught.value.status_code, caught.value.code) == (400, "SignatureDoesNotMatch")
    [attempt] = local_cams.backend.attempts
    assert attempt.access_key_id == local_cams.credentials.access_key_id  # the claimed key, for the record
    assert local_cams.backend.received == []


def test_unknown_access_key(local_cams: LocalCams) -> None:
    with pytest.raises(ClientException) as caught:
        send(make_client(local_cams, access_key_id="STS.unknown"), request())
    assert (caught.value.status_code, caught.value.code) == (404, "InvalidAccessKeyId.NotFound")


def test_tampered_query_is_a_signature_error(local_cams: LocalCams) -> None:
    assert raw_call(local_cams, QUERY)[0] == 200  # the helper signs correctly
    status, body = raw_call(local_cams, QUERY, tamper={"From": "8613811111111"})
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert len(local_cams.backend.received) == 1


FORM = "application/x-www-form-urlencoded"
SMALL_QUERY = {k: v for k, v in QUERY.items() if k != "SenderList"}
SENDERS_FORM = urlencode({"SenderList": QUERY["SenderList"]}).encode()


def test_parameters_in_a_form_body_are_read_and_signed_by_their_hash(local_cams: LocalCams) -> None:
    assert raw_call(local_cams, SMALL_QUERY, body=SENDERS_FORM, content_type=FORM)[0] == 200
    assert [r.to for r in local_cams.backend.received] == ["8613900000001"]
    other = urlencode({"SenderList": QUERY["SenderList"].replace("01", "02")}).encode()
    status, body = raw_call(local_cams, SMALL_QUERY, body=SENDERS_FORM, content_type=FORM, sent_body=other)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")  # the body is not the one signed
    assert len(local_cams.backend.received) == 1


def test_a_body_whose_hash_is_signed_but_the_signature_is_not_the_bodys_is_refused(
    local_cams: LocalCams,
) -> None:
    # a correct x-acs-content-sha256 for the sent body, but the signature covers the hash of another body
    status, body = raw_call(
        local_cams, SMALL_QUERY, body=b"SenderList=%5B%5D", content_type=FORM, sent_body=SENDERS_FORM
    )
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert local_cams.backend.received == []


def test_a_parameter_in_both_query_and_body_is_refused_by_name(local_cams: LocalCams) -> None:
    status, body = raw_call(local_cams, QUERY, body=SENDERS_FORM, content_type=FORM)
    assert (status, body["Code"]) == (400, "InvalidParameter")
    assert "SenderList" in body["Message"]
    assert local_cams.backend.received == []


def test_a_body_that_is_not_a_form_carries_no_parameters(local_cams: LocalCams) -> None:
    status, body = raw_call(local_cams, SMALL_QUERY, body=SENDERS_FORM, content_type="application/json")
    assert (status, body["Code"]) == (400, "MissingSenderList")


def test_replayed_nonce_is_refused(local_cams: LocalCams) -> None:
    assert raw_call(local_cams, QUERY, nonce="n-1")[0] == 200
    status, body = raw_call(local_cams, QUERY, nonce="n-1")
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")


def test_stale_timestamp_is_refused(local_cams: LocalCams) -> None:
    stale = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = raw_call(local_cams, QUERY, date=stale)
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")


def test_unknown_action_is_not_found(local_cams: LocalCams) -> None:
    status, body = raw_call(local_cams, QUERY, action="SendChatappMessage")
    assert (status, body["Code"]) == (404, "InvalidApi.NotFound")
    assert local_cams.backend.attempts[-1].action == "SendChatappMessage"


def test_unsigned_request_is_refused(local_cams: LocalCams) -> None:
    connection = http.client.HTTPConnection(local_cams.host, local_cams.port, timeout=10)
    try:
        connection.request(
            "POST",
            "/?" + urlencode(QUERY),
            headers={"x-acs-action": "SendChatappMassMessage", "x-acs-version": "2020-06-06"},
        )
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["Code"]) == (400, "IncompleteSignature")
    finally:
        connection.close()


# --- validation -------------------------------------------------------------------------------------------
def _to(number: str, **extra: Any) -> list[m.SendChatappMassMessageRequestSenderList]:
    return [m.SendChatappMassMessageRequestSenderList(to=number, **extra)]


REFUSED_WITH_200 = [
    ("channel", {"channel": "sms"}, "InvalidParameter.ChannelTypeNotSupport"),
    ("no template", {"template_code": None}, "InvalidParameter.TemplateCodeNotEmpty"),
    (
        "viber needs a code",
        {"channel": "viber", "template_code": None, "template_name": "t", "from_": "Brand"},
        "InvalidParameter.TemplateCodeNotEmpty",
    ),
    ("no language", {"language": None}, "InvalidParameter.LanguageNotEmpty"),
    ("from numeric", {"from_": "+8613800000000"}, "InvalidParameter.FromOnlyNumeric"),
    ("plus sign", {"sender_list": _to("+8613900000001")}, "InvalidParameter.PhoneNumberError"),
    ("too short", {"sender_list": _to("12345")}, "InvalidParameter.PhoneNumberError"),
    ("too long", {"sender_list": _to("1234567890123456")}, "InvalidParameter.PhoneNumberError"),
    (
        "viber number",
        {"channel": "viber", "from_": "Brand", "sender_list": _to("86-139")},
        "InvalidParameter.PhoneNumberError",
    ),
    (
        "no To",
        {"sender_list": [m.SendChatappMassMessageRequestSenderList(template_params={"a": "b"})]},
        "InvalidParameter.PhoneNumberError",
    ),
]
REFUSED_WITH_400 = [
    ("no From", {"from_": None}, "MissingFrom"),
    ("no SenderList", {"sender_list": []}, "MissingSenderList"),
    ("Ttl low", {"ttl": 29}, "InvalidTtl"),
    ("Ttl high", {"ttl": 1_209_601}, "InvalidTtl"),
    ("FallBackDuration low", {"fall_back_duration": 59}, "InvalidFallBackDuration"),
    ("FallBackDuration high", {"fall_back_duration": 43_201}, "InvalidFallBackDuration"),
    ("Label", {"label": "spam"}, "InvalidLabel"),
    ("FallBackRule", {"fall_back_rule": "always"}, "InvalidFallBackRule"),
    (
        "ProductAction off whatsapp",
        {
            "channel": "viber",
            "from_": "Brand",
            "sender_list": _to(
                "8613900000001",
                product_action=m.SendChatappMassMessageRequestSenderListProductAction(
                    thumbnail_product_retailer_id="p1"
                ),
            ),
        },
        "InvalidParameter",
    ),
]
ACCEPTED = [
    ("template name on whatsapp", {"template_code": None, "template_name": "welcome"}),
    (
        "viber",
        {
            "channel": "viber",
            "from_": "Brand",
            "ttl": 30,
            "label": "promotion",
            "tag": "x",
            "fall_back_duration": 60,
            "fall_back_rule": "sentFailed",
        },
    ),
    ("messenger page-scoped id", {"channel": "messenger", "from_": "page-1", "sender_list": _to("psid-abc")}),
    ("instagram", {"channel": "instagram", "from_": "ig-1", "sender_list": _to("igsid-1")}),
    (
        "limits",
        {
            "ttl": 1_209_600,
            "fall_back_duration": 43_200,
            "label": "transaction",
            "fall_back_rule": "undelivered",
        },
    ),
    ("six and fifteen digits", {"sender_list": _to("123456") + _to("123456789012345")}),
    (
        "ProductAction on whatsapp",
        {
            "sender_list": _to(
                "8613900000001",
                product_action=m.SendChatappMassMessageRequestSenderListProductAction(
                    thumbnail_product_retailer_id="p1"
                ),
            )
        },
    ),
]


def _build(fields: dict[str, Any]) -> m.SendChatappMassMessageRequest:
    fields = dict(fields)
    channel = fields.pop("channel", "whatsapp")
    return request(channel, **fields)


@pytest.mark.parametrize(("case", "fields", "code"), REFUSED_WITH_200, ids=[c[0] for c in REFUSED_WITH_200])
def test_parameter_errors_come_back_with_http_200(
    local_cams: LocalCams, client: Client, case: str, fields: dict[str, Any], code: str
) -> None:
    response = send(client, _build(fields))
    assert (response.status_code, response.body.code) == (200, code)
    assert response.body.group_message_id is None
    assert local_cams.backend.attempts[-1].code == code
    assert local_cams.backend.received == []


@pytest.mark.parametrize(("case", "fields", "code"), REFUSED_WITH_400, ids=[c[0] for c in REFUSED_WITH_400])
def test_gateway_parameter_errors_raise(
    local_cams: LocalCams, client: Client, case: str, fields: dict[str, Any], code: str
) -> None:
    with pytest.raises(ClientException) as caught:
        send(client, _build(fields))
    assert (caught.value.status_code, caught.value.code) == (400, code)
    assert local_cams.backend.received == []


@pytest.mark.parametrize(("case", "fields"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_valid_variants_are_accepted(
    local_cams: LocalCams, client: Client, case: str, fields: dict[str, Any]
) -> None:
    assert send(client, _build(fields)).body.code == "OK"
    assert local_cams.backend.received


def test_malformed_sender_list_is_refused(local_cams: LocalCams) -> None:
    status, body = raw_call(local_cams, dict(QUERY, SenderList='{"To": "8613900000001"}'))
    assert (status, body["Code"]) == (400, "InvalidSenderList")


def test_more_than_a_thousand_recipients_are_refused(local_cams: LocalCams, client: Client) -> None:
    response = send_in_body(client, request(n=1001))
    assert response.body.code == "InvalidParameter.SenderListOverLimit"
    assert local_cams.backend.received == []
    assert len(local_cams.backend.attempts[-1].recipients) == 1001


def test_template_registry() -> None:
    with LocalCams(templates={"T1", "welcome"}) as cams:
        client = make_client(cams)
        assert send(client, request(template_code="T1")).body.code == "OK"
        assert send(client, request(template_code=None, template_name="welcome")).body.code == "OK"
        assert send(client, request(template_code="T9")).body.code == "DetailError.TemplateNotExist"
        assert len(cams.backend.received) == 2


# --- rate limit and faults --------------------------------------------------------------------------------
def test_eleventh_call_in_a_second_is_throttled(frozen: tuple[LocalCams, list[float]]) -> None:
    cams, now = frozen
    client = make_client(cams)
    for _ in range(10):
        assert send(client, request()).body.code == "OK"
    with pytest.raises(ClientException) as caught:
        send(client, request())
    assert (caught.value.status_code, caught.value.code) == (400, "System.LimitControl")
    assert caught.value.message.startswith("code: 400, The system is under flow control.")
    assert [a.code for a in cams.backend.attempts][-1] == "System.LimitControl"
    assert cams.backend.max_calls_in_any_window() == 11
    assert cams.backend.max_calls_in_any_window(access_key_id=cams.credentials.access_key_id) == 11
    assert len(cams.backend.received) == 10

    now[0] += 0.999
    with pytest.raises(ClientException):  # still inside the window of the first ten
        send(client, request())
    now[0] += 0.001
    # the first ten have left the window, and throttled calls never count
    assert send(client, request()).body.code == "OK"


def test_throttle_next(local_cams: LocalCams, client: Client) -> None:
    local_cams.backend.throttle_next(2)
    for _ in range(2):
        with pytest.raises(ClientException) as caught:
            send(client, request())
        assert caught.value.code == "System.LimitControl"
    assert send(client, request()).body.code == "OK"


def test_throttle_probability_is_seeded() -> None:
    def codes(seed: int) -> list[str]:
        backend = CamsBackend(qps_limit=None, throttle_probability=0.5, seed=seed)
        for _ in range(20):
            backend.send_chatapp_mass_message("k", dict(QUERY))
        return [a.code for a in backend.attempts]

    first = codes(7)
    assert first == codes(7)
    assert {"OK", "System.LimitControl"} == set(first)


def test_fail_next_with_http_200(local_cams: LocalCams, client: Client) -> None:
    local_cams.backend.fail_next(1, "Unknown.ResourceOwnerId")
    response = send(client, request())
    assert (response.status_code, response.body.code) == (200, "Unknown.ResourceOwnerId")
    assert response.body.message == "The resource does not belong to the current user."
    assert local_cams.backend.received == []
    assert send(client, request()).body.code == "OK"


def test_fail_next_with_http_503(local_cams: LocalCams, client: Client) -> None:
    local_cams.backend.fail_next(1, "ServiceUnavailable", http_status=503)
    with pytest.raises(ServerException) as caught:
        send(client, request())
    assert (caught.value.status_code, caught.value.code) == (503, "ServiceUnavailable")


def test_refuse_all(local_cams: LocalCams, client: Client) -> None:
    local_cams.backend.refuse_all("Ram.PermissionDeny")
    for _ in range(2):
        with pytest.raises(ClientException) as caught:
            send(client, request())
        assert (caught.value.status_code, caught.value.code) == (400, "Ram.PermissionDeny")
    local_cams.backend.clear_refuse_all()
    assert send(client, request()).body.code == "OK"


def test_non_json_reply_after_processing_is_ambiguous(local_cams: LocalCams, client: Client) -> None:
    local_cams.backend.reply_non_json_next(1)
    with pytest.raises(UnretryableException):
        send(client, request(to=["8613900000009"]))
    assert local_cams.backend.received_count_by_number() == {"8613900000009": 1}  # it WAS sent
    assert local_cams.backend.attempts[-1].non_json_reply


def test_non_json_reply_before_processing(local_cams: LocalCams, client: Client) -> None:
    local_cams.backend.reply_non_json_next(1, http_status=502, accept=False)
    with pytest.raises(UnretryableException):
        send(client, request())
    assert local_cams.backend.received == []
    assert local_cams.backend.attempts[-1].http_status == 502


def test_latency_is_applied_after_the_call_is_recorded() -> None:
    with LocalCams(latency=2.0) as cams:
        with pytest.raises(UnretryableException):  # the client gives up first: the ambiguous case
            send(make_client(cams), request(to=["8613900000007"]), read_timeout=200)
        assert cams.backend.received_count_by_number() == {"8613900000007": 1}


def test_latency_jitter_bounds() -> None:
    backend = CamsBackend(latency=0.25, latency_jitter=0.5, seed=1)
    latencies = [backend.send_chatapp_mass_message("k", dict(QUERY)).latency for _ in range(10)]
    assert all(0.125 <= x <= 0.375 for x in latencies)
    assert len(set(latencies)) > 1


# --- the gateway's limits: request line and body -------------------------------------------------------
def test_the_default_request_line_limit_is_16_kib_answered_with_an_html_414(local_cams: LocalCams) -> None:
    line_overhead = len("POST /? HTTP/1.1")
    fits = "x=" + "a" * (16 * 1024 - line_overhead - 2)
    status, _, _ = raw_post(local_cams, "/?" + fits)
    assert status != 414  # exactly 16 KiB: past the limit check (refused later, for its missing signature)
    status, content_type, page = raw_post(local_cams, "/?" + fits + "a")
    assert (status, content_type) == (414, "text/html")
    assert b"<title>414 Request-URI Too Large</title>" in page and b"Powered by Tengine" in page
    assert local_cams.backend.attempts[-1].code == "RequestURITooLong"
    assert local_cams.backend.longest_request_line == 16 * 1024 + 1


def test_request_line_longer_than_the_limit_gets_414_and_the_connection_goes_on_working() -> None:
    with LocalCams(max_request_line=2000) as cams:
        client = make_client(cams)
        with pytest.raises(UnretryableException) as caught:
            send(client, request(n=100))
        assert "414 Request-URI Too Large" in str(caught.value)
        assert cams.backend.attempts[-1].code == "RequestURITooLong"
        assert cams.backend.received == []
        assert send(client, request(n=1)).body.code == "OK"  # the next call works
        assert send_in_body(client, request(n=100)).body.code == "OK"  # and the same call in a body


def test_a_body_over_the_limit_gets_an_html_413_and_nothing_is_sent() -> None:
    with LocalCams(max_body=4096) as cams:
        client = make_client(cams)
        with pytest.raises(UnretryableException) as caught:
            send_in_body(client, request(n=100))
        assert "<title>413 Request Entity Too Large</title>" in str(caught.value)
        assert cams.backend.attempts[-1].code == "RequestEntityTooLarge"
        assert cams.backend.received == []
        assert send_in_body(client, request(n=10)).body.code == "OK"
        status, content_type, page = raw_post(cams, "/", b"x" * 4097)
        assert (status, content_type) == (413, "text/html") and b"Powered by Tengine" in page


def test_the_default_body_limit_is_1_mib(local_cams: LocalCams, client: Client) -> None:
    assert raw_post(local_cams, "/", b"x" * (1024 * 1024))[0] == 400  # read, then refused: no signature
    assert raw_post(local_cams, "/", b"x" * (1024 * 1024 + 1))[0] == 413
    # a full batch with long template values still fits
    senders = [
        m.SendChatappMassMessageRequestSenderList(
            to=f"86139{i:08d}", template_params={"name": f"Customer {i}", "code": "X" * 200}
        )
        for i in range(1000)
    ]
    assert send_in_body(client, request(sender_list=senders)).body.code == "OK"
    assert len(local_cams.backend.received) == 1000


# --- oracle -----------------------------------------------------------------------------------------------
def test_max_calls_in_any_window_counts_half_open_windows() -> None:
    backend = CamsBackend()
    for i, t in enumerate([0.0, 0.5, 0.99, 1.0, 1.2, 1.98, 3.0]):
        backend.attempts.append(Attempt(i, t, "k" if i % 2 else "j", "A", {}, [], 200, "OK", "OK", "r"))
    assert backend.max_calls_in_any_window() == 4  # 0.99, 1.0, 1.2, 1.98
    assert backend.max_calls_in_any_window(window=0.5) == 3  # 0.99, 1.0, 1.2
    assert backend.max_calls_in_any_window(access_key_id="k") == 2
    assert CamsBackend().max_calls_in_any_window() == 0


# --- admin endpoints --------------------------------------------------------------------------------------
def test_admin_endpoints(local_cams: LocalCams, client: Client) -> None:
    assert admin(local_cams, "config", {"throttle_next": 1, "latency": 0}) == (200, {"ok": True})
    with pytest.raises(ClientException):
        send(client, request())
    assert send(client, request(to=["8613900000001"])).body.code == "OK"

    status, attempts = admin(local_cams, "attempts")
    assert status == 200
    assert [a["code"] for a in attempts] == ["System.LimitControl", "OK"]
    assert attempts[1]["recipients"] == [{"To": "8613900000001", "TemplateParams": {"name": "N0"}}]
    status, received = admin(local_cams, "received")
    assert [r["to"] for r in received] == ["8613900000001"]
    assert admin(local_cams, "stats")[1]["accepted"] == 1

    assert (
        admin(
            local_cams, "config", {"fail_next": {"n": 1, "code": "ServiceUnavailable", "http_status": 503}}
        )[0]
        == 200
    )
    with pytest.raises(ServerException):
        send(client, request())
    assert admin(local_cams, "config", {"refuse_all": {"code": "Product.Unsubscript"}})[0] == 200
    with pytest.raises(ClientException) as caught:
        send(client, request())
    assert caught.value.code == "Product.Unsubscript"
    assert (
        admin(
            local_cams,
            "config",
            {
                "refuse_all": None,
                "templates": ["T1"],
                "qps_limit": 100,
                "max_request_line": 200_000,
                "max_body": 2_000_000,
            },
        )[0]
        == 200
    )
    assert (local_cams.backend.max_request_line, local_cams.backend.max_body) == (200_000, 2_000_000)
    assert local_cams.backend.templates == frozenset({"T1"})
    assert admin(local_cams, "config", {"no_such_option": 1})[0] == 400

    assert admin(local_cams, "reset", {}) == (200, {"ok": True})
    assert admin(local_cams, "attempts") == (200, [])
    assert admin(local_cams, "received") == (200, [])
    assert send(client, request()).body.code == "OK"
    assert admin(local_cams, "nothing")[0] == 404


# --- CLI --------------------------------------------------------------------------------------------------
def test_cli_prints_one_json_line_and_serves_until_terminated() -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "alibaba_localcloud.cams", "--port", "0", "--qps-limit", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["service"] == "cams" and info["region_id"] == "ap-southeast-1"
        assert info["endpoint"].startswith("http://127.0.0.1:")
        assert info["access_key_id"].startswith("STS.") and info["security_token"]
        cred = CredClient(
            CredConfig(
                type="sts",
                access_key_id=info["access_key_id"],
                access_key_secret=info["access_key_secret"],
                security_token=info["security_token"],
            )
        )
        client = Client(
            Config(
                credential=cred,
                endpoint=info["endpoint"].removeprefix("http://"),
                protocol="HTTP",
                region_id=info["region_id"],
            )
        )
        assert send(client, request()).body.code == "OK"
        with urllib.request.urlopen(info["endpoint"] + "/_localcams/received", timeout=10) as response:
            assert [r["to"] for r in json.loads(response.read())] == ["8613900000000"]
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"ChannelType": "messenger"}, "InvalidParameter.ChannelTypeNotSupport"),
        ({"BusinessNumber": ""}, "MissingBusinessNumber"),
        ({"CustSpaceId": ""}, "MissingCustSpaceId"),
        ({"Page": '{"Index": 0, "Size": 10}'}, "InvalidPage"),
        ({"Page": '{"Index": 1, "Size": 101}'}, "InvalidPage"),
        ({"Page": "not json"}, "InvalidPage"),
        ({"StartTime": "yesterday"}, "InvalidStartTime"),
    ],
)
def test_list_chatapp_message_validation(params: dict[str, str], code: str) -> None:
    from alibaba_localcloud.cams import exceptions as cams_exc
    from alibaba_localcloud.cams.models import validate_list

    good = {
        "ChannelType": "whatsapp",
        "BusinessNumber": "8613800000000",
        "CustSpaceId": "cs",
        "Page": '{"Index": 1, "Size": 10}',
    }
    validate_list(good)
    with pytest.raises(cams_exc.CamsError) as raised:
        validate_list({**good, **params})
    assert raised.value.code == code


# --- TaskId and ListChatappMessage --------------------------------------------------------------------------
def list_request(**fields: Any) -> m.ListChatappMessageRequest:
    return m.ListChatappMessageRequest(
        channel_type="whatsapp",
        business_number=FROM,
        cust_space_id="cs",
        page=m.ListChatappMessageRequestPage(index=1, size=10),
        **fields,
    )


def test_task_id_is_recorded_per_message_but_list_chatapp_message_neither_filters_nor_shows_it(
    local_cams: LocalCams, client: Client
) -> None:
    """The SDK's ListChatappMessageRequest has no TaskId and its items (ListChatappMessageResponseBodyData)
    none either (alibabacloud_cams20200606 5.3.1 models); the local CAMS does as they say."""
    number = "8613900000001"
    for task in ("task-a", "task-b"):
        assert send(client, request(to=[number], task_id=task)).body.code == "OK"
    assert [(r.to, r.task_id) for r in local_cams.backend.received] == [
        (number, "task-a"),
        (number, "task-b"),
    ]
    dropped = m.ListChatappMessageRequest().from_map({"TaskId": "task-a"}).to_map()
    assert "TaskId" not in dropped  # the SDK never sends it

    body = client.list_chatapp_message_with_options(list_request(user_number=number), RuntimeOptions()).body
    assert body.code == "OK" and len(body.data) == 2
    assert not any("task" in key.lower() for item in body.data for key in item.to_map())
    assert "TaskId" not in local_cams.backend.received[0].list_item()

    # a TaskId parameter sent anyway (a raw signed request) filters nothing: both calls' messages come back
    query = {
        "ChannelType": "whatsapp",
        "BusinessNumber": FROM,
        "CustSpaceId": "cs",
        "UserNumber": number,
        "TaskId": "task-a",
        "Page": json.dumps({"Index": 1, "Size": 10}),
    }
    status, raw = raw_call(local_cams, query, action="ListChatappMessage")
    assert status == 200 and raw["Code"] == "OK" and len(raw["Data"]) == 2
    assert all("TaskId" not in item for item in raw["Data"])


def test_list_time_filter_uses_send_time_which_a_lag_can_move(frozen: tuple[LocalCams, list[float]]) -> None:
    """StartTime/EndTime compare the time a message is filed under (SendTime): the call's arrival, or later
    with ``send_time_lag`` (a service that stamps each message when it dispatches it)."""
    from alibaba_localcloud.cams.models import validate_list

    cams, _ = frozen
    backend = cams.backend
    backend.configure(send_time_lag=90)
    reply = backend.send_chatapp_mass_message(cams.credentials.access_key_id, dict(QUERY), arrived_at=1_000.0)
    assert reply.body["Code"] == "OK"
    [message] = backend.received
    assert (message.arrived_at, message.send_time) == (1_000.0, 1_090.0)
    assert message.list_item()["SendTime"] == "1970-01-01 00:18:10"
    base = {
        "ChannelType": "whatsapp",
        "BusinessNumber": FROM,
        "CustSpaceId": "cs",
        "Page": '{"Index":1,"Size":10}',
    }
    at_arrival = validate_list({**base, "StartTime": "995000", "EndTime": "1045000"})
    at_dispatch = validate_list({**base, "StartTime": "1085000", "EndTime": "1095000"})
    assert not at_arrival.matches(message) and at_dispatch.matches(message)


def test_the_rate_window_judges_by_arrival_whatever_order_the_handlers_run_in() -> None:
    """Two calls that arrived a ms apart may be judged in the other order (handler threads); the window is by
    arrival: a call is refused only if some 1 s window holding it would hold more than the limit."""
    backend = CamsBackend(qps_limit=10)
    judged = [0.302, 0.301] + [0.303 + i / 1000 for i in range(8)]  # the first two judged out of order
    assert all(backend._admit("k", at, 10) for at in judged)
    assert backend._admit("k", 1.3015, 10)  # 0.301 has left its window: 9 remain
    assert not backend._admit("k", 1.3016, 10)  # 0.302..0.310 and 1.3015: ten
    assert not backend._admit("k", 0.2, 10)  # judged late, arrived early: (-0.69, 0.31] holds ten


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS is Linux's")
def test_a_new_connections_first_request_is_stamped_by_the_kernel_on_arrival() -> None:
    """The listening socket asks for receive timestamps, so an accepted connection has them from its first
    segment: a request that reached the kernel before its handler thread ran keeps its arrival time (set
    only in the handler, the kernel stamps such a segment when it is read: a late arrival in the oracle)."""
    import socket

    with LocalCams() as cams:
        listener = cams._server.socket  # type: ignore[union-attr]
        assert listener.getsockopt(socket.SOL_SOCKET, 35) == 1  # SO_TIMESTAMPNS
        client = socket.create_connection(listener.getsockname())
        try:
            client.sendall(b"GET /__admin__/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            client.recv(1)
        finally:
            client.close()
