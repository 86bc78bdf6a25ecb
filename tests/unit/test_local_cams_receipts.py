"""The local CAMS pushes delivery receipts (ChatAppStatus) and inbound messages (ChatAppInbound) as the service
does: JSON arrays over HTTP (or MNS messages), with failures, duplicates, out-of-order arrival and retries.

Messages are sent with the REAL SDK over loopback; the receipts land in a tiny HTTP receiver (http.server in
a thread) that records every POST and answers as each test scripts it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

from alibabacloud_cams20200606 import models as m  # noqa: E402
from alibabacloud_cams20200606.client import Client  # noqa: E402
from alibabacloud_tea_openapi.utils_models import Config  # noqa: E402

from alibaba_localcloud.cams import LocalCams  # noqa: E402
from alibaba_localcloud.cams.receipts import RANK, THREAD_NAME, WHATSAPP_FAILURES  # noqa: E402
from tests.speed import budget  # noqa: E402

FROM = "8613800000000"
FAST = {  # small delays, fast retries: 1/5/10 "minutes" become 0.06/0.3/0.6 s
    "retry_scale": 0.001,
    "push_interval": 0.3,  # a wide window: reports of one message often land in it together (then shuffled)
}


class Receiver:
    """A loopback HTTP endpoint that records every POST (arrival order) and answers per ``script``: a list
    of callables consumed one per request (each returns the HTTP status to answer, after doing what it
    wants, e.g. sleeping); once empty, 200 with the SMS-style ack."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []  # (path?query, parsed JSON body)
        self.script: list[Callable[[], int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    step = receiver.script.pop(0) if receiver.script else None
                status = step() if step else 200
                if 200 <= status < 300:
                    with receiver.lock:
                        receiver.posts.append((self.path, json.loads(body.decode("utf-8"))))
                payload = b'{"code":0,"msg":"success"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the pusher gave up waiting

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def reports(self, path: str = "/receipts") -> list[dict[str, Any]]:
        """Every report received on ``path`` (any query), in arrival order."""
        with self.lock:
            return [r for p, body in self.posts if p.split("?")[0] == path for r in body]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def client_for(cams: LocalCams) -> Client:
    c = cams.credentials
    return Client(
        Config(
            access_key_id=c.access_key_id,
            access_key_secret=c.access_key_secret,
            security_token=c.security_token,
            endpoint=cams.host_port,
            protocol="HTTP",
            region_id=c.region_id,
        )
    )


def send(client: Client, numbers: list[str], task_id: str | None, channel: str = "whatsapp") -> None:
    reply = client.send_chatapp_mass_message(
        m.SendChatappMassMessageRequest(
            channel_type=channel,
            template_code="T1",
            language="en",
            from_=FROM,
            task_id=task_id,
            sender_list=[m.SendChatappMassMessageRequestSenderList(to=n) for n in numbers],
        )
    )
    assert reply.body.code == "OK"


def numbers(start: int, n: int) -> list[str]:
    return [f"6591{i:06d}" for i in range(start, start + n)]


def final_by_key(reports: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """What a forward-only receiver ends with: per (TaskId, To) the highest-ranked Status and its ErrorCode."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in reports:
        if r["Status"] not in RANK:
            continue
        key = (r["TaskId"], r["To"])
        if key not in best or RANK[r["Status"]] > RANK[best[key]["Status"]]:
            best[key] = r
    return {k: (r["Status"].lower(), r.get("ErrorCode", "")) for k, r in best.items()}


# --- the HTTP push -------------------------------------------------------------------------------------------
def test_every_accepted_message_is_reported_in_arrays_with_failures_duplicates_and_disorder(
    receiver: Receiver,
) -> None:
    options = {**FAST, "receipt_url": f"{receiver.url}/receipts?key=k1", "duplicate_share": 0.2}
    with LocalCams(seed=7, qps_limit=None, receipt_options=options) as cams:
        client = client_for(cams)
        send(client, numbers(0, 200), "100000000000000001")
        send(client, numbers(200, 200), "100000000000000002")
        send(client, numbers(400, 3), None)  # no TaskId: reports carry the MessageId as TaskId
        assert cams.backend.wait_receipts_pushed(budget(20)), cams.backend.receipts.stats()
        truth = cams.backend.delivery_truth()
        received = cams.backend.snapshot_received()
        stats = cams.backend.receipts.stats()

    bodies = [body for path, body in receiver.posts]
    assert all(isinstance(body, list) and 1 <= len(body) <= 100 for body in bodies)
    assert all(path == "/receipts?key=k1" for path, _ in receiver.posts)
    reports = receiver.reports()

    # every accepted message: a Sent, then its fate; what a forward-only store ends with is the truth
    assert len(truth) == len(received) == 403
    assert {(r["TaskId"], r["To"]) for r in reports if r["Status"] == "Sent"} == set(truth)
    assert final_by_key(reports) == {k: (t.status, t.error_code) for k, t in truth.items()}
    no_task = [msg for msg in received if msg["task_id"] is None]
    assert {(msg["message_id"], msg["to"]) for msg in no_task} <= set(truth)

    # about 10 % failed (binomial, 403 draws), each with one of WhatsApp's codes and its description
    failed = [t for t in truth.values() if t.status == "failed"]
    assert 0.04 * 403 <= len(failed) <= 0.17 * 403
    codes = {code: text for code, text, _ in WHATSAPP_FAILURES}
    assert all(codes[t.error_code] == t.error_description for t in failed)
    assert {t.status for t in truth.values()} == {"failed", "delivered", "read"}

    # the report's fields (ChatAppStatus HTTP page)
    by_id = {msg["message_id"]: msg for msg in received}
    for r in reports:
        msg = by_id[r["MessageId"]]
        assert r["TaskId"] == (msg["task_id"] or msg["message_id"])
        assert (r["To"], r["From"], r["MsgFrameType"], r["Type"]) == (msg["to"], FROM, "template", "TEMPLATE")
        assert (r["TemplateCode"], r["Language"]) == ("T1", "en")
        assert isinstance(r["Timestamp"], int) and r["Timestamp"] >= int(msg["arrived_at"] * 1000)
        assert ("ErrorCode" in r) == (r["Status"] == "Failed")

    # duplicates: some (MessageId, Status) arrive twice; disorder: some higher status arrives before a lower one
    repeats = Counter((r["MessageId"], r["Status"]) for r in reports)
    assert any(count > 1 for count in repeats.values())
    assert sum(repeats.values()) == stats["pushed"]["Sent"] + stats["pushed"]["Delivered"] + stats[
        "pushed"
    ].get("Read", 0) + stats["pushed"].get("Failed", 0)
    seen: dict[str, int] = {}
    reversed_pairs = 0
    for r in reports:
        rank = RANK[r["Status"]]
        if seen.get(r["MessageId"], 0) > rank:
            reversed_pairs += 1
        seen[r["MessageId"]] = max(seen.get(r["MessageId"], 0), rank)
    assert reversed_pairs > 0


def test_the_fates_are_exact_for_a_seed_whatever_the_order_of_the_calls() -> None:
    """Fates are drawn per (TaskId, To) from the seed: the same calls in another order, or a run without any
    receipt URL, give the same truth; another seed does not."""

    def truth(seed: int, order: list[tuple[int, str]]) -> dict[tuple[str, str], Any]:
        with LocalCams(seed=seed, qps_limit=None) as cams:
            client = client_for(cams)
            for start, task in order:
                send(client, numbers(start, 100), task)
            return cams.backend.delivery_truth()

    calls = [(0, "200000000000000001"), (100, "200000000000000002")]
    first = truth(11, calls)
    assert truth(11, calls[::-1]) == first
    assert truth(12, calls) != first


# --- retries: not 2xx, or slower than the 3 s rule (scaled down here) ------------------------------------
def test_a_push_answered_500_or_too_slowly_is_retried_later(receiver: Receiver) -> None:
    def slow() -> int:
        time.sleep(0.8)
        return 200

    receiver.script = [lambda: 500, slow]
    options = {
        **FAST,
        "receipt_url": f"{receiver.url}/receipts?key=k",
        "push_timeout": 0.4,
        "duplicate_share": 0.0,
        "push_workers": 1,  # one request at a time: the script's first two answers go to the first two pushes
    }
    with LocalCams(seed=3, qps_limit=None, receipt_options=options) as cams:
        send(client_for(cams), numbers(0, 5), "300000000000000001")
        assert cams.backend.wait_receipts_pushed(budget(20)), cams.backend.receipts.stats()
        truth = cams.backend.delivery_truth()
        pushes = list(cams.backend.receipts.pushes)
        stats = cams.backend.receipts.stats()

    assert (pushes[0].ok, pushes[0].http_status) == (False, 500)
    assert not pushes[1].ok and "timeout" in pushes[1].error.lower()
    assert all(p.ok for p in pushes[2:])
    assert stats["abandoned"] == 0
    assert final_by_key(receiver.reports()) == {k: (t.status, t.error_code) for k, t in truth.items()}


def test_a_report_is_given_up_after_its_last_retry(receiver: Receiver) -> None:
    receiver.script = [lambda: 503] * 1000
    options = {
        "receipt_url": f"{receiver.url}/receipts?key=k",
        "retry_delays": [0.01, 0.01, 0.01],
        "push_interval": 0.02,
        "duplicate_share": 0.0,
        "read_share": 0.0,
        "failed_share": 0.0,
    }
    with LocalCams(seed=5, qps_limit=None, receipt_options=options) as cams:
        send(client_for(cams), numbers(0, 4), "400000000000000001")
        assert cams.backend.wait_receipts_pushed(budget(20))
        stats = cams.backend.receipts.stats()
    assert stats["abandoned"] == 8  # 4 messages x (Sent, Delivered), each tried 1 + 3 times
    assert stats["pushed"] == {} and stats["pending"] == 0
    assert receiver.posts == []


# --- the MNS form ---------------------------------------------------------------------------------------------
def test_the_mns_form_carries_one_report_per_mns_message(receiver: Receiver) -> None:
    options = {**FAST, "receipt_mode": "mns", "mns_url": f"{receiver.url}/receipts/mns?key=k"}
    with LocalCams(seed=9, qps_limit=None, receipt_options=options) as cams:
        send(client_for(cams), numbers(0, 40), "500000000000000001")
        assert cams.backend.wait_receipts_pushed(budget(20))
        truth = cams.backend.delivery_truth()

    bodies = [body for path, body in receiver.posts]
    assert bodies and all(path == "/receipts/mns?key=k" for path, _ in receiver.posts)
    assert all(isinstance(body, list) and 1 <= len(body) <= 16 for body in bodies)
    reports = []
    for message in (msg for body in bodies for msg in body):
        assert len(message["MessageId"]) == 32 and int(message["MessageId"], 16) >= 0
        assert message["MessageBodyMD5"] == hashlib.md5(message["MessageBody"].encode()).hexdigest().upper()
        assert message["DequeueCount"] == 1 and isinstance(message["EnqueueTime"], int)
        reports.append(json.loads(message["MessageBody"]))
    assert all(isinstance(r, dict) and r["TaskId"] == "500000000000000001" for r in reports)
    assert final_by_key(reports) == {k: (t.status, t.error_code) for k, t in truth.items()}


# --- Viber unsubscribe, inbound messages ---------------------------------------------------------------------
def test_viber_users_unsubscribe_with_the_share_asked(receiver: Receiver) -> None:
    options = {**FAST, "receipt_url": f"{receiver.url}/receipts", "unsubscribe_share": 1.0}
    with LocalCams(seed=1, qps_limit=None, receipt_options=options) as cams:
        send(client_for(cams), numbers(0, 5), "600000000000000001", channel="viber")
        assert cams.backend.wait_receipts_pushed(budget(20))
        opt_outs = cams.backend.opt_outs()
    unsubscribed = {(r["TaskId"], r["To"]) for r in receiver.reports() if r["Status"] == "unsubscribe"}
    assert unsubscribed == opt_outs == {("600000000000000001", n) for n in numbers(0, 5)}
    assert all("ConversationType" not in r for r in receiver.reports())  # WhatsApp's only


def test_an_inbound_message_is_pushed_to_the_inbound_url(receiver: Receiver) -> None:
    with LocalCams(receipt_options={"inbound_url": f"{receiver.url}/inbound?key=k"}) as cams:
        sent = cams.backend.inbound("6591234567", FROM, "STOP", cust_space_id="cams-1")
        admin = urllib.request.Request(
            f"{cams.endpoint}/_localcams/inbound",
            data=json.dumps({"from": "6597654321", "to": FROM, "text": "hello"}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(admin, timeout=5) as reply:
            assert json.load(reply)["Message"] == "hello"
        assert cams.backend.wait_receipts_pushed(budget(10))
    inbound = receiver.reports("/inbound")
    assert sent in inbound
    assert {(i["From"], i["To"], i["Type"], i["Message"]) for i in inbound} == {
        ("6591234567", FROM, "TEXT", "STOP"),
        ("6597654321", FROM, "TEXT", "hello"),
    }
    assert all(isinstance(i["Timestamp"], int) and i["MessageId"] for i in inbound)


# --- configuration, lifecycle -------------------------------------------------------------------------------
def test_the_admin_endpoint_configures_receipts_and_shows_the_truth(receiver: Receiver) -> None:
    with LocalCams(seed=2, qps_limit=None) as cams:

        def admin(path: str, body: Any = None) -> tuple[int, Any]:
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(f"{cams.endpoint}/_localcams/{path}", data=data)
            try:
                with urllib.request.urlopen(req, timeout=5) as reply:
                    return reply.status, json.load(reply)
            except urllib.error.HTTPError as error:
                return error.code, json.load(error)

        assert admin("config", {"failed_share": 2})[0] == 400
        assert admin("config", {"sent_delay": [0.3, 0.1]})[0] == 400
        assert admin("config", {"receipt_url": f"{receiver.url}/receipts", **FAST})[0] == 200
        send(client_for(cams), numbers(0, 10), "700000000000000001")
        assert cams.backend.wait_receipts_pushed(budget(20))
        status, shown = admin("receipts")
    assert status == 200 and shown["stats"]["pending"] == 0 and len(shown["truth"]) == 10
    assert final_by_key(receiver.reports()) == {
        (t["task_id"], t["to"]): (t["status"], t["error_code"]) for t in shown["truth"]
    }


def test_stopping_the_emulator_leaves_no_pusher_thread(receiver: Receiver) -> None:
    options = {"receipt_url": f"{receiver.url}/receipts", "sent_delay": [5, 5]}  # still queued at the stop
    cams = LocalCams(qps_limit=None, receipt_options=options).start()
    send(client_for(cams), numbers(0, 3), "800000000000000001")
    deadline = time.monotonic() + budget(5)
    while not any(t.name.startswith(THREAD_NAME) for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the pusher never started"
        time.sleep(0.01)
    cams.stop()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]
    assert cams.backend.receipts_pending() > 0  # kept for a restart, not lost


# --- the local cloud points the pushes at the api function's HTTP trigger -----------------------------------
RECORDER = """
import json
import os
import uuid


def handler(event, context):
    with open(os.path.join(os.environ["RECORD_DIR"], uuid.uuid4().hex + ".json"), "w") as out:
        out.write(event.decode() if isinstance(event, bytes) else event)
    return {"statusCode": 200, "body": '{"code":0,"msg":"success"}'}
"""


def recorded_reports(record_dir: Any, path: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(query parameters, report) of every report the function was given on ``path``."""
    import base64

    found = []
    for file in sorted(record_dir.iterdir()):
        event = json.loads(file.read_text())
        if event["rawPath"] != path:
            continue
        body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
        found.extend((event["queryParameters"], report) for report in json.loads(body))
    return found


@pytest.mark.parametrize("with_key", [True, False])
def test_the_local_cloud_points_the_pushes_at_the_api_function(tmp_path: Any, with_key: bool) -> None:
    from chatapp_mass.entry.localcloud import LocalCloud
    from chatapp_mass.runtime import env

    code, records = tmp_path / "code", tmp_path / "records"
    code.mkdir()
    records.mkdir()
    (code / "index.py").write_text(RECORDER, encoding="utf-8")
    variables = {"RECORD_DIR": str(records)}
    web = "[{triggerName: web, triggerType: http, triggerConfig: {authType: anonymous, methods: [POST]}}]"
    (tmp_path / "s.yaml").write_text(
        f"""
edition: 3.0.0
name: receipts-test
resources:
  api:
    component: fc3
    props:
      functionName: api
      region: ap-southeast-1
      runtime: python3.10
      handler: index.handler
      code: {code}
      environmentVariables: {json.dumps(variables)}
      triggers: {web}
""",
        encoding="utf-8",
    )
    with LocalCloud(
        s_yaml=str(tmp_path / "s.yaml"),
        product_tables=False,
        realistic=False,
        fc_options={"source_layout": False},
        function_environment={env.CHATAPP_RECEIPT_KEY: "s3cret/key"} if with_key else {},
        cams_options={"qps_limit": None, "receipt_options": {"retry_scale": 0.001}},
    ) as cloud:
        assert cloud.fc is not None
        api = cloud.fc.http_endpoint("api")
        options = cloud.cams.backend.receipts.options
        if not with_key:  # no secret for the callback: pushing stays off
            assert (options.receipt_url, options.inbound_url, options.mns_url) == (None, None, None)
            return
        assert options.receipt_url == f"{api}/receipts?key=s3cret%2Fkey"
        assert options.inbound_url == f"{api}/inbound?key=s3cret%2Fkey"
        assert options.mns_url == f"{api}/receipts/mns?key=s3cret%2Fkey"
        send(client_for(cloud.cams), numbers(0, 20), "900000000000000001")
        cloud.cams.backend.inbound("6599999999", FROM, "STOP")
        assert cloud.cams.backend.wait_receipts_pushed(budget(30)), cloud.cams.backend.receipts.stats()
        truth = cloud.cams.backend.delivery_truth()
    statuses = recorded_reports(records, "/receipts")
    assert all(query == {"key": "s3cret/key"} for query, _ in statuses)
    assert final_by_key([report for _, report in statuses]) == {
        k: (t.status, t.error_code) for k, t in truth.items()
    }
    assert [report["Message"] for _, report in recorded_reports(records, "/inbound")] == ["STOP"]
