"""The suppression list at the serverless path: numbers suppressed over HTTP (``POST /suppressions`` on the api
function, served by the local FC from s.yaml), jobs submitted with ``POST /jobs``, planned, and sent by the
sender functions to the local CAMS, the store the local Tablestore. A number suppressed before the plan or
between the plan and the send (a scheduled job) is in no SenderList the local CAMS records; its report line
says ``suppressed``; every other valid recipient is sent exactly once."""

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
API = "chatapp-mass-api"
TOKEN = "e2e-" + secrets.token_hex(16)
READ_TOKEN = "e2e-read-" + secrets.token_hex(16)
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path / "cloud"),
        cams_options={"latency": 0.02},
        function_environment={
            "CHATAPP_BATCH_SIZE": "50",
            "CHATAPP_API_TOKENS": f"send:{token_digest(TOKEN)},read:{token_digest(READ_TOKEN)}",
        },
    ) as local:
        yield local


def session(token: str) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.headers["Authorization"] = f"Bearer {token}"
    return http


def recipients(count: int, seed: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The request's recipients (as a person writes numbers) and the valid ones' wire form, in line order."""
    items = [{"To": f"+86 139{seed:02d}{i:06d}", "TemplateParams": {"name": f"N{i}"}} for i in range(count)]
    items[1]["To"] = "000"  # invalid
    return items, [f"86139{seed:02d}{i:06d}" for i in range(count) if i != 1]


def wait(http: requests.Session, url: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.time() + budget(120)
    while time.time() < deadline:
        job: dict[str, Any] = http.get(url, timeout=30).json()
        if job["status"] in statuses and not job["pending"]:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{url}: still {http.get(url, timeout=30).json()}")


def report(http: requests.Session, url: str) -> dict[str, str]:
    response = http.get(url, timeout=60)
    assert response.status_code == 200, response.text
    return {row["to"]: row["status"] for row in csv.DictReader(io.StringIO(response.text))}


def received(cloud: LocalCloud) -> Counter[str]:
    return Counter(str(r.get("To")) for attempt in cloud.cams.backend.attempts for r in attempt.recipients)


def test_suppressed_over_http_before_and_after_the_plan_never_reach_cams(cloud: LocalCloud) -> None:
    http = session(TOKEN)
    base = cloud.fc.http_endpoint(API)
    items, wire = recipients(300, seed=11)
    # Before the plan: two numbers, as a person writes them; a third added and taken off again (sent).
    early = [wire[5], wire[200]]
    added = http.post(
        f"{base}/suppressions",
        json={"numbers": ["+86 139 11 000006", f"+{wire[200]}", f"+{wire[7]}"], "reason": "operator"},
        timeout=30,
    )
    assert added.status_code == 200, added.text
    assert added.json() == {"space": "default", "requested": 3, "added": 3}
    assert wire[5] == "8613911000006"
    removed = http.delete(f"{base}/suppressions", params={"number": f"+{wire[7]}"}, timeout=30)
    assert removed.status_code == 200 and removed.json()["removed"] == 1, removed.text
    reader = session(READ_TOKEN)
    listed = reader.get(f"{base}/suppressions", params={"limit": 1}, timeout=30).json()
    assert [n["number"] for n in listed["numbers"]] == [min(early)] and listed["next_cursor"]
    second = reader.get(f"{base}/suppressions", params={"cursor": listed["next_cursor"]}, timeout=30).json()
    assert [n["number"] for n in second["numbers"]] == [max(early)]
    refused = reader.post(f"{base}/suppressions", json={"numbers": ["+8613911000001"]}, timeout=30)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_scope")

    # A job planned now, to start a few seconds later: it is planned (early ones suppressed) before it sends.
    at = time.time() + budget(5)
    created = http.post(
        f"{base}/jobs",
        json={"options": OPTIONS, "recipients": items, "scheduledAt": _iso(at)},
        timeout=60,
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["status"] == "scheduled" and job["suppressed"] == 2
    # Between the plan and the send: a whole batch (the second: 50 recipients) and one more number.
    late = [*wire[50:100], wire[250]]
    assert http.post(f"{base}/suppressions", json={"numbers": late}, timeout=30).json()["added"] == len(late)
    while time.time() < int(at) + 1:
        time.sleep(0.1)
    cloud.fc.backend.fire_timer(API, "api-timer")
    state = wait(http, job["status_url"], {"completed"})
    cloud.fc.backend.wait_idle(30)

    gone = set(early) | set(late)
    assert not gone & set(received(cloud)), "a suppressed number reached CAMS"
    assert received(cloud) == Counter({n: 1 for n in wire if n not in gone})
    statuses = report(http, job["report_url"])
    assert {n: statuses[n] for n in gone} == dict.fromkeys(gone, "suppressed")
    assert Counter(statuses.values()) == {
        "sent": len(wire) - len(gone),
        "suppressed": len(gone),
        "invalid": 1,
    }
    assert (state["sent"], state["suppressed"], state["failed"]) == (len(wire) - len(gone), len(gone), 0)
    assert state["share_done"] == 1.0


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
