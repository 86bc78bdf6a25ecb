"""The local Tablestore, driven by the REAL ``tablestore.OTSClient`` over real HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

import tablestore.protobuf.table_store_pb2 as pb  # noqa: E402
from tablestore.auth import RequestContext, SignV2  # noqa: E402
from tablestore.credentials import Credentials  # noqa: E402
from tablestore.plainbuffer.plain_buffer_builder import PlainBufferBuilder  # noqa: E402
from tablestore.protocol import OTSProtocol  # noqa: E402
from tablestore.retry import DefaultRetryPolicy, NoRetryPolicy  # noqa: E402
from urllib3.exceptions import ProtocolError, ReadTimeoutError  # noqa: E402

from alibaba_localcloud.tablestore import LocalTablestore, TablestoreBackend  # noqa: E402
from alibaba_localcloud.tablestore import plainbuffer as plain  # noqa: E402
from alibaba_localcloud.tablestore.models import encode_key  # noqa: E402

from tablestore import (  # noqa: E402  isort: skip
    INF_MAX,
    INF_MIN,
    PK_AUTO_INCR,
    BatchGetRowRequest,
    BatchWriteRowRequest,
    CapacityUnit,
    CastType,
    ComparatorType,
    CompositeColumnCondition,
    Condition,
    DeleteRowItem,
    Direction,
    LogicalOperator,
    OTSClient,
    OTSServiceError,
    PutRowItem,
    RegexRule,
    ReservedThroughput,
    ReturnType,
    Row,
    RowExistenceExpectation,
    SingleColumnCondition,
    SingleColumnRegexCondition,
    TableInBatchGetRowItem,
    TableInBatchWriteRowItem,
    TableMeta,
    TableOptions,
    UpdateRowItem,
)

IGNORE = Condition(RowExistenceExpectation.IGNORE)
EXIST = Condition(RowExistenceExpectation.EXPECT_EXIST)
NOT_EXIST = Condition(RowExistenceExpectation.EXPECT_NOT_EXIST)

# The SDK text-formats every protobuf for DEBUG logging while its logger's level is NOTSET; a quiet logger
# keeps the tests fast (and its error lines out of the output).
CLIENT_LOGGER = "local-tablestore-test-client"
logging.getLogger(CLIENT_LOGGER).setLevel(logging.CRITICAL)
logging.getLogger(CLIENT_LOGGER).addHandler(logging.NullHandler())


# --- helpers and fixtures ---------------------------------------------------------------------------------
def fast_retry() -> DefaultRetryPolicy:
    """The SDK's default policy (same decisions), with its backoff capped at 10 ms."""
    policy = DefaultRetryPolicy()
    policy.max_retry_delay = 0.01
    return policy


def make_client(
    ots: LocalTablestore,
    *,
    secret: str | None = None,
    token: Any = True,
    instance: str | None = None,
    access_key_id: str | None = None,
    retry: Any = None,
    timeout: float = 10.0,
    **kwargs: Any,
) -> OTSClient:
    c = ots.credentials
    security_token = c.security_token if token is True else token
    return OTSClient(
        ots.endpoint,
        access_key_id or c.access_key_id,
        secret or c.access_key_secret,
        instance or ots.instance_name,
        sts_token=security_token,
        socket_timeout=timeout,
        retry_policy=retry or fast_retry(),
        logger_name=CLIENT_LOGGER,
        **kwargs,
    )


def create(client: OTSClient, name: str, schema: list[tuple[str, ...]], **options: Any) -> None:
    client.create_table(
        TableMeta(name, schema), TableOptions(**options), ReservedThroughput(CapacityUnit(0, 0))
    )


def service_error(call: Callable[[], Any]) -> OTSServiceError:
    with pytest.raises(OTSServiceError) as caught:
        call()
    return caught.value


def columns(row: Any) -> dict[str, Any]:
    return {column[0]: column[1] for column in row.attribute_columns}


def scan(
    client: OTSClient,
    table: str,
    direction: str,
    start: list,
    end: list,
    *,
    limit: int | None = None,
    columns_to_get: list[str] | None = None,
    column_filter: Any = None,
) -> tuple[list, list[int]]:
    """Every row of a range following next_start_primary_key; also the size of each page."""
    rows: list = []
    pages: list[int] = []
    next_start: list | None = start
    while next_start:
        _, next_start, page, _ = client.get_range(
            table, direction, next_start, end, columns_to_get, limit, column_filter, max_version=1
        )
        rows.extend(page)
        pages.append(len(page))
    return rows, pages


def batch_put(client: OTSClient, table: str, rows: list[tuple[list, list]]) -> None:
    for start in range(0, len(rows), 200):
        request = BatchWriteRowRequest()
        request.add(
            TableInBatchWriteRowItem(
                table, [PutRowItem(Row(pk, attrs), IGNORE) for pk, attrs in rows[start : start + 200]]
            )
        )
        assert client.batch_write_row(request).is_all_succeed()


@pytest.fixture(scope="module")
def ots() -> Iterator[LocalTablestore]:
    # Not realistic: these tests create tables and write to them at once, and count requests; the realistic
    # rules (a table not ready at first, table operations per second) are tested in
    # test_tablestore_conformance.py.
    with LocalTablestore(realistic=False) as server:
        yield server


@pytest.fixture
def backend(ots: LocalTablestore) -> Iterator[TablestoreBackend]:
    ots.backend.reset()
    yield ots.backend
    ots.backend.clear_faults()


@pytest.fixture
def client(ots: LocalTablestore, backend: TablestoreBackend) -> OTSClient:
    return make_client(ots)


@pytest.fixture
def kv(client: OTSClient) -> str:
    """A table with a (STRING, INTEGER) primary key."""
    create(client, "kv", [("p", "STRING"), ("n", "INTEGER")])
    return "kv"


# --- tables -----------------------------------------------------------------------------------------------
def test_table_lifecycle(client: OTSClient, backend: TablestoreBackend) -> None:
    assert client.list_table() == ()
    client.create_table(
        TableMeta(
            "jobs", [("job_id", "STRING"), ("seq", "INTEGER"), ("blob", "BINARY")], [("status", "STRING")]
        ),
        TableOptions(time_to_live=-1, max_version=1),
        ReservedThroughput(CapacityUnit(2, 3)),
    )
    create(client, "alpha", [("k", "INTEGER")])
    assert client.list_table() == ("alpha", "jobs")

    described = client.describe_table("jobs")
    assert described.table_meta.table_name == "jobs"
    assert described.table_meta.schema_of_primary_key == [
        ("job_id", "STRING"),
        ("seq", "INTEGER"),
        ("blob", "BINARY"),
    ]
    assert described.table_meta.defined_columns == [("status", "STRING")]
    assert (
        described.table_options.time_to_live,
        described.table_options.max_version,
        described.table_options.max_time_deviation,
    ) == (-1, 1, 86400)
    capacity = described.reserved_throughput_details.capacity_unit
    assert (capacity.read, capacity.write) == (2, 3)
    assert abs(described.reserved_throughput_details.last_increase_time - time.time()) < 60

    again = service_error(lambda: create(client, "jobs", [("other", "INTEGER")]))
    assert (again.get_http_status(), again.get_error_code(), again.get_error_message()) == (
        409,
        "OTSObjectAlreadyExist",
        "Requested table already exists.",
    )
    assert client.describe_table("jobs").table_meta.schema_of_primary_key[0] == ("job_id", "STRING")

    updated = client.update_table(
        "jobs", TableOptions(time_to_live=86400 * 2, max_version=1), ReservedThroughput(CapacityUnit(5, 0))
    )
    assert updated.table_options.time_to_live == 172800
    assert (
        updated.reserved_throughput_details.capacity_unit.read,
        updated.reserved_throughput_details.capacity_unit.write,
    ) == (5, 0)
    assert updated.reserved_throughput_details.last_decrease_time is not None

    client.delete_table("jobs")
    assert client.list_table() == ("alpha",)
    for call in (
        lambda: client.describe_table("jobs"),
        lambda: client.delete_table("jobs"),
        lambda: client.get_row("jobs", [("job_id", "x"), ("seq", 1), ("blob", bytearray(b"x"))]),
    ):
        missing = service_error(call)
        assert (missing.get_http_status(), missing.get_error_code(), missing.get_error_message()) == (
            404,
            "OTSObjectNotExist",
            "Requested table does not exist.",
        )
    assert [r.api for r in backend.requests][:3] == ["ListTable", "CreateTable", "CreateTable"]


@pytest.mark.parametrize(
    "name, schema, options, message",
    [
        ("t", [("a", "INTEGER")] * 0, {}, "The number of primary key columns must be in range: [1, 4]."),
        (
            "t",
            [(f"k{i}", "INTEGER") for i in range(5)],
            {},
            "The number of primary key columns must be in range: [1, 4].",
        ),
        ("t", [("a", "INTEGER"), ("a", "STRING")], {}, "Duplicated primary key name: 'a'."),
        ("1table", [("a", "INTEGER")], {}, "Invalid table name: '1table'."),
        ("t", [("bad-name", "INTEGER")], {}, "Invalid column name: 'bad-name'."),
        ("t", [("a", "INTEGER", PK_AUTO_INCR)], {}, "First primary key can't be auto increment, table: t."),
        (
            "t",
            [("a", "STRING"), ("b", "STRING", PK_AUTO_INCR)],
            {},
            "AUTO_INCREMENT primary key must be integer.",
        ),
        ("t", [("a", "INTEGER")], {"time_to_live": 0}, "TimeToLive cannot be 0 or less than -1."),
        (
            "t",
            [("a", "INTEGER")],
            {"max_version": 0},
            "The maximum versions cannot be less than or equal to 0.",
        ),
    ],
)
def test_create_table_refuses_bad_definitions(
    client: OTSClient, name: str, schema: list, options: dict, message: str
) -> None:
    error = service_error(lambda: create(client, name, schema, **options))
    assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
        400,
        "OTSParameterInvalid",
        message,
    )
    assert client.list_table() == ()


# --- single rows ------------------------------------------------------------------------------------------
def test_put_get_update_delete_round_trip(client: OTSClient, kv: str) -> None:
    pk = [("p", "row"), ("n", -7)]
    values = [
        ("s", "héllo"),
        ("i", 2**63 - 1),
        ("neg", -(2**63)),
        ("d", 3.25),
        ("t", True),
        ("f", False),
        ("bin", bytearray(b"\x00\xffraw")),
    ]
    consumed, returned = client.put_row(kv, Row(pk, values), NOT_EXIST)
    assert (consumed.read, consumed.write) == (1, 1) and returned is None

    consumed, row, _ = client.get_row(kv, pk, max_version=1)
    assert consumed.read == 1 and row.primary_key == pk
    assert [c[0] for c in row.attribute_columns] == sorted(name for name, _ in values)
    assert columns(row) == dict(values)
    assert all(abs(c[2] / 1000 - time.time()) < 60 for c in row.attribute_columns)  # server timestamps, ms

    _, row, _ = client.get_row(kv, pk, ["s", "d", "absent"], max_version=1)
    assert columns(row) == {"s": "héllo", "d": 3.25}
    assert client.get_row(kv, pk, ["absent"], max_version=1)[1] is None
    assert client.get_row(kv, [("p", "row"), ("n", 8)], max_version=1)[1] is None

    stamp = next(c[2] for c in row.attribute_columns if c[0] == "s")
    change = {
        "put": [("s", "new"), ("added", 1)],
        "delete_all": ["bin"],
        "delete": [("s", None, stamp - 1)],
        "increment": [("i2", 5), ("counter", 1)],
    }
    consumed, returned = client.update_row(kv, Row(pk, change), EXIST, return_type=ReturnType.RT_PK)
    assert returned.primary_key == pk and consumed.write == 1
    client.update_row(kv, Row(pk, {"increment": [("counter", 41), ("i2", -10)]}), IGNORE)
    _, row, _ = client.get_row(kv, pk, max_version=1)
    got = columns(row)
    assert got["s"] == "new" and got["added"] == 1 and "bin" not in got
    assert (got["counter"], got["i2"]) == (42, -5)

    stamp = next(c[2] for c in row.attribute_columns if c[0] == "added")
    client.update_row(kv, Row(pk, {"delete": [("added", None, stamp)]}), IGNORE)  # one version, by timestamp
    assert "added" not in columns(client.get_row(kv, pk, max_version=1)[1])

    refused = service_error(lambda: client.update_row(kv, Row(pk, {"increment": [("s", 1)]}), IGNORE))
    assert (refused.get_http_status(), refused.get_error_code()) == (400, "OTSParameterInvalid")
    assert columns(client.get_row(kv, pk, max_version=1)[1])["s"] == "new"

    consumed, returned = client.delete_row(kv, Row(pk), EXIST)
    assert consumed.write == 1 and returned is None
    assert client.get_row(kv, pk, max_version=1)[1] is None
    assert client.delete_row(kv, Row(pk), IGNORE)[0].write == 1  # deleting nothing is fine


def test_put_replaces_the_whole_row_and_update_on_nothing_creates_nothing(client: OTSClient, kv: str) -> None:
    pk = [("p", "x"), ("n", 1)]
    client.put_row(kv, Row(pk, [("a", 1), ("b", 2)]))
    client.put_row(kv, Row(pk, [("c", 3)]))
    assert columns(client.get_row(kv, pk, max_version=1)[1]) == {"c": 3}
    other = [("p", "x"), ("n", 2)]
    client.update_row(kv, Row(other, {"delete_all": ["a"]}), IGNORE)
    assert client.get_row(kv, other, max_version=1)[1] is None
    client.update_row(kv, Row(pk, {"delete_all": ["c"]}), IGNORE)  # the last column goes: so does the row
    assert client.get_row(kv, pk, max_version=1)[1] is None


@pytest.mark.parametrize(
    "key, code, message",
    [
        ([("p", "x")], "OTSInvalidPK", "Validate PK size fail. Input: 1, Meta: 2."),
        ([("q", "x"), ("n", 1)], "OTSInvalidPK", "Validate PK name fail. Input: q, Meta: p."),
        ([("p", 1), ("n", 1)], "OTSInvalidPK", "Validate PK type fail. Input: VT_INTEGER, Meta: VT_STRING."),
        (
            [("p", "x" * 1025), ("n", 1)],
            "OTSParameterInvalid",
            "The length of primary key column: p exceeds the MaxLength: 1024 with CurrentLength: 1025.",
        ),
    ],
)
def test_bad_primary_keys_are_refused(client: OTSClient, kv: str, key: list, code: str, message: str) -> None:
    for call in (
        lambda: client.get_row(kv, key, max_version=1),
        lambda: client.put_row(kv, Row(key, [("a", 1)])),
        lambda: client.update_row(kv, Row(key, {"put": [("a", 1)]}), IGNORE),
        lambda: client.delete_row(kv, Row(key), IGNORE),
    ):
        error = service_error(call)
        assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
            400,
            code,
            message,
        )


def test_auto_increment_primary_key(client: OTSClient) -> None:
    create(client, "seq", [("part", "STRING"), ("id", "INTEGER", PK_AUTO_INCR)])
    assert client.describe_table("seq").table_meta.schema_of_primary_key[1] == ("id", "INTEGER", PK_AUTO_INCR)
    ids = []
    for i in range(3):
        _, returned = client.put_row(
            "seq", Row([("part", "a"), ("id", PK_AUTO_INCR)], [("i", i)]), return_type=ReturnType.RT_PK
        )
        ids.append(dict(returned.primary_key)["id"])
    assert ids == sorted(set(ids)) and all(isinstance(i, int) for i in ids)
    _, row, _ = client.get_row("seq", [("part", "a"), ("id", ids[1])], max_version=1)
    assert columns(row) == {"i": 1}
    error = service_error(
        lambda: client.put_row("seq", Row([("part", "a"), ("id", PK_AUTO_INCR)], [("i", 9)]), NOT_EXIST)
    )
    assert error.get_error_code() == "OTSParameterInvalid"


# --- conditions -----------------------------------------------------------------------------------------
def assert_condition_failed(call: Callable[[], Any]) -> None:
    error = service_error(call)
    assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
        403,
        "OTSConditionCheckFail",
        "Condition check failed.",
    )


def test_row_existence_conditions(client: OTSClient, kv: str) -> None:
    pk, missing = [("p", "a"), ("n", 1)], [("p", "a"), ("n", 2)]
    client.put_row(kv, Row(pk, [("v", 1)]), NOT_EXIST)
    assert_condition_failed(lambda: client.put_row(kv, Row(pk, [("v", 2)]), NOT_EXIST))
    assert_condition_failed(lambda: client.put_row(kv, Row(missing, [("v", 2)]), EXIST))
    assert_condition_failed(lambda: client.update_row(kv, Row(missing, {"put": [("v", 2)]}), EXIST))
    assert_condition_failed(lambda: client.update_row(kv, Row(pk, {"put": [("v", 2)]}), NOT_EXIST))
    assert_condition_failed(lambda: client.delete_row(kv, Row(missing), EXIST))
    assert_condition_failed(lambda: client.delete_row(kv, Row(pk), NOT_EXIST))
    assert columns(client.get_row(kv, pk, max_version=1)[1]) == {"v": 1}
    assert client.get_row(kv, missing, max_version=1)[1] is None
    client.update_row(kv, Row(pk, {"put": [("v", 3)]}), EXIST)
    client.put_row(kv, Row(missing, [("v", 4)]), IGNORE)
    assert [columns(client.get_row(kv, k, max_version=1)[1])["v"] for k in (pk, missing)] == [3, 4]


CT = ComparatorType


@pytest.mark.parametrize(
    "comparator, value, passes",
    [
        (CT.EQUAL, 10, True),
        (CT.EQUAL, 11, False),
        (CT.NOT_EQUAL, 11, True),
        (CT.NOT_EQUAL, 10, False),
        (CT.GREATER_THAN, 9, True),
        (CT.GREATER_THAN, 10, False),
        (CT.GREATER_EQUAL, 10, True),
        (CT.GREATER_EQUAL, 11, False),
        (CT.LESS_THAN, 11, True),
        (CT.LESS_THAN, 10, False),
        (CT.LESS_EQUAL, 10, True),
        (CT.LESS_EQUAL, 9, False),
        (CT.EQUAL, "10", False),  # another type never matches
    ],
)
def test_single_column_conditions(
    client: OTSClient, kv: str, comparator: int, value: Any, passes: bool
) -> None:
    pk = [("p", "c"), ("n", 0)]
    client.put_row(kv, Row(pk, [("v", 10), ("s", "m")]))
    condition = Condition(RowExistenceExpectation.EXPECT_EXIST, SingleColumnCondition("v", value, comparator))
    write = lambda: client.update_row(kv, Row(pk, {"put": [("w", 1)]}), condition)
    if passes:
        write()
        assert columns(client.get_row(kv, pk, max_version=1)[1])["w"] == 1
    else:
        assert_condition_failed(write)
        assert "w" not in columns(client.get_row(kv, pk, max_version=1)[1])


def test_string_comparisons_are_bytewise_and_missing_columns_follow_pass_if_missing(
    client: OTSClient, kv: str
) -> None:
    pk = [("p", "s"), ("n", 0)]
    client.put_row(kv, Row(pk, [("s", "b")]))

    def update(condition: Any) -> Any:
        return client.update_row(
            kv, Row(pk, {"increment": [("hits", 1)]}), Condition(RowExistenceExpectation.IGNORE, condition)
        )

    update(SingleColumnCondition("s", "a", CT.GREATER_THAN))
    update(SingleColumnCondition("s", "B", CT.GREATER_THAN))  # "b" (0x62) > "B" (0x42)
    assert_condition_failed(lambda: update(SingleColumnCondition("s", "é", CT.GREATER_EQUAL)))
    update(SingleColumnCondition("missing", 1, CT.EQUAL, pass_if_missing=True))
    assert_condition_failed(
        lambda: update(SingleColumnCondition("missing", 1, CT.EQUAL, pass_if_missing=False))
    )
    update(SingleColumnRegexCondition("missing", CT.NOT_EXIST))  # EXIST/NOT_EXIST live on the regex class
    assert_condition_failed(lambda: update(SingleColumnRegexCondition("missing", CT.EXIST)))
    update(SingleColumnRegexCondition("s", CT.EXIST))
    client.put_row(kv, Row(pk, [("s", "order-42"), ("hits", 5)]))
    order_number = RegexRule(r"order-(\d+)", CastType.VT_INTEGER)
    update(SingleColumnRegexCondition("s", CT.GREATER_THAN, 41, order_number))
    assert_condition_failed(
        lambda: update(SingleColumnRegexCondition("s", CT.GREATER_THAN, 42, order_number))
    )
    assert columns(client.get_row(kv, pk, max_version=1)[1])["hits"] == 6


def composite(operator: int, *subs: Any) -> CompositeColumnCondition:
    condition = CompositeColumnCondition(operator)
    for sub in subs:
        condition.add_sub_condition(sub)
    return condition


def test_composite_conditions(client: OTSClient, kv: str) -> None:
    pk = [("p", "k"), ("n", 0)]
    client.put_row(kv, Row(pk, [("status", "claimed"), ("attempts", 2)]))
    status_is = lambda s: SingleColumnCondition("status", s, CT.EQUAL, pass_if_missing=False)
    cases = [
        (composite(LogicalOperator.OR, status_is("planned"), status_is("claimed"), status_is("retry")), True),
        (composite(LogicalOperator.OR, status_is("planned"), status_is("retry")), False),
        (
            composite(
                LogicalOperator.AND, status_is("claimed"), SingleColumnCondition("attempts", 3, CT.LESS_THAN)
            ),
            True,
        ),
        (
            composite(
                LogicalOperator.AND, status_is("claimed"), SingleColumnCondition("attempts", 2, CT.LESS_THAN)
            ),
            False,
        ),
        (composite(LogicalOperator.NOT, status_is("sent")), True),
        (composite(LogicalOperator.NOT, status_is("claimed")), False),
        (
            composite(
                LogicalOperator.AND,
                composite(LogicalOperator.NOT, status_is("sent")),
                composite(LogicalOperator.OR, status_is("x"), SingleColumnCondition("attempts", 2, CT.EQUAL)),
            ),
            True,
        ),
    ]
    for condition, passes in cases:
        call = lambda condition=condition: client.update_row(
            kv,
            Row(pk, {"increment": [("ok", 1)]}),
            Condition(RowExistenceExpectation.EXPECT_EXIST, condition),
        )
        if passes:
            call()
        else:
            assert_condition_failed(call)
    assert columns(client.get_row(kv, pk, max_version=1)[1])["ok"] == 4
    lonely = service_error(
        lambda: client.update_row(
            kv,
            Row(pk, {"put": [("x", 1)]}),
            Condition(RowExistenceExpectation.IGNORE, composite(LogicalOperator.AND, status_is("claimed"))),
        )
    )
    assert (lonely.get_error_code(), lonely.get_error_message()) == (
        "OTSParameterInvalid",
        "Invalid AND/OR operator: the number of sub-filters must be 2.",
    )


def test_filters_on_reads(client: OTSClient, kv: str) -> None:
    batch_put(client, kv, [([("p", "f"), ("n", i)], [("batch", i % 3), ("name", f"r{i}")]) for i in range(9)])
    only_one = SingleColumnCondition("batch", 1, CT.EQUAL, pass_if_missing=False)
    rows, _ = scan(
        client,
        kv,
        Direction.FORWARD,
        [("p", "f"), ("n", INF_MIN)],
        [("p", "f"), ("n", INF_MAX)],
        column_filter=only_one,
    )
    assert [dict(r.primary_key)["n"] for r in rows] == [1, 4, 7]
    _, row, _ = client.get_row(kv, [("p", "f"), ("n", 4)], ["name", "batch"], only_one, max_version=1)
    assert columns(row) == {"batch": 1, "name": "r4"}
    assert client.get_row(kv, [("p", "f"), ("n", 5)], None, only_one, max_version=1)[1] is None


# --- batches --------------------------------------------------------------------------------------------
def test_batch_write_is_per_row_and_not_atomic(
    client: OTSClient, kv: str, backend: TablestoreBackend
) -> None:
    create(client, "other", [("id", "INTEGER")])
    client.put_row(kv, Row([("p", "b"), ("n", 1)], [("v", "old")]))
    client.put_row(kv, Row([("p", "b"), ("n", 2)], [("v", "keep")]))
    client.put_row(kv, Row([("p", "b"), ("n", 3)], [("v", "gone")]))
    items = [
        PutRowItem(Row([("p", "b"), ("n", 0)], [("v", "new")]), NOT_EXIST),  # ok
        PutRowItem(Row([("p", "b"), ("n", 1)], [("v", "clobber")]), NOT_EXIST),  # exists
        UpdateRowItem(Row([("p", "b"), ("n", 9)], {"put": [("v", "x")]}), EXIST),  # missing
        UpdateRowItem(
            Row([("p", "b"), ("n", 2)], {"put": [("v", "changed")]}),
            Condition(RowExistenceExpectation.EXPECT_EXIST, SingleColumnCondition("v", "other", CT.EQUAL)),
        ),  # column cond
        DeleteRowItem(Row([("p", "b"), ("n", 3)]), EXIST),  # ok
        PutRowItem(Row([("p", "b")], [("v", "short key")]), IGNORE),  # bad key
    ]
    request = BatchWriteRowRequest()
    request.add(TableInBatchWriteRowItem(kv, items))
    request.add(TableInBatchWriteRowItem("other", [PutRowItem(Row([("id", 7)], [("v", 1)]), IGNORE)]))
    response = client.batch_write_row(request)

    assert not response.is_all_succeed()
    failed_puts = response.get_failed_of_put()
    assert [(f.index, f.error_code) for f in failed_puts] == [
        (1, "OTSConditionCheckFail"),
        (5, "OTSInvalidPK"),
    ]
    assert failed_puts[0].error_message == "Condition check failed."
    assert [(f.index, f.error_code) for f in response.get_failed_of_update()] == [
        (2, "OTSConditionCheckFail"),
        (3, "OTSConditionCheckFail"),
    ]
    assert response.get_failed_of_delete() == []
    assert [s.index for s in response.get_succeed_of_put()] == [0, 0]  # kv row 0, other row 0
    assert all(s.consumed.write >= 1 for s in response.get_succeed_of_put())

    assert backend.rows(kv) == [
        {"primary_key": {"p": "b", "n": 0}, "columns": {"v": "new"}},
        {"primary_key": {"p": "b", "n": 1}, "columns": {"v": "old"}},
        {"primary_key": {"p": "b", "n": 2}, "columns": {"v": "keep"}},
    ]
    assert backend.rows("other") == [{"primary_key": {"id": 7}, "columns": {"v": 1}}]
    assert backend.requests[-1].row_errors == 4 and backend.requests[-1].tables == [kv, "other"]


def test_forward_only_upsert_in_batch_write(client: OTSClient, kv: str, backend: TablestoreBackend) -> None:
    """UpdateRow under IGNORE with "rank < r" (pass_if_missing) in a BatchWriteRow: creates a missing row,
    advances a lower one or one without the column, refuses an equal or higher one (per row, not the batch);
    pass_if_missing=False refuses the missing ones; the same row twice with a condition refuses the request.
    See models._check_row_condition (its ASSUMPTION: a missing row's columns are all missing)."""
    client.put_row(kv, Row([("p", "r"), ("n", 1)], [("rank", 1)]))
    client.put_row(kv, Row([("p", "r"), ("n", 2)], [("rank", 3)]))
    client.put_row(kv, Row([("p", "r"), ("n", 3)], [("rank", 2)]))
    client.put_row(kv, Row([("p", "r"), ("n", 4)], [("other", "x")]))

    def upsert(n: int, rank: int, *, pass_if_missing: bool = True) -> UpdateRowItem:
        lower = SingleColumnCondition("rank", rank, CT.LESS_THAN, pass_if_missing=pass_if_missing)
        row = Row([("p", "r"), ("n", n)], {"put": [("rank", rank), ("by", f"{n}:{rank}")]})
        return UpdateRowItem(row, Condition(RowExistenceExpectation.IGNORE, lower))

    def write(items: list[UpdateRowItem]) -> list[tuple[int, bool, str]]:
        request = BatchWriteRowRequest()
        request.add(TableInBatchWriteRowItem(kv, items))
        results = client.batch_write_row(request).get_update_by_table(kv)
        return [(r.index, r.is_ok, r.error_code or "") for r in results]

    failed = "OTSConditionCheckFail"
    assert write([upsert(0, 2), upsert(1, 2), upsert(2, 2), upsert(3, 2), upsert(4, 2)]) == [
        (0, True, ""),  # missing row: created
        (1, True, ""),  # rank 1 < 2: advanced
        (2, False, failed),  # rank 3: kept
        (3, False, failed),  # rank 2, equal: kept
        (4, True, ""),  # no rank column: pass_if_missing
    ]
    ranks = {row["primary_key"]["n"]: row["columns"]["rank"] for row in backend.rows(kv)}
    assert ranks == {0: 2, 1: 2, 2: 3, 3: 2, 4: 2}
    assert write([upsert(5, 1, pass_if_missing=False), upsert(1, 4, pass_if_missing=False)]) == [
        (0, False, failed),  # a missing row has no rank: refused
        (1, True, ""),
    ]
    assert client.get_row(kv, [("p", "r"), ("n", 5)], max_version=1)[1] is None
    request = BatchWriteRowRequest()
    request.add(TableInBatchWriteRowItem(kv, [upsert(6, 1), upsert(6, 2)]))
    repeated = service_error(lambda: client.batch_write_row(request))
    assert repeated.get_error_message() == "Repeated rows do not support row condition check in BatchModify."
    assert client.get_row(kv, [("p", "r"), ("n", 6)], max_version=1)[1] is None


def test_batch_write_limits_fail_the_whole_request(
    client: OTSClient, kv: str, backend: TablestoreBackend
) -> None:
    def attempt(items: list, table: str = kv) -> OTSServiceError:
        request = BatchWriteRowRequest()
        request.add(TableInBatchWriteRowItem(table, items))
        return service_error(lambda: client.batch_write_row(request))

    too_many = attempt([PutRowItem(Row([("p", "l"), ("n", i)], [("v", i)]), IGNORE) for i in range(201)])
    assert (too_many.get_http_status(), too_many.get_error_code(), too_many.get_error_message()) == (
        400,
        "OTSParameterInvalid",
        "Rows count exceeds the upper limit: 200.",
    )
    blob = "x" * 900_000
    too_big = attempt([PutRowItem(Row([("p", "l"), ("n", i)], [("v", blob)]), IGNORE) for i in range(5)])
    assert too_big.get_error_code() == "OTSParameterInvalid"
    assert too_big.get_error_message().startswith(
        "The total data size of BatchWriteRow request exceeds the limit, limit size: 4194304, data size: "
    )
    nothing = attempt([])
    assert nothing.get_error_message() == f"No operation is specified for table: '{kv}'."
    unknown = attempt([PutRowItem(Row([("p", "l"), ("n", 1)], [("v", 1)]), IGNORE)], table="nope")
    assert (unknown.get_http_status(), unknown.get_error_code()) == (404, "OTSObjectNotExist")
    empty = service_error(lambda: client.batch_write_row(BatchWriteRowRequest()))
    assert empty.get_error_message() == "No row is specified in BatchWriteRow."
    repeated = attempt(
        [
            PutRowItem(Row([("p", "l"), ("n", 1)], [("v", 1)]), NOT_EXIST),
            DeleteRowItem(Row([("p", "l"), ("n", 1)]), IGNORE),
        ]
    )
    assert (
        repeated.get_error_message()
        == "Repeated rows do not support row exist expectation check in BatchModify."
    )
    assert backend.row_count(kv) == 0

    exactly = BatchWriteRowRequest()
    exactly.add(
        TableInBatchWriteRowItem(
            kv, [PutRowItem(Row([("p", "l"), ("n", i)], [("v", i)]), IGNORE) for i in range(200)]
        )
    )
    assert client.batch_write_row(exactly).is_all_succeed()
    assert backend.row_count(kv) == 200


def test_batch_get(client: OTSClient, kv: str) -> None:
    create(client, "other", [("id", "BINARY")])
    client.put_row(kv, Row([("p", "g"), ("n", 1)], [("a", 1), ("b", 2)]))
    client.put_row("other", Row([("id", bytearray(b"\x01"))], [("a", "x")]))
    request = BatchGetRowRequest()
    request.add(
        TableInBatchGetRowItem(
            kv, [[("p", "g"), ("n", 1)], [("p", "g"), ("n", 2)], [("q", "bad")]], ["a"], max_version=1
        )
    )
    request.add(TableInBatchGetRowItem("other", [[("id", bytearray(b"\x01"))]], max_version=1))
    response = client.batch_get_row(request)
    assert not response.is_all_succeed()
    first, absent, bad = response.get_result_by_table(kv)
    assert first.is_ok and first.row.primary_key == [("p", "g"), ("n", 1)] and columns(first.row) == {"a": 1}
    assert absent.is_ok and absent.row is None
    assert not bad.is_ok and (bad.error_code, bad.error_message) == (
        "OTSInvalidPK",
        "Validate PK size fail. Input: 1, Meta: 2.",
    )
    (other,) = response.get_result_by_table("other")
    assert other.is_ok and columns(other.row) == {"a": "x"}

    too_many = BatchGetRowRequest()
    too_many.add(TableInBatchGetRowItem(kv, [[("p", "g"), ("n", i)] for i in range(101)], max_version=1))
    error = service_error(lambda: client.batch_get_row(too_many))
    assert (error.get_http_status(), error.get_error_message()) == (
        400,
        "Rows count exceeds the upper limit: 100.",
    )
    empty = service_error(lambda: client.batch_get_row(BatchGetRowRequest()))
    assert empty.get_error_message() == "No row specified in the request of BatchGetRow."


# --- ranges ---------------------------------------------------------------------------------------------
def test_get_range_pages_through_12000_rows_both_ways(client: OTSClient, kv: str) -> None:
    rows = [([("p", "b"), ("n", i)], [("v", i)]) for i in range(-6000, 6000)]
    rows += [([("p", "a"), ("n", 5)], [("v", 0)]), ([("p", "c"), ("n", -5)], [("v", 0)])]
    random.Random(7).shuffle(rows)
    batch_put(client, kv, rows)

    everything, pages = scan(
        client, kv, Direction.FORWARD, [("p", INF_MIN), ("n", INF_MIN)], [("p", INF_MAX), ("n", INF_MAX)]
    )
    assert pages == [5000, 5000, 2002]  # 5,000 rows per call at most
    keys = [(dict(r.primary_key)["p"], dict(r.primary_key)["n"]) for r in everything]
    assert keys == [("a", 5)] + [("b", i) for i in range(-6000, 6000)] + [("c", -5)]

    backward, pages = scan(
        client, kv, Direction.BACKWARD, [("p", INF_MAX), ("n", INF_MAX)], [("p", INF_MIN), ("n", INF_MIN)]
    )
    assert pages == [5000, 5000, 2002]
    assert [(dict(r.primary_key)["p"], dict(r.primary_key)["n"]) for r in backward] == keys[::-1]

    inside, pages = scan(
        client, kv, Direction.FORWARD, [("p", "b"), ("n", -10)], [("p", "b"), ("n", 2990)], limit=1000
    )
    assert pages == [1000, 1000, 1000] and [dict(r.primary_key)["n"] for r in inside] == list(
        range(-10, 2990)
    )
    down, pages = scan(
        client, kv, Direction.BACKWARD, [("p", "b"), ("n", INF_MAX)], [("p", "a"), ("n", INF_MAX)], limit=4000
    )
    assert pages == [4000, 4000, 4000] and [dict(r.primary_key)["n"] for r in down] == list(
        range(5999, -6001, -1)
    )

    _, next_start, page, _ = client.get_range(
        kv, Direction.FORWARD, [("p", "b"), ("n", 0)], [("p", "b"), ("n", INF_MAX)], ["v"], 3, max_version=1
    )
    assert [columns(r)["v"] for r in page] == [0, 1, 2] and next_start == [("p", "b"), ("n", 3)]
    _, next_start, page, _ = client.get_range(
        kv, Direction.FORWARD, [("p", "a"), ("n", INF_MAX)], [("p", "b"), ("n", INF_MIN)], max_version=1
    )
    assert page == [] and next_start is None


def test_get_range_stops_at_4_mb(client: OTSClient) -> None:
    create(client, "big", [("k", "INTEGER")])
    blob = "y" * 400_000
    for i in range(12):
        client.put_row("big", Row([("k", i)], [("v", blob)]))
    rows, pages = scan(client, "big", Direction.FORWARD, [("k", INF_MIN)], [("k", INF_MAX)])
    assert pages == [10, 2] and [dict(r.primary_key)["k"] for r in rows] == list(range(12))
    consumed = client.get_range("big", Direction.FORWARD, [("k", 0)], [("k", 1)], max_version=1)[0]
    assert consumed.read == 98  # 400,006 bytes in 4 KB units


def test_primary_key_order(client: OTSClient) -> None:
    create(client, "ints", [("k", "INTEGER")])
    create(client, "strs", [("k", "STRING")])
    create(client, "bins", [("k", "BINARY")])
    ints = [-(2**63), -(2**40), -256, -1, 0, 1, 255, 256, 2**40, 2**63 - 1]
    strs = ["", "A", "B", "a", "a\x00", "a\x00b", "ab", "b", "z", "é", "\U0001f600"]
    bins = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x01", b"\x7f", b"\x80", b"\xff", b"\xff\x00"]
    for table, values in (("ints", ints), ("strs", strs), ("bins", [bytearray(v) for v in bins])):
        for value in random.Random(3).sample(values, len(values)):
            client.put_row(table, Row([("k", value)], [("v", 1)]))
        forward, _ = scan(client, table, Direction.FORWARD, [("k", INF_MIN)], [("k", INF_MAX)])
        assert [r.primary_key[0][1] for r in forward] == values
        backward, _ = scan(client, table, Direction.BACKWARD, [("k", INF_MAX)], [("k", INF_MIN)])
        assert [r.primary_key[0][1] for r in backward] == values[::-1]
    between, _ = scan(client, "ints", Direction.FORWARD, [("k", -256)], [("k", 256)])
    assert [r.primary_key[0][1] for r in between] == [-256, -1, 0, 1, 255]
    assert encode_key([("k", plain.Value(plain.VT_STRING, "a"))]) < encode_key(
        [("k", plain.Value(plain.VT_STRING, "a\x00"))]
    )


def test_get_range_refuses_bad_ranges(client: OTSClient, kv: str) -> None:
    cases = [
        (
            Direction.FORWARD,
            [("p", "b"), ("n", 1)],
            [("p", "a"), ("n", 1)],
            None,
            "Begin key must less than end key in FORWARD",
        ),
        (
            Direction.FORWARD,
            [("p", "a"), ("n", 1)],
            [("p", "a"), ("n", 1)],
            None,
            "Begin key must less than end key in FORWARD",
        ),
        (
            Direction.BACKWARD,
            [("p", "a"), ("n", INF_MIN)],
            [("p", "a"), ("n", INF_MAX)],
            None,
            "Begin key must more than end key in BACKWARD",
        ),
        (
            Direction.FORWARD,
            [("p", "a"), ("n", 1)],
            [("p", "b"), ("n", 1)],
            0,
            "The limit must be greater than 0.",
        ),
    ]
    for direction, start, end, limit, message in cases:
        error = service_error(
            lambda direction=direction, start=start, end=end, limit=limit: client.get_range(
                kv, direction, start, end, limit=limit, max_version=1
            )
        )
        assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
            400,
            "OTSParameterInvalid",
            message,
        )


# --- authentication ---------------------------------------------------------------------------------------
def test_credentials_and_instance_are_checked(
    ots: LocalTablestore, client: OTSClient, backend: TablestoreBackend
) -> None:
    create(client, "guarded", [("k", "INTEGER")])
    cases = [
        (dict(secret="wrong-secret"), "Signature mismatch."),
        (dict(token="CAIS.not-the-token"), "The security token you provided is invalid."),
        (dict(token=None), "The security token is missing."),
        (dict(instance="another-instance"), "The instance is not found."),
        (dict(access_key_id="STS.unknown"), "The AccessKeyID does not exist."),
        (dict(region="cn-hangzhou"), "Signature mismatch."),  # V4 signed for another region
    ]
    for options, message in cases:
        intruder = make_client(ots, **options)
        for call in (
            lambda intruder=intruder: intruder.put_row("guarded", Row([("k", 1)], [("v", 1)])),
            intruder.list_table,
        ):
            error = service_error(call)
            assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
                403,
                "OTSAuthFailed",
                message,
            ), options
    backend.add_account("LTAI.long-term", "long-term-secret")  # no STS token expected of this one
    with_token = make_client(
        ots, access_key_id="LTAI.long-term", secret="long-term-secret", token="CAIS.stray"
    )
    error = service_error(with_token.list_table)
    assert (error.get_error_code(), error.get_error_message()) == (
        "OTSAuthFailed",
        "The security token you provided is invalid.",
    )
    assert make_client(
        ots, access_key_id="LTAI.long-term", secret="long-term-secret", token=None
    ).list_table() == ("guarded",)
    assert backend.row_count("guarded") == 0
    assert {r.error_code for r in backend.requests[1:-1]} == {"OTSAuthFailed"}

    v4 = make_client(ots, region=ots.region_id)  # V4 signing, the right region
    v4.put_row("guarded", Row([("k", 1)], [("v", 1)]))
    assert columns(v4.get_row("guarded", [("k", 1)], max_version=1)[1]) == {"v": 1}


def raw_call(
    ots: LocalTablestore,
    api: str,
    *args: Any,
    method: str = "POST",
    change: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Build a request with the SDK's own protocol code, optionally alter it (and re-sign), send it raw."""
    c = ots.credentials
    context = RequestContext(Credentials(c.access_key_id, c.access_key_secret, c.security_token))
    signer = SignV2("utf8")
    query, headers, body = OTSProtocol(
        ots.instance_name, "utf8", logging.getLogger(CLIENT_LOGGER)
    ).make_request(api, signer, context, *args)
    if change is not None:
        headers, body = change(dict(headers), body)
        headers.pop("x-ots-signature", None)
        signer.make_request_signature_and_add_headers(query, headers, context)
    connection = http.client.HTTPConnection(ots.host, ots.port, timeout=10)
    try:
        connection.request(method, query, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def error_of(body: bytes) -> tuple[str, str]:
    error = pb.Error()
    error.ParseFromString(body)
    return error.code, error.message


def test_wire_protocol_checks_and_reply_signature(ots: LocalTablestore, backend: TablestoreBackend) -> None:
    status, headers, body = raw_call(ots, "ListTable")
    assert status == 200
    assert headers["x-ots-contentmd5"] == base64.b64encode(hashlib.md5(body).digest()).decode()
    lines = sorted(f"{k}:{v}" for k, v in headers.items() if k.startswith("x-ots-"))
    expected = base64.b64encode(
        hmac.new(
            ots.credentials.access_key_secret.encode(),
            ("\n".join(lines) + "\n/ListTable").encode(),
            hashlib.sha1,
        ).digest()
    )
    assert headers["authorization"] == f"OTS {ots.credentials.access_key_id}:{expected.decode()}"

    old = (datetime.now(timezone.utc) - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    cases = [
        (
            dict(method="GET"),
            405,
            "OTSMethodNotAllowed",
            "OTSMethodNotAllowedOnly POST method for requests is supported.",
        ),
        (
            dict(change=lambda h, b: (h, b + b"\x00")),
            403,
            "OTSAuthFailed",
            "Mismatch between MD5 value of request body and x-ots-contentmd5 in header.",
        ),
        (
            dict(change=lambda h, b: ({**h, "x-ots-date": old}, b)),
            403,
            "OTSAuthFailed",
            f"Mismatch between system time and x-ots-date: {old}.",
        ),
        (
            dict(change=lambda h, b: ({k: v for k, v in h.items() if k != "x-ots-contentmd5"}, b)),
            400,
            "OTSParameterInvalid",
            "Missing header: x-ots-contentmd5.",
        ),
        (
            dict(change=lambda h, b: ({**h, "x-ots-date": "yesterday"}, b)),
            400,
            "OTSParameterInvalid",
            "Invalid date format: yesterday.",
        ),
    ]
    for options, want_status, code, message in cases:
        status, headers, body = raw_call(ots, "ListTable", **options)
        assert (status, error_of(body)) == (want_status, (code, message)), options
        assert "authorization" not in headers  # refused before it proved its key: nothing to sign with

    status, _, body = raw_call(ots, "SQLQuery", "select 1")
    assert (status, error_of(body)) == (400, ("OTSParameterInvalid", "Unsupported operation: SQLQuery."))

    row = bytearray(PlainBufferBuilder.serialize_for_put_row([("k", 1)], [("v", 1)]))
    row[-1] ^= 0xFF  # the row checksum
    put = pb.PutRowRequest(table_name="t", row=bytes(row))
    put.condition.row_existence = pb.IGNORE
    tampered = put.SerializeToString()
    status, headers, body = raw_call(
        ots,
        "PutRow",
        "t",
        Row([("k", 1)], [("v", 1)]),
        None,
        None,
        None,
        change=lambda h, b: (
            {**h, "x-ots-contentmd5": base64.b64encode(hashlib.md5(tampered).digest()).decode()},
            tampered,
        ),
    )
    assert status == 400 and error_of(body)[1].startswith("Cell data broken, checksum is mismatch")

    connection = http.client.HTTPConnection(ots.host, ots.port, timeout=10)
    try:
        connection.request("POST", "/PutRow", body=b"\x00" * (5 * 1024 * 1024 + 1))
        response = connection.getresponse()
        assert (response.status, error_of(response.read())) == (
            413,
            ("OTSRequestBodyTooLarge", "The size of POST data is too large."),
        )
    finally:
        connection.close()
    assert [r.http_status for r in backend.requests][-3:] == [400, 400, 413]


# --- faults -----------------------------------------------------------------------------------------------
def test_server_busy_is_retried_by_the_sdk_for_reads(
    ots: LocalTablestore, client: OTSClient, kv: str, backend: TablestoreBackend
) -> None:
    client.put_row(kv, Row([("p", "r"), ("n", 1)], [("v", 1)]))
    backend.fail_next(3, "OTSServerBusy", 503, operations=["GetRow"])
    _, row, _ = client.get_row(kv, [("p", "r"), ("n", 1)], max_version=1)
    assert columns(row) == {"v": 1}
    get_rows = [r for r in backend.requests if r.api == "GetRow"]
    assert [(r.http_status, r.error_code, r.fault) for r in get_rows] == [
        (503, "OTSServerBusy", "fail")
    ] * 3 + [(200, None, None)]

    backend.fail_next(1, "OTSServerBusy", 503)
    no_retry = make_client(ots, retry=NoRetryPolicy())
    error = service_error(lambda: no_retry.get_row(kv, [("p", "r"), ("n", 1)], max_version=1))
    assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
        503,
        "OTSServerBusy",
        "Server is busy.",
    )

    backend.fail_next(2, "OTSTimeout", 503, operations=["GetRange"])  # reads retry OTSTimeout too
    _, _, page, _ = client.get_range(
        kv,
        Direction.FORWARD,
        [("p", INF_MIN), ("n", INF_MIN)],
        [("p", INF_MAX), ("n", INF_MAX)],
        max_version=1,
    )
    assert len(page) == 1


def test_update_row_timeout_is_not_retried(client: OTSClient, kv: str, backend: TablestoreBackend) -> None:
    pk = [("p", "u"), ("n", 1)]
    client.put_row(kv, Row(pk, [("count", 0)]))
    backend.fail_next(1, "OTSTimeout", 503, operations=["UpdateRow"])
    error = service_error(lambda: client.update_row(kv, Row(pk, {"increment": [("count", 1)]}), EXIST))
    assert (error.get_http_status(), error.get_error_code(), error.get_error_message()) == (
        503,
        "OTSTimeout",
        "Operation timeout.",
    )
    assert [r.api for r in backend.requests].count("UpdateRow") == 1
    assert columns(client.get_row(kv, pk, max_version=1)[1])["count"] == 0  # not applied

    backend.fail_next(1, "OTSTimeout", 503, operations=["UpdateRow"], apply=True)  # ambiguous: it landed
    service_error(lambda: client.update_row(kv, Row(pk, {"increment": [("count", 1)]}), EXIST))
    assert columns(client.get_row(kv, pk, max_version=1)[1])["count"] == 1
    assert backend.requests[-2].applied and backend.requests[-2].fault == "fail"


def test_timeouts_hold_the_reply_or_drop_the_connection(
    ots: LocalTablestore, kv: str, backend: TablestoreBackend
) -> None:
    impatient = make_client(ots, timeout=0.3)
    backend.timeout_next(1, seconds=1.0, apply=True, operations=["PutRow"])
    with pytest.raises(ReadTimeoutError):
        impatient.put_row(kv, Row([("p", "t"), ("n", 1)], [("v", 1)]))
    assert backend.rows(kv) == [{"primary_key": {"p": "t", "n": 1}, "columns": {"v": 1}}]  # it landed

    backend.timeout_next(1, apply=False)  # dropped before it ran
    with pytest.raises(ProtocolError):
        impatient.put_row(kv, Row([("p", "t"), ("n", 2)], [("v", 2)]))
    assert backend.row_count(kv) == 1
    assert [(r.fault, r.applied) for r in backend.requests[-2:]] == [("timeout", True), ("drop", False)]
    assert impatient.get_row(kv, [("p", "t"), ("n", 1)], max_version=1)[1] is not None  # the client recovers


def test_row_faults_in_batch_write(client: OTSClient, kv: str, backend: TablestoreBackend) -> None:
    backend.fail_rows_next(2, "OTSServerBusy")
    request = BatchWriteRowRequest()
    request.add(
        TableInBatchWriteRowItem(
            kv, [PutRowItem(Row([("p", "f"), ("n", i)], [("v", i)]), IGNORE) for i in range(4)]
        )
    )
    response = client.batch_write_row(request)
    assert [(f.index, f.error_code) for f in response.get_failed_of_put()] == [
        (0, "OTSServerBusy"),
        (1, "OTSServerBusy"),
    ]
    assert [row["primary_key"]["n"] for row in backend.rows(kv)] == [2, 3]


# --- records, persistence, concurrency, admin, CLI --------------------------------------------------------
def test_requests_are_recorded(client: OTSClient, kv: str, backend: TablestoreBackend) -> None:
    client.put_row(kv, Row([("p", "x"), ("n", 1)], [("v", 1)]))
    service_error(lambda: client.put_row(kv, Row([("p", "x"), ("n", 1)], [("v", 1)]), NOT_EXIST))
    put, refused = backend.requests[-2:]
    assert (put.api, put.table, put.http_status, put.error_code, put.applied) == (
        "PutRow",
        kv,
        200,
        None,
        True,
    )
    assert (refused.api, refused.table, refused.http_status, refused.error_code) == (
        "PutRow",
        kv,
        403,
        "OTSConditionCheckFail",
    )
    assert refused.access_key_id == put.access_key_id and refused.request_id != put.request_id
    assert backend.stats()["by_api"]["PutRow"] == 2


def test_state_survives_a_restart_with_a_data_dir(tmp_path: Any) -> None:
    keys = dict(access_key_id="LTAI.local-test", access_key_secret="s3cret", security_token=None)
    with LocalTablestore(data_dir=str(tmp_path), realistic=False, **keys) as first:
        writer = make_client(first, token=None)
        create(writer, "kept", [("k", "STRING"), ("n", "INTEGER")], time_to_live=86400 * 7)
        batch_put(
            writer,
            "kept",
            [([("k", "a"), ("n", i)], [("v", i), ("b", bytearray(b"\x00x"))]) for i in range(-3, 3)],
        )
        writer.update_row("kept", Row([("k", "a"), ("n", 0)], {"increment": [("v", 10)]}), EXIST)
    assert (tmp_path / "tablestore.sqlite3").exists()
    assert not (
        tmp_path / "tablestore.sqlite3-wal"
    ).exists()  # stop() closed it: the file alone holds the data
    with LocalTablestore(data_dir=str(tmp_path), realistic=False, **keys) as second:
        reader = make_client(second, token=None)
        assert reader.list_table() == ("kept",)
        assert reader.describe_table("kept").table_options.time_to_live == 604800
        rows, _ = scan(
            reader,
            "kept",
            Direction.FORWARD,
            [("k", INF_MIN), ("n", INF_MIN)],
            [("k", INF_MAX), ("n", INF_MAX)],
        )
        assert [(dict(r.primary_key)["n"], columns(r)["v"]) for r in rows] == [
            (-3, -3),
            (-2, -2),
            (-1, -1),
            (0, 10),
            (1, 1),
            (2, 2),
        ]
        assert columns(rows[0])["b"] == bytearray(b"\x00x")
        second.backend.reset()
        assert reader.list_table() == ()


def test_concurrent_conditional_puts_have_one_winner(ots: LocalTablestore, kv: str) -> None:
    threads, outcomes = 16, []
    barrier = threading.Barrier(threads)
    lock = threading.Lock()

    def contend(i: int) -> None:
        worker = make_client(ots)
        barrier.wait()
        try:
            worker.put_row(kv, Row([("p", "claim"), ("n", 1)], [("owner", i)]), NOT_EXIST)
            result = ("won", i)
        except OTSServiceError as error:
            result = (error.get_error_code(), i)
        for _ in range(10):
            worker.update_row(kv, Row([("p", "count"), ("n", 1)], {"increment": [("c", 1)]}), IGNORE)
        with lock:
            outcomes.append(result)

    pool = [threading.Thread(target=contend, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(30)
    winners = [i for outcome, i in outcomes if outcome == "won"]
    assert len(outcomes) == threads and len(winners) == 1
    assert sorted(outcome for outcome, _ in outcomes if outcome != "won") == ["OTSConditionCheckFail"] * 15
    client = make_client(ots)
    assert columns(client.get_row(kv, [("p", "claim"), ("n", 1)], max_version=1)[1]) == {"owner": winners[0]}
    assert columns(client.get_row(kv, [("p", "count"), ("n", 1)], max_version=1)[1]) == {"c": threads * 10}


def test_admin_endpoints(
    ots: LocalTablestore, client: OTSClient, kv: str, backend: TablestoreBackend
) -> None:
    def admin(path: str, body: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{ots.endpoint}/_localtablestore/{path}", data=data, method="POST" if data is not None else "GET"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    assert admin(
        "faults", {"fail_next": {"n": 1, "code": "OTSServerBusy", "status": 503, "operations": ["ListTable"]}}
    ) == {"ok": True}
    error = service_error(make_client(ots, retry=NoRetryPolicy()).list_table)
    assert error.get_error_code() == "OTSServerBusy"
    assert admin("requests")[-1]["error_code"] == "OTSServerBusy"
    assert admin("reset", {}) == {"ok": True}
    assert admin("requests") == [] and client.list_table() == ()


def test_time_to_live_hides_expired_cells_and_rows() -> None:
    """Directly on the backend: a day of clock would also date the replies beyond the SDK's 15-minute check."""
    from alibaba_localcloud.tablestore import models as m

    now = [1_700_000_000.0]
    backend = TablestoreBackend(clock=lambda: now[0], realistic=False)
    backend.add_instance("i")
    backend.create_table("i", m.TableInfo("t", (m.PrimaryKeySchema("k", "INTEGER"),), time_to_live=86400))
    key = lambda k: [("k", plain.Value(plain.VT_INTEGER, k))]
    value = plain.Value(plain.VT_INTEGER, 1)
    backend.write_row("i", "t", m.RowChange("put", key(1), (plain.Cell("old", value),)))
    backend.write_row("i", "t", m.RowChange("put", key(2), ()))  # only a primary key: nothing to expire
    now[0] += 86400 - 10
    backend.write_row("i", "t", m.RowChange("update", key(1), (plain.Cell("new", value),)))
    now[0] += 20
    result = backend.get_row("i", "t", key(1), m.ReadOptions())
    assert result.row is not None and [c[0] for c in result.row[1]] == ["new"]
    now[0] += 86400
    assert backend.get_row("i", "t", key(1), m.ReadOptions()).row is None
    assert backend.get_row("i", "t", key(2), m.ReadOptions()).row == (key(2), [])
    backend.close()


def test_plainbuffer_reads_update_cells_the_sdk_cannot() -> None:
    raw = bytes(
        PlainBufferBuilder.serialize_for_update_row(
            [("k", 1)],
            {
                "put": [("a", "x", 5)],
                "delete": [("b", None, 7)],
                "delete_all": ["c"],
                "increment": [("d", -2)],
            },
        )
    )
    row = plain.decode_row(raw)
    assert [(c.name, c.value, c.timestamp, c.op) for c in row.cells] == [
        ("a", plain.Value(plain.VT_STRING, "x"), 5, None),
        ("b", None, 7, plain.OP_DELETE_ONE_VERSION),
        ("c", None, None, plain.OP_DELETE_ALL_VERSIONS),
        ("d", plain.Value(plain.VT_INTEGER, -2), None, plain.OP_INCREMENT),
    ]
    broken = bytearray(raw)
    broken[20] ^= 0x01  # inside the primary key cell
    with pytest.raises(plain.PlainBufferError):
        plain.decode_row(bytes(broken))


def test_cli_prints_one_json_line_and_serves_until_terminated(tmp_path: Any) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alibaba_localcloud.tablestore",
            "--port",
            "0",
            "--data",
            str(tmp_path),
            "--instance",
            "cli-instance",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["service"] == "tablestore" and info["instance"] == "cli-instance"
        assert info["endpoint"].startswith("http://127.0.0.1:") and info["region"] == "ap-southeast-1"
        credentials = info["credentials"]
        assert credentials["access_key_id"].startswith("STS.") and credentials["security_token"]
        remote = OTSClient(
            info["endpoint"],
            credentials["access_key_id"],
            credentials["access_key_secret"],
            info["instance"],
            sts_token=credentials["security_token"],
            logger_name=CLIENT_LOGGER,
        )
        create(remote, "from_cli", [("k", "INTEGER")])
        assert remote.list_table() == ("from_cli",)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert (tmp_path / "tablestore.sqlite3").exists()
