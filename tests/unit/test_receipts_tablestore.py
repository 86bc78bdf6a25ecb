"""The Tablestore receipt store's own rules, beyond the contract (tests/contract/test_receipts_contract.py):
folding a call per recipient, and its retries of BatchWriteRow after transient, row-level and ambiguous
failures injected into the local Tablestore (real SDK, real HTTP): the state is right and so are the counts."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from chatapp_mass.core.errors import StoreError
from chatapp_mass.store.receipts import DeliveryStatus, Receipt
from chatapp_mass.store.receipts_tablestore import TablestoreReceipts, fold, receipt_key
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

S = DeliveryStatus


def r(to: str, status: DeliveryStatus, message_id: str = "m", at_ms: int = 1, task: str = "t1") -> Receipt:
    return Receipt(task, to, message_id, status, at_ms)


def test_fold_keeps_the_highest_rank_and_of_equal_ranks_the_first() -> None:
    call = [
        r("1", S.sent),
        r("2", S.delivered, "first"),
        r("1", S.read),
        r("2", S.delivered, "second"),
        r("2", S.failed),
        r("1", S.delivered),
        r("1", S.read, task="t2"),
    ]
    kept, folded_away = fold(call)
    assert kept == [call[2], call[1], call[6]] and folded_away == 4
    assert fold([]) == ([], 0)


def test_receipt_key_is_the_same_for_repeats_only() -> None:
    assert receipt_key(r("1", S.sent, at_ms=1)) == receipt_key(r("1", S.sent, at_ms=2))
    others = [r("1", S.read), r("2", S.sent), r("1", S.sent, "m2"), r("1", S.sent, task="t2")]
    assert len({receipt_key(x) for x in [r("1", S.sent), *others]}) == 5
    assert len(receipt_key(r("1" * 5000, S.sent))) == 32  # bounded: a primary key column takes 1 KB at most


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from alibaba_localcloud.tablestore import LocalTablestore

    with LocalTablestore(realistic=False, max_tables=4096) as local:  # a store per test, 13 tables each
        yield local


@pytest.fixture
def receipts(server: Any) -> Iterator[TablestoreReceipts]:
    creds = server.credentials
    settings = TablestoreSettings(
        endpoint=server.endpoint, instance=server.instance_name, table_prefix=f"u{secrets.token_hex(4)}_"
    )
    store = TablestoreStore(
        settings,
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
    )
    yield TablestoreReceipts(store)
    server.backend.clear_faults()
    store.close()


def batch_writes(server: Any) -> list[Any]:
    return [request for request in server.backend.requests if request.api == "BatchWriteRow"]


def calls(n: int, status: DeliveryStatus) -> list[Receipt]:
    return [r(f"86138{i:08d}", status, f"m{i}", 1000 + i) for i in range(n)]


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(
            lambda b: b.fail_next(1, "OTSTimeout", operations=["BatchWriteRow"], apply=True), id="timeout"
        ),
        pytest.param(
            lambda b: b.timeout_next(1, None, operations=["BatchWriteRow"]), id="dropped-connection"
        ),
        pytest.param(lambda b: b.fail_next(2, "OTSServerBusy", operations=["BatchWriteRow"]), id="busy"),
    ],
)
def test_a_request_retried_after_a_failure_counts_what_it_changed(
    receipts: TablestoreReceipts, server: Any, inject: Any
) -> None:
    """After an ambiguous failure the writes landed, the retry fails its conditions, and the rows' op tokens
    say they were ours: changed, not unchanged. After a plain refusal the retry writes them."""
    receipts.record(calls(5, S.sent))
    before = len(batch_writes(server))
    inject(server.backend)
    delivered = calls(5, S.delivered) + [r("8613999999999", S.read)]
    assert receipts.record(delivered) == (6, 0)
    assert len(batch_writes(server)) - before >= 2  # the failed request(s) and the retry
    states = receipts.states("t1")
    assert {to: s.status for to, s in states.items()} == {
        **{x.to: S.delivered for x in delivered[:5]},
        "8613999999999": S.read,
    }
    assert receipts.record(delivered) == (0, 6)  # and nothing is counted twice


def test_rows_failing_alone_are_retried_alone(receipts: TablestoreReceipts, server: Any) -> None:
    server.backend.fail_rows_next(3, "OTSServerBusy", tables=[receipts.store.t_receipts])
    before = len(batch_writes(server))
    assert receipts.record(calls(10, S.sent)) == (10, 0)
    retried = batch_writes(server)[before:]
    assert len(retried) == 2 and retried[0].row_errors == 3
    assert len(receipts.states("t1")) == 10


def test_a_refused_row_is_a_store_error_naming_its_task(receipts: TablestoreReceipts) -> None:
    with pytest.raises(StoreError, match=r"BatchWriteRow receipts: task 'x+': OTSParameterInvalid"):
        receipts.record([r("1", S.sent, task="x" * 1025)])


def test_calls_over_200_recipients_are_written_in_requests_of_200(
    receipts: TablestoreReceipts, server: Any
) -> None:
    before = len(batch_writes(server))
    assert receipts.record(calls(450, S.sent) + calls(50, S.read)) == (450, 50)
    assert len(batch_writes(server)) - before == 3  # 450 recipients after folding: 200 + 200 + 50
    assert sum(1 for s in receipts.states("t1").values() if s.status is S.read) == 50
