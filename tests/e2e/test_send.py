"""End to end: `chatapp-mass send` as a real process, with the real SDK and the default credential chain
(STS variables in its environment), against the local CAMS on loopback. Assertions read the emulator's own
record of every attempt, so a client that over-sends is caught, not hidden by the emulator's refusals."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alibaba_localcloud.cams import LocalCams
from chatapp_mass.core.phones import normalize_number
from chatapp_mass.entry.sample import write_sample_csv

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


@pytest.fixture
def cams() -> Iterator[LocalCams]:
    with LocalCams(latency=0.02, latency_jitter=0.5) as server:
        yield server


def cli_env(cams: LocalCams) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    creds = cams.credentials
    env.update(
        CHATAPP_CAMS_ENDPOINT=cams.endpoint,
        ALIBABA_CLOUD_ACCESS_KEY_ID=creds.access_key_id,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=creds.access_key_secret,
        ALIBABA_CLOUD_SECURITY_TOKEN=creds.security_token or "",
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
    )
    return env


def command(csv_path: Path, store: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "chatapp_mass",
        "send",
        str(csv_path),
        *JOB,
        "--yes",
        "--store",
        f"sqlite:///{store}",
        "--report",
        str(store.with_suffix(".report.csv")),
        *extra,
    ]


def send(
    cams: LocalCams, csv_path: Path, store: Path, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(csv_path, store, *extra), env=cli_env(cams), capture_output=True, text=True, timeout=timeout
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_sending(
    cams: LocalCams, csv_path: Path, store: Path, *, attempts: int, extra: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """`send` in batches of 50 as a background process, once CAMS has seen ``attempts`` calls (or 60 s)."""
    process = subprocess.Popen(
        command(csv_path, store, "--batch-size", "50", *extra),
        env=cli_env(cams),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal: a suite started in the background by a non-interactive shell (`make test &`,
        # nohup) has SIGINT ignored, the child inherits that, and Python then installs no KeyboardInterrupt.
        preexec_fn=_default_sigint,
    )
    deadline = time.time() + budget(60)
    while len(cams.backend.attempts) < attempts and time.time() < deadline:
        time.sleep(0.05)
    return process


def read_report(store: Path) -> list[dict[str, str]]:
    with open(store.with_suffix(".report.csv"), newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def sample(tmp_path: Path, rows: int, seed: int = 7) -> Path:
    path = tmp_path / f"recipients-{seed}.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        write_sample_csv(handle, rows, seed=seed)
    return path


def expected_valid(path: Path) -> dict[str, dict[str, str]]:
    """Independent oracle: first occurrence of each valid number, with its own template values."""
    firsts: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            number = normalize_number(row["to"].strip(), None)
            if number and row["name"].strip() and row["code"].strip() and number not in firsts:
                firsts[number] = {"name": row["name"], "code": row["code"]}
    return firsts


def assert_never_over_limit(cams: LocalCams, limit: int = 10) -> None:
    assert cams.backend.max_calls_in_any_window(1.0) <= limit


def test_every_valid_recipient_receives_once_with_its_own_params(cams: LocalCams, tmp_path: Path) -> None:
    csv_path = sample(tmp_path, 3000)
    store = tmp_path / "state.db"
    result = send(cams, csv_path, store, "--batch-size", "100")
    assert result.returncode == 0, result.stderr
    expected = expected_valid(csv_path)
    received = cams.backend.received
    assert Counter(m.to for m in received) == Counter({n: 1 for n in expected})
    for message in received:
        assert message.template_params == expected[message.to]
    assert_never_over_limit(cams)
    report = read_report(store)
    assert len(report) == 3000
    assert Counter(r["status"] for r in report)["sent"] == len(expected)
    assert {r["status"] for r in report} <= {"sent", "invalid", "duplicate"}
    assert "completed" in result.stdout and f"{len(expected):,} sent" in result.stdout


def test_a_job_of_full_batches_never_sends_a_request_line_over_16_kib(
    cams: LocalCams, tmp_path: Path
) -> None:
    """The product's defaults (1,000 recipients per call, SenderList in the body) against the local CAMS's
    gateway limits (16 KiB request line, 1 MiB body): every call goes through, none is refused."""
    csv_path = sample(tmp_path, 4500)
    store = tmp_path / "state.db"
    result = send(cams, csv_path, store)
    assert result.returncode == 0, result.stderr
    expected = expected_valid(csv_path)
    assert Counter(m.to for m in cams.backend.received) == Counter({n: 1 for n in expected})
    sizes = [len(a.recipients) for a in cams.backend.attempts if a.code == "OK"]
    # nothing refused as too long (a throttled attempt under a busy machine is retried, not a failure)
    assert {a.code for a in cams.backend.attempts} <= {"OK", "System.LimitControl"}, Counter(
        a.code for a in cams.backend.attempts
    )
    # full batches (calls are pipelined: any order), bounded by the 1,000-recipient rule, not by bytes
    assert len(sizes) >= 4 and sorted(sizes)[1:] == [1000] * (len(sizes) - 1), sizes
    assert 0 < cams.backend.longest_request_line <= 16 * 1024
    assert cams.backend.longest_request_line < 2048  # the URL holds the small parameters only


def test_query_mode_plans_batches_that_fit_a_16_kib_request_line(cams: LocalCams, tmp_path: Path) -> None:
    csv_path = sample(tmp_path, 1500)
    store = tmp_path / "state.db"
    result = subprocess.run(
        command(csv_path, store),
        env=dict(cli_env(cams), CHATAPP_CAMS_PARAMS_IN="query"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    expected = expected_valid(csv_path)
    assert Counter(m.to for m in cams.backend.received) == Counter({n: 1 for n in expected})
    # nothing refused as too long (a throttled attempt under a busy machine is retried, not a failure)
    assert {a.code for a in cams.backend.attempts} <= {"OK", "System.LimitControl"}, Counter(
        a.code for a in cams.backend.attempts
    )
    assert max(len(a.recipients) for a in cams.backend.attempts) < 1000  # bounded by the URL budget
    assert "RequestURITooLong" not in result.stdout + result.stderr
    assert 8 * 1024 < cams.backend.longest_request_line <= 16 * 1024


def test_rerun_resumes_and_sends_nothing_again(cams: LocalCams, tmp_path: Path) -> None:
    csv_path = sample(tmp_path, 500)
    store = tmp_path / "state.db"
    assert send(cams, csv_path, store, "--batch-size", "100").returncode == 0
    calls = len(cams.backend.attempts)
    again = send(cams, csv_path, store, "--batch-size", "100")
    assert again.returncode == 0
    assert len(cams.backend.attempts) == calls, "a finished job must not call CAMS again"
    assert "resuming" in again.stderr
    new = send(cams, csv_path, store, "--batch-size", "100", "--new-job")
    assert new.returncode == 0 and len(cams.backend.attempts) == 2 * calls


def hold_replies_after(cams: LocalCams, attempts: int, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Once CAMS has seen ``attempts`` calls, its replies wait until the test sets the returned event: the run
    cannot finish before the test interrupts it, however long a busy machine keeps the test from looking.
    (The local CAMS records a call's recipients before its reply's latency, so held calls are in flight.)"""
    release = threading.Event()
    latency = cams.backend._latency

    def held() -> float:
        if len(cams.backend.attempts) >= attempts:
            release.wait(budget(120))
        return latency()

    monkeypatch.setattr(cams.backend, "_latency", held)
    return release


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_resumed_sends_nothing_twice(
    cams: LocalCams, tmp_path: Path, sig: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cams.backend.configure(latency=0.3, latency_jitter=0.5)
    csv_path = sample(tmp_path, 2000)
    store = tmp_path / "state.db"
    release = hold_replies_after(cams, 8, monkeypatch)
    process = start_sending(cams, csv_path, store, attempts=8)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(sig)
    release.set()
    out, err = process.communicate(timeout=budget(60))
    monkeypatch.undo()
    if sig == signal.SIGINT:
        assert process.returncode == 130, err
    else:
        assert process.returncode == -signal.SIGKILL
    first_run = Counter(m.to for m in cams.backend.received)
    assert first_run and max(first_run.values()) == 1

    cams.backend.configure(latency=0.0, latency_jitter=0.0)
    resumed = send(cams, csv_path, store, "--batch-size", "50")
    received = Counter(m.to for m in cams.backend.received)
    assert max(received.values()) == 1, "a number was sent twice"
    report = read_report(store)
    statuses = Counter(r["status"] for r in report)
    expected = expected_valid(csv_path)
    if sig == signal.SIGINT:
        # Ctrl-C waited for calls in flight and recorded them: nothing is ambiguous.
        assert resumed.returncode == 0, resumed.stderr
        assert set(received) == set(expected) and statuses["sent"] == len(expected)
    else:
        # A crash may leave calls in flight: those batches are uncertain, reported, and not resent.
        uncertain = [r for r in report if r["status"] == "uncertain"]
        assert statuses["sent"] + len(uncertain) == len(expected)
        assert resumed.returncode == (1 if uncertain else 0)
        assert all(r["code"] == "Interrupted" for r in uncertain)
    assert_never_over_limit(cams)


def test_throttled_calls_are_retried_not_failed(cams: LocalCams, tmp_path: Path) -> None:
    cams.backend.throttle_next(4)
    csv_path = sample(tmp_path, 400)
    store = tmp_path / "state.db"
    result = send(cams, csv_path, store, "--batch-size", "50")
    assert result.returncode == 0, result.stderr
    codes = Counter(a.code for a in cams.backend.attempts)
    assert codes["System.LimitControl"] == 4
    assert set(m.to for m in cams.backend.received) == set(expected_valid(csv_path))
    assert not [r for r in read_report(store) if r["status"] == "failed"]
    assert_never_over_limit(cams)


def test_account_level_refusal_stops_the_job(cams: LocalCams, tmp_path: Path) -> None:
    cams.backend.refuse_all("Ram.PermissionDeny")
    csv_path = sample(tmp_path, 3000)
    store = tmp_path / "state.db"
    result = send(cams, csv_path, store, "--batch-size", "20", "--concurrency", "4")
    assert result.returncode == 1
    assert "stopped" in result.stdout and "Ram.PermissionDeny" in result.stdout
    batches = -(-len(expected_valid(csv_path)) // 20)
    assert len(cams.backend.attempts) <= 4 < batches, "the kill switch must stop dispatch"
    statuses = Counter(r["status"] for r in read_report(store))
    assert statuses["failed"] <= 4 * 20 and statuses["pending"] > 0
    # fixed on the account side: the rerun retries the failed batches and finishes the job
    cams.backend.clear_refuse_all()
    again = send(cams, csv_path, store, "--batch-size", "20")
    assert again.returncode == 0, again.stderr
    assert Counter(m.to for m in cams.backend.received) == Counter({n: 1 for n in expected_valid(csv_path)})


def test_ambiguous_reply_is_uncertain_and_resent_only_on_request(cams: LocalCams, tmp_path: Path) -> None:
    """A call CAMS processed but whose reply is garbage: uncertain, reported, not resent by a plain rerun.
    --resend-uncertain looks it up in ListChatappMessage first: CAMS has every recipient, so nothing is sent
    again and they are reported sent. Without the lookup (--no-reconcile) the operator's decision is obeyed
    and logged — and those recipients get it twice, which is why the lookup is the default."""
    cams.backend.reply_non_json_next(1, http_status=502, accept=True)
    csv_path = sample(tmp_path, 300)
    store = tmp_path / "state.db"
    expected = expected_valid(csv_path)
    job = ("--batch-size", "40", "--cust-space-id", "cs-1")
    first = send(cams, csv_path, store, *job, "--concurrency", "1")
    assert first.returncode == 1, first.stderr
    assert "uncertain" in first.stdout and "look them up with `chatapp-mass reconcile" in first.stdout
    uncertain = {r["to"] for r in read_report(store) if r["status"] == "uncertain"}
    assert 0 < len(uncertain) <= 40
    assert Counter(m.to for m in cams.backend.received) == Counter({n: 1 for n in expected})

    calls = len(cams.backend.attempts)
    plain_rerun = send(cams, csv_path, store, *job)
    assert plain_rerun.returncode == 1
    assert len(cams.backend.attempts) == calls, "an uncertain batch must not be resent without the operator"

    decided = send(cams, csv_path, store, *job, "--resend-uncertain")
    assert decided.returncode == 0, decided.stderr
    assert len(cams.backend.attempts) == calls, "CAMS has them all: nothing is sent again"
    assert f"found {len(uncertain)} of {len(uncertain)} uncertain" in decided.stderr
    assert Counter(m.to for m in cams.backend.received) == Counter({n: 1 for n in expected})
    report = read_report(store)
    assert Counter(r["status"] for r in report)["sent"] == len(expected)
    assert {r["code"] for r in report if r["to"] in uncertain and r["status"] != "duplicate"} == {
        "Reconciled"
    }


def test_resend_without_reconciling_is_the_operators_logged_decision(cams: LocalCams, tmp_path: Path) -> None:
    cams.backend.reply_non_json_next(1, http_status=502, accept=True)
    csv_path = sample(tmp_path, 120)
    store = tmp_path / "state.db"
    first = send(cams, csv_path, store, "--batch-size", "40", "--concurrency", "1")  # no CustSpaceId
    assert first.returncode == 1
    uncertain = {r["to"] for r in read_report(store) if r["status"] == "uncertain"}
    refused = send(cams, csv_path, store, "--batch-size", "40", "--resend-uncertain")
    assert refused.returncode == 2 and "needs CustSpaceId" in refused.stderr, refused.stderr
    calls = len(cams.backend.attempts)
    decided = send(cams, csv_path, store, "--batch-size", "40", "--resend-uncertain", "--no-reconcile")
    assert decided.returncode == 0, decided.stderr
    assert len(cams.backend.attempts) == calls + 1
    received = Counter(m.to for m in cams.backend.received)
    assert {n for n, times in received.items() if times == 2} == uncertain  # exactly the operator's choice
    decisions = [json.loads(line) for line in decided.stderr.splitlines() if line.startswith("{")]
    assert any(d.get("operator_decision") is True and d["level"] == "WARNING" for d in decisions)


def test_reconcile_command_then_resend_only_what_cams_does_not_have(cams: LocalCams, tmp_path: Path) -> None:
    """Two uncertain batches: CAMS processed one (its reply was garbage) and never saw the other (refused
    before the service, by a proxy's error page). `reconcile` marks the first sent and leaves the second
    uncertain; `reconcile --resend` and a rerun send exactly the second's recipients, once."""
    cams.backend.reply_non_json_next(1, http_status=502, accept=True)
    cams.backend.reply_non_json_next(1, http_status=502, accept=False)
    csv_path = sample(tmp_path, 200)
    store = tmp_path / "state.db"
    expected = expected_valid(csv_path)
    job = ("--batch-size", "30", "--cust-space-id", "cs-1")
    assert send(cams, csv_path, store, *job, "--concurrency", "1").returncode == 1
    report = read_report(store)
    uncertain = {r["to"] for r in report if r["status"] == "uncertain"}
    never_seen = uncertain - set(cams.backend.received_count_by_number())
    assert 0 < len(never_seen) < len(uncertain) <= 60
    jobs = subprocess.run(
        [sys.executable, "-m", "chatapp_mass", "jobs", "--store", f"sqlite:///{store}"],
        env=cli_env(cams),
        capture_output=True,
        text=True,
        timeout=60,
    )
    job_id = jobs.stdout.splitlines()[1].split()[0]
    base = [sys.executable, "-m", "chatapp_mass", "reconcile", job_id[:10], "--store", f"sqlite:///{store}"]
    looked = subprocess.run(base, env=cli_env(cams), capture_output=True, text=True, timeout=120)
    assert looked.returncode == 1, looked.stderr  # some are still uncertain
    assert (
        f"{len(uncertain) - len(never_seen)} recipients found (now sent), {len(never_seen)} not found"
        in looked.stdout
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "chatapp_mass",
            "report",
            job_id,
            "--out",
            str(store.with_suffix(".report.csv")),
            "--store",
            f"sqlite:///{store}",
        ],
        env=cli_env(cams),
        check=True,
        capture_output=True,
        timeout=60,
    )
    after = {r["to"]: r for r in read_report(store) if r["status"] not in ("duplicate", "invalid")}
    still = {n for n, r in after.items() if r["status"] == "uncertain"}
    assert still == never_seen, (len(still), len(never_seen), len(uncertain), sorted(still - never_seen)[:3])
    assert {after[n]["code"] for n in never_seen} == {"NotFound"}
    resend = subprocess.run(
        [*base, "--resend"], env=cli_env(cams), capture_output=True, text=True, timeout=120
    )
    assert (
        resend.returncode == 0 and f"{len(never_seen)} recipients in 1 batches reopened" in resend.stdout
    ), resend
    assert send(cams, csv_path, store, *job).returncode == 0
    assert Counter(m.to for m in cams.backend.received) == Counter({n: 1 for n in expected})
    assert Counter(r["status"] for r in read_report(store))["sent"] == len(expected)


def test_a_batch_refused_for_one_number_is_split_and_only_that_number_fails(
    cams: LocalCams, tmp_path: Path
) -> None:
    """CAMS refuses a whole call for one number it deems invalid (our own check passed it): the batch is
    halved until that number is alone; everyone else is sent once, only it fails, and the rate holds."""
    csv_path = sample(tmp_path, 1200)
    expected = expected_valid(csv_path)
    bad = sorted(expected)[::400][:3]  # three numbers spread over the file
    cams.backend.configure(refused_numbers=bad)
    store = tmp_path / "state.db"
    result = send(cams, csv_path, store, "--batch-size", "250")
    assert result.returncode == 1, result.stderr
    assert Counter(m.to for m in cams.backend.received) == Counter({n: 1 for n in expected if n not in bad})
    report = read_report(store)
    assert len(report) == 1200 and [int(r["line"]) for r in report] == list(range(2, 1202))
    failed = [r for r in report if r["status"] == "failed"]
    assert sorted(r["to"] for r in failed) == sorted(bad)
    assert {r["code"] for r in failed} == {"InvalidParameter.PhoneNumberError"}
    assert Counter(r["status"] for r in report)["sent"] == len(expected) - len(bad)
    refused_calls = sum(1 for a in cams.backend.attempts if a.code == "InvalidParameter.PhoneNumberError")
    assert refused_calls <= len(bad) * 9, refused_calls  # log2(250) levels at most per bad number
    assert_never_over_limit(cams)
    assert f"{len(expected) - len(bad):,} sent" in result.stdout and f"{len(bad)} failed" in result.stdout


def test_logs_never_show_a_whole_number(cams: LocalCams, tmp_path: Path) -> None:
    cams.backend.fail_next(2, code="InvalidParameter.SenderList", http_status=400)
    csv_path = sample(tmp_path, 200)
    store = tmp_path / "state.db"
    result = send(cams, csv_path, store, "--batch-size", "20", "--log-level", "DEBUG")
    assert result.returncode == 1
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(entry.get("code") == "InvalidParameter.SenderList" for entry in logged)
    for number in expected_valid(csv_path):
        assert number not in result.stderr and number[-8:] not in result.stderr


def test_two_concurrent_sends_on_one_store_share_the_budget(cams: LocalCams, tmp_path: Path) -> None:
    cams.backend.configure(latency=0.1, latency_jitter=0.5)
    store = tmp_path / "state.db"
    first, second = sample(tmp_path, 800, seed=1), sample(tmp_path, 800, seed=2)
    runs = [
        subprocess.Popen(
            command(path, store, "--batch-size", "20"),
            env=cli_env(cams),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in (first, second)
    ]
    for run in runs:
        run.communicate(timeout=120)
        assert run.returncode == 0
    assert len(cams.backend.attempts) >= 60
    assert_never_over_limit(cams)


def test_dry_run_plans_and_reports_without_sending(cams: LocalCams, tmp_path: Path) -> None:
    csv_path = sample(tmp_path, 300)
    store = tmp_path / "state.db"
    result = send(cams, csv_path, store, "--dry-run")
    assert result.returncode == 0
    assert cams.backend.attempts == []
    statuses = Counter(r["status"] for r in read_report(store))
    assert set(statuses) <= {"pending", "invalid", "duplicate"} and statuses["pending"] == len(
        expected_valid(csv_path)
    )


def test_unreadable_file_sends_nothing(cams: LocalCams, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"to,name\n8613800000001,Ana\n8613800000002,\xff\xfe\n")
    store = tmp_path / "state.db"
    result = send(cams, bad, store)
    assert result.returncode == 2
    assert "line 3" in result.stderr
    assert cams.backend.attempts == []
    listing = subprocess.run(
        [sys.executable, "-m", "chatapp_mass", "jobs", "--store", f"sqlite:///{store}"],
        capture_output=True,
        text=True,
    )
    assert "no jobs" in listing.stdout


def test_bad_option_refused_before_reading(cams: LocalCams, tmp_path: Path) -> None:
    store = tmp_path / "state.db"
    result = send(cams, tmp_path / "missing.csv", store, "--ttl", "60")
    assert result.returncode == 2
    assert "--ttl" in result.stderr and "viber" in result.stderr  # the flag, not the API field
    assert cams.backend.attempts == []


def test_status_jobs_and_report_commands(cams: LocalCams, tmp_path: Path) -> None:
    csv_path = sample(tmp_path, 200)
    store = tmp_path / "state.db"
    assert send(cams, csv_path, store).returncode == 0
    url = f"sqlite:///{store}"

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chatapp_mass", *args, "--store", url],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    listing = run("jobs")
    job_id = listing.splitlines()[1].split()[0]
    status = run("status", job_id[:8], "--json")
    counts: dict[str, Any] = json.loads(status)
    assert counts["status"] == "completed" and counts["sent"] == len(expected_valid(csv_path))
    assert counts["sent"] + counts["invalid"] + counts["duplicate"] == 200
    out = tmp_path / "again.csv"
    run("report", job_id, "--out", str(out))
    assert out.read_text(encoding="utf-8") == store.with_suffix(".report.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [int(r["line"]) for r in rows] == list(range(2, 202))


def test_pause_from_another_terminal_then_rerun_to_resume(
    cams: LocalCams, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cams.backend.configure(latency=0.3, latency_jitter=0.3)
    csv_path = sample(tmp_path, 2000)
    store = tmp_path / "state.db"
    # Replies wait after the 6th call until the pause (two cold CLI processes, seconds on a busy machine) has
    # landed: the job cannot finish first, however loaded the machine (it did at 10/s, unheld, once).
    release = hold_replies_after(cams, 6, monkeypatch)
    running = start_sending(cams, csv_path, store, attempts=6, extra=("--qps", "2"))
    jobs = subprocess.run(
        [sys.executable, "-m", "chatapp_mass", "jobs", "--store", f"sqlite:///{store}"],
        env=cli_env(cams),
        capture_output=True,
        text=True,
        timeout=60,
    )
    job_id = jobs.stdout.splitlines()[1].split()[0]
    paused = subprocess.run(
        [sys.executable, "-m", "chatapp_mass", "pause", job_id[:10], "--store", f"sqlite:///{store}"],
        env=cli_env(cams),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    release.set()
    running.communicate(timeout=budget(60))
    monkeypatch.undo()
    assert running.returncode == 1  # stopped with recipients left: not all sent
    calls = len(cams.backend.attempts)
    time.sleep(1.0)
    assert len(cams.backend.attempts) == calls, "a paused job went on sending"
    environment = {k: v for k, v in cli_env(cams).items() if k != "CHATAPP_FC_ENDPOINT"}
    resumed = subprocess.run(
        [sys.executable, "-m", "chatapp_mass", "resume", job_id, "--store", f"sqlite:///{store}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0 and "rerun the same" in resumed.stdout
    cams.backend.configure(latency=0.0, latency_jitter=0.0)
    again = send(cams, csv_path, store, "--batch-size", "50")
    assert again.returncode == 0, again.stderr
    received = Counter(m.to for m in cams.backend.received)
    assert received == Counter({n: 1 for n in expected_valid(csv_path)})
    assert_never_over_limit(cams)
