"""The deployed path, end to end on the local cloud: CSVs uploaded to the local OSS trigger the ingest function
(run by the local FC from the project's s.yaml, in worker processes, with the role's STS credentials), which
plans into the local Tablestore and invokes senders asynchronously; senders call the local CAMS; reports land
in the bucket. Checks the ARCHITECTURE.md invariants: each valid recipient once per job, every row in its
report, never more than the limit in any sliding second — also with duplicated events and crashed instances."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.store.interface import JobRecord, JobStatus
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

from oracle import sample_bytes, valid_numbers

ROOT = Path(__file__).resolve().parents[2]
INGEST, SENDER = "chatapp-mass-ingest", "chatapp-mass-sender"
META = {
    "x-oss-meta-channel-type": "whatsapp",
    "x-oss-meta-template-code": "T_WELCOME",
    "x-oss-meta-language": "en",
    "x-oss-meta-from": "8613800000000",
}


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path / "cloud"),
        cams_options={"latency": 0.05, "latency_jitter": 0.5},
        function_environment={"CHATAPP_BATCH_SIZE": "100"},
    ) as local:
        yield local


def store_of(cloud: LocalCloud) -> TablestoreStore:
    creds = cloud.credentials
    return TablestoreStore(
        TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
        create_tables=False,
    )  # the cloud made them


TABLE_OPERATIONS = {"CreateTable", "ListTable", "DescribeTable", "UpdateTable", "DeleteTable"}


def upload(cloud: LocalCloud, key: str, data: bytes, **meta: str) -> None:
    headers = {**META, **{f"x-oss-meta-{k.replace('_', '-')}": v for k, v in meta.items()}}
    cloud.oss.oss2_bucket(cloud.bucket).put_object(key, data, headers=headers)


def wait_for_jobs(
    cloud: LocalCloud, store: TablestoreStore, sources: set[str], timeout: float = 120
) -> dict[str, JobRecord]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        jobs = {j.source: j for j in store.list_jobs(50) if j.source in sources}
        if len(jobs) == len(sources) and all(
            j.status in (JobStatus.completed, JobStatus.failed, JobStatus.stopped) for j in jobs.values()
        ):
            # (a sender that met a batch held by another may have scheduled a delayed look: not waited for)
            return jobs
        time.sleep(0.25)
    states = {j.source: (j.status.value, j.reason) for j in store.list_jobs(50)}
    raise AssertionError(
        f"jobs did not finish in {timeout} s: {states}; invocations: "
        f"{[(r.function, r.status, r.error) for r in cloud.fc.backend.invocations][-10:]}"
    )


def report(cloud: LocalCloud, key: str, job: JobRecord, suffix: str) -> bytes:
    stem = key[len("incoming/") : -len(".csv")]
    return cloud.oss.oss2_bucket(cloud.bucket).get_object(f"reports/{stem}.{job.job_id[:12]}{suffix}").read()


def received_by_task(cloud: LocalCloud) -> dict[str | None, Counter[str]]:
    by_task: dict[str | None, Counter[str]] = {}
    for message in cloud.cams.backend.received:
        by_task.setdefault(message.task_id, Counter())[message.to] += 1
    return by_task


def test_several_uploads_at_once_each_recipient_once_per_job(cloud: LocalCloud) -> None:
    started = len(cloud.tablestore.backend.requests)  # the tables exist (the local init-tables): ready
    files = {f"incoming/list-{i}.csv": sample_bytes(500, seed=40 + i) for i in range(3)}
    threads = [
        threading.Thread(target=upload, args=(cloud, key, data), kwargs={"task_id": f"task-{i}"})
        for i, (key, data) in enumerate(files.items())
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = store_of(cloud)
    jobs = wait_for_jobs(cloud, store, {f"oss://{cloud.bucket}/{key}" for key in files})
    by_task = received_by_task(cloud)
    for i, (key, data) in enumerate(files.items()):
        job = jobs[f"oss://{cloud.bucket}/{key}"]
        assert job.status is JobStatus.completed, job.reason
        expected = valid_numbers(data)
        assert by_task[f"task-{i}"] == Counter({n: 1 for n in expected}), "each valid recipient once per job"
        rows = list(csv.DictReader(io.StringIO(report(cloud, key, job, ".report.csv").decode())))
        assert [int(r["line"]) for r in rows] == list(range(2, 502)), "every row in its report"
        assert Counter(r["status"] for r in rows)["sent"] == len(expected)
        summary = json.loads(report(cloud, key, job, ".summary.json"))
        assert summary["status"] == "completed" and summary["sent"] == len(expected)
    assert cloud.cams.backend.max_calls_in_any_window(1.0) <= 10
    fc = cloud.fc.backend
    assert len([r for r in fc.invocations if r.function == INGEST]) == 3
    assert all(r.status == "ok" for r in fc.invocations), [(r.function, r.error) for r in fc.invocations]
    assert fc.gb_seconds() > 0
    # the functions' cold starts (several instances) made no table operation: only row operations
    apis = {r.api for r in cloud.tablestore.backend.requests[started:]}
    assert apis and not apis & TABLE_OPERATIONS, apis
    store.close()


def test_duplicated_events_and_crashed_instances_send_nobody_twice(cloud: LocalCloud) -> None:
    fc = cloud.fc.backend
    fc.duplicate_next(INGEST, 1)  # the upload's event arrives twice
    fc.crash_next(INGEST, "ingest.planned", 1)  # and the first ingest dies after planning, before fan-out
    fc.duplicate_next(SENDER, 2)
    fc.crash_next(SENDER, "sender.after_call", 1)  # a sender dies with a call's outcome unrecorded
    data = sample_bytes(800, seed=50)
    key = "incoming/faulty.csv"
    upload(cloud, key, data, task_id="faulty")
    store = store_of(cloud)
    job = wait_for_jobs(cloud, store, {f"oss://{cloud.bucket}/{key}"})[f"oss://{cloud.bucket}/{key}"]
    assert job.status is JobStatus.completed, job.reason
    received = received_by_task(cloud)["faulty"]
    assert max(received.values()) == 1, "a number was sent twice"
    rows = list(csv.DictReader(io.StringIO(report(cloud, key, job, ".report.csv").decode())))
    statuses = Counter(r["status"] for r in rows)
    uncertain = [r for r in rows if r["status"] == "uncertain"]
    assert statuses["sent"] + len(uncertain) == len(valid_numbers(data)), "nobody lost"
    assert {r["to"] for r in rows if r["status"] == "sent"} <= set(received)
    assert all(r["code"] == "Interrupted" for r in uncertain)
    assert {r.status for r in fc.invocations} >= {"crash", "ok"}
    assert len({r.request_id for r in fc.invocations if r.function == INGEST}) >= 1
    store.close()


def test_a_bad_upload_is_reported_in_the_bucket(cloud: LocalCloud) -> None:
    key = "incoming/no-options.csv"
    cloud.oss.oss2_bucket(cloud.bucket).put_object(key, b"to,name\n8613800000001,Ana\n")
    store = store_of(cloud)
    job = wait_for_jobs(cloud, store, {f"oss://{cloud.bucket}/{key}"})[f"oss://{cloud.bucket}/{key}"]
    assert job.status is JobStatus.failed and "ChannelType" in job.reason
    error = json.loads(report(cloud, key, job, ".error.json"))
    assert error["problem"] == "options" and "upload the CSV again" in error["fix"]
    assert cloud.cams.backend.attempts == []
    store.close()


def test_full_batches_from_the_functions_never_send_a_request_line_over_16_kib(tmp_path: Path) -> None:
    """The deployed functions with s.yaml's own settings (1,000 recipients per call, SenderList in the body)
    against the local CAMS's gateway limits: full batches, short request lines, nothing refused."""
    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"), data_dir=str(tmp_path / "cloud"), cams_options={"latency": 0.02}
    ) as cloud:
        key = "incoming/full-batches.csv"
        data = sample_bytes(2600, seed=61)
        upload(cloud, key, data)
        store = store_of(cloud)
        job = wait_for_jobs(cloud, store, {f"oss://{cloud.bucket}/{key}"})[f"oss://{cloud.bucket}/{key}"]
        assert job.status is JobStatus.completed, job.reason
        backend = cloud.cams.backend
        assert Counter(m.to for m in backend.received) == Counter({n: 1 for n in valid_numbers(data)})
        assert {a.code for a in backend.attempts} <= {"OK", "System.LimitControl"}  # none refused as too long
        sizes = sorted(len(a.recipients) for a in backend.attempts if a.code == "OK")
        assert sizes[1:] == [1000] * (len(sizes) - 1), sizes
        assert 0 < backend.longest_request_line <= 16 * 1024
        store.close()


def _expect_completed(
    cloud: LocalCloud, store: TablestoreStore, key: str, data: bytes, task: str
) -> JobRecord:
    job = wait_for_jobs(cloud, store, {f"oss://{cloud.bucket}/{key}"})[f"oss://{cloud.bucket}/{key}"]
    assert job.status is JobStatus.completed, job.reason
    expected = valid_numbers(data)
    assert received_by_task(cloud)[task] == Counter({n: 1 for n in expected}), "each valid recipient once"
    rows = list(csv.DictReader(io.StringIO(report(cloud, key, job, ".report.csv").decode())))
    assert len(rows) == data.count(b"\n") - 1, "every row in its report"
    return job


def test_a_copy_into_incoming_runs_as_a_job(cloud: LocalCloud) -> None:
    data = sample_bytes(300, seed=60)
    bucket = cloud.oss.oss2_bucket(cloud.bucket)
    bucket.put_object("staging/copied.csv", data, headers={**META, "x-oss-meta-task-id": "copied"})
    assert cloud.fc.backend.invocations == []  # outside the trigger's prefix: nothing runs
    key = "incoming/copied.csv"
    bucket.copy_object(cloud.bucket, "staging/copied.csv", key)  # COPY: the options travel with the metadata
    store = store_of(cloud)
    _expect_completed(cloud, store, key, data, "copied")
    events = [e["events"][0]["eventName"] for e in cloud.oss.backend.events]
    assert "ObjectCreated:CopyObject" in events
    store.close()


def test_a_multipart_upload_into_incoming_runs_as_a_job(cloud: LocalCloud, tmp_path: Path) -> None:
    import oss2

    data = sample_bytes(4000, seed=61)
    assert 100 * 1024 < len(data) < 200 * 1024  # two parts of 100 KB at most
    path = tmp_path / "big list.csv"
    path.write_bytes(data)
    key = "incoming/big list.csv"
    result = oss2.resumable_upload(
        cloud.oss.oss2_bucket(cloud.bucket),
        key,
        str(path),
        store=oss2.ResumableStore(root=str(tmp_path / "records")),
        multipart_threshold=100 * 1024,
        part_size=100 * 1024,
        num_threads=2,
        headers={**META, "x-oss-meta-task-id": "multipart"},
    )
    assert result.etag.endswith("-2")  # a multipart object's ETag
    store = store_of(cloud)
    job = _expect_completed(cloud, store, key, data, "multipart")
    assert job.content_sha256 == f"etag:{result.etag}"
    events = [e["events"][0] for e in cloud.oss.backend.events]
    assert [e["eventName"] for e in events if e["oss"]["object"]["key"] == key] == [
        "ObjectCreated:CompleteMultipartUpload"
    ]
    assert len([r for r in cloud.fc.backend.invocations if r.function == INGEST]) == 1
    store.close()


def test_every_log_line_of_an_invocation_names_it_and_numbers_stay_masked(tmp_path: Path) -> None:
    """What an SLS query by request id finds: every JSON line the functions log, the sender's worker threads'
    too (``calling CAMS``, logged at DEBUG by the thread that calls), carries FC's request id of the
    invocation that wrote it and the function's name; no recipient's number appears whole."""
    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path / "cloud"),
        cams_options={"latency": 0.02},
        function_environment={"CHATAPP_BATCH_SIZE": "100", "CHATAPP_LOG_LEVEL": "DEBUG"},
    ) as cloud:
        key = "incoming/logged.csv"
        data = sample_bytes(300, seed=62)
        upload(cloud, key, data, task_id="logged")
        store = store_of(cloud)
        _expect_completed(cloud, store, key, data, "logged")
        store.close()
        records = list(cloud.fc.backend.invocations)
    assert {r.function for r in records} == {INGEST, SENDER}

    def json_lines(text: str) -> list[dict[str, object]]:
        entries = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the runtime's own lines, or a line cut by the 4 KB tail
            if isinstance(entry, dict) and str(entry.get("logger", "")).startswith("chatapp_mass"):
                entries.append(entry)
        return entries

    # Each invocation's output (the tail FC returns) names that invocation, whichever thread wrote it.
    seen_by_thread = 0
    for record in records:
        entries = json_lines(record.log)
        assert entries, (record.function, record.log)
        assert {(e.get("request_id"), e.get("function")) for e in entries} == {
            (record.request_id, record.function)
        }, (record, entries)
        seen_by_thread += sum(e["message"] == "calling CAMS" for e in entries)
    assert seen_by_thread > 0
    # The instances' whole output: every product line names an invocation of its function.
    files = {path.stem: path.read_text() for path in (tmp_path / "cloud").rglob("*.log")}
    assert set(files) >= {INGEST, SENDER}
    ids = {r.request_id for r in records}
    for function in (INGEST, SENDER):
        entries = json_lines(files[function])
        assert entries and all(e.get("request_id") in ids and e.get("function") == function for e in entries)
    text = "".join(files.values()) + "".join(r.log for r in records)
    leaked = [n for n in valid_numbers(data) if n.lstrip("+") in text]
    assert leaked == []


def test_an_uploaded_excel_workbook_runs_as_a_job(cloud: LocalCloud) -> None:
    """s.yaml's second OSS trigger (suffix .xlsx): a workbook's named sheet is read, a row's line its sheet row."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["not this sheet"])
    sheet = book.create_sheet("March")
    sheet.append(["Phone Number", "name"])
    for row in ([8613866661234, "Ana"], ["+86 138 6666 1235", "Ben"], ["bad", "Cy"]):
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    key = "incoming/march.xlsx"
    upload(cloud, key, buffer.getvalue(), task_id="workbook", sheet="march")
    store = store_of(cloud)
    job = wait_for_jobs(cloud, store, {f"oss://{cloud.bucket}/{key}"})[f"oss://{cloud.bucket}/{key}"]
    assert job.status is JobStatus.completed, job.reason
    assert received_by_task(cloud)["workbook"] == Counter({"8613866661234": 1, "8613866661235": 1})
    stem = f"reports/march.{job.job_id[:12]}"
    rows = cloud.oss.oss2_bucket(cloud.bucket).get_object(f"{stem}.report.csv").read().decode()
    assert [(r["line"], r["status"]) for r in csv.DictReader(io.StringIO(rows))] == [
        ("2", "sent"),
        ("3", "sent"),
        ("4", "invalid"),
    ]
    store.close()
