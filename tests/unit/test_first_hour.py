"""Issue 15, the first hour of use: a failure before any byte left is never ``uncertain`` (no credentials, a
refused connection, a TLS failure while connecting); ``send`` checks credentials and endpoint before planning
(exit 2, one paragraph, nothing planned); flag errors in the CLI's words; the small things (times with a zone,
the demo's hint, the Tablestore SDK's import notice, .gitignore)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alibaba_localcloud.cams import LocalCams
from chatapp_mass.adapters.cams import CamsClient, CamsSettings, parse_endpoint
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.options import IntakeOptions, parse_job_options
from chatapp_mass.core.outcomes import (
    CREDENTIALS_CODE,
    OutcomeKind,
    SendOutcome,
    classify_transport_error,
    nothing_left,
)
from chatapp_mass.entry import cli
from chatapp_mass.entry.bootstrap import Services, cams_client_for, static_credential
from chatapp_mass.entry.send import job_inputs_from_args, send_parser
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner
from chatapp_mass.services.plan import plan_job
from chatapp_mass.services.report import job_summary, utc_timestamp
from chatapp_mass.store.interface import BatchStatus, JobStatus
from chatapp_mass.store.sqlite import SqliteStore

from world import SEND_FLAGS

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": "8613800000000"}


class NoCredentials:
    """A credential client as the default chain is without keys: ``get_credential`` raises its exception."""

    def get_credential(self) -> Any:
        from alibabacloud_credentials.exceptions import CredentialException

        raise CredentialException("unable to load credentials from any of the providers in the chain")


def closed_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cams_at(endpoint: str, credential: Any, **settings: Any) -> CamsClient:
    host, protocol = parse_endpoint(endpoint)
    return CamsClient(CamsSettings(endpoint=host, protocol=protocol, **settings), credential=credential)


def planned(tmp_path: Path, count: int = 30) -> tuple[SqliteStore, Any]:
    store = SqliteStore(str(tmp_path / "state.db"))
    data = ("to,name\n" + "".join(f"+86139{i:08d},N{i}\n" for i in range(count))).encode()
    job, _ = plan_job(
        store,
        source="list.csv",
        open_stream=lambda: io.BytesIO(data),
        options=parse_job_options(OPTIONS),
        intake=IntakeOptions(),
    )
    return store, job


# --- 1. nothing left: never uncertain ----------------------------------------------------------------------
def test_a_credential_exception_is_classified_as_credentials_not_uncertain() -> None:
    from alibabacloud_credentials.exceptions import CredentialException

    try:
        try:
            raise CredentialException("no keys")
        except CredentialException as inner:
            raise RuntimeError("the SDK's wrapper") from inner
    except RuntimeError as error:
        outcome = classify_transport_error(error)
    assert outcome.kind is OutcomeKind.credentials and outcome.code == CREDENTIALS_CODE
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in outcome.message and not outcome.reached_service


def test_the_client_says_credentials_when_none_can_be_loaded(local_cams: LocalCams) -> None:
    client = cams_at(local_cams.endpoint, NoCredentials())
    outcome = client.send(
        parse_job_options(OPTIONS), [{"To": "8613900000001", "TemplateParams": {"name": "A"}}]
    )
    assert outcome.kind is OutcomeKind.credentials
    assert not local_cams.backend.attempts


def test_nothing_left_turns_an_unexplained_failure_into_not_sent_but_never_a_reply() -> None:
    unknown = SendOutcome(OutcomeKind.uncertain, code="TransportError", message="SSLError: ...")
    assert nothing_left(unknown, "no request was written").kind is OutcomeKind.not_sent
    for kept in (
        SendOutcome(OutcomeKind.uncertain, code="ReadTimeout"),
        SendOutcome(OutcomeKind.uncertain, code="NonJsonReply"),
        SendOutcome(OutcomeKind.uncertain, code="ServiceUnavailable", http_status=503),
        SendOutcome(OutcomeKind.sent, code="OK", http_status=200),
    ):
        assert nothing_left(kept, "x") is kept


def test_a_run_without_credentials_gives_its_batches_back_and_stops_then_a_rerun_sends_them(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    store, job = planned(tmp_path)
    result = JobRunner(store, cams_at(local_cams.endpoint, NoCredentials()), DispatchSettings()).run(job)
    assert result.job.status is JobStatus.stopped
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in result.job.reason
    assert not store.list_batches(job.job_id, [BatchStatus.uncertain])
    assert {b.status for b in store.list_batches(job.job_id)} == {BatchStatus.pending}
    assert not local_cams.backend.attempts

    fixed = cams_client_for(local_cams.endpoint, local_cams.credentials)  # the keys are there now
    again = JobRunner(store, fixed, DispatchSettings()).run(job)  # a plain rerun: no --resend-uncertain
    assert again.all_sent
    assert sorted(local_cams.backend.received_count_by_number().values()) == [1] * 30


def test_a_refused_connection_leaves_batches_pending_never_uncertain(tmp_path: Path) -> None:
    store, job = planned(tmp_path)
    client = cams_at(f"http://127.0.0.1:{closed_port()}", static_credential("AKID", "secret"))
    result = JobRunner(store, client, DispatchSettings(max_stall=1.0)).run(job)
    assert result.job.status is JobStatus.stalled
    assert not store.list_batches(job.job_id, [BatchStatus.uncertain])
    assert {b.status for b in store.list_batches(job.job_id)} == {BatchStatus.pending}


def test_a_tls_failure_while_connecting_is_not_sent_by_the_transports_ground_truth(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    """HTTPS to a plain-HTTP port: the handshake fails inside connect, before the request's first byte. The
    error's type (an SSL error) is none the classifier knows as "nothing sent"; the departure gate is."""
    store, job = planned(tmp_path, count=5)
    host = local_cams.endpoint.split("://", 1)[1]
    client = cams_at(f"https://{host}", static_credential("AKID", "secret"), connect_timeout_ms=1000)
    result = JobRunner(store, client, DispatchSettings(max_stall=1.0)).run(job)
    assert result.job.status is JobStatus.stalled
    assert not store.list_batches(job.job_id, [BatchStatus.uncertain])
    assert {b.code for b in store.list_batches(job.job_id)} == {"NotSent"}


# --- 2. credentials and endpoint before planning ---------------------------------------------------------------
def run_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cams: CamsClient, *extra: str
) -> tuple[int, str, SqliteStore]:
    store = SqliteStore(str(tmp_path / "state.db"))
    monkeypatch.setattr(cli, "build_services", lambda **_: Services(store=store, cams=cams))
    (tmp_path / "list.csv").write_text("to,name\n+8613900000001,A\n+8613900000002,B\n")
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["send", str(tmp_path / "list.csv"), *SEND_FLAGS, "--yes", *extra], out=out, err=err)
    return code, err.getvalue(), store


def test_send_without_credentials_exits_2_before_planning(
    local_cams: LocalCams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err, store = run_cli(monkeypatch, tmp_path, cams_at(local_cams.endpoint, NoCredentials()))
    assert code == 2
    assert "no Alibaba Cloud credentials" in err and "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in err
    assert "Traceback" not in err and err.count("\n") == 1  # one paragraph
    assert store.list_jobs(10) == []  # nothing planned
    assert not local_cams.backend.attempts


def test_send_with_refused_keys_exits_2_before_planning(
    local_cams: LocalCams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = static_credential("LTAIwrong", "wrong-secret")
    code, err, store = run_cli(monkeypatch, tmp_path, cams_at(local_cams.endpoint, wrong))
    assert code == 2 and "refused the credentials" in err and "InvalidAccessKeyId" in err
    assert store.list_jobs(10) == [] and not local_cams.backend.received
    assert {a.action for a in local_cams.backend.attempts} == {"ListChatappMessage"}  # the check alone


def test_send_to_an_endpoint_that_does_not_connect_exits_2_before_planning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = cams_at(f"http://127.0.0.1:{closed_port()}", static_credential("AKID", "secret"))
    code, err, store = run_cli(monkeypatch, tmp_path, client)
    assert code == 2 and "cannot connect to CAMS" in err and "CHATAPP_CAMS_ENDPOINT" in err
    assert store.list_jobs(10) == []


def test_the_check_never_stops_working_keys_even_without_list_permission(
    local_cams: LocalCams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = cams_client_for(local_cams.endpoint, local_cams.credentials)
    assert client.check_access(parse_job_options(OPTIONS)).ok  # no CustSpaceId: MissingParameter, keys fine
    local_cams.backend.refuse_all("Ram.PermissionDeny")  # a role that may not list
    assert client.check_access(parse_job_options(OPTIONS)).ok
    local_cams.backend.clear_refuse_all()
    code, _, store = run_cli(monkeypatch, tmp_path, client, "--no-progress")
    assert code == 0 and len(local_cams.backend.received) == 2


def test_a_dry_run_needs_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = cams_at(f"http://127.0.0.1:{closed_port()}", NoCredentials())
    code, _, store = run_cli(monkeypatch, tmp_path, client, "--dry-run")
    assert code == 0 and len(store.list_jobs(10)) == 1


# --- 3. flag errors in the CLI's words ----------------------------------------------------------------------
def inputs(*argv: str) -> Any:
    return job_inputs_from_args(send_parser().parse_args(["list.csv", *argv]))


def test_channel_names_are_case_insensitive_and_a_wrong_one_lists_the_valid_ones() -> None:
    for spelled in ("WhatsApp", "WHATSAPP", " whatsapp "):
        options, _ = inputs(
            "--channel-type", spelled, "--template-code", "T1", "--language", "en", "--from", "1"
        )
        assert options.channel_type.value == "whatsapp"
    with pytest.raises(OptionsError) as error:
        inputs("--channel-type", "wa", "--template-code", "T1", "--language", "en", "--from", "1")
    assert "--channel-type" in str(error.value) and "whatsapp, viber, messenger, instagram" in str(
        error.value
    )


def test_template_errors_name_the_flags_not_the_api_fields() -> None:
    with pytest.raises(OptionsError) as error:
        inputs("--channel-type", "whatsapp", "--language", "en", "--from", "1")
    assert str(error.value) == "give --template-code or --template-name (at least one)"
    with pytest.raises(OptionsError) as viber:
        inputs("--channel-type", "viber", "--template-name", "x", "--language", "en", "--from", "1")
    assert "--template-code" in str(viber.value) and "TemplateCode" not in str(viber.value)


def test_a_missing_flag_is_one_line_with_an_example_not_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["send", "list.csv", "--channel-type", "whatsapp", "--template-code", "T1", "--language", "en"]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err
    assert "missing --from (e.g. --from 8613800000000)" in err and "chatapp-mass send --help" in err


# --- 4. the small things -----------------------------------------------------------------------------------
def test_cli_times_are_utc_with_a_z_like_the_api(tmp_path: Path) -> None:
    assert utc_timestamp(0) == "1970-01-01T00:00:00Z"
    store, job = planned(tmp_path, count=1)
    assert job_summary(store, job)["created_at"].endswith("Z")


def test_the_demos_hint_names_a_command_that_runs_from_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatapp_mass.entry.demo import runnable_command

    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "chatapp-mass"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    python = str(bin_dir / "python")
    monkeypatch.chdir(tmp_path)
    assert runnable_command(path="/nonexistent", python=python) == os.path.join(
        ".venv", "bin", "chatapp-mass"
    )
    assert runnable_command(path=str(bin_dir), python=python) == "chatapp-mass"  # an activated virtualenv
    assert runnable_command(path="/nonexistent", python="/opt/py/python") == "/opt/py/python -m chatapp_mass"


def test_the_tablestore_sdks_native_notice_is_not_printed() -> None:
    code = "from chatapp_mass.runtime import logs; logs.configure('WARNING'); import tablestore"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Native" not in done.stderr


@pytest.mark.parametrize("name", ["cloud.env", "cloud-data/state.json", "report.csv", "demo-out/report.csv"])
def test_what_the_readme_writes_is_ignored_by_git(name: str) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", name], check=False, timeout=30)
    assert done.returncode == 0, f"{name} is not ignored"
