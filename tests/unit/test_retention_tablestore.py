"""Retention on Tablestore (issue 17), through the real SDK over HTTP to the local Tablestore: ``init-tables`` sets
the time to live of the rows and batches tables from ``CHATAPP_RETENTION_DAYS`` and updates it when the setting
changes (jobs and the others keep -1); the emulator refuses a TTL under a day as the docs say, and rows older than
the TTL vanish from every read (GetRow, BatchGetRow, GetRange) while the job row and its summary stay. Rows are
aged by the emulator (``age_rows``) instead of waiting a month."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator

import pytest
from tablestore import (
    BatchGetRowRequest,
    CapacityUnit,
    OTSClient,
    OTSServiceError,
    ReservedThroughput,
    TableInBatchGetRowItem,
    TableMeta,
    TableOptions,
)
from tablestore.retry import NoRetryPolicy

from alibaba_localcloud.tablestore import LocalTablestore
from chatapp_mass.entry import cli
from chatapp_mass.services.retention import record_summary
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord, JobStatus, RowRecord, RowStatus
from chatapp_mass.store.retention import DAY
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore


@pytest.fixture(scope="module")
def ots() -> Iterator[LocalTablestore]:
    with LocalTablestore(max_tables=256, realistic=False) as server:
        yield server


def open_store(ots: LocalTablestore, prefix: str, **kwargs: object) -> TablestoreStore:
    c = ots.credentials
    return TablestoreStore(
        TablestoreSettings(endpoint=ots.endpoint, instance=ots.instance_name, table_prefix=prefix),
        access_key_id=c.access_key_id,
        access_key_secret=c.access_key_secret,
        security_token=c.security_token or "",
        **kwargs,  # type: ignore[arg-type]
    )


def raw_client(ots: LocalTablestore) -> OTSClient:
    c = ots.credentials
    return OTSClient(
        ots.endpoint,
        c.access_key_id,
        c.access_key_secret,
        ots.instance_name,
        sts_token=c.security_token,
        retry_policy=NoRetryPolicy(),
        logger_name="retention-test-client",
    )


def ttl(client: OTSClient, table: str) -> int:
    return int(client.describe_table(table).table_options.time_to_live)


def test_init_tables_sets_the_ttl_of_the_rows_tables_and_updates_it(
    ots: LocalTablestore, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"r{secrets.token_hex(3)}_"
    store = open_store(ots, prefix, create_tables=False)
    client = raw_client(ots)
    monkeypatch.setenv("CHATAPP_RETENTION_DAYS", "30")
    first = store.init_tables()
    assert first["time_to_live"] == {
        f"{prefix}{name}": 30 * 86400 for name in ("batches", "rows", "suppressed_rows")
    }
    assert first["updated"] == []
    for name in ("rows", "batches"):
        assert ttl(client, f"{prefix}{name}") == 2_592_000
    for name in ("jobs", "job_index", "job_status", "requests", "rate"):
        assert ttl(client, f"{prefix}{name}") == -1, name
    assert store.init_tables()["updated"] == []  # unchanged: no UpdateTable
    changed = store.init_tables(retention_days=7)
    assert changed["updated"] == [f"{prefix}batches", f"{prefix}rows", f"{prefix}suppressed_rows"]
    assert ttl(client, f"{prefix}rows") == ttl(client, f"{prefix}batches") == 7 * 86400
    assert store.init_tables(retention_days=0)["updated"] == [
        f"{prefix}batches",
        f"{prefix}rows",
        f"{prefix}suppressed_rows",
    ]
    assert ttl(client, f"{prefix}rows") == -1 and ttl(client, f"{prefix}jobs") == -1
    store.close()


def test_the_cli_init_tables_reads_the_setting(ots: LocalTablestore, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"c{secrets.token_hex(3)}_"
    c = ots.credentials
    for name, value in {
        "CHATAPP_TABLESTORE_ENDPOINT": ots.endpoint,
        "CHATAPP_TABLE_PREFIX": prefix,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": c.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": c.access_key_secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": c.security_token or "",
        "CHATAPP_RETENTION_DAYS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    assert cli.main(["init-tables", "--store", f"tablestore://{ots.instance_name}"], out=out) == 0
    assert json.loads(out.getvalue())["time_to_live"][f"{prefix}rows"] == 2 * 86400
    monkeypatch.setenv("CHATAPP_RETENTION_DAYS", "soon")
    err = io.StringIO()
    assert cli.main(["init-tables", "--store", f"tablestore://{ots.instance_name}"], err=err) == 2
    assert "CHATAPP_RETENTION_DAYS='soon'" in err.getvalue()


@pytest.mark.parametrize("seconds", [0, 3600, 86399, -2])
def test_a_ttl_under_a_day_is_refused_as_the_docs_say(ots: LocalTablestore, seconds: int) -> None:
    client = raw_client(ots)
    table = f"t{secrets.token_hex(3)}"
    with pytest.raises(OTSServiceError) as refused:
        client.create_table(
            TableMeta(table, [("k", "STRING")]),
            TableOptions(time_to_live=seconds, max_version=1),
            ReservedThroughput(CapacityUnit(0, 0)),
        )
    assert refused.value.get_error_code() == "OTSParameterInvalid"
    assert refused.value.get_error_message() == "TimeToLive cannot be 0 or less than -1."
    client.create_table(
        TableMeta(table, [("k", "STRING")]),
        TableOptions(time_to_live=86400, max_version=1),
        ReservedThroughput(CapacityUnit(0, 0)),
    )
    with pytest.raises(OTSServiceError) as refused:
        client.update_table(table, TableOptions(time_to_live=seconds))
    assert refused.value.get_error_code() == "OTSParameterInvalid"
    assert ttl(client, table) == 86400
    client.update_table(table, TableOptions(time_to_live=-1))
    assert ttl(client, table) == -1


def test_rows_past_the_ttl_vanish_from_every_read_and_the_job_and_its_summary_stay(
    ots: LocalTablestore,
) -> None:
    prefix = f"x{secrets.token_hex(3)}_"
    store = open_store(ots, prefix, create_tables=False)
    store.init_tables(retention_days=30)
    job_id = "job-ttl"
    store.create_job(JobRecord(job_id=job_id, source="f.csv", options={}, intake={}, content_sha256="x"))
    rows = [
        RowRecord(
            job_id, line, f"8613800{line:06d}", RowStatus.valid, batch_seq=0, recipient={"To": str(line)}
        )
        for line in range(1, 11)
    ]
    store.put_plan(rows, [BatchRecord(job_id, 0, 10, first_line=1, last_line=10)])
    store.transition_batch(job_id, 0, expect=[BatchStatus.pending], to=BatchStatus.sent)
    store.update_job(job_id, status=JobStatus.completed, total_rows=10, valid=10, batches=1)
    job = store.get_job(job_id)
    assert job is not None
    record_summary(store, job, now=job.updated_at)
    assert len(list(store.report_rows(job_id))) == 10

    backend, client = ots.backend, raw_client(ots)
    for name in ("rows", "batches", "jobs"):  # a day short of the TTL: everything is there
        backend.age_rows(f"{prefix}{name}", 29 * DAY, ots.instance_name)
    assert len(list(store.report_rows(job_id))) == 10 and store.get_batch(job_id, 0) is not None
    for name in ("rows", "batches", "jobs"):  # past it: the rows and batches are gone, the job is not
        backend.age_rows(f"{prefix}{name}", 2 * DAY, ots.instance_name)
    assert list(store.report_rows(job_id)) == []  # GetRange
    assert store.get_batch(job_id, 0) is None  # GetRow
    assert store.list_batches(job_id) == []
    request = BatchGetRowRequest()
    request.add(TableInBatchGetRowItem(f"{prefix}batches", [[("job_id", job_id), ("seq", 0)]], max_version=1))
    request.add(TableInBatchGetRowItem(f"{prefix}jobs", [[("job_id", job_id)]], max_version=1))
    got = client.batch_get_row(request)
    assert [item.row for item in got.get_result_by_table(f"{prefix}batches")] == [None]
    assert [item.row is not None for item in got.get_result_by_table(f"{prefix}jobs")] == [True]
    kept = store.get_job(job_id)
    assert kept is not None and kept.status is JobStatus.completed
    assert (kept.summary["sent"], kept.summary["rows"], kept.summary["batches"]) == (10, 10, 1)
    # the service's background deletion: the expired rows go for good, the job row stays
    assert backend.row_count(f"{prefix}rows", ots.instance_name) > 0
    assert backend.expire_rows(ots.instance_name) >= 2
    assert backend.row_count(f"{prefix}rows", ots.instance_name) == 0
    assert backend.row_count(f"{prefix}jobs", ots.instance_name) == 1
    store.close()


def test_a_batch_partly_expired_is_gone_not_a_broken_record(ots: LocalTablestore) -> None:
    """TTL is per cell version: a batch planned 29 days ago and sent today keeps only its new cells after two
    more days. The store reads such a row as no batch (it cannot be rebuilt), not as an error."""
    prefix = f"p{secrets.token_hex(3)}_"
    store = open_store(ots, prefix, create_tables=False)
    store.init_tables(retention_days=30)
    store.create_job(JobRecord(job_id="j", source="f.csv", options={}, intake={}, content_sha256="x"))
    store.put_plan([], [BatchRecord("j", 0, 5, first_line=1, last_line=5), BatchRecord("j", 1, 5)])
    ots.backend.age_rows(f"{prefix}batches", 29 * DAY, ots.instance_name)
    assert store.transition_batch("j", 0, expect=[BatchStatus.pending], to=BatchStatus.sent)
    ots.backend.age_rows(f"{prefix}batches", 2 * DAY, ots.instance_name)
    assert store.get_batch("j", 0) is None and store.get_batch("j", 1) is None
    assert store.list_batches("j") == [] and store.list_batches("j", [BatchStatus.sent]) == []
    assert store.batch_totals("j") == {}
    store.close()
