"""The HTTP API and the timer, end to end on the local cloud: a real HTTP client talks to the api function's
HTTP trigger served by the local FC from the project's s.yaml; senders run in worker processes against the
local CAMS; the timer trigger is fired as FC would. Checks: every valid recipient once; one Idempotency-Key,
one job; cancel mid-job leaves every row in one final status; a scheduled job starts once, never early; a
crashed sender's batches are picked up by the sweeper and what may have gone is never sent again."""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from chatapp_mass.core.tokens import token_digest
from chatapp_mass.entry.localcloud import LocalCloud

from speed import budget

ROOT = Path(__file__).resolve().parents[2]
API, SENDER = "chatapp-mass-api", "chatapp-mass-sender"
TOKEN = "e2e-" + secrets.token_hex(16)  # a send token (its hash is in CHATAPP_API_TOKENS)
READ_TOKEN = "e2e-read-" + secrets.token_hex(16)
TOKENS = f"send:{token_digest(TOKEN)},read:{token_digest(READ_TOKEN)}"
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}
FINAL = {"completed", "cancelled", "stopped", "failed"}


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path / "cloud"),
        cams_options={"latency": 0.05, "latency_jitter": 0.5},
        function_environment={
            "CHATAPP_BATCH_SIZE": "50",
            "CHATAPP_API_TOKENS": TOKENS,
            "CHATAPP_SWEEP_IDLE": "1",
        },
    ) as local:
        yield local


class Client:
    def __init__(self, cloud: LocalCloud) -> None:
        self.base = cloud.fc.http_endpoint(API)
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only, whatever proxies the environment names
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def submit(self, body: dict[str, Any], **headers: str) -> requests.Response:
        return self.http.post(f"{self.base}/jobs", json=body, headers=headers, timeout=60)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.base}/jobs/{job_id}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, statuses: set[str] = FINAL, timeout: float = 120) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses and not (job["status"] == "cancelled" and job["pending"]):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} still {self.job(job_id)}")

    def report(self, job_id: str) -> list[dict[str, str]]:
        response = self.http.get(f"{self.base}/jobs/{job_id}/report", timeout=60)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(response.text)))


def recipients(count: int, seed: int) -> list[dict[str, Any]]:
    items = [{"To": f"+86 139{seed:02d}{i:06d}", "TemplateParams": {"name": f"N{i}"}} for i in range(count)]
    items[1]["To"] = "000"  # invalid
    items[2]["To"] = items[0]["To"]  # duplicate
    return items


def valid(count: int, seed: int) -> set[str]:
    return {f"86139{seed:02d}{i:06d}" for i in range(count) if i not in (1, 2)}


def assert_one_final_status_each(rows: list[dict[str, str]], count: int) -> None:
    assert [int(r["line"]) for r in rows] == list(range(1, count + 1))
    assert {r["status"] for r in rows} <= {"sent", "failed", "uncertain", "invalid", "duplicate", "cancelled"}


def test_submit_over_http_every_valid_recipient_once(cloud: LocalCloud) -> None:
    client = Client(cloud)
    response = client.submit({"options": OPTIONS, "recipients": recipients(400, seed=1)})
    assert response.status_code == 202, response.text
    created = response.json()
    assert response.headers["Location"].endswith(f"/jobs/{created['job_id']}")
    job = client.wait(created["job_id"])
    assert job["status"] == "completed" and job["sent"] == 398
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter({n: 1 for n in valid(400, 1)})
    rows = client.report(created["job_id"])
    assert_one_final_status_each(rows, 400)
    assert Counter(r["status"] for r in rows) == {"sent": 398, "invalid": 1, "duplicate": 1}
    assert cloud.cams.backend.max_calls_in_any_window(1.0) <= 10
    assert any(r.trigger == "http" for r in cloud.fc.backend.records(API))
    listed = client.http.get(f"{client.base}/jobs", timeout=30).json()["jobs"]
    assert created["job_id"] in [j["job_id"] for j in listed]


def test_one_idempotency_key_one_job(cloud: LocalCloud) -> None:
    client = Client(cloud)
    body = {"options": OPTIONS, "recipients": recipients(150, seed=2)}
    key = secrets.token_hex(8)
    first = client.submit(body, **{"Idempotency-Key": key})
    again = client.submit(body, **{"Idempotency-Key": key})  # a client retrying after a lost answer
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["job_id"] == again.json()["job_id"] and again.json()["repeated"] is True
    client.wait(first.json()["job_id"])
    late = client.submit(body, **{"Idempotency-Key": key})
    assert late.status_code == 200 and late.json()["status"] == "completed"
    cloud.fc.backend.wait_idle(30)
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter({n: 1 for n in valid(150, 2)})
    other = {"options": OPTIONS, "recipients": recipients(20, seed=6)}
    assert client.submit(other).status_code == 202
    refused = client.submit(other)  # the same body again without a key, within the window
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "probable_repeat"
    unauthenticated = requests.post(f"{client.base}/jobs", json=body, timeout=30)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="chatapp-mass"'


def test_a_read_token_reads_and_cannot_act_through_the_function(cloud: LocalCloud) -> None:
    """The api function as deployed (CHATAPP_API_TOKENS from its environment): a read token lists and watches,
    and every POST is 403 insufficient_scope with the job unchanged."""
    client = Client(cloud)
    body = {"options": OPTIONS, "recipients": recipients(20, seed=7), "scheduledAt": "2099-01-01T09:00:00Z"}
    created = client.submit(body)
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    reader = requests.Session()
    reader.trust_env = False
    reader.headers["Authorization"] = f"Bearer {READ_TOKEN}"
    assert reader.get(f"{client.base}/jobs/{job_id}", timeout=30).json()["status"] == "scheduled"
    assert job_id in [j["job_id"] for j in reader.get(f"{client.base}/jobs", timeout=30).json()["jobs"]]
    refused = reader.post(f"{client.base}/jobs", json={**body, "scheduledAt": None}, timeout=30)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_scope")
    for action in ("cancel", "pause", "resume", "reconcile", "resend-uncertain"):
        refused = reader.post(f"{client.base}/jobs/{job_id}/{action}", timeout=30)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_scope"), action
    assert client.job(job_id)["status"] == "scheduled"
    not_allowed = reader.post(f"{client.base}/jobs/{job_id}", timeout=30)  # (DELETE: FC's own 405)
    assert (not_allowed.status_code, not_allowed.headers["Allow"]) == (405, "GET")


def test_cancel_mid_job_every_row_in_exactly_one_final_status(cloud: LocalCloud) -> None:
    cloud.cams.backend.configure(latency=0.3, latency_jitter=0.3)
    client = Client(cloud)
    count = 2500  # 50 batches: about 5 s at 10 calls/s
    created = client.submit({"options": OPTIONS, "recipients": recipients(count, seed=3)}).json()
    deadline = time.time() + budget(60)
    while len(cloud.cams.backend.attempts) < 8 and time.time() < deadline:
        time.sleep(0.05)
    cancelled = client.http.post(f"{client.base}/jobs/{created['job_id']}/cancel", timeout=30)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    job = client.wait(created["job_id"])
    assert job["status"] == "cancelled" and job["pending"] == 0
    rows = client.report(created["job_id"])
    assert_one_final_status_each(rows, count)
    statuses = Counter(r["status"] for r in rows)
    received = Counter(m.to for m in cloud.cams.backend.received)
    assert max(received.values()) == 1
    assert statuses["sent"] == len(received) and 0 < statuses["sent"] < count - 2
    assert statuses["cancelled"] > 0 and statuses["uncertain"] == 0
    assert statuses["sent"] + statuses["cancelled"] == count - 2
    key = f"reports/api/{created['job_id']}.report.csv"
    bucket = cloud.oss.oss2_bucket(cloud.bucket)
    deadline = time.time() + budget(30)  # written by whoever saw the last call in flight resolve
    while not bucket.object_exists(key) and time.time() < deadline:
        time.sleep(0.1)
    written = list(csv.DictReader(io.StringIO(bucket.get_object(key).read().decode())))
    assert Counter(r["status"] for r in written) == statuses


def test_scheduled_job_starts_once_and_not_before_its_time(cloud: LocalCloud) -> None:
    client = Client(cloud)
    # the submit and the early firing below must come before it, on a busy machine too
    at = time.time() + budget(5)
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at))
    zone = time.strftime("%z")
    body = {
        "options": OPTIONS,
        "recipients": recipients(120, seed=4),
        "scheduledAt": f"{when}{zone[:3]}:{zone[3:]}",
    }
    created = client.submit(body).json()
    assert created["status"] == "scheduled"
    cloud.fc.backend.fire_timer(API, "api-timer")  # too early
    cloud.fc.backend.wait_idle(30)
    assert client.job(created["job_id"])["status"] == "scheduled" and not cloud.cams.backend.attempts
    while time.time() < int(at) + 1:
        time.sleep(0.1)
    for _ in range(3):  # a firing delivered twice, and the next minute's, at once
        cloud.fc.backend.fire_timer(API, "api-timer")
    job = client.wait(created["job_id"])
    assert job["status"] == "completed"
    cloud.fc.backend.wait_idle(30)
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter({n: 1 for n in valid(120, 4)})
    assert min(a.arrived_at for a in cloud.cams.backend.attempts) >= int(at)


def test_crashed_senders_batches_are_picked_up_by_the_sweeper_without_a_second_send(
    cloud: LocalCloud,
) -> None:
    client = Client(cloud)
    # every delivery of the sender's event (the first and FC's 3 retries) dies just after a call returned,
    # before its outcome is stored: each leaves one batch `sending`; then the event is given up
    cloud.fc.backend.crash_next(SENDER, "sender.after_call", 4)
    created = client.submit({"options": OPTIONS, "recipients": recipients(500, seed=5)}).json()
    deadline = time.time() + budget(90)
    while (
        len([r for r in cloud.fc.backend.records(SENDER) if r.status == "crash"]) < 4
        and time.time() < deadline
    ):
        time.sleep(0.1)
    cloud.fc.backend.wait_idle(60)
    assert client.job(created["job_id"])["status"] == "running"  # stalled: nobody is sending it
    time.sleep(1.1)  # CHATAPP_SWEEP_IDLE=1: the job has been idle long enough
    cloud.fc.backend.fire_timer(API, "api-timer")
    job = client.wait(created["job_id"])
    assert job["status"] == "completed"
    received = Counter(m.to for m in cloud.cams.backend.received)
    assert received == Counter({n: 1 for n in valid(500, 5)}), "lost or sent twice"
    rows = client.report(created["job_id"])
    assert_one_final_status_each(rows, 500)
    statuses = Counter(r["status"] for r in rows)
    uncertain = [r for r in rows if r["status"] == "uncertain"]
    # the four calls whose outcome was never stored: reported uncertain, and not sent again
    assert len({r["group_message_id"] or r["code"] for r in uncertain}) == 1 and uncertain
    assert 4 * 48 <= len(uncertain) <= 4 * 50 and statuses["sent"] == 498 - len(uncertain)
    assert all(r["code"] == "Interrupted" for r in uncertain)
    batches = Counter(m.group_message_id for m in cloud.cams.backend.received)
    assert len(batches) == 10  # ten accepted calls for ten batches: none twice
