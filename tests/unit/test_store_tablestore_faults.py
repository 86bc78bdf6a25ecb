"""The Tablestore store under faults injected by the local Tablestore (real SDK, real HTTP): transient errors
are retried, row-level BatchWriteRow failures are retried alone, an ambiguous write (applied, but the client
never heard) is recognised as ours by its op token, and what cannot succeed becomes a clear StoreError."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from chatapp_mass.core.errors import StoreError
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord, JobStatus, RowRecord, RowStatus
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from alibaba_localcloud.tablestore import LocalTablestore

    # a store per test, eleven tables each: above the 64 tables of one instance by default
    with LocalTablestore(max_tables=1024) as local:
        yield local


@pytest.fixture
def store(server: Any) -> Iterator[TablestoreStore]:
    server.backend.clear_faults()
    creds = server.credentials
    settings = TablestoreSettings(
        endpoint=server.endpoint,
        instance=server.instance_name,
        table_prefix=f"f{secrets.token_hex(4)}_",
        socket_timeout=2.0,
        max_attempts=4,
    )
    handle = TablestoreStore(
        settings,
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
    )
    yield handle
    server.backend.clear_faults()
    handle.close()


def job(job_id: str = "job1") -> JobRecord:
    return JobRecord(job_id=job_id, source="f.csv", options={}, intake={}, content_sha256="x")


def planned(store: TablestoreStore, rows: int = 450) -> None:
    assert store.create_job(job())
    records = [
        RowRecord(
            "job1",
            line,
            f"86138{line:08d}",
            RowStatus.valid,
            batch_seq=(line - 2) // 100,
            recipient={"To": f"86138{line:08d}"},
        )
        for line in range(2, rows + 2)
    ]
    batches = [
        BatchRecord(
            "job1",
            seq,
            min(100, rows - seq * 100),
            first_line=2 + seq * 100,
            last_line=min(rows + 1, 101 + seq * 100),
        )
        for seq in range((rows + 99) // 100)
    ]
    store.put_plan(records, batches)


def operations(server: Any, name: str) -> int:
    return sum(1 for request in server.backend.requests if request.api == name)


def test_row_level_failures_in_batch_write_are_retried_alone(server: Any, store: TablestoreStore) -> None:
    server.backend.fail_rows_next(7, "OTSServerBusy", tables=[store.t_rows])
    planned(store)
    # the 450 records are 4 chunk rows (128 records at most) in one BatchWriteRow: 7 row failures hit several
    # of them, more than once, and each is retried until stored; every record is there (report_rows)
    assert server.backend.row_count(store.t_rows) == 4
    assert [r.line for r in store.report_rows("job1")] == list(range(2, 452))
    assert len(store.batch_recipients("job1", 4)) == 50


def test_server_busy_is_retried_until_it_clears(server: Any, store: TablestoreStore) -> None:
    planned(store, 10)
    server.backend.fail_next(2, "OTSServerBusy", operations=["UpdateRow"])
    before = operations(server, "UpdateRow")
    assert store.transition_batch("job1", 0, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner="w1")
    assert operations(server, "UpdateRow") - before == 3
    assert store.list_batches("job1")[0].status is BatchStatus.claimed


def test_ambiguous_write_that_landed_is_recognised_as_ours(server: Any, store: TablestoreStore) -> None:
    planned(store, 10)
    # applied, but the connection drops before the reply: the retry then fails its own condition
    server.backend.timeout_next(1, None, apply=True, operations=["UpdateRow"])
    assert (
        store.transition_batch(
            "job1", 0, expect=[BatchStatus.pending], to=BatchStatus.sending, owner="w1", attempts=1
        )
        is True
    )
    batch = store.list_batches("job1")[0]
    assert (batch.status, batch.attempts) == (BatchStatus.sending, 1)  # counted once, not twice


def test_ambiguous_write_that_lost_to_another_writer_is_false(server: Any, store: TablestoreStore) -> None:
    planned(store, 10)
    other = TablestoreStore(
        store.settings,
        access_key_id=server.credentials.access_key_id,
        access_key_secret=server.credentials.access_key_secret,
        security_token=server.credentials.security_token or "",
        create_tables=False,
    )
    assert other.transition_batch(
        "job1", 0, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner="other"
    )
    server.backend.fail_next(1, "OTSTimeout", operations=["UpdateRow"])  # not applied, and ambiguous to us
    assert (
        store.transition_batch("job1", 0, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner="me")
        is False
    )
    assert store.list_batches("job1")[0].owner == "other"
    other.close()


def test_ambiguous_create_job_is_true_once(server: Any, store: TablestoreStore) -> None:
    server.backend.timeout_next(1, None, apply=True, operations=["PutRow"])
    # the index row is written first (PutRow, IGNORE): its dropped reply is retried harmlessly
    assert store.create_job(job("j2")) is True
    assert store.create_job(job("j2")) is False
    loaded = store.get_job("j2")
    assert loaded is not None and loaded.status is JobStatus.planning


def test_persistent_failure_is_a_clear_store_error(server: Any, store: TablestoreStore) -> None:
    planned(store, 10)
    server.backend.fail_next(10, "OTSServerBusy", operations=["UpdateRow"])
    with pytest.raises(
        StoreError, match=r"transition batch to claimed: still failing after 4 attempts \(OTSServerBusy\)"
    ):
        store.transition_batch("job1", 0, expect=[BatchStatus.pending], to=BatchStatus.claimed)
    server.backend.clear_faults()
    assert store.list_batches("job1")[0].status is BatchStatus.pending


def test_a_refusal_is_not_retried(server: Any, store: TablestoreStore) -> None:
    planned(store, 10)
    server.backend.fail_next(1, "OTSParameterInvalid", operations=["GetRange"], message="bad range")
    before = operations(server, "GetRange")
    with pytest.raises(StoreError, match="OTSParameterInvalid: bad range"):
        store.list_batches("job1")
    assert operations(server, "GetRange") - before == 1


def test_wrong_credentials_name_the_problem(server: Any) -> None:
    settings = TablestoreSettings(endpoint=server.endpoint, instance=server.instance_name, max_attempts=2)
    with pytest.raises(StoreError, match="OTSAuthFailed"):
        TablestoreStore(settings, access_key_id="LTAIwrong", access_key_secret="nope")
