"""The product's Tablestore tables against the realistic local Tablestore (real SDK, real HTTP): created once by
``chatapp-mass init-tables`` (idempotent, waits until ready), never at a function's cold start (no table operation
at all there: table operations are limited to 10/s per instance), a missing table is a clear error, and a store
opened on tables just created waits out their OTSTableNotReady window."""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tablestore import CapacityUnit, OTSClient, OTSServiceError, ReservedThroughput, TableMeta, TableOptions
from tablestore.retry import NoRetryPolicy

from alibaba_localcloud.tablestore import LocalTablestore
from chatapp_mass.core.errors import StoreError
from chatapp_mass.entry import cli
from chatapp_mass.entry.bootstrap import function_services, open_store
from chatapp_mass.store.interface import JobRecord
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

TABLE_OPERATIONS = {"CreateTable", "ListTable", "DescribeTable", "UpdateTable", "DeleteTable"}


@pytest.fixture(scope="module")
def ots() -> Iterator[LocalTablestore]:
    with LocalTablestore(
        max_tables=256
    ) as server:  # realistic, with its defaults (2 s not ready, 10 table ops/s)
        yield server


def environment(ots: LocalTablestore, prefix: str) -> dict[str, str]:
    c = ots.credentials
    return {
        "CHATAPP_TABLESTORE_ENDPOINT": ots.endpoint,
        "CHATAPP_TABLE_PREFIX": prefix,
        "CHATAPP_STORE": f"tablestore://{ots.instance_name}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": c.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": c.access_key_secret,
        "ALIBABA_CLOUD_SECURITY_TOKEN": c.security_token or "",
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        "ALIBABA_CLOUD_REGION_ID": "ap-southeast-1",
    }


def requests_since(ots: LocalTablestore, mark: int) -> list[Any]:
    return ots.backend.requests[mark:]


def raw_client(ots: LocalTablestore) -> OTSClient:
    c = ots.credentials
    return OTSClient(
        ots.endpoint,
        c.access_key_id,
        c.access_key_secret,
        ots.instance_name,
        sts_token=c.security_token,
        retry_policy=NoRetryPolicy(),
        logger_name="tables-test-client",
    )


def job(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, source="f.csv", options={}, intake={}, content_sha256="x")


def test_init_tables_creates_them_waits_until_ready_and_is_idempotent(
    ots: LocalTablestore, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"i{secrets.token_hex(3)}_"
    for name, value in environment(ots, prefix).items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    assert cli.main(["init-tables", "--store", f"tablestore://{ots.instance_name}"], out=out) == 0
    first = json.loads(out.getvalue())
    tables = {
        f"{prefix}{t}"
        for t in (
            *("jobs", "job_index", "batches", "rows", "rate", "job_status", "requests"),
            *("receipts", "tasks", "receipts_aside"),  # the receipt store's (issue 17)
            "reach",  # the messaging limit's window (issue 17)
        )
    }
    assert set(first["created"]) == tables and first["existing"] == []
    # ready when it returns: a read without any retry succeeds at once
    assert raw_client(ots).get_row(f"{prefix}jobs", [("job_id", "x")])[1] is None
    mark = len(ots.backend.requests)
    out = io.StringIO()
    assert cli.main(["init-tables", "--store", f"tablestore://{ots.instance_name}"], out=out) == 0
    again = json.loads(out.getvalue())
    assert again["created"] == [] and set(again["existing"]) == tables
    apis = [r.api for r in requests_since(ots, mark)]
    assert apis.count("ListTable") == 1 and "CreateTable" not in apis


def test_init_tables_with_info_logs_logs_what_it_created(
    ots: LocalTablestore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # "created" named a LogRecord attribute: logging refused the record (KeyError) as soon as INFO was on.
    import logging

    logger = logging.getLogger("chatapp_mass")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    prefix = f"l{secrets.token_hex(3)}_"
    for name, value in environment(ots, prefix).items():
        monkeypatch.setenv(name, value)
    try:
        out = io.StringIO()
        assert (
            cli.main(
                ["init-tables", "--store", f"tablestore://{ots.instance_name}", "--log-level", "INFO"],
                out=out,
            )
            == 0
        )
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    entries = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [ready] = [e for e in entries if e["message"] == "Tablestore tables ready"]
    assert sorted(ready["tables_created"]) == sorted(json.loads(out.getvalue())["created"])


def test_a_cold_start_makes_no_table_operation(ots: LocalTablestore) -> None:
    prefix = f"c{secrets.token_hex(3)}_"
    environ = environment(ots, prefix)
    TablestoreStore(
        TablestoreSettings.from_url(environ["CHATAPP_STORE"], environ),
        access_key_id=environ["ALIBABA_CLOUD_ACCESS_KEY_ID"],
        access_key_secret=environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
        security_token=environ["ALIBABA_CLOUD_SECURITY_TOKEN"],
    ).close()  # the deploy step
    mark = len(ots.backend.requests)
    services = function_services(environ)  # what every function instance builds at its cold start
    assert services.store.create_job(job("cold"))
    assert [j.job_id for j in services.store.list_jobs()] == ["cold"]
    services.store.close()
    apis = {r.api for r in requests_since(ots, mark)}
    assert apis and not apis & TABLE_OPERATIONS, apis


def test_a_missing_table_says_to_run_init_tables(ots: LocalTablestore) -> None:
    environ = environment(ots, f"m{secrets.token_hex(3)}_")
    store = open_store(environ["CHATAPP_STORE"], environ)
    with pytest.raises(StoreError) as caught:
        store.get_job("x")
    message = str(caught.value)
    assert (
        "OTSObjectNotExist" in message
        and f"chatapp-mass init-tables --store tablestore://{ots.instance_name}" in message
        and environ["CHATAPP_TABLE_PREFIX"] in message
    )
    store.close()


def test_a_store_on_tables_just_created_waits_until_they_are_ready(ots: LocalTablestore) -> None:
    """Another process created the tables a moment ago (raw CreateTable): the store's first writes meet
    OTSTableNotReady (404) and wait it out, however few ``max_attempts`` it has."""
    prefix = f"n{secrets.token_hex(3)}_"
    creator = raw_client(ots)
    settings = TablestoreSettings(
        endpoint=ots.endpoint, instance=ots.instance_name, table_prefix=prefix, max_attempts=2
    )
    c = ots.credentials
    store = TablestoreStore(
        settings,
        access_key_id=c.access_key_id,
        access_key_secret=c.access_key_secret,
        security_token=c.security_token or "",
        create_tables=False,
    )
    # More tables than the 10 table operations a second: the creator waits out the quota, creating the
    # tables the first writes use (jobs, job_index) last, so that they are surely not ready yet
    for table, schema in reversed(store._schemas().items()):
        while True:
            try:
                creator.create_table(
                    TableMeta(table, schema),
                    TableOptions(time_to_live=-1, max_version=1),
                    ReservedThroughput(CapacityUnit(0, 0)),
                )
                break
            except OTSServiceError as error:
                if error.get_error_code() != "OTSQuotaExhausted":
                    raise
                time.sleep(0.1)
    mark = len(ots.backend.requests)
    assert store.create_job(job("fresh"))
    assert store.get_job("fresh") is not None
    codes = [r.error_code for r in requests_since(ots, mark)]
    assert "OTSTableNotReady" in codes, "the tables were new: the first writes were refused, then waited out"
    store.close()


def test_concurrent_initializers_wait_out_the_table_operation_quota(ots: LocalTablestore) -> None:
    """Four deployments at once: 4 x 11 table operations, beyond 10/s; each waits out OTSQuotaExhausted "Too
    frequent table operations." and all tables end up created."""
    c = ots.credentials
    prefixes = [f"q{secrets.token_hex(3)}_" for _ in range(4)]
    failures: list[BaseException] = []

    def initialize(prefix: str) -> None:
        try:
            settings = TablestoreSettings(
                endpoint=ots.endpoint, instance=ots.instance_name, table_prefix=prefix, max_attempts=2
            )
            TablestoreStore(
                settings,
                access_key_id=c.access_key_id,
                access_key_secret=c.access_key_secret,
                security_token=c.security_token or "",
            ).close()
        except BaseException as error:  # noqa: BLE001  reported below
            failures.append(error)

    mark = len(ots.backend.requests)
    threads = [threading.Thread(target=initialize, args=(p,)) for p in prefixes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    names = set(ots.backend.table_names())
    assert all(f"{p}{t}" in names for p in prefixes for t in ("jobs", "rows", "job_status"))
    refusals = [r for r in requests_since(ots, mark) if r.error_code == "OTSQuotaExhausted"]
    assert all(r.error_message == "Too frequent table operations." for r in refusals)


def test_a_job_row_tablestore_would_refuse_is_a_clear_error(ots: LocalTablestore) -> None:
    """One value ≤ 2 MB, one row write ≤ 4 MB (general limits): said before writing, naming the job."""
    c = ots.credentials
    settings = TablestoreSettings(
        endpoint=ots.endpoint, instance=ots.instance_name, table_prefix=f"b{secrets.token_hex(3)}_"
    )
    store = TablestoreStore(
        settings,
        access_key_id=c.access_key_id,
        access_key_secret=c.access_key_secret,
        security_token=c.security_token or "",
    )
    big = JobRecord(
        job_id="big", source="f.csv", options={"x": "a" * (2 * 1024 * 1024)}, intake={}, content_sha256="x"
    )
    with pytest.raises(
        StoreError,
        match=r"job big: its options take [\d,]+ bytes, over Tablestore's limit of "
        r"2,097,152 bytes for one value",
    ):
        store.create_job(big)
    part = "a" * (1536 * 1024)
    wide = JobRecord(job_id="wide", source=part, options={"x": part}, intake={"y": part}, content_sha256="x")
    with pytest.raises(
        StoreError,
        match=r"job wide: its row takes [\d,]+ bytes, over Tablestore's limit of "
        r"4,194,304 bytes for one row write",
    ):
        store.create_job(wide)
    assert store.get_job("big") is None and store.get_job("wide") is None
    assert store.list_jobs() == [] and ots.backend.row_count(store.t_index) == 0, "nothing of them written"
    store.close()
