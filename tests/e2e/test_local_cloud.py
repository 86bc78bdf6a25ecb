"""End to end on the whole local cloud: the recipient CSV is an OSS object, state lives in Tablestore, and
`chatapp-mass send` (a real process, configured only by the environment the local cloud prints) reaches every
valid number once — also across a crash. `chatapp-mass local-cloud` prints one JSON line, serves the real
SDKs, and keeps its state in `--data` across a restart."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatapp_mass.core.phones import normalize_number
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.entry.sample import write_sample_csv
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

from speed import budget

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
KEY = "lists/march.csv"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with LocalCloud(
        data_dir=str(tmp_path / "cloud"), cams_options={"latency": 0.02, "latency_jitter": 0.5}
    ) as local:
        yield local


def cli_env(cloud: LocalCloud) -> dict[str, str]:
    environ = {
        k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("CHATAPP_")
    }
    environ.update(cloud.environment())
    return environ


def upload_sample(cloud: LocalCloud, tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "recipients.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        write_sample_csv(handle, rows, seed=11)
    cloud.oss.oss2_bucket(cloud.bucket).put_object_from_file(KEY, str(path))
    return path


def command(report: Path, *extra: str, source: str = f"oss://chatapp-mass/{KEY}") -> list[str]:
    return [
        sys.executable,
        "-m",
        "chatapp_mass",
        "send",
        source,
        *JOB,
        "--yes",
        "--report",
        str(report),
        *extra,
    ]


def expected_valid(path: Path) -> set[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {
            number
            for row in csv.DictReader(handle)
            if (number := normalize_number(row["to"].strip(), None))
            and row["name"].strip()
            and row["code"].strip()
        }


def test_send_from_oss_with_state_in_tablestore(cloud: LocalCloud, tmp_path: Path) -> None:
    local = upload_sample(cloud, tmp_path, 1500)
    report = tmp_path / "report.csv"
    result = subprocess.run(
        command(report, "--batch-size", "100"),
        env=cli_env(cloud),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    expected = expected_valid(local)
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter({n: 1 for n in expected})
    with open(report, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["line"]) for r in rows] == list(range(2, 1502))
    assert Counter(r["status"] for r in rows)["sent"] == len(expected)
    # the state really is in Tablestore: one row per record, one per batch
    creds = cloud.credentials
    store = TablestoreStore(
        TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
        create_tables=False,
    )
    [job] = store.list_jobs()
    assert [r.line for r in store.report_rows(job.job_id)] == list(range(2, 1502))
    assert cloud.tablestore.backend.row_count("chatapp_batches") == (len(expected) + 99) // 100
    store.close()

    calls = len(cloud.cams.backend.attempts)
    again = subprocess.run(
        command(report, "--batch-size", "100"),
        env=cli_env(cloud),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert again.returncode == 0 and "resuming" in again.stderr
    assert len(cloud.cams.backend.attempts) == calls, "a finished job must not call CAMS again"


def test_crash_mid_send_then_resume_reaches_everyone_at_most_once(cloud: LocalCloud, tmp_path: Path) -> None:
    cloud.cams.backend.configure(latency=0.3, latency_jitter=0.5)
    local = upload_sample(cloud, tmp_path, 1500)
    report = tmp_path / "report.csv"
    process = subprocess.Popen(
        command(report, "--batch-size", "50"),
        env=cli_env(cloud),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + budget(90)
    while len(cloud.cams.backend.attempts) < 8 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL

    cloud.cams.backend.configure(latency=0.0, latency_jitter=0.0)
    resumed = subprocess.run(
        command(report, "--batch-size", "50"), env=cli_env(cloud), capture_output=True, text=True, timeout=180
    )
    received = Counter(m.to for m in cloud.cams.backend.received)
    assert max(received.values()) == 1, "a number was sent twice"
    with open(report, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    statuses = Counter(r["status"] for r in rows)
    uncertain = [r for r in rows if r["status"] == "uncertain"]
    assert statuses["sent"] + len(uncertain) == len(expected_valid(local))  # nobody lost
    assert {r["to"] for r in rows if r["status"] == "sent"} <= set(received)
    assert all(r["code"] == "Interrupted" for r in uncertain)
    assert resumed.returncode == (1 if uncertain else 0), resumed.stderr


def test_missing_object_is_refused_naming_it(cloud: LocalCloud, tmp_path: Path) -> None:
    result = subprocess.run(
        command(tmp_path / "r.csv", source="oss://chatapp-mass/lists/nope.csv"),
        env=cli_env(cloud),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "oss://chatapp-mass/lists/nope.csv: OSS answered 404 NoSuchKey" in result.stderr
    assert "upload the file first" in result.stderr
    assert cloud.cams.backend.attempts == []


def test_wrong_bucket_and_bad_url_are_refused(cloud: LocalCloud, tmp_path: Path) -> None:
    wrong = subprocess.run(
        command(tmp_path / "r.csv", source="oss://other-bucket/x.csv"),
        env=cli_env(cloud),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        wrong.returncode == 2 and "NoSuchBucket" in wrong.stderr and "check the bucket name" in wrong.stderr
    )
    bad = subprocess.run(
        command(tmp_path / "r.csv", source="oss://chatapp-mass/"),
        env=cli_env(cloud),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "give the bucket and the object key" in bad.stderr
    assert cloud.cams.backend.attempts == []


def test_wrong_secret_is_refused_naming_the_credentials(cloud: LocalCloud, tmp_path: Path) -> None:
    upload_sample(cloud, tmp_path, 10)
    environ = cli_env(cloud)
    environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = "not-the-secret"
    environ["CHATAPP_STORE"] = f"sqlite:///{tmp_path / 'state.db'}"
    result = subprocess.run(
        command(tmp_path / "r.csv"), env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    # CAMS's check before planning finds the keys refused first (issue 15): one ListChatappMessage, no send
    assert "SignatureDoesNotMatch" in result.stderr and "refused the credentials" in result.stderr
    assert {a.action for a in cloud.cams.backend.attempts} <= {"ListChatappMessage"}
    assert not cloud.cams.backend.received


# --- `chatapp-mass local-cloud` as a process ----------------------------------------------------------------
def start_local_cloud(data: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    process = subprocess.Popen(
        [sys.executable, "-m", "chatapp_mass", "local-cloud", "--data", str(data), *extra],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else "no output"
    return process, json.loads(line)


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 0


def test_local_cloud_prints_one_json_line_and_keeps_state_in_data(tmp_path: Path) -> None:
    import oss2

    from chatapp_mass.store.interface import JobRecord
    from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

    data = tmp_path / "cloud"
    listing = tmp_path / "list.csv"
    listing.write_bytes(b"to,name\n8613800000002,Bo\n")
    env_file = tmp_path / "cloud.env"
    process, info = start_local_cloud(data, "--upload", f"{listing}=lists/a.csv", "--env-file", str(env_file))
    try:
        assert info["uploaded"] == ["oss://chatapp-mass/lists/a.csv"]
        exported = env_file.read_text()
        for name, value in info["env"].items():
            assert f"export {name}=" in exported and value in exported
        assert set(info) >= {"cams", "oss", "tablestore", "credentials", "env", "region_id"}
        creds = info["credentials"]
        assert creds["security_token"], "STS-style credentials by default"
        assert info["oss"]["bucket"] == "chatapp-mass" and info["tablestore"]["instance"] == "chatapp-local"
        assert info["env"]["CHATAPP_STORE"] == "tablestore://chatapp-local"
        assert info["env"]["CHATAPP_OSS_REGION"] == info["region_id"]
        provider = oss2.credentials.StaticCredentialsProvider(
            creds["access_key_id"], creds["access_key_secret"], creds["security_token"]
        )
        auth = oss2.ProviderAuthV4(provider)  # the local OSS refuses V1, as a new bucket does
        bucket = oss2.Bucket(auth, info["oss"]["endpoint"], info["oss"]["bucket"], region=info["region_id"])
        assert bucket.get_object("lists/a.csv").read() == listing.read_bytes()
        bucket.put_object("kept.csv", b"to,name\n8613800000001,Ana\n")
        settings = TablestoreSettings(endpoint=info["tablestore"]["endpoint"], instance="chatapp-local")
        store = TablestoreStore(
            settings,
            access_key_id=creds["access_key_id"],
            access_key_secret=creds["access_key_secret"],
            security_token=creds["security_token"],
        )
        assert store.create_job(
            JobRecord(job_id="kept", source="x", options={}, intake={}, content_sha256="y")
        )
        store.close()
    finally:
        stop(process)

    process, again = start_local_cloud(data)
    try:
        assert again["credentials"] == info["credentials"], (
            "a restart keeps the credentials clients were given"
        )
        bucket = oss2.Bucket(
            auth, again["oss"]["endpoint"], again["oss"]["bucket"], region=again["region_id"]
        )
        assert bucket.get_object("kept.csv").read() == b"to,name\n8613800000001,Ana\n"
        settings = TablestoreSettings(endpoint=again["tablestore"]["endpoint"], instance="chatapp-local")
        store = TablestoreStore(
            settings,
            access_key_id=creds["access_key_id"],
            access_key_secret=creds["access_key_secret"],
            security_token=creds["security_token"],
        )
        assert [job.job_id for job in store.list_jobs()] == ["kept"]
        store.close()
    finally:
        stop(process)


def test_local_cloud_prints_an_admin_and_a_read_token_its_api_takes(tmp_path: Path) -> None:
    """`chatapp-mass local-cloud` (`make console`): the api function gets the hashes of the two tokens it
    prints (CHATAPP_API_TOKENS); the read token lists jobs and may not create one, the admin token may."""
    import requests

    root = Path(__file__).resolve().parents[2]
    process, info = start_local_cloud(tmp_path / "cloud", "--s-yaml", str(root / "s.yaml"))
    try:
        url, admin, reader = info["env"]["CHATAPP_API_URL"], info["api_token"], info["read_token"]
        assert len(admin) >= 32 and len(reader) >= 32 and admin != reader
        http = requests.Session()
        http.trust_env = False
        listed = http.get(f"{url}/jobs", headers={"Authorization": f"Bearer {reader}"}, timeout=30)
        assert listed.status_code == 200 and listed.json()["next_cursor"] is None
        body = {
            "options": {"ChannelType": "whatsapp", "TemplateCode": "T", "Language": "en", "From": "86138"}
        }
        body["recipients"] = [{"To": "+8613800000001"}]
        refused = http.post(
            f"{url}/jobs", json=body, headers={"Authorization": f"Bearer {reader}"}, timeout=30
        )
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "insufficient_scope")
        previewed = http.post(
            f"{url}/jobs?preview=true", json=body, headers={"Authorization": f"Bearer {admin}"}, timeout=30
        )
        assert previewed.status_code == 200, previewed.text
    finally:
        stop(process)
    environ = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    short = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatapp_mass",
            "local-cloud",
            "--data",
            str(tmp_path / "c2"),
            "--api-token",
            "x" * 31,
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode != 0 and "--api-token is 31 characters" in short.stderr
