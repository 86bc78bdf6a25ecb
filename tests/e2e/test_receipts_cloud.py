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
    recipients = [{"To": f"+86137{seed:02d}{i:06d}"} for i in range(450)]
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
    assert len(truth) == 450 and {t.status for t in truth.values()} >= {"failed", "read", "delivered"}
    report = http.get(f"{base}/jobs/{job_id}/report", timeout=budget(60))
    assert report.status_code == 200, report.text
    rows = list(csv.DictReader(io.StringIO(report.text)))
    assert len(rows) == 450 and {r["status"] for r in rows} == {"sent"}
    assert {r["to"]: (r["delivery"], r["delivery_code"], r["delivery_message"]) for r in rows} == {
        to: (t.status, t.error_code, t.error_description) for to, t in truth.items()
    }
    assert all(r["delivery_at"].endswith("Z") for r in rows)

    figures = http.get(f"{base}/jobs/{job_id}", timeout=budget(30)).json()["delivery"]
    said = Counter(t.status for t in truth.values())
    assert (figures["accepted"], figures["read"], figures["failed"]) == (450, said["read"], said["failed"])
    assert figures["delivered"] == said["read"] + said["delivered"] and figures["awaiting"] == said["sent"]
    unmatched = http.get(f"{base}/receipts/unmatched", timeout=budget(30)).json()["unmatched"]
    assert not [u for u in unmatched if u["to"] in ours]  # every TaskId was registered before its call
