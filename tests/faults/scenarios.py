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

from chatapp_mass.localcloud.cloud import LocalCloud
from chatapp_mass.store import JobRecord, JobStatus
from chatapp_mass.store_tablestore import TablestoreSettings, TablestoreStore

ROOT = Path(__file__).resolve().parents[2]
INGEST, SENDER, API = "chatapp-mass-ingest", "chatapp-mass-sender", "chatapp-mass-api"
META = {"x-oss-meta-channel-type": "whatsapp", "x-oss-meta-template-code": "T_WELCOME",
        "x-oss-meta-language": "en", "x-oss-meta-from": "8613800000000"}
FINAL_ROW = {"sent", "failed", "uncertain", "invalid", "duplicate", "cancelled"}


@dataclass
class Scenario:
    name: str
    rows: int = 3000
    uploads: int = 1
    cams: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    arm: Callable[[LocalCloud], None] = lambda cloud: None  # faults armed before the uploads
    during: Optional[Callable[[LocalCloud, threading.Event], None]] = None  # faults injected while it runs
    duplicate_oss_events: bool = False


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
                   "CHATAPP_ERROR_THRESHOLD": "0", "CHATAPP_API_TOKEN": "faults", **scenario.environment}
    cams = {"latency": 0.05, "latency_jitter": 0.5, "seed": 7, **scenario.cams}
    with LocalCloud(s_yaml=str(ROOT / "s.yaml"), data_dir=str(tmp / scenario.name), cams_options=cams,
                    function_environment=environment) as cloud:
        creds = cloud.credentials
        store = TablestoreStore(TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
                                access_key_id=creds.access_key_id, access_key_secret=creds.access_key_secret,
                                security_token=creds.security_token or "")
        scenario.arm(cloud)
        files = {f"incoming/{scenario.name}-{i}.csv": sample_bytes(scenario.rows, seed=70 + i)
                 for i in range(scenario.uploads)}
        events: list[dict[str, Any]] = []
        unsubscribe = cloud.oss.backend.subscribe(events.append)
        stop = threading.Event()
        injector = threading.Thread(target=scenario.during, args=(cloud, stop), daemon=True) \
            if scenario.during else None
        started = time.time()
        bucket = cloud.oss.oss2_bucket(cloud.bucket)
        try:
            if injector:
                injector.start()
            for key, data in files.items():  # TaskId tells the jobs' messages apart in CAMS's record
                bucket.put_object(key, data, headers={**META, "x-oss-meta-task-id": _task(key)})
            if scenario.duplicate_oss_events:
                for event in list(events):  # OSS delivers the same event again
                    cloud.fc.backend.on_oss_event(event)
            sources = {f"oss://{cloud.bucket}/{key}" for key in files}
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
            job = jobs[f"oss://{cloud.bucket}/{key}"]
            stem = f"reports/{key[len('incoming/'):-len('.csv')]}.{job.job_id[:12]}"
            rows = list(csv.DictReader(io.StringIO(bucket.get_object(stem + ".report.csv").read().decode())))
            summary = json.loads(bucket.get_object(stem + ".summary.json").read())
            reports.append({"job": job, "rows": rows, "summary": summary, "valid": valid_numbers(data),
                            "input_rows": data.decode().count("\n") - 1})
        store.close()
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
        return Outcome(scenario.name, sum(len(r["valid"]) for r in reports), len(received), duplicates, lost,
                       uncertain, failed, seconds, cloud.cams.backend.max_calls_in_any_window(1.0), reports)


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


def arm_crashes(cloud: LocalCloud) -> None:
    """A crash (the process killed) at each step boundary, one per delivery, in turn."""
    fc = cloud.fc.backend
    fc.crash_next(INGEST, "ingest.planned", 1)  # planned, not yet running or fanned out
    for point in ("sender.claimed", "sender.sending", "sender.after_call", "sender.report_written"):
        fc.crash_next(SENDER, point, 1)


SCENARIOS = {
    "no-faults": Scenario("no-faults"),
    "duplicate-deliveries": Scenario(
        "duplicate-deliveries", duplicate_oss_events=True,
        arm=lambda cloud: (cloud.fc.backend.duplicate_next(SENDER, 100), cloud.fc.backend.duplicate_next(INGEST, 5))),
    "fc-retries": Scenario(
        "fc-retries", arm=lambda cloud: (cloud.fc.backend.fail_next(SENDER, 3), cloud.fc.backend.fail_next(INGEST, 1))),
    "crashes": Scenario("crashes", arm=arm_crashes),
    "cams-chaos": Scenario("cams-chaos", cams={
        "throttle_probability": 0.3, "fail_probability": 0.1, "soft_fail_probability": 0.1,
        "drop_before_probability": 0.03, "drop_after_probability": 0.03, "spike_probability": 0.05,
        "spike_latency": 3.0}),
    "tablestore-trouble": Scenario("tablestore-trouble", during=tablestore_trouble),
    "jobs-at-once-racing-senders": Scenario("jobs-at-once-racing-senders", uploads=3, rows=2000,
                                            environment={"CHATAPP_SENDERS": "2"}),
}
