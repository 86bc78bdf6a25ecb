"""The suppression list at the CLI path: `chatapp-mass suppress add` and `chatapp-mass send` as real processes
against the local CAMS. A number suppressed before the plan, or between the plan and the send, is in no
SenderList the local CAMS records (its own record of every attempt), its report line says ``suppressed``, and
every other recipient is sent exactly once."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from alibaba_localcloud.cams import LocalCams
from chatapp_mass.store.sqlite import SqliteStore

JOB = [
    "--channel-type",
    "whatsapp",
    "--template-code",
    "T_WELCOME",
    "--language",
    "en",
    "--from",
    "8613800000000",
]


@pytest.fixture
def cams() -> Iterator[LocalCams]:
    with LocalCams(latency=0.01) as server:
        yield server


def cli(cams: LocalCams, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    creds = cams.credentials
    env.update(
        CHATAPP_CAMS_ENDPOINT=cams.endpoint,
        ALIBABA_CLOUD_ACCESS_KEY_ID=creds.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=creds.access_key_secret,
        ALIBABA_CLOUD_SECURITY_TOKEN=creds.security_token or "",
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
    )
    return subprocess.run(
        [sys.executable, "-m", "chatapp_mass", *args], env=env, capture_output=True, text=True, timeout=120
    )


def numbers(count: int) -> list[str]:
    return [f"4474001{n:05d}" for n in range(count)]  # UK mobiles, the wire form


def write_csv(path: Path, wire: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["to", "name", "code"])
        for n, number in enumerate(wire):
            writer.writerow([f"+{number}", f"name{n}", f"c{n}"])


def report(path: Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["to"]: row["status"] for row in csv.DictReader(handle)}


def sent_to(cams: LocalCams) -> Counter[str]:
    """Every recipient of every SenderList the local CAMS received (accepted or not)."""
    return Counter(str(r.get("To")) for attempt in cams.backend.attempts for r in attempt.recipients)


def test_a_number_suppressed_before_the_send_is_in_no_sender_list(cams: LocalCams, tmp_path: Path) -> None:
    wire = numbers(120)
    write_csv(tmp_path / "list.csv", wire)
    store = f"sqlite:///{tmp_path / 'state.db'}"
    suppressed = [wire[3], wire[60], wire[119]]
    added = cli(cams, "suppress", "add", *(f"+{n}" for n in suppressed), "--store", store)
    assert added.returncode == 0, added.stderr
    assert "added 3 of 3" in added.stdout
    result = cli(
        cams, "send", str(tmp_path / "list.csv"), *JOB, "--yes", "--batch-size", "50",
        "--store", store, "--report", str(tmp_path / "report.csv"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    received = sent_to(cams)
    assert not set(suppressed) & set(received), "a suppressed number reached CAMS"
    assert received == Counter({n: 1 for n in wire if n not in suppressed})
    statuses = report(tmp_path / "report.csv")
    assert {n: statuses[n] for n in suppressed} == dict.fromkeys(suppressed, "suppressed")
    assert Counter(statuses.values()) == {"sent": 117, "suppressed": 3}
    assert "3 suppressed" in result.stderr + result.stdout


def test_a_number_suppressed_between_plan_and_send_is_left_out_at_send_time(
    cams: LocalCams, tmp_path: Path
) -> None:
    wire = numbers(150)
    write_csv(tmp_path / "list.csv", wire)
    db = tmp_path / "state.db"
    store = f"sqlite:///{db}"
    send = [
        "send", str(tmp_path / "list.csv"), *JOB, "--yes", "--batch-size", "50",
        "--store", store, "--report", str(tmp_path / "report.csv"),
    ]  # fmt: skip
    planned = cli(cams, *send, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert cams.backend.attempts == []
    # After the plan: all of batch 1 (lines 52..101) and two numbers of batch 2, from the file.
    handle = SqliteStore(str(db))
    try:
        (job,) = handle.list_jobs()
        assert job.suppressed == 0 and job.batches == 3
        whole_batch = [recipient["To"] for _, recipient in handle.batch_rows(job.job_id, 1)]
    finally:
        handle.close()
    late = [*whole_batch, wire[120], wire[149]]
    listing = tmp_path / "optouts.txt"
    listing.write_text("\n".join(f"+{n}" for n in late) + "\n", encoding="utf-8")
    added = cli(cams, "suppress", "add", "--file", str(listing), "--reason", "import", "--store", store)
    assert added.returncode == 0 and f"added {len(late)} of {len(late)}" in added.stdout, added

    result = cli(cams, *send)
    assert result.returncode == 0, result.stderr
    received = sent_to(cams)
    assert not set(late) & set(received), "a number suppressed since the plan reached CAMS"
    assert received == Counter({n: 1 for n in wire if n not in late})
    assert len(cams.backend.attempts) == 2, "the batch whose every recipient is suppressed makes no call"
    statuses = report(tmp_path / "report.csv")
    assert {n: statuses[n] for n in late} == dict.fromkeys(late, "suppressed")
    assert Counter(statuses.values()) == {"sent": 150 - len(late), "suppressed": len(late)}

    status = cli(cams, "status", job.job_id[:12], "--json", "--store", store)
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert (counts["sent"], counts["suppressed"], counts["failed"]) == (150 - len(late), len(late), 0)
    listed = cli(cams, "suppress", "list", "--json", "--store", store)
    assert {item["number"] for item in json.loads(listed.stdout)["numbers"]} == set(late)
