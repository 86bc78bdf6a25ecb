"""Fault scenarios on the local cloud, shared by the fault suite (tests/faults: the invariants, asserted) and
bench/bench_faults.py (the figures: recipients, duplicates, lost, uncertain, time relative to no faults).

Each scenario uploads CSVs to the local OSS; the real functions (ingest, sender, api from s.yaml) run in the
local FC's worker processes against the local CAMS and Tablestore with faults injected; the timer is fired
every second once the jobs go quiet (the sweeper). The outcome is read from the local CAMS's own record and
from the report objects the functions wrote.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from oracle import sample_bytes, valid_numbers

import requests

from chatapp_mass.localcloud.cloud import LocalCloud
from chatapp_mass.store import BatchStatus, JobRecord, JobStatus
from chatapp_mass.store_tablestore import TablestoreSettings, TablestoreStore

ROOT = Path(__file__).resolve().parents[2]
INGEST, SENDER, API = "chatapp-mass-ingest", "chatapp-mass-sender", "chatapp-mass-api"
META = {"x-oss-meta-channel-type": "whatsapp", "x-oss-meta-template-code": "T_WELCOME",
        "x-oss-meta-language": "en", "x-oss-meta-from": "8613800000000", "x-oss-meta-cust-space-id": "cs-faults"}
TOKEN = "faults"
FINAL_ROW = {"sent", "failed", "uncertain", "invalid", "duplicate", "cancelled"}


@dataclass
class Scenario:
    name: str
    rows: int = 3000
    uploads: int = 1
    cams: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    # faults armed before the uploads (given the files about to be uploaded, key -> bytes)
    arm: Callable[[LocalCloud, dict[str, bytes]], None] = lambda cloud, files: None
    during: Optional[Callable[[LocalCloud, threading.Event], None]] = None  # faults injected while it runs
    duplicate_oss_events: bool = False
    # the same jobs also submitted over HTTP (the api function): each repeated with one Idempotency-Key, and
    # once more without a key (refused as a probable repeat)
    http_repeats: int = 0
    # once the jobs finished, the operator's recovery over HTTP: reconcile every job with uncertain batches,
    # then resend what CAMS does not have; the outcome is read after that
    recover: bool = False


@dataclass
class Outcome:
    scenario: str
    recipients: int  # valid recipients, all jobs
    received: int  # distinct (job, number) pairs CAMS accepted
    duplicates: int  # (job, number) pairs CAMS accepted more than once: must be 0
    lost: int  # valid recipients neither received nor reported uncertain/failed: must be 0
    uncertain: int
    failed: int
    seconds: float
    calls_in_busiest_window: int
    reports: list[dict[str, Any]]  # per job: rows, counts, summary
    uncertain_before_recovery: int = 0
    found_by_reconcile: int = 0  # uncertain recipients ListChatappMessage found (then reported sent)
    resent: int = 0  # uncertain recipients it did not find, resent by the operator's decision
    http_statuses: list[int] = field(default_factory=list)  # of the HTTP submissions, in order


def _sweep_until_done(cloud: LocalCloud, store: TablestoreStore, sources: set[str], timeout: float) -> dict[str, JobRecord]:
    """Wait for the jobs to finish, firing the api function's timer every 2 s as FC's cron would (every
    minute in s.yaml): its sweeper is what picks up work whose senders died."""
    deadline = time.time() + timeout
    next_timer = time.time() + 2.0
    while time.time() < deadline:
        jobs = {j.source: j for j in store.list_jobs(50) if j.source in sources}
        if len(jobs) == len(sources) and all(
                j.status in (JobStatus.completed, JobStatus.failed, JobStatus.stopped) for j in jobs.values()):
            return jobs
        if time.time() >= next_timer:
            cloud.fc.backend.fire_timer(API, "api-timer")
            next_timer = time.time() + 2.0
        time.sleep(0.25)
    states = {s: (j.status.value, j.reason) for s, j in {j.source: j for j in store.list_jobs(50)}.items()}
    raise AssertionError(f"jobs did not finish in {timeout} s: {states}")


def run(scenario: Scenario, tmp: Path, timeout: float = 240) -> Outcome:
    environment = {"CHATAPP_BATCH_SIZE": "100", "CHATAPP_CLAIM_TTL": "5", "CHATAPP_SWEEP_IDLE": "1",
                   "CHATAPP_ERROR_THRESHOLD": "0", "CHATAPP_API_TOKEN": TOKEN, **scenario.environment}
    cams = {"latency": 0.05, "latency_jitter": 0.5, "seed": 7, **scenario.cams}
    with LocalCloud(s_yaml=str(ROOT / "s.yaml"), data_dir=str(tmp / scenario.name), cams_options=cams,
                    function_environment=environment) as cloud:
        creds = cloud.credentials
        store = TablestoreStore(TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
                                access_key_id=creds.access_key_id, access_key_secret=creds.access_key_secret,
                                security_token=creds.security_token or "")
        files = {f"incoming/{scenario.name}-{i}.csv": sample_bytes(scenario.rows, seed=70 + i)
                 for i in range(scenario.uploads)}
        scenario.arm(cloud, files)
        events: list[dict[str, Any]] = []
        unsubscribe = cloud.oss.backend.subscribe(events.append)
        stop = threading.Event()
        injector = threading.Thread(target=scenario.during, args=(cloud, stop), daemon=True) \
            if scenario.during else None
        started = time.time()
        bucket = cloud.oss.oss2_bucket(cloud.bucket)
        api = _Api(cloud)
        http_statuses: list[int] = []
        sources = {f"oss://{cloud.bucket}/{key}" for key in files}
        try:
            if injector:
                injector.start()
            for key, data in files.items():  # TaskId tells the jobs' messages apart in CAMS's record
                bucket.put_object(key, data, headers={**META, "x-oss-meta-task-id": _task(key)})
            if scenario.duplicate_oss_events:
                for event in list(events):  # OSS delivers the same event again
                    cloud.fc.backend.on_oss_event(event)
            http_jobs: dict[str, str] = {}  # file key -> job id
            if scenario.http_repeats:  # the first file again, over HTTP: with a key, then without
                data = next(iter(files.values()))
                for suffix, keyed in (("http-k", True), ("http-n", False)):
                    key = f"incoming/{scenario.name}-{suffix}.csv"
                    job_id, statuses = api.submit_repeatedly(data, _task(key), scenario.http_repeats, keyed=keyed)
                    files[key], http_jobs[key] = data, job_id
                    http_statuses += statuses
                    sources.add(store.get_job(job_id).source)  # type: ignore[union-attr]
            jobs = _sweep_until_done(cloud, store, sources, timeout)
            found = resent = before = 0
            if scenario.recover:
                before = sum(store.batch_totals(j.job_id).get(BatchStatus.uncertain, (0, 0))[1] for j in jobs.values())
                found, resent = _recover(cloud, store, api, jobs, sources, timeout)
                jobs = _sweep_until_done(cloud, store, sources, timeout)
        finally:
            stop.set()
            unsubscribe()
            if injector:
                injector.join(10)
        seconds = time.time() - started
        cloud.fc.backend.wait_idle(30)
        reports = []
        for key, data in files.items():
            job = jobs[store.get_job(http_jobs[key]).source if key in http_jobs  # type: ignore[union-attr]
                       else f"oss://{cloud.bucket}/{key}"]
            rows, summary = api.report(job)
            reports.append({"job": job, "rows": rows, "summary": summary, "valid": valid_numbers(data),
                            "input_rows": data.decode().count("\n") - 1})
        store.close()
        outcome = _outcome(scenario.name, cloud, files, reports, seconds)
        outcome.found_by_reconcile, outcome.resent, outcome.http_statuses = found, resent, http_statuses
        outcome.uncertain_before_recovery = before
        return outcome


def _outcome(name: str, cloud: LocalCloud, files: dict[str, bytes], reports: list[dict[str, Any]],
             seconds: float) -> Outcome:
    received = Counter((m.task_id, m.to) for m in cloud.cams.backend.received)
    by_job: dict[str, Counter[str]] = {}
    for (task, number), times in received.items():
        by_job.setdefault(str(task), Counter())[number] = times
    lost = failed = uncertain = 0
    for key, report in zip(files, reports):
        statuses = {r["to"]: r["status"] for r in report["rows"] if r["status"] != "duplicate"}
        got = by_job.get(_task(key), Counter())
        for number in report["valid"]:
            status = statuses.get(number)
            if status == "uncertain":
                uncertain += 1
            elif status == "failed":
                failed += 1
            elif status != "sent" or not got.get(number):
                lost += 1
    duplicates = sum(1 for times in received.values() if times > 1)
    return Outcome(name, sum(len(r["valid"]) for r in reports), len(received), duplicates, lost, uncertain,
                   failed, seconds, cloud.cams.backend.max_calls_in_any_window(1.0), reports)


class _Api:
    """The api function's HTTP trigger, as an operator's client would use it."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    @property
    def base(self) -> str:
        return self.cloud.fc.http_endpoint(API)

    def submit_repeatedly(self, data: bytes, task: str, times: int, *, keyed: bool) -> tuple[str, list[int]]:
        """One CSV job over HTTP, the same request sent ``times`` times: with an Idempotency-Key every repeat
        answers the one job (202, then 200s); without one, every repeat is refused (409 probable_repeat)."""
        query = {"channelType": "whatsapp", "templateCode": "T_WELCOME", "language": "en", "from": "8613800000000",
                 "custSpaceId": "cs-faults", "taskId": task}
        headers = {"Content-Type": "text/csv", **({"Idempotency-Key": f"key-{task}"} if keyed else {})}
        statuses, job_id = [], ""
        for _ in range(times):
            response = self.http.post(f"{self.base}/jobs", params=query, data=data, headers=headers, timeout=120)
            statuses.append(response.status_code)
            job_id = job_id or response.json().get("job_id", "")
        return job_id, statuses

    def report(self, job: JobRecord) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """The report and summary objects the functions wrote to OSS (an HTTP job's: under reports/api/)."""
        bucket = self.cloud.oss.oss2_bucket(self.cloud.bucket)
        stem = _report_stem(bucket, job)
        rows = list(csv.DictReader(io.StringIO(bucket.get_object(stem + ".report.csv").read().decode())))
        return rows, json.loads(bucket.get_object(stem + ".summary.json").read())

    def post(self, path: str, body: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        response = self.http.post(f"{self.base}{path}", json=body or {}, timeout=120)
        assert response.status_code < 300, response.text
        return dict(response.json())


def _report_stem(bucket: Any, job: JobRecord) -> str:
    matches = [o.key[:-len(".summary.json")] for o in bucket.list_objects_v2(prefix="reports/").object_list
               if o.key.endswith(f"{job.job_id[:12]}.summary.json") or o.key.endswith(f"{job.job_id}.summary.json")]
    assert len(matches) == 1, (job.job_id, matches)
    return matches[0]


def _recover(cloud: LocalCloud, store: TablestoreStore, api: _Api, jobs: dict[str, JobRecord], sources: set[str],
             timeout: float) -> tuple[int, int]:
    """The operator's recovery: reconcile every job with uncertain batches, then resend the rest."""
    found = resent = 0
    for job in jobs.values():
        if not store.list_batches(job.job_id, [BatchStatus.uncertain]):
            continue
        while True:  # a reconcile request works for a bounded time: call again for what is left
            looked = api.post(f"/jobs/{job.job_id}/reconcile")
            found += looked["found"]
            if not looked["left"]:
                break
        resend = api.post(f"/jobs/{job.job_id}/resend-uncertain")
        resent += resend["resent_recipients"]
    return found, resent
def _task(key: str) -> str:
    return key[len("incoming/"):-len(".csv")]


# --- faults injected while a scenario runs -------------------------------------------------------------------
def tablestore_trouble(cloud: LocalCloud, stop: threading.Event) -> None:
    """Every 0.5 s (what was not used up is dropped, so faults never pile up): a busy server on the next
    write, and a conditional update that lands but whose reply is lost (the outcome unknown to the writer)."""
    backend = cloud.tablestore.backend
    while not stop.wait(0.5):
        backend.clear_faults()
        backend.fail_next(1, code="OTSServerBusy", operations=["UpdateRow", "PutRow", "BatchWriteRow"])
        backend.timeout_next(1, None, apply=True, operations=["UpdateRow"])
    backend.clear_faults()


def arm_crashes(cloud: LocalCloud, files: dict[str, bytes]) -> None:
    """A crash (the process killed) at each step boundary, one per delivery, in turn."""
    fc = cloud.fc.backend
    fc.crash_next(INGEST, "ingest.planned", 1)  # planned, not yet running or fanned out
    for point in ("sender.claimed", "sender.sending", "sender.after_call", "sender.report_written"):
        fc.crash_next(SENDER, point, 1)


def arm_refused_numbers(cloud: LocalCloud, files: dict[str, bytes]) -> None:
    """CAMS refuses whole calls for three numbers our own check accepts: the batches holding them are
    split until each is alone (and it alone fails). A crash right after a split's first step is finished
    by the sweeper; the calls the crashed sender had in flight are uncertain, and the recovery finds them."""
    numbers = sorted(valid_numbers(next(iter(files.values()))))
    cloud.cams.backend.configure(refused_numbers=numbers[::len(numbers) // 3][:3])
    cloud.fc.backend.crash_next(SENDER, "batch.splitting", 1)


SCENARIOS = {
    "no-faults": Scenario("no-faults"),
    "duplicate-deliveries": Scenario(
        "duplicate-deliveries", duplicate_oss_events=True,
        arm=lambda cloud, files: (cloud.fc.backend.duplicate_next(SENDER, 100),
                                  cloud.fc.backend.duplicate_next(INGEST, 5))),
    "http-repeats": Scenario("http-repeats", rows=2000, http_repeats=3),
    "fc-retries": Scenario(
        "fc-retries",
        arm=lambda cloud, files: (cloud.fc.backend.fail_next(SENDER, 3), cloud.fc.backend.fail_next(INGEST, 1))),
    "crashes": Scenario("crashes", arm=arm_crashes),
    "crashes-then-reconcile": Scenario("crashes-then-reconcile", arm=arm_crashes, recover=True),
    "refused-numbers": Scenario("refused-numbers", arm=arm_refused_numbers, recover=True),
    "cams-chaos": Scenario("cams-chaos", cams={
        "throttle_probability": 0.3, "fail_probability": 0.1, "soft_fail_probability": 0.1,
        "drop_before_probability": 0.03, "drop_after_probability": 0.03, "spike_probability": 0.05,
        "spike_latency": 3.0}),
    "tablestore-trouble": Scenario("tablestore-trouble", during=tablestore_trouble),
    "jobs-at-once-racing-senders": Scenario("jobs-at-once-racing-senders", uploads=3, rows=2000,
                                            environment={"CHATAPP_SENDERS": "2"}),
}
