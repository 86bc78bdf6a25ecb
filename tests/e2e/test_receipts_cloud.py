"""End to end in the local cloud: jobs submitted over HTTP to the api function (the local FC running it from
s.yaml), sent by the sender functions to the local CAMS, which pushes their receipts back to the api function
as the service would (10% failed, repeats, out of order; the HTTP form for one job, the MNS form for the other).
Each report's delivery columns and each job's delivery figures are then exactly what the local CAMS says it
delivered (``delivery_truth``)."""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from chatapp_mass.entry.localcloud import LocalCloud

from speed import budget

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "e2e-" + secrets.token_hex(20)
KEY = secrets.token_urlsafe(18)
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path_factory.mktemp("receipts") / "cloud"),
        function_environment={
            "CHATAPP_API_TOKEN": TOKEN,
            "CHATAPP_RECEIPT_KEY": KEY,
            "CHATAPP_BATCH_SIZE": "100",
        },
        # a push answered late (an api instance starting on a busy machine) is retried in ms, not a minute
        cams_options={"receipt_options": {"retry_scale": 0.001}},
    ) as local:
        yield local


@pytest.mark.parametrize("mode", ["http", "mns"])
def test_reports_say_what_the_local_cams_delivered(cloud: LocalCloud, mode: str) -> None:
    backend = cloud.cams.backend
    backend.configure(receipt_mode=mode, failed_share=0.1, read_share=0.5, duplicate_share=0.2)
    base = cloud.fc.http_endpoint("chatapp-mass-api")
    http = requests.Session()
    http.trust_env = False
    http.headers["Authorization"] = f"Bearer {TOKEN}"
    seed = 1 if mode == "http" else 2
    recipients = [{"To": f"+86137{seed:02d}{i:06d}"} for i in range(200)]
    response = http.post(
        f"{base}/jobs", json={"options": OPTIONS, "recipients": recipients}, timeout=budget(30)
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + budget(120)
    while http.get(f"{base}/jobs/{job_id}", timeout=budget(30)).json()["status"] != "completed":
        assert time.monotonic() < deadline, f"job {job_id} did not complete"
        time.sleep(0.2)
    assert backend.wait_receipts_pushed(budget(120)), backend.receipts.stats()
    stats = backend.receipts.stats()
    assert stats["abandoned"] == 0 and stats["pushed"], stats

    ours = {to for (task, to) in backend.delivery_truth() if to.startswith(f"86137{seed:02d}")}
    truth = {to: t for (task, to), t in backend.delivery_truth().items() if to in ours}
    assert len(truth) == 200 and {t.status for t in truth.values()} >= {"failed", "read", "delivered"}
    report = http.get(f"{base}/jobs/{job_id}/report", timeout=budget(60))
    assert report.status_code == 200, report.text
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert len(rows) == 200 and {r["status"] for r in rows} == {"sent"}
    assert {r["to"]: (r["delivery"], r["delivery_code"], r["delivery_message"]) for r in rows} == {
        to: (t.status, t.error_code, t.error_description) for to, t in truth.items()
    }
    assert all(r["delivery_at"].endswith("Z") for r in rows)

    figures = http.get(f"{base}/jobs/{job_id}", timeout=budget(30)).json()["delivery"]
    said = Counter(t.status for t in truth.values())
    assert (figures["accepted"], figures["read"], figures["failed"]) == (200, said["read"], said["failed"])
    assert figures["delivered"] == said["read"] + said["delivered"] and figures["awaiting"] == said["sent"]
    unmatched = http.get(f"{base}/receipts/unmatched", timeout=budget(30)).json()["unmatched"]
    assert not [u for u in unmatched if u["to"] in ours]  # every TaskId was registered before its call


def _submit(
    http: requests.Session, base: str, recipients: list[dict[str, str]], canary: dict[str, float]
) -> str:
    body = {"options": OPTIONS, "recipients": recipients, "canary": canary}
    response = http.post(f"{base}/jobs", json=body, timeout=budget(30))
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _settled(http: requests.Session, base: str, job_id: str, statuses: set[str]) -> dict[str, object]:
    deadline = time.monotonic() + budget(120)
    while True:
        job = http.get(f"{base}/jobs/{job_id}", timeout=budget(30)).json()
        if job["status"] in statuses:
            return dict(job)
        assert time.monotonic() < deadline, f"job {job_id} is {job['status']}: {job.get('reason')}"
        time.sleep(0.2)


def test_a_canary_that_fails_pauses_the_job_after_its_first_recipients(cloud: LocalCloud) -> None:
    """A broken template fails 60% of its recipients: the canary sends 50 of 250, their receipts come back
    (pushed by the local CAMS), and the job is paused with the rate and the error code; nobody else gets it.
    An operator's resume overrides the canary: the other 200 are sent, each once."""
    backend = cloud.cams.backend
    backend.configure(receipt_mode="http", failed_share=0.6, read_share=0.5, duplicate_share=0.1)
    base = cloud.fc.http_endpoint("chatapp-mass-api")
    http = requests.Session()
    http.trust_env = False
    http.headers["Authorization"] = f"Bearer {TOKEN}"
    recipients = [{"To": f"+8613655{i:06d}"} for i in range(250)]
    job_id = _submit(http, base, recipients, {"recipients": 50, "max_failure_rate": 0.1, "timeout": 60})
    job = _settled(http, base, job_id, {"paused", "completed"})
    assert job["status"] == "paused" and "canary:" in str(job["reason"]), job
    assert "131" in str(job["reason"])  # the commonest WhatsApp error code is named
    sent = Counter(m.to for m in backend.received if m.to.startswith("8613655"))
    assert len(sent) == 50 and set(sent.values()) == {1}
    assert sorted(sent) == [f"8613655{i:06d}" for i in range(50)]  # the first 50 of the file

    backend.configure(failed_share=0.0)
    resumed = http.post(f"{base}/jobs/{job_id}/resume", json={}, timeout=budget(30))
    assert resumed.status_code in (200, 202), resumed.text
    assert _settled(http, base, job_id, {"completed"})["status"] == "completed"
    sent = Counter(m.to for m in backend.received if m.to.startswith("8613655"))
    assert len(sent) == 250 and set(sent.values()) == {1}


def test_a_canary_that_passes_lets_the_job_go_on(cloud: LocalCloud) -> None:
    backend = cloud.cams.backend
    backend.configure(receipt_mode="http", failed_share=0.0, read_share=0.5, duplicate_share=0.1)
    base = cloud.fc.http_endpoint("chatapp-mass-api")
    http = requests.Session()
    http.trust_env = False
    http.headers["Authorization"] = f"Bearer {TOKEN}"
    recipients = [{"To": f"+8613666{i:06d}"} for i in range(150)]
    job_id = _submit(http, base, recipients, {"recipients": 20, "max_failure_rate": 0.05, "timeout": 60})
    assert _settled(http, base, job_id, {"completed", "paused"})["status"] == "completed"
    sent = Counter(m.to for m in backend.received if m.to.startswith("8613666"))
    assert len(sent) == 150 and set(sent.values()) == {1}
