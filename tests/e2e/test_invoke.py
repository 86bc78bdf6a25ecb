"""`chatapp-mass invoke FUNCTION EVENT`: a handler run once, locally, with the environment FC gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from chatapp_mass.localcloud.cloud import LocalCloud

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        yield local


def invoke(cloud: LocalCloud, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("CHATAPP_")}
    environ.update(cloud.environment())
    environ["CHATAPP_FC_ENDPOINT"] = "http://127.0.0.1:9"  # nothing here fans out; never the real FC
    return subprocess.run([sys.executable, "-m", "chatapp_mass", "invoke", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


def test_sender_sample_event_runs_the_real_handler(cloud: LocalCloud) -> None:
    result = invoke(cloud, "sender", "events/sender-drain.json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"job_id": "replace-with-a-job-id", "status": "unknown job"}
    meta = json.loads(result.stderr.strip().splitlines()[-1])
    assert meta["function"] == "chatapp-mass-sender" and meta["status"] == "ok"


def test_ingest_sample_event_for_a_missing_object_fails_the_job_not_the_call(cloud: LocalCloud) -> None:
    result = invoke(cloud, "chatapp-mass-ingest", "events/oss-upload.json")
    assert result.returncode == 0, result.stderr
    [outcome] = json.loads(result.stdout)
    assert outcome["status"] == "failed" and "NoSuchKey" in outcome["message"]
    error = cloud.oss.oss2_bucket(cloud.bucket).get_object(
        f"reports/sample.{outcome['job_id'][:12]}.error.json").read()
    assert json.loads(error)["problem"] == "file"


def test_a_handler_error_exits_1_with_the_error(cloud: LocalCloud) -> None:
    result = subprocess.run([sys.executable, "-m", "chatapp_mass", "invoke", "sender", "-"], cwd=ROOT,
                            input='{"job_id": "j"}', capture_output=True, text=True, timeout=120,
                            env={**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
                                 **cloud.environment()})
    assert result.returncode == 1
    assert "exactly one of" in result.stdout


def test_unknown_function_names_the_known_ones(cloud: LocalCloud) -> None:
    result = invoke(cloud, "mailer", "events/sender-drain.json")
    assert result.returncode == 2
    assert "'mailer': no such function" in result.stderr and "ingest (chatapp-mass-ingest)" in result.stderr
