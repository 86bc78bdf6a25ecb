"""Tablestore conformance: the real ``tablestore`` SDK against the local Tablestore in its realistic mode, one test
per documented behaviour, each with its source. Independent of the product's store: what any client would see.

Sources (cited again where used):
- Error codes: https://www.alibabacloud.com/help/en/tablestore/developer-reference/error-codes
- General limits: https://alibabacloud.com/help/zh/tablestore/general-limits-of-tablestore
- Data versions and TTL: https://alibabacloud.com/help/en/tablestore/data-versions-and-ttl
- Create a table (Python SDK): https://www.alibabacloud.com/help/en/tablestore/developer-reference/create-table-by-python-sdk
- The SDK's retry policy: tablestore/retry.py (``RetryUtil.should_retry_no_matter_which_api``)

Time-dependent rules (a table not ready yet, table operations per second) run on a server whose clock the test
moves, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tablestore import (
    INF_MAX,
    INF_MIN,
    BatchGetRowRequest,
    BatchWriteRowRequest,
    CapacityUnit,
    ComparatorType,
    CompositeColumnCondition,
    Condition,
    Direction,
    LogicalOperator,
    OTSClient,
    OTSServiceError,
    PutRowItem,
    ReservedThroughput,
    Row,
    RowExistenceExpectation,
    SingleColumnCondition,
    TableInBatchGetRowItem,
    TableInBatchWriteRowItem,
    TableMeta,
    TableOptions,
    UpdateRowItem,
)
from tablestore.retry import DefaultRetryPolicy, NoRetryPolicy, RetryUtil

from alibaba_localcloud.tablestore import LocalTablestore

IGNORE = Condition(RowExistenceExpectation.IGNORE)
EXIST = Condition(RowExistenceExpectation.EXPECT_EXIST)
NOT_EXIST = Condition(RowExistenceExpectation.EXPECT_NOT_EXIST)
MB = 1024 * 1024
LOGGER = "tablestore-conformance-client"
logging.getLogger(LOGGER).setLevel(logging.CRITICAL)


class Clock:
    """A clock the test moves (starts at the real time: the SDK checks reply dates against its own)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client_of(
    ots: LocalTablestore,
    *,
    retry: Any = None,
    secret: str | None = None,
    token: Any = True,
    access_key_id: str | None = None,
) -> OTSClient:
    c = ots.credentials
    return OTSClient(
        ots.endpoint,
        access_key_id or c.access_key_id,
        secret or c.access_key_secret,
        ots.instance_name,
        sts_token=c.security_token if token is True else token,
        socket_timeout=20,
        retry_policy=retry or NoRetryPolicy(),
        logger_name=LOGGER,
    )


def refused(call: Callable[[], Any]) -> OTSServiceError:
    with pytest.raises(OTSServiceError) as caught:
        call()
    return caught.value


def create(client: OTSClient, name: str, schema: list[tuple[str, str]], max_version: int = 1) -> None:
    client.create_table(
        TableMeta(name, schema),
        TableOptions(time_to_live=-1, max_version=max_version),
        ReservedThroughput(CapacityUnit(0, 0)),
    )


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def ots(clock: Clock) -> Iterator[LocalTablestore]:
    with LocalTablestore(clock=clock) as server:  # realistic: the default
        yield server


@pytest.fixture
def client(ots: LocalTablestore, clock: Clock) -> Iterator[OTSClient]:
    ots.backend.reset()
    clock.advance(5)  # a fresh second for table operations
    yield client_of(ots)


@pytest.fixture
def table(client: OTSClient, clock: Clock) -> str:
    """A ready table ``t`` with primary key (k STRING, n INTEGER), max_version 1."""
    create(client, "t", [("k", "STRING"), ("n", "INTEGER")])
    clock.advance(60)
    return "t"


# --- realistic mode: a new table, table operations per second ------------------------------------------------
def test_realistic_is_the_default_with_the_documented_figures(ots: LocalTablestore) -> None:
    assert ots.backend.realistic and ots.backend.table_operations_per_second == 10  # general limits: 10/s
    assert ots.backend.table_not_ready_seconds == 2.0  # "typically takes several seconds" (create-table page)
    assert ots.describe()["realistic"]["on"] is True
    with LocalTablestore(realistic=False) as plain:
        assert (
            plain.backend.table_not_ready_seconds == 0 and plain.backend.table_operations_per_second is None
        )


def test_a_new_table_is_not_ready_for_data_operations(client: OTSClient, clock: Clock) -> None:
    """Error codes, "HTTP 404 errors": 404 OTSTableNotReady "The table is not ready.", Retry: Yes."""
    create(client, "fresh", [("k", "STRING")])
    error = refused(lambda: client.put_row("fresh", Row([("k", "a")], [("v", 1)]), IGNORE))
    assert (error.http_status, error.code, error.message) == (
        404,
        "OTSTableNotReady",
        "The table is not ready.",
    )
    for read in (
        lambda: client.get_row("fresh", [("k", "a")]),
        lambda: client.get_range("fresh", Direction.FORWARD, [("k", INF_MIN)], [("k", INF_MAX)]),
    ):
        assert refused(read).code == "OTSTableNotReady"
    batch = BatchWriteRowRequest()
    batch.add(TableInBatchWriteRowItem("fresh", [PutRowItem(Row([("k", "b")], [("v", 1)]), IGNORE)]))
    assert refused(lambda: client.batch_write_row(batch)).code == "OTSTableNotReady"
    assert client.describe_table("fresh").table_meta.table_name == "fresh"  # metadata answers
    assert RetryUtil.should_retry_no_matter_which_api(error), "the SDK retries it on every API"
    clock.advance(2.0)
    client.put_row("fresh", Row([("k", "a")], [("v", 1)]), IGNORE)
    assert client.get_row("fresh", [("k", "a")])[1] is not None


def test_the_sdk_default_retry_policy_waits_out_a_table_not_ready(ots: LocalTablestore) -> None:
    """Real time: a separate server with a short window; the SDK's DefaultRetryPolicy retries until it is ready."""
    with LocalTablestore(table_not_ready_seconds=0.3) as server:
        sdk = client_of(server, retry=DefaultRetryPolicy())
        create(sdk, "soon", [("k", "STRING")])
        sdk.put_row("soon", Row([("k", "a")], [("v", 1)]), IGNORE)
        codes = [r.error_code for r in server.backend.requests if r.api == "PutRow"]
        assert codes[-1] is None and set(codes[:-1]) <= {"OTSTableNotReady"}


def test_table_operations_are_limited_to_10_per_second_per_instance(client: OTSClient, clock: Clock) -> None:
    """General limits: "表元数据操作QPS 10次/秒" per instance; error codes, "HTTP 403 errors": 403
    OTSQuotaExhausted "Too frequent table operations.", Retry: Yes."""
    create(client, "q", [("k", "STRING")])  # 1
    for _ in range(4):
        client.list_table()  # 2..5
        client.describe_table("q")  # 6..9
    client.update_table("q", TableOptions(max_version=2))  # 10
    error = refused(client.list_table)
    assert (error.http_status, error.code, error.message) == (
        403,
        "OTSQuotaExhausted",
        "Too frequent table operations.",
    )
    assert refused(lambda: client.delete_table("q")).code == "OTSQuotaExhausted"
    assert RetryUtil.should_retry_no_matter_which_api(error) and RetryUtil.is_server_throttling_exception(
        error
    )
    clock.advance(2)  # data operations are not table operations
    client.put_row("q", Row([("k", "a")], [("v", 1)]), IGNORE)
    clock.advance(1.01)  # a new second
    assert client.list_table() == ("q",)


def test_the_table_quota_is_not_the_rate_quota(ots: LocalTablestore, client: OTSClient, clock: Clock) -> None:
    """Error codes: 403 OTSQuotaExhausted "Number of tables exceeded the quota." is not retryable."""
    ots.backend.max_tables, limit = 1, ots.backend.max_tables
    try:
        create(client, "one", [("k", "STRING")])
        error = refused(lambda: create(client, "two", [("k", "STRING")]))
        assert (error.code, error.message) == ("OTSQuotaExhausted", "Number of tables exceeded the quota.")
        assert not RetryUtil.should_retry_no_matter_which_api(error)
    finally:
        ots.backend.max_tables = limit


# --- conditions ---------------------------------------------------------------------------------------------
def test_row_existence_and_column_conditions(client: OTSClient, table: str) -> None:
    """Failed condition: 403 OTSConditionCheckFail "Condition check failed." (error codes, "HTTP 403 errors")."""
    pk = [("k", "a"), ("n", 1)]
    failed = refused(lambda: client.update_row(table, Row(pk, {"put": [("v", 1)]}), EXIST))
    assert (failed.http_status, failed.code, failed.message) == (
        403,
        "OTSConditionCheckFail",
        "Condition check failed.",
    )
    client.put_row(table, Row(pk, [("v", 1), ("s", "x")]), NOT_EXIST)
    assert (
        refused(lambda: client.put_row(table, Row(pk, [("v", 2)]), NOT_EXIST)).code == "OTSConditionCheckFail"
    )
    equal_one = Condition(
        RowExistenceExpectation.EXPECT_EXIST, SingleColumnCondition("v", 1, ComparatorType.EQUAL)
    )
    client.update_row(table, Row(pk, {"put": [("v", 2)]}), equal_one)
    assert (
        refused(lambda: client.update_row(table, Row(pk, {"put": [("v", 3)]}), equal_one)).code
        == "OTSConditionCheckFail"
    )
    missing = SingleColumnCondition("nope", 1, ComparatorType.EQUAL, pass_if_missing=False)
    assert (
        refused(
            lambda: client.update_row(
                table, Row(pk, {"put": [("v", 3)]}), Condition(RowExistenceExpectation.IGNORE, missing)
            )
        ).code
        == "OTSConditionCheckFail"
    )
    either = CompositeColumnCondition(LogicalOperator.OR)
    either.add_sub_condition(SingleColumnCondition("v", 7, ComparatorType.EQUAL))
    either.add_sub_condition(SingleColumnCondition("s", "x", ComparatorType.EQUAL))
    client.delete_row(table, Row(pk), Condition(RowExistenceExpectation.EXPECT_EXIST, either))
    assert client.get_row(table, pk)[1] is None
    assert refused(lambda: client.delete_row(table, Row(pk), EXIST)).code == "OTSConditionCheckFail"


def test_a_condition_has_at_most_10_single_column_conditions(client: OTSClient, table: str) -> None:
    """Filter limits: "A filter condition can include up to 10 subconditions"
    (https://alibabacloud.com/help/en/tablestore/developer-reference/filter-by-using-python-sdk); the same
    CompositeColumnValueFilter serves conditional updates. The product's fenced writes stay well under it."""
    pk = [("k", "ten"), ("n", 1)]
    client.put_row(table, Row(pk, [("v", 1)]), IGNORE)

    def either(count: int) -> Condition:
        composite = CompositeColumnCondition(LogicalOperator.OR)
        for value in range(1, count + 1):
            composite.add_sub_condition(SingleColumnCondition("v", value, ComparatorType.EQUAL))
        return Condition(RowExistenceExpectation.EXPECT_EXIST, composite)

    client.update_row(table, Row(pk, {"put": [("w", 1)]}), either(10))
    error = refused(lambda: client.update_row(table, Row(pk, {"put": [("w", 2)]}), either(11)))
    assert (error.http_status, error.code) == (400, "OTSParameterInvalid")
    assert client.get_row(table, pk)[1].attribute_columns[1][:2] == ("w", 1), "a refused write writes nothing"


# --- batches ------------------------------------------------------------------------------------------------
def _batch(table: str, rows: list[Any]) -> BatchWriteRowRequest:
    request = BatchWriteRowRequest()
    request.add(TableInBatchWriteRowItem(table, rows))
    return request


def test_batch_write_limits_200_rows_and_4_mb(client: OTSClient, table: str) -> None:
    """General limits: BatchWriteRow ≤ 200 rows and ≤ 4 MB; error codes: 400 OTSParameterInvalid "Rows count
    exceeds the upper limit:{limit}." and "The total data size of BatchWriteRow request exceeds the limit"."""
    rows = [PutRowItem(Row([("k", "r"), ("n", i)], [("v", i)]), IGNORE) for i in range(201)]
    assert client.batch_write_row(_batch(table, rows[:200])).is_all_succeed()
    error = refused(lambda: client.batch_write_row(_batch(table, rows)))
    assert (error.http_status, error.code) == (400, "OTSParameterInvalid") and "upper limit" in error.message
    big = [PutRowItem(Row([("k", "big"), ("n", i)], [("b", bytearray(MB))]), IGNORE) for i in range(4)]
    error = refused(lambda: client.batch_write_row(_batch(table, big)))
    assert error.code == "OTSParameterInvalid" and "BatchWriteRow request exceeds the limit" in error.message
    assert client.get_row(table, [("k", "big"), ("n", 0)])[1] is None, "nothing of a refused batch is written"


def test_batch_write_results_are_per_row(client: OTSClient, table: str) -> None:
    """BatchWriteRow is not atomic: per-row results (ALIBABA-FACTS §5, SDK metadata.py BatchWriteRowResponse)."""
    client.put_row(table, Row([("k", "x"), ("n", 1)], [("v", 1)]), IGNORE)
    rows = [
        PutRowItem(Row([("k", "x"), ("n", 1)], [("v", 2)]), NOT_EXIST),  # exists: fails alone
        PutRowItem(Row([("k", "x"), ("n", 2)], [("v", 2)]), NOT_EXIST),
        UpdateRowItem(Row([("k", "x"), ("n", 3)], {"put": [("v", 3)]}), EXIST),
    ]  # missing: fails alone
    response = client.batch_write_row(_batch(table, rows))
    assert not response.is_all_succeed()
    failed = response.get_failed_of_put() + response.get_failed_of_update()
    assert sorted((item.index, item.error_code) for item in failed) == [
        (0, "OTSConditionCheckFail"),
        (2, "OTSConditionCheckFail"),
    ]
    succeeded, failed_puts = response.get_put()
    assert [item.index for item in succeeded] == [1] and [item.is_ok for item in failed_puts] == [False]
    assert client.get_row(table, [("k", "x"), ("n", 2)])[1] is not None
    assert dict((c[0], c[1]) for c in client.get_row(table, [("k", "x"), ("n", 1)])[1].attribute_columns) == {
        "v": 1
    }


def test_batch_get_limit_100_rows(client: OTSClient, table: str) -> None:
    """General limits: BatchGetRow ≤ 100 rows; 400 OTSParameterInvalid "Rows count exceeds the upper limit"."""
    client.put_row(table, Row([("k", "g"), ("n", 5)], [("v", 5)]), IGNORE)
    keys = [[("k", "g"), ("n", i)] for i in range(101)]
    request = BatchGetRowRequest()
    request.add(TableInBatchGetRowItem(table, keys[:100], max_version=1))
    items = client.batch_get_row(request).get_result_by_table(table)
    assert len(items) == 100 and all(item.is_ok for item in items)
    assert [i for i, item in enumerate(items) if item.row is not None] == [5]
    too_many = BatchGetRowRequest()
    too_many.add(TableInBatchGetRowItem(table, keys, max_version=1))
    error = refused(lambda: client.batch_get_row(too_many))
    assert (error.http_status, error.code) == (400, "OTSParameterInvalid") and "upper limit" in error.message


# --- ranges ---------------------------------------------------------------------------------------------------
def test_get_range_pages_at_5000_rows_both_ways(client: OTSClient, table: str) -> None:
    """General limits: GetRange returns at most 5000 rows or 4 MB per call, then next_start_primary_key."""
    for start in range(0, 5003, 200):
        rows = [
            PutRowItem(Row([("k", "p"), ("n", i)], [("v", i)]), IGNORE)
            for i in range(start, min(start + 200, 5003))
        ]
        assert client.batch_write_row(_batch(table, rows)).is_all_succeed()
    low, high = [("k", "p"), ("n", INF_MIN)], [("k", "p"), ("n", INF_MAX)]
    _, next_start, page, _ = client.get_range(table, Direction.FORWARD, low, high)
    assert len(page) == 5000 and next_start == [("k", "p"), ("n", 5000)]
    _, last, rest, _ = client.get_range(table, Direction.FORWARD, next_start, high)
    assert [dict(r.primary_key)["n"] for r in rest] == [5000, 5001, 5002] and last is None
    _, next_start, page, _ = client.get_range(table, Direction.BACKWARD, high, low)
    assert (
        len(page) == 5000 and dict(page[0].primary_key)["n"] == 5002 and next_start == [("k", "p"), ("n", 2)]
    )
    _, last, rest, _ = client.get_range(table, Direction.BACKWARD, next_start, low)
    assert [dict(r.primary_key)["n"] for r in rest] == [2, 1, 0] and last is None


def test_get_range_pages_at_4_mb(client: OTSClient, table: str) -> None:
    for i in range(6):
        client.put_row(table, Row([("k", "m"), ("n", i)], [("b", bytearray(MB))]), IGNORE)
    low, high = [("k", "m"), ("n", INF_MIN)], [("k", "m"), ("n", INF_MAX)]
    seen, start, pages = [], low, 0
    while start is not None:
        _, start, page, _ = client.get_range(table, Direction.FORWARD, start, high)
        assert sum(len(dict((c[0], c[1]) for c in r.attribute_columns)["b"]) for r in page) <= 4 * MB
        seen += [dict(r.primary_key)["n"] for r in page]
        pages += 1
    assert seen == list(range(6)) and pages >= 2


# --- limits on keys, values, rows -----------------------------------------------------------------------------
def test_primary_key_values_up_to_1_kb(client: OTSClient, table: str) -> None:
    """General limits: a STRING/BINARY primary-key value ≤ 1 KB; error codes: 400 OTSParameterInvalid "The length
    of primary key column: {ColumnName} exceeds the MaxLength: {Limit} with CurrentLength: {Current}."."""
    client.put_row(table, Row([("k", "a" * 1024), ("n", 1)], [("v", 1)]), IGNORE)
    error = refused(lambda: client.put_row(table, Row([("k", "a" * 1025), ("n", 1)], [("v", 1)]), IGNORE))
    assert (error.http_status, error.code) == (400, "OTSParameterInvalid")
    assert (
        error.message
        == "The length of primary key column: k exceeds the MaxLength: 1024 with CurrentLength: 1025."
    )


def test_attribute_values_up_to_2_mb(client: OTSClient, table: str) -> None:
    """General limits: a STRING/BINARY attribute value ≤ 2 MB; error codes: 400 OTSParameterInvalid "The length
    of attribute column: {ColumnName} exceeded the MaxLength:{MaxSize} with Current Length:{CellSize}."."""
    client.put_row(table, Row([("k", "v"), ("n", 1)], [("b", bytearray(2 * MB))]), IGNORE)
    error = refused(
        lambda: client.put_row(table, Row([("k", "v"), ("n", 2)], [("b", bytearray(2 * MB + 1))]), IGNORE)
    )
    assert (error.http_status, error.code) == (
        400,
        "OTSParameterInvalid",
    ) and "attribute column: b" in error.message


def test_one_row_write_is_limited_to_4_mb(client: OTSClient, table: str) -> None:
    """General limits: PutRow / UpdateRow data ≤ 4 MB per operation (a row itself is unlimited); error codes:
    400 OTSParameterInvalid "The total data size of PutRow request exceeds the limit, limit size: {Limit} , data
    size: {Current}." (and UpdateRow)."""
    pk = [("k", "w"), ("n", 1)]
    client.put_row(table, Row(pk, [("a", bytearray(MB + MB // 2)), ("b", bytearray(MB + MB // 2))]), IGNORE)
    three = [("a", bytearray(MB + MB // 2)), ("b", bytearray(MB + MB // 2)), ("c", bytearray(MB + MB // 2))]
    error = refused(lambda: client.put_row(table, Row(pk, three), IGNORE))
    assert (error.http_status, error.code) == (400, "OTSParameterInvalid")
    assert error.message.startswith(
        "The total data size of PutRow request exceeds the limit, limit size: 4194304 ,"
    )
    error = refused(lambda: client.update_row(table, Row(pk, {"put": three}), IGNORE))
    assert error.message.startswith("The total data size of UpdateRow request exceeds the limit")
    # the row may grow past 4 MB in several writes: only each write is limited
    client.update_row(table, Row(pk, {"put": [("c", bytearray(MB + MB // 2))]}), EXIST)
    row = client.get_row(table, pk)[1]
    assert sorted(c[0] for c in row.attribute_columns) == ["a", "b", "c"]


# --- versions, increments --------------------------------------------------------------------------------------
def test_several_versions_with_max_version_above_1(client: OTSClient, clock: Clock) -> None:
    """Data versions and TTL: each write makes a version (a millisecond timestamp); beyond max versions the oldest
    are not readable; reads take max_version or a time range; UpdateTable changes max versions."""
    create(client, "ver", [("k", "STRING")], max_version=3)
    clock.advance(60)
    now = int(clock() * 1000)
    stamps = [now - 4000, now - 3000, now - 2000, now - 1000]
    pk = [("k", "a")]
    client.put_row("ver", Row(pk, [("c", "v0", stamps[0])]), IGNORE)
    for i in (1, 2, 3):
        client.update_row("ver", Row(pk, {"put": [("c", f"v{i}", stamps[i])]}), IGNORE)
    row = client.get_row("ver", pk, max_version=5)[1]
    assert row.attribute_columns == [("c", "v3", stamps[3]), ("c", "v2", stamps[2]), ("c", "v1", stamps[1])]
    assert client.get_row("ver", pk, max_version=1)[1].attribute_columns == [("c", "v3", stamps[3])]
    ranged = client.get_row("ver", pk, max_version=None, time_range=(stamps[1], stamps[3]))[1]
    assert ranged.attribute_columns == [("c", "v2", stamps[2]), ("c", "v1", stamps[1])]
    _, _, rows, _ = client.get_range(
        "ver", Direction.FORWARD, [("k", INF_MIN)], [("k", INF_MAX)], max_version=2
    )
    assert rows[0].attribute_columns == [("c", "v3", stamps[3]), ("c", "v2", stamps[2])]
    # a column condition checks the newest version unless latest_version_only=False (then any version:
    # ASSUMPTION, the reading of the SDK's "whether to check only the latest version")
    older = SingleColumnCondition("c", "v1", ComparatorType.EQUAL, pass_if_missing=False)
    assert (
        refused(
            lambda: client.update_row(
                "ver", Row(pk, {"put": [("e", 1)]}), Condition(RowExistenceExpectation.EXPECT_EXIST, older)
            )
        ).code
        == "OTSConditionCheckFail"
    )
    any_version = SingleColumnCondition(
        "c", "v1", ComparatorType.EQUAL, pass_if_missing=False, latest_version_only=False
    )
    client.update_row(
        "ver", Row(pk, {"put": [("e", 1, now)]}), Condition(RowExistenceExpectation.EXPECT_EXIST, any_version)
    )
    client.update_row("ver", Row(pk, {"delete_all": ["e"]}), IGNORE)
    client.update_row("ver", Row(pk, {"delete": [("c", None, stamps[2])]}), IGNORE)  # one version
    assert [c[2] for c in client.get_row("ver", pk, max_version=5)[1].attribute_columns] == [
        stamps[3],
        stamps[1],
    ]
    client.update_row("ver", Row(pk, {"put": [("c", "v3b", stamps[3])]}), IGNORE)  # same version: overwritten
    assert client.get_row("ver", pk, max_version=1)[1].attribute_columns == [("c", "v3b", stamps[3])]
    client.put_row("ver", Row(pk, [("d", 1, now)]), IGNORE)  # PutRow replaces every version of every column
    assert client.get_row("ver", pk, max_version=5)[1].attribute_columns == [("d", 1, now)]
    clock.advance(2)
    client.update_table("ver", TableOptions(max_version=1))
    client.update_row("ver", Row(pk, {"put": [("d", 2, now + 1)]}), IGNORE)
    assert client.get_row("ver", pk, max_version=5)[1].attribute_columns == [("d", 2, now + 1)]


def test_atomic_increments(client: OTSClient, table: str) -> None:
    """UpdateRow increment (PlainBuffer INCREMENT): atomic; a missing column counts from 0."""
    pk = [("k", "i"), ("n", 1)]
    client.put_row(table, Row(pk, [("s", "text")]), IGNORE)
    for _ in range(3):
        client.update_row(table, Row(pk, {"increment": [("count", 5)]}), EXIST)
    client.update_row(table, Row(pk, {"increment": [("count", -2)]}), EXIST)
    values = dict((c[0], c[1]) for c in client.get_row(table, pk)[1].attribute_columns)
    assert values == {"count": 13, "s": "text"}
    error = refused(lambda: client.update_row(table, Row(pk, {"increment": [("s", 1)]}), EXIST))
    assert (error.http_status, error.code) == (400, "OTSParameterInvalid")


# --- authentication -------------------------------------------------------------------------------------------
def test_auth_errors(ots: LocalTablestore, table: str) -> None:
    """Error codes, access control: 403 OTSAuthFailed "The AccessKeyID does not exist." / "Signature mismatch.";
    a wrong or missing STS token is refused too (403 OTSAuthFailed; its message is an ASSUMPTION)."""
    read = lambda client: client.get_row(table, [("k", "a"), ("n", 1)])
    error = refused(lambda: read(client_of(ots, secret="wrong-secret", retry=DefaultRetryPolicy())))
    assert (error.http_status, error.code, error.message) == (403, "OTSAuthFailed", "Signature mismatch.")
    error = refused(lambda: read(client_of(ots, access_key_id="LTAI-nobody")))
    assert (error.code, error.message) == ("OTSAuthFailed", "The AccessKeyID does not exist.")
    assert refused(lambda: read(client_of(ots, token="not-the-token"))).code == "OTSAuthFailed"
    assert refused(lambda: read(client_of(ots, token=None))).code == "OTSAuthFailed"
    assert read(client_of(ots))[1] is None  # the right keys: fine


# --- persistence ------------------------------------------------------------------------------------------------
def test_tables_rows_and_versions_survive_a_restart(tmp_path: Any) -> None:
    keys = dict(access_key_id="LTAI.conformance", access_key_secret="s3cret", security_token=None)
    with LocalTablestore(data_dir=str(tmp_path), table_not_ready_seconds=0.2, **keys) as first:
        writer = client_of(first, token=None, retry=DefaultRetryPolicy())
        create(writer, "kept", [("k", "STRING")], max_version=2)
        now = int(time.time() * 1000)
        writer.put_row("kept", Row([("k", "a")], [("c", "old", now - 10), ("c", "new", now)]), IGNORE)
    with LocalTablestore(data_dir=str(tmp_path), **keys) as second:
        # the table's creation time is kept too: it may still be in its first 2 s (the SDK's retries wait)
        reader = client_of(second, token=None, retry=DefaultRetryPolicy())
        assert reader.list_table() == ("kept",)
        assert reader.describe_table("kept").table_options.max_version == 2
        assert reader.get_row("kept", [("k", "a")], max_version=2)[1].attribute_columns == [
            ("c", "new", now),
            ("c", "old", now - 10),
        ]
