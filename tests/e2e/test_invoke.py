"""`chatapp-mass invoke FUNCTION EVENT`: a handler run once, locally, with the environment FC gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatapp_mass.entry.localcloud import LocalCloud

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        yield local


def invoke(cloud: LocalCloud, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("CHATAPP_")
    }
    environ.update(cloud.environment())
    environ["CHATAPP_FC_ENDPOINT"] = "http://127.0.0.1:9"  # nothing here fans out; never the real FC
    return subprocess.run(
        [sys.executable, "-m", "chatapp_mass", "invoke", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
    error = (
        cloud.oss.oss2_bucket(cloud.bucket)
        .get_object(f"reports/sample.{outcome['job_id'][:12]}.error.json")
        .read()
    )
    assert json.loads(error)["problem"] == "file"


def test_a_handler_error_exits_1_with_the_error(cloud: LocalCloud) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chatapp_mass", "invoke", "sender", "-"],
        cwd=ROOT,
        input='{"job_id": "j"}',
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()}, **cloud.environment()},
    )
    assert result.returncode == 1
    assert "exactly one of" in result.stdout


def test_unknown_function_names_the_known_ones(cloud: LocalCloud) -> None:
    result = invoke(cloud, "mailer", "events/sender-drain.json")
    assert result.returncode == 2
    assert "'mailer': no such function" in result.stderr and "ingest (chatapp-mass-ingest)" in result.stderr


def test_api_sample_events_submit_watch_sweep_and_cancel(cloud: LocalCloud) -> None:
    token = {
        "CHATAPP_API_TOKEN": "replace-with-a-token-from-chatapp-mass-token-new"
    }  # what the sample events carry
    submit = json.loads((ROOT / "events" / "http-submit.json").read_text())
    body = json.loads(submit["body"])
    body["scheduledAt"] = "2099-01-01T09:00:00+08:00"  # scheduled: nothing fans out to a sender here
    submit["body"] = json.dumps(body)
    submit["headers"]["Idempotency-Key"] = f"invoke-test-{os.getpid()}"
    result = invoke_with(cloud, token, "api", "-", stdin=json.dumps(submit))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    created = json.loads(answer["body"])
    assert answer["statusCode"] == 202 and created["status"] == "scheduled"
    assert (created["valid"], created["invalid"], created["duplicate"]) == (2, 1, 1)

    def with_id(name: str) -> str:
        return (ROOT / "events" / name).read_text().replace("replace-with-a-job-id", created["job_id"])

    status = json.loads(invoke_with(cloud, token, "api", "-", stdin=with_id("http-status.json")).stdout)
    assert status["statusCode"] == 200 and json.loads(status["body"])["status"] == "scheduled"
    swept = invoke_with(cloud, token, "api", "events/timer.json")
    assert swept.returncode == 0 and created["job_id"] not in json.loads(swept.stdout)["started"]
    cancelled = json.loads(invoke_with(cloud, token, "api", "-", stdin=with_id("http-cancel.json")).stdout)
    assert cancelled["statusCode"] == 202 and json.loads(cancelled["body"])["status"] == "cancelled"
    reconciled = json.loads(
        invoke_with(cloud, token, "api", "-", stdin=with_id("http-reconcile.json")).stdout
    )
    assert (
        reconciled["statusCode"] == 200 and json.loads(reconciled["body"])["batches"] == 0
    )  # none uncertain
    resend = json.loads(
        invoke_with(cloud, token, "api", "-", stdin=with_id("http-resend-uncertain.json")).stdout
    )
    assert (
        resend["statusCode"] == 409
        and "cancelled: nothing is resent" in json.loads(resend["body"])["error"]["message"]
    )
    report = json.loads(invoke_with(cloud, token, "api", "-", stdin=with_id("http-report.json")).stdout)
    assert [line.split(",")[2] for line in report["body"].splitlines()[1:]] == [
        "cancelled",
        "cancelled",
        "duplicate",
        "invalid",
    ]
    unauthorized = json.loads(invoke(cloud, "api", "events/http-status.json").stdout)
    assert unauthorized["statusCode"] == 503  # no token configured: nothing is served


def invoke_with(
    cloud: LocalCloud, extra: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("CHATAPP_")
    }
    environ.update(cloud.environment())
    environ["CHATAPP_FC_ENDPOINT"] = "http://127.0.0.1:9"
    environ.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "chatapp_mass", "invoke", *args],
        cwd=ROOT,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_api_token_settings_refused_name_the_variable_and_the_timer_still_runs(cloud: LocalCloud) -> None:
    """A plain token under 32 characters, or an entry that is not scope:sha256: every request is a 503 naming
    the variable (the handler, not a crash), and the timer goes on."""
    for settings, named in (
        ({"CHATAPP_API_TOKEN": "short-token"}, "CHATAPP_API_TOKEN is 11 characters"),
        ({"CHATAPP_API_TOKENS": "read:abc"}, "CHATAPP_API_TOKENS entry 1"),
        ({"CHATAPP_API_TOKENS": "root:" + "0" * 64}, "unknown scope 'root'"),
    ):
        answer = json.loads(invoke_with(cloud, settings, "api", "events/http-status.json").stdout)
        error = json.loads(answer["body"])["error"]
        assert (answer["statusCode"], error["code"]) == (503, "misconfigured") and named in error["message"]
        swept = invoke_with(cloud, settings, "api", "events/timer.json")
        assert swept.returncode == 0 and "started" in json.loads(swept.stdout)
