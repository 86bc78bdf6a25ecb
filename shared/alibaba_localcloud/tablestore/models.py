"""State and rules of the local Tablestore: tables and rows in SQLite, conditions, limits, faults, records.

Longer than 500 lines: the Tablestore backend, moto-style: one class holding the tables and every rule the SDK
can reach (conditions, filters, ranges, batch limits, the realistic timings), each citing its source.

No HTTP and no protobuf here: ``responses.py`` authenticates and decodes a request into the dataclasses below,
calls one :class:`TablestoreBackend` method, and encodes what it returns (or the
:class:`~.exceptions.TablestoreError` it raises).

Storage: one SQLite database (``:memory:`` or ``DATA_DIR/tablestore.sqlite3``), two tables::

    ots_tables(instance, name, info JSON, auto_increment)           -- one row per table
    ots_rows(instance, tbl, k BLOB, pk JSON, cols JSON)             -- one row per Tablestore row

``k`` is an order-preserving encoding of the primary key (:func:`encode_key`), so SQLite's bytewise BLOB order
is Tablestore's row order: integers numerically (negatives first), strings and binaries bytewise, column by
column. Every operation runs under one lock in one SQLite transaction, so a conditional write's check and
write are atomic.

Semantics chosen where the real service's are unknown are marked ``ASSUMPTION:`` in the docstrings below.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from typing import Any

from .._accounts import Account, AccountRegistry
from . import exceptions as exc
from .plainbuffer import (
    OP_DELETE_ALL_VERSIONS,
    OP_DELETE_ONE_VERSION,
    OP_INCREMENT,
    TYPE_NAMES,
    VT_AUTO_INCREMENT,
    VT_BLOB,
    VT_BOOLEAN,
    VT_DOUBLE,
    VT_INF_MAX,
    VT_INF_MIN,
    VT_INTEGER,
    VT_STRING,
    Cell,
    Value,
)

API_VERSION = "2015-12-31"
DEFAULT_INSTANCE = "chatapp-local"
DATABASE_FILE = "tablestore.sqlite3"

# limits (ALIBABA-FACTS §5 and the limits page)
MAX_PK_COLUMNS = 4
MAX_PK_VALUE_BYTES = 1024
MAX_ATTRIBUTE_VALUE_BYTES = 2 * 1024 * 1024
MAX_COLUMNS_PER_WRITE = 1024
MAX_COLUMNS_TO_GET = 128
MAX_BATCH_WRITE_ROWS = 200
MAX_BATCH_WRITE_BYTES = 4 * 1024 * 1024
MAX_BATCH_GET_ROWS = 100
MAX_RANGE_ROWS = 5000
MAX_RANGE_BYTES = 4 * 1024 * 1024
MAX_REQUEST_BYTES = 5 * 1024 * 1024
# PutRow / UpdateRow: "PutRow一次操作的数据大小 4 MB", "UpdateRow一次操作的数据大小 4 MB" (general limits,
# https://alibabacloud.com/help/zh/tablestore/general-limits-of-tablestore); over it: 400 OTSParameterInvalid
# "The total data size of PutRow request exceeds the limit, limit size: {Limit} , data size: {Current}." (and
# UpdateRow), Tablestore "Error codes" page, https://www.alibabacloud.com/help/en/tablestore/developer-reference/
# error-codes ("HTTP 400 errors: batch operations").
MAX_ROW_WRITE_BYTES = 4 * 1024 * 1024
# Realistic mode (the default): the two time-dependent rules of the real service.
# - "表元数据操作QPS 10次/秒: 一个实例的表元数据操作每秒不超过10次" (general limits page above): CreateTable,
#   ListTable, DescribeTable, UpdateTable, DeleteTable, over 10 in a second per instance -> 403
#   OTSQuotaExhausted "Too frequent table operations." (error-codes page: "HTTP 403 errors", Retry: Yes; the
#   SDKs retry exactly that message: tablestore/retry.py RetryUtil.should_retry_no_matter_which_api).
# - A new table is not ready at once: "After you create a data table, wait until the data table is loaded
#   before you perform operations on the data. Otherwise, the operations will fail. This process typically
#   takes several seconds." (https://www.alibabacloud.com/help/en/tablestore/developer-reference/
#   create-table-by-python-sdk; the CreateTable API page says "in most cases ... one minute after",
#   https://alibabacloud.com/help/en/tablestore/developer-reference/createtable-of-tablestore-api); meanwhile
#   404 OTSTableNotReady "The table is not ready." (error-codes page: "HTTP 404 errors", Retry: Yes).
DEFAULT_TABLE_OPERATIONS_PER_SECOND = 10
DEFAULT_TABLE_NOT_READY_SECONDS = 2.0
DEFAULT_MAX_TABLES = 64  # ASSUMPTION: the per-instance table quota (the real default varies by account)
DEFAULT_MAX_CLOCK_SKEW = 15 * 60.0
CAPACITY_UNIT_BYTES = 4096
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

PK_TYPES = ("INTEGER", "STRING", "BINARY")
_PK_VT = {"INTEGER": VT_INTEGER, "STRING": VT_STRING, "BINARY": VT_BLOB}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")

# protobuf enum values, kept here so the rules do not depend on the wire module
IGNORE, EXPECT_EXIST, EXPECT_NOT_EXIST = 0, 1, 2
(
    CT_EQUAL,
    CT_NOT_EQUAL,
    CT_GREATER_THAN,
    CT_GREATER_EQUAL,
    CT_LESS_THAN,
    CT_LESS_EQUAL,
    CT_EXIST,
    CT_NOT_EXIST,
) = range(1, 9)
LO_NOT, LO_AND, LO_OR = 1, 2, 3
RT_NONE, RT_PK, RT_AFTER_MODIFY = 0, 1, 2
FORWARD, BACKWARD = 0, 1
CAST_INTEGER, CAST_DOUBLE, CAST_STRING = 0, 1, 3

PrimaryKey = list[tuple[str, Value]]
OutColumn = tuple[str, Value, int]
# A stored row: column name -> its versions (value, timestamp in ms), newest first, at most max_versions.
Versions = list[tuple[Value, int]]
Columns = dict[str, Versions]
OutRow = tuple[PrimaryKey, list[OutColumn]]


# --- definitions ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrimaryKeySchema:
    name: str
    type: str  # INTEGER | STRING | BINARY
    auto_increment: bool = False


@dataclass
class TableInfo:
    """A table as CreateTable defined it (plus what UpdateTable changed)."""

    name: str
    primary_key: tuple[PrimaryKeySchema, ...]
    defined_columns: tuple[tuple[str, str], ...] = ()
    time_to_live: int = -1
    max_versions: int = 1
    max_time_deviation: int = 86400
    allow_update: bool | None = None
    reserved_read: int = 0
    reserved_write: int = 0
    created_at: float = 0.0
    last_increase_time: int = 0
    last_decrease_time: int | None = None

    @property
    def pk_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.primary_key)

    def to_json(self) -> str:
        data = asdict(self)
        data["primary_key"] = [asdict(column) for column in self.primary_key]
        data["defined_columns"] = [list(column) for column in self.defined_columns]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TableInfo:
        data = json.loads(text)
        data["primary_key"] = tuple(PrimaryKeySchema(**column) for column in data["primary_key"])
        data["defined_columns"] = tuple(tuple(column) for column in data["defined_columns"])
        return cls(**data)


@dataclass(frozen=True)
class SingleColumnCondition:
    column: str
    comparator: int  # CT_*
    value: Value
    pass_if_missing: bool = True
    latest_version_only: bool = True
    regex: str | None = None
    cast_type: int | None = None


@dataclass(frozen=True)
class CompositeColumnCondition:
    operator: int  # LO_*
    conditions: tuple[ColumnCondition, ...]


ColumnCondition = SingleColumnCondition | CompositeColumnCondition


@dataclass(frozen=True)
class RowCondition:
    existence: int = IGNORE  # IGNORE | EXPECT_EXIST | EXPECT_NOT_EXIST
    column: ColumnCondition | None = None

    @property
    def is_check(self) -> bool:
        return self.existence != IGNORE or self.column is not None


@dataclass(frozen=True)
class ReadOptions:
    """What to return of a row: GetRow, each table of BatchGetRow, GetRange."""

    columns: tuple[str, ...] = ()
    filter: ColumnCondition | None = None
    max_versions: int | None = 1
    time_range: tuple[int | None, int | None, int | None] | None = None  # start, end, specific
    start_column: str | None = None
    end_column: str | None = None


@dataclass(frozen=True)
class RowChange:
    """One PutRow / UpdateRow / DeleteRow, alone or inside BatchWriteRow."""

    kind: str  # "put" | "update" | "delete"
    primary_key: PrimaryKey
    cells: tuple[Cell, ...] = ()
    condition: RowCondition = RowCondition()
    return_type: int = RT_NONE
    return_columns: tuple[str, ...] = ()
    delete_marker: bool = False


@dataclass(frozen=True)
class Consumed:
    read: int = 0
    write: int = 0


@dataclass
class RowResult:
    """The outcome of one row: a single-row call, or one item of a batch."""

    consumed: Consumed
    row: OutRow | None = None
    error: exc.TablestoreError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class RangeResult:
    consumed: Consumed
    rows: list[OutRow]
    next_start: PrimaryKey | None


# --- records and faults -----------------------------------------------------------------------------------
@dataclass
class RequestRecord:
    """One request that reached the service (admin calls excluded), accepted or refused.

    ``fault`` says what the emulator did on purpose: None, "fail" (an injected error), "timeout" (the reply was
    held back ``seconds``) or "drop" (the connection was closed without a reply). ``applied`` is whether the
    operation itself ran (for a refused request: False).
    """

    seq: int
    at: float
    api: str
    table: str | None
    tables: list[str]
    http_status: int
    error_code: str | None
    error_message: str | None
    request_id: str
    access_key_id: str | None
    fault: str | None = None
    applied: bool = False
    row_errors: int = 0

    @property
    def status(self) -> int:
        return self.http_status

    @property
    def code(self) -> str | None:
        return self.error_code

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fault:
    """A pending injected fault (see :meth:`TablestoreBackend.fail_next` / :meth:`~TablestoreBackend.timeout_next`)."""

    kind: str  # "fail" | "timeout"
    remaining: int
    error: exc.TablestoreError | None = None
    apply: bool = False
    seconds: float | None = None
    operations: frozenset[str] | None = None

    def matches(self, api: str) -> bool:
        return self.operations is None or api in self.operations


@dataclass
class _RowFault:
    remaining: int
    error: exc.TablestoreError
    tables: frozenset[str] | None


# --- values, keys, sizes ----------------------------------------------------------------------------------
def encode_key(primary_key: Sequence[tuple[str, Value]]) -> bytes:
    """An order-preserving, prefix-free encoding: bytewise order of keys is Tablestore's row order.

    Per column: INF_MIN ``00``; INF_MAX ``02``; a value ``01`` + INTEGER as 8 big-endian bytes of value + 2**63,
    or STRING (UTF-8) / BINARY with ``00`` escaped as ``00 FF`` and terminated by ``00 01``.
    """
    parts = []
    for _, (vt, v) in primary_key:
        if vt == VT_INF_MIN:
            parts.append(b"\x00")
        elif vt == VT_INF_MAX:
            parts.append(b"\x02")
        elif vt == VT_INTEGER:
            parts.append(b"\x01" + (v - INT64_MIN).to_bytes(8, "big"))
        else:
            raw = v.encode("utf-8") if vt == VT_STRING else bytes(v)
            parts.append(b"\x01" + raw.replace(b"\x00", b"\x00\xff") + b"\x00\x01")
    return b"".join(parts)


def value_size(value: Value) -> int:
    vt, v = value
    if vt in (VT_INTEGER, VT_DOUBLE):
        return 8
    if vt == VT_BOOLEAN:
        return 1
    if vt == VT_STRING:
        return len(v.encode("utf-8"))
    if vt == VT_BLOB:
        return len(v)
    return 0


def row_size(primary_key: Iterable[tuple[str, Value]], columns: Iterable[tuple[str, Value]]) -> int:
    """Data size as Tablestore bills it: names plus values, primary key and attribute columns."""
    total = 0
    for name, value in primary_key:
        total += len(name.encode("utf-8")) + value_size(value)
    for name, value in columns:
        total += len(name.encode("utf-8")) + value_size(value)
    return total


def capacity_units(size: int) -> int:
    """ASSUMPTION: 1 CU per started 4 KB, at least 1 (the documented rule for reads and writes)."""
    return max(1, math.ceil(size / CAPACITY_UNIT_BYTES))


def _value_to_json(value: Value) -> list[Any]:
    vt, v = value
    if vt == VT_BLOB:
        return [vt, base64.b64encode(v).decode("ascii")]
    return [vt, v]


def _value_from_json(data: Sequence[Any]) -> Value:
    vt, v = data[0], data[1]
    if vt == VT_BLOB:
        return Value(vt, base64.b64decode(v))
    if vt == VT_DOUBLE:
        return Value(vt, float(v))
    return Value(vt, v)


def _compare(left: Value, right: Value, comparator: int) -> bool:
    """ASSUMPTION: values of different types never match (EQUAL, NOT_EQUAL and ordering alike)."""
    if left.type != right.type:
        return False
    a, b = left.value, right.value
    if left.type == VT_STRING:
        a, b = a.encode("utf-8"), b.encode("utf-8")
    if comparator == CT_EQUAL:
        return bool(a == b)
    if comparator == CT_NOT_EQUAL:
        return bool(a != b)
    if comparator == CT_GREATER_THAN:
        return bool(a > b)
    if comparator == CT_GREATER_EQUAL:
        return bool(a >= b)
    if comparator == CT_LESS_THAN:
        return bool(a < b)
    if comparator == CT_LESS_EQUAL:
        return bool(a <= b)
    raise exc.ParameterInvalid(f"Invalid relation operator: {comparator}.")


def _transformed(condition: SingleColumnCondition, value: Value | None) -> Value | None:
    """ASSUMPTION: a regex rule applies to STRING columns; the first group (else the match) is cast; no match
    or a failed cast counts as a missing column."""
    if condition.regex is None or value is None:
        return value
    if value.type != VT_STRING:
        return None
    match = re.search(condition.regex, value.value)
    if match is None:
        return None
    text = match.group(1) if match.groups() else match.group(0)
    try:
        if condition.cast_type == CAST_INTEGER:
            return Value(VT_INTEGER, int(text))
        if condition.cast_type == CAST_DOUBLE:
            return Value(VT_DOUBLE, float(text))
    except ValueError:
        return None
    return Value(VT_STRING, text)


def matches(condition: ColumnCondition, columns: Mapping[str, Sequence[Value]]) -> bool:
    """Whether a row's columns (name -> its values, newest first) satisfy a column condition or filter.

    EXIST / NOT_EXIST test presence only; for the other comparators a missing column passes exactly when
    ``pass_if_missing`` (the wire's ``not filter_if_missing``). ``latest_version_only`` (the SDK's default)
    compares the newest version; otherwise the condition holds if any version satisfies it (ASSUMPTION, the
    reading of the SDK docs' "whether to check only the latest version").
    """
    if isinstance(condition, CompositeColumnCondition):
        results = (matches(sub, columns) for sub in condition.conditions)
        if condition.operator == LO_NOT:
            return not next(results)
        if condition.operator == LO_AND:
            return all(results)
        return any(results)
    versions = list(columns.get(condition.column) or ())
    if condition.latest_version_only:
        versions = versions[:1]
    values = [v for v in (_transformed(condition, version) for version in versions) if v is not None]
    if condition.comparator == CT_EXIST:
        return bool(values)
    if condition.comparator == CT_NOT_EXIST:
        return not values
    if not values:
        return condition.pass_if_missing
    return any(_compare(value, condition.value, condition.comparator) for value in values)


MAX_SUBCONDITIONS = 10


def _leaves(condition: ColumnCondition) -> int:
    if isinstance(condition, CompositeColumnCondition):
        return sum(_leaves(sub) for sub in condition.conditions)
    return 1


def validate_condition(condition: ColumnCondition | None, depth: int = 0) -> None:
    """NOT takes one sub-condition, AND/OR two or more (ASSUMPTION: the docs say "must be 2"; the SDKs build
    AND/OR of any number, and the service accepts them).

    At most 10 single-column conditions in all: "A filter condition can include up to 10 subconditions"
    (https://alibabacloud.com/help/en/tablestore/developer-reference/filter-by-using-python-sdk, Limits); the
    same CompositeColumnValueFilter serves conditional updates (.../compositecolumnvaluefilter). ASSUMPTION:
    the limit counts single-column conditions across the whole tree, and the error text is ours."""
    if condition is None:
        return
    if depth == 0 and _leaves(condition) > MAX_SUBCONDITIONS:
        raise exc.ParameterInvalid(f"The count of sub-conditions exceeds the max:{MAX_SUBCONDITIONS}.")
    if depth > 32:
        raise exc.ParameterInvalid("The count of filter exceeds the max:32.")
    if isinstance(condition, CompositeColumnCondition):
        if condition.operator == LO_NOT and len(condition.conditions) != 1:
            raise exc.ParameterInvalid("Invalid NOT operator: the number of sub-filters must be 1.")
        if condition.operator in (LO_AND, LO_OR) and len(condition.conditions) < 2:
            raise exc.ParameterInvalid("Invalid AND/OR operator: the number of sub-filters must be 2.")
        if condition.operator not in (LO_NOT, LO_AND, LO_OR):
            raise exc.ParameterInvalid(f"Invalid type of filter: {condition.operator}.")
        for sub in condition.conditions:
            validate_condition(sub, depth + 1)
        return
    if not CT_EQUAL <= condition.comparator <= CT_NOT_EXIST:
        raise exc.ParameterInvalid(f"Invalid relation operator: {condition.comparator}.")
    _check_column_name(condition.column)
    if condition.regex is not None:
        try:
            re.compile(condition.regex)
        except re.error:
            raise exc.ParameterInvalid(f"Invalid regex: {condition.regex}.") from None


def _check_name(name: str, what: str) -> None:
    if not _NAME_RE.fullmatch(name or ""):
        raise exc.ParameterInvalid(f"Invalid {what} name: '{name}'.")


def _check_column_name(name: str) -> None:
    if not name:
        raise exc.ParameterInvalid("invalid name of column: empty name.")
    _check_name(name, "column")


# --- the backend ------------------------------------------------------------------------------------------
class TablestoreBackend(AccountRegistry):
    """The local Tablestore service: instances, accounts, tables and rows, faults, and the request record.

    Thread-safe: one re-entrant lock around one SQLite connection; each operation is one transaction.
    ``data_dir`` keeps the database in ``DATA_DIR/tablestore.sqlite3`` (a restart keeps tables and rows);
    without it everything lives in memory. Accounts, instances, faults and the record are not persisted.

    ``clock`` drives cell timestamps, TTL, the x-ots-date skew check and the x-ots-date of replies (the SDK
    refuses a reply dated more than 15 minutes from its own clock). ``max_clock_skew=None`` turns the request
    date check off. ``seed`` makes request ids reproducible.

    ``realistic`` (default True) turns on the service's time-dependent rules: a new table answers 404
    ``OTSTableNotReady`` to data operations for ``table_not_ready_seconds`` after CreateTable (default 2 s;
    0 when not realistic), and table-metadata operations (CreateTable, ListTable, DescribeTable, UpdateTable,
    DeleteTable) are limited to ``table_operations_per_second`` per instance in any sliding second (default 10;
    None: unlimited), over it 403 ``OTSQuotaExhausted`` "Too frequent table operations.". Either value may be
    given explicitly in both modes. Sources: the constants above.
    """

    def __init__(
        self,
        *,
        data_dir: str | None = None,
        max_clock_skew: float | None = DEFAULT_MAX_CLOCK_SKEW,
        max_tables: int = DEFAULT_MAX_TABLES,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        realistic: bool = True,
        table_not_ready_seconds: float | None = None,
        table_operations_per_second: int | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.realistic = realistic
        # None: the realistic default when ``realistic``, else off (0 s / unlimited)
        self.table_not_ready_seconds = float(
            table_not_ready_seconds
            if table_not_ready_seconds is not None
            else (DEFAULT_TABLE_NOT_READY_SECONDS if realistic else 0.0)
        )
        self.table_operations_per_second = (
            table_operations_per_second
            if table_operations_per_second is not None
            else (DEFAULT_TABLE_OPERATIONS_PER_SECOND if realistic else None)
        )
        if self.table_not_ready_seconds < 0:
            raise ValueError("table_not_ready_seconds must be >= 0")
        if self.table_operations_per_second is not None and self.table_operations_per_second < 1:
            raise ValueError("table_operations_per_second must be >= 1 (or None: unlimited)")
        self._table_operations: dict[str, deque[float]] = {}
        self.data_dir = data_dir
        self.max_clock_skew = max_clock_skew
        self.max_tables = max_tables
        self.max_request_bytes = max_request_bytes
        self.clock = clock
        self._random = random.Random(seed)
        self._accounts: dict[str, Account] = {}
        self._instances: dict[str, str] = {}  # name -> region
        self.requests: list[RequestRecord] = []
        self._faults: deque[Fault] = deque()
        self._row_faults: deque[_RowFault] = deque()
        if data_dir:
            os.makedirs(data_dir, exist_ok=True)
        self._path = os.path.join(data_dir, DATABASE_FILE) if data_dir else ":memory:"
        self._connection: sqlite3.Connection | None = None
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        if self.data_dir:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript("""
            CREATE TABLE IF NOT EXISTS ots_tables (
                instance TEXT NOT NULL, name TEXT NOT NULL, info TEXT NOT NULL,
                auto_increment INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (instance, name));
            CREATE TABLE IF NOT EXISTS ots_rows (
                instance TEXT NOT NULL, tbl TEXT NOT NULL, k BLOB NOT NULL, pk TEXT NOT NULL, cols TEXT NOT NULL,
                PRIMARY KEY (instance, tbl, k)) WITHOUT ROWID;
        """)
        self._connection = connection
        return connection

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection; reopened on first use after :meth:`close` (a file database keeps its data)."""
        return self._connection if self._connection is not None else self._connect()

    # --- configuration ---------------------------------------------------------------------------------
    def add_instance(self, name: str, region_id: str = "ap-southeast-1") -> None:
        with self._lock:
            self._instances[name] = region_id

    def has_instance(self, name: str) -> bool:
        with self._lock:
            return name in self._instances

    def instance_region(self, name: str) -> str | None:
        with self._lock:
            return self._instances.get(name)

    # --- fault injection --------------------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        code: str = "OTSServerBusy",
        status: int | None = None,
        operations: Iterable[str] | None = None,
        message: str | None = None,
        apply: bool = False,
    ) -> None:
        """The next ``n`` authenticated, well-formed requests (of the given API names, e.g. ``["UpdateRow"]``;
        all by default) fail with ``code``; ``status`` and ``message`` default to the code's documented ones
        (OTSServerBusy: 503 "Server is busy."; an unknown code: 500). ``apply=False``: the operation does not
        run; ``apply=True``: it runs (its writes land) and the error replaces its reply — an ambiguous
        failure, like a real OTSTimeout."""
        error = exc.error_for(code, message, status)
        with self._lock:
            self._faults.append(
                Fault(
                    "fail",
                    n,
                    error=error,
                    apply=apply,
                    operations=frozenset(operations) if operations else None,
                )
            )

    def timeout_next(
        self,
        n: int = 1,
        seconds: float | None = None,
        *,
        apply: bool = True,
        operations: Iterable[str] | None = None,
    ) -> None:
        """The next ``n`` authenticated, well-formed requests (optionally only of ``operations``) get no timely
        reply.

        ``seconds=None``: the connection is closed without a reply (the client sees a dropped connection);
        ``seconds=S``: the reply is held back S seconds (beyond the client's socket timeout it sees a read
        timeout). ``apply=True`` (default): the operation runs first, so a write lands although the client
        never learns it — the ambiguous case; ``apply=False``: it does not run (a held reply is then
        ``503 OTSTimeout``). Either way the SDK raises a urllib3 error, which its retry policy does not retry.
        """
        with self._lock:
            self._faults.append(
                Fault(
                    "timeout",
                    n,
                    apply=apply,
                    seconds=seconds,
                    operations=frozenset(operations) if operations else None,
                )
            )

    def fail_rows_next(
        self,
        n: int = 1,
        code: str = "OTSServerBusy",
        message: str | None = None,
        tables: Iterable[str] | None = None,
    ) -> None:
        """The next ``n`` rows written by BatchWriteRow (optionally only in ``tables``) fail alone with
        ``code`` (a row-level error; the request and its other rows succeed; nothing of that row is written)."""
        error = exc.error_for(code, message)
        with self._lock:
            self._row_faults.append(_RowFault(n, error, frozenset(tables) if tables else None))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._row_faults.clear()

    def take_fault(self, api: str) -> Fault | None:
        """The fault for this request, if one is pending (consumes one of its ``n``)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(api):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return replace(fault, remaining=1)
        return None

    def _take_row_fault(self, table: str) -> exc.TablestoreError | None:
        for fault in self._row_faults:
            if fault.tables is None or table in fault.tables:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._row_faults.remove(fault)
                return fault.error
        return None

    # --- the record -------------------------------------------------------------------------------------
    def new_request_id(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def record(
        self,
        *,
        api: str,
        tables: Sequence[str],
        http_status: int,
        error_code: str | None,
        error_message: str | None,
        request_id: str,
        access_key_id: str | None,
        fault: str | None = None,
        applied: bool = False,
        row_errors: int = 0,
    ) -> RequestRecord:
        with self._lock:
            entry = RequestRecord(
                seq=len(self.requests) + 1,
                at=self.clock(),
                api=api,
                table=tables[0] if tables else None,
                tables=list(tables),
                http_status=http_status,
                error_code=error_code,
                error_message=error_message,
                request_id=request_id,
                access_key_id=access_key_id,
                fault=fault,
                applied=applied,
                row_errors=row_errors,
            )
            self.requests.append(entry)
            return entry

    def snapshot_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [entry.to_dict() for entry in self.requests]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            by_api: dict[str, int] = {}
            codes: dict[str, int] = {}
            for entry in self.requests:
                by_api[entry.api] = by_api.get(entry.api, 0) + 1
                code = entry.error_code or "OK"
                codes[code] = codes.get(code, 0) + 1
            return {
                "requests": len(self.requests),
                "by_api": by_api,
                "codes": codes,
                "pending_faults": len(self._faults) + len(self._row_faults),
            }

    def reset(self) -> None:
        """A fresh service: every table and row (of every instance, on disk too), the record and pending faults
        are gone. Accounts, instances and configuration are kept."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM ots_rows")
            self._db.execute("DELETE FROM ots_tables")
            self.requests = []
            self._faults.clear()
            self._row_faults.clear()
            self._table_operations.clear()

    def close(self) -> None:
        """Close the database (it is reopened on the next use; an in-memory one then starts empty)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __del__(self) -> None:  # an unclosed sqlite3 connection warns on newer Pythons
        connection = getattr(self, "_connection", None)
        if connection is not None:
            with suppress(Exception):
                connection.close()

    # --- inspection (tests) -----------------------------------------------------------------------------
    def table_names(self, instance: str | None = None) -> list[str]:
        with self._lock:
            return [
                name
                for (name,) in self._db.execute(
                    "SELECT name FROM ots_tables WHERE instance=? ORDER BY name", (self._instance(instance),)
                )
            ]

    def rows(self, table: str, instance: str | None = None) -> list[dict[str, Any]]:
        """Every row of ``table`` in primary-key order: ``{"primary_key": {...}, "columns": {...}}`` (values
        as Python values; BINARY as bytes)."""
        with self._lock:
            instance = self._instance(instance)
            self._table(instance, table)
            result = []
            for pk_text, cols_text in self._db.execute(
                "SELECT pk, cols FROM ots_rows WHERE instance=? AND tbl=? ORDER BY k", (instance, table)
            ):
                pk, columns = _load_pk(pk_text), _load_columns(cols_text)
                result.append(
                    {
                        "primary_key": {name: value.value for name, value in pk},
                        "columns": {name: versions[0][0].value for name, versions in sorted(columns.items())},
                    }
                )
            return result

    def row_count(self, table: str, instance: str | None = None) -> int:
        with self._lock:
            instance = self._instance(instance)
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM ots_rows WHERE instance=? AND tbl=?", (instance, table)
            ).fetchone()
            return int(count)

    def _instance(self, instance: str | None) -> str:
        if instance is not None:
            return instance
        if len(self._instances) == 1:
            return next(iter(self._instances))
        raise ValueError("several instances are registered: name one")

    # --- tables -----------------------------------------------------------------------------------------
    def _admit_table_operation(self, instance: str) -> None:
        """The per-instance limit on table-metadata operations (see the module constants for the source).

        ASSUMPTIONS (no source says): the window is any sliding second; an operation is counted when admitted,
        before its own checks (a CreateTable that then fails still counts); a refused one is not counted, so
        a client that backs off gets through."""
        limit = self.table_operations_per_second
        if limit is None:
            return
        with self._lock:
            now = self.clock()
            window = self._table_operations.setdefault(instance, deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                raise exc.QuotaExhausted("Too frequent table operations.")
            window.append(now)

    def table_ready_at(self, info: TableInfo) -> float:
        """When a table's data operations stop answering OTSTableNotReady."""
        return info.created_at + self.table_not_ready_seconds

    def create_table(self, instance: str, info: TableInfo, *, has_indexes: bool = False) -> None:
        self._admit_table_operation(instance)
        _check_name(info.name, "table")
        if not 1 <= len(info.primary_key) <= MAX_PK_COLUMNS:
            raise exc.ParameterInvalid(
                f"The number of primary key columns must be in range: [1, {MAX_PK_COLUMNS}]."
            )
        seen: set[str] = set()
        for position, column in enumerate(info.primary_key):
            _check_name(column.name, "column")
            if column.name in seen:
                raise exc.ParameterInvalid(f"Duplicated primary key name: '{column.name}'.")
            seen.add(column.name)
            if column.type not in PK_TYPES:
                raise exc.ParameterInvalid(f"{column.type} is an invalid type for the primary key.")
            if column.auto_increment:
                if column.type != "INTEGER":
                    raise exc.ParameterInvalid("AUTO_INCREMENT primary key must be integer.")
                if position == 0:
                    raise exc.ParameterInvalid(
                        f"First primary key can't be auto increment, table: {info.name}."
                    )
        if sum(column.auto_increment for column in info.primary_key) > 1:
            raise exc.ParameterInvalid("AUTO_INCREMENT primary key count must <= 1.")
        if len(info.defined_columns) > 32:
            raise exc.ParameterInvalid("The number of defined columns must be in range: [0, 32].")
        for name, _ in info.defined_columns:
            _check_name(name, "column")
            if name in seen:
                raise exc.ParameterInvalid(
                    f"Duplicated attribute column name with primary key column: {name}."
                )
        _check_table_options(info.time_to_live, info.max_versions, info.max_time_deviation)
        if info.reserved_read < 0 or info.reserved_write < 0:
            raise exc.ParameterInvalid(
                f"Invalid Capacity Unit:({info.reserved_read}, {info.reserved_write}). "
                "Capacity Unit must be nonnegative."
            )
        if has_indexes:  # a limitation of the emulator, not of the service
            raise exc.ParameterInvalid("Secondary indexes are not supported by the local Tablestore.")
        with self._lock, self._transaction():
            if self._find_table(instance, info.name) is not None:
                raise exc.ObjectAlreadyExist()
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM ots_tables WHERE instance=?", (instance,)
            ).fetchone()
            if count >= self.max_tables:
                raise exc.QuotaExhausted("Number of tables exceeded the quota.")
            now = self.clock()
            info = replace(info, created_at=now, last_increase_time=int(now), last_decrease_time=None)
            self._db.execute(
                "INSERT INTO ots_tables (instance, name, info) VALUES (?, ?, ?)",
                (instance, info.name, info.to_json()),
            )

    def describe_table(self, instance: str, name: str) -> TableInfo:
        """ASSUMPTION: DescribeTable (and ListTable) answer for a table that is not ready yet, as metadata."""
        self._admit_table_operation(instance)
        with self._lock:
            return self._table(instance, name)

    def list_tables(self, instance: str) -> list[str]:
        self._admit_table_operation(instance)
        with self._lock:
            return self.table_names(instance)

    def delete_table(self, instance: str, name: str) -> None:
        self._admit_table_operation(instance)
        with self._lock, self._transaction():
            self._table(instance, name)
            self._db.execute("DELETE FROM ots_rows WHERE instance=? AND tbl=?", (instance, name))
            self._db.execute("DELETE FROM ots_tables WHERE instance=? AND name=?", (instance, name))

    def update_table(
        self,
        instance: str,
        name: str,
        *,
        reserved: tuple[int | None, int | None] | None,
        options: dict[str, Any] | None,
    ) -> TableInfo:
        self._admit_table_operation(instance)
        with self._lock, self._transaction():
            info = self._table(instance, name)
            now = int(self.clock())
            if reserved is not None:
                read, write = reserved
                if (read is not None and read < 0) or (write is not None and write < 0):
                    raise exc.ParameterInvalid(
                        f"Invalid Capacity Unit for UpdateTable: Either read({read}) or write({write}) "
                        "should be non-negative."
                    )
                new_read = info.reserved_read if read is None else read
                new_write = info.reserved_write if write is None else write
                if new_read > info.reserved_read or new_write > info.reserved_write:
                    info.last_increase_time = now
                if new_read < info.reserved_read or new_write < info.reserved_write:
                    info.last_decrease_time = now
                info.reserved_read, info.reserved_write = new_read, new_write
            if options:
                ttl = options.get("time_to_live", info.time_to_live)
                versions = options.get("max_versions", info.max_versions)
                deviation = options.get("max_time_deviation", info.max_time_deviation)
                _check_table_options(ttl, versions, deviation)
                info.time_to_live, info.max_versions, info.max_time_deviation = ttl, versions, deviation
                if "allow_update" in options:
                    info.allow_update = options["allow_update"]
            self._db.execute(
                "UPDATE ots_tables SET info=? WHERE instance=? AND name=?", (info.to_json(), instance, name)
            )
            return info

    # --- single rows ------------------------------------------------------------------------------------
    def get_row(self, instance: str, table: str, primary_key: PrimaryKey, options: ReadOptions) -> RowResult:
        with self._lock:
            info = self._data_table(instance, table)
            _check_read_options(options)
            key_values = self._checked_pk(info, primary_key, purpose="read")
            stored = self._load(instance, info, encode_key(key_values))
            out = self._project(info, key_values, stored, options)
            size = row_size(key_values, ((n, v) for n, v, _ in out[1])) if out else row_size(key_values, ())
            return RowResult(Consumed(read=capacity_units(size)), out)

    def write_row(self, instance: str, table: str, change: RowChange) -> RowResult:
        """PutRow, UpdateRow or DeleteRow (``change.kind``); raises on any failure."""
        with self._lock, self._transaction():
            info = self._data_table(instance, table)
            result = self._write(instance, info, change)
        return result

    # --- batches ------------------------------------------------------------------------------------------
    def batch_get_row(
        self, instance: str, tables: Sequence[tuple[str, Sequence[PrimaryKey], ReadOptions]]
    ) -> list[list[RowResult]]:
        """ASSUMPTION: a table that does not exist fails the whole request (404), as in BatchWriteRow."""
        if not tables:
            raise exc.ParameterInvalid("No row specified in the request of BatchGetRow.")
        _check_duplicate_tables([name for name, _, _ in tables])
        total = sum(len(keys) for _, keys, _ in tables)
        if total > MAX_BATCH_GET_ROWS:
            raise exc.ParameterInvalid(f"Rows count exceeds the upper limit: {MAX_BATCH_GET_ROWS}.")
        with self._lock:
            infos = [self._data_table(instance, name) for name, _, _ in tables]
            results: list[list[RowResult]] = []
            for info, (_, keys, options) in zip(infos, tables, strict=True):
                _check_read_options(options)
                table_results = []
                for key in keys:
                    try:
                        key_values = self._checked_pk(info, key, purpose="read")
                        stored = self._load(instance, info, encode_key(key_values))
                        out = self._project(info, key_values, stored, options)
                        size = row_size(key_values, ((n, v) for n, v, _ in out[1])) if out else 0
                        table_results.append(RowResult(Consumed(read=capacity_units(size)), out))
                    except exc.TablestoreError as error:
                        table_results.append(RowResult(Consumed(), None, error))
                results.append(table_results)
            return results

    def batch_write_row(
        self, instance: str, tables: Sequence[tuple[str, Sequence[RowChange]]]
    ) -> list[list[RowResult]]:
        """Per-row results, not atomic: a row that fails (condition, bad key, injected row fault) changes
        nothing and the others are applied. Only request-level problems (limits, unknown tables, no rows)
        fail the whole request."""
        if not tables:
            raise exc.ParameterInvalid("No row is specified in BatchWriteRow.")
        _check_duplicate_tables([name for name, _ in tables])
        for name, changes in tables:
            if not changes:
                raise exc.ParameterInvalid(f"No operation is specified for table: '{name}'.")
        total = sum(len(changes) for _, changes in tables)
        if total > MAX_BATCH_WRITE_ROWS:
            raise exc.ParameterInvalid(f"Rows count exceeds the upper limit: {MAX_BATCH_WRITE_ROWS}.")
        size = sum(
            row_size(
                change.primary_key,
                ((cell.name, cell.value) for cell in change.cells if cell.value is not None),
            )
            for _, changes in tables
            for change in changes
        )
        if size > MAX_BATCH_WRITE_BYTES:
            raise exc.ParameterInvalid(
                "The total data size of BatchWriteRow request exceeds the limit, "
                f"limit size: {MAX_BATCH_WRITE_BYTES}, data size: {size}."
            )
        with self._lock, self._transaction():
            infos = [self._data_table(instance, name) for name, _ in tables]
            for info, (_, changes) in zip(infos, tables, strict=True):
                _check_repeated_rows(info, changes)
            results: list[list[RowResult]] = []
            for info, (name, changes) in zip(infos, tables, strict=True):
                table_results = []
                for change in changes:
                    injected = self._take_row_fault(name)
                    if injected is not None:
                        table_results.append(RowResult(Consumed(), None, injected))
                        continue
                    try:  # _write checks everything before it writes: a refused row leaves no trace
                        table_results.append(self._write(instance, info, change))
                    except exc.TablestoreError as error:
                        consumed = (
                            Consumed(read=1) if isinstance(error, exc.ConditionCheckFail) else Consumed()
                        )
                        table_results.append(RowResult(consumed, None, error))
                results.append(table_results)
            return results

    # --- ranges -------------------------------------------------------------------------------------------
    def get_range(
        self,
        instance: str,
        table: str,
        direction: int,
        start: PrimaryKey,
        end: PrimaryKey,
        options: ReadOptions,
        limit: int | None = None,
    ) -> RangeResult:
        """Rows in ``[start, end)`` (FORWARD) or ``[start, end)`` walking down (BACKWARD: start >= key > end), at
        most ``limit`` rows and at most 5,000 rows / 4 MB scanned per call; ``next_start`` is where the next
        call starts (None when the range is exhausted).

        ASSUMPTION: rows dropped by a filter or by ``columns_to_get`` count against the 5,000-row / 4 MB scan
        budget but not against ``limit``.
        """
        if limit is not None and limit <= 0:
            raise exc.ParameterInvalid("The limit must be greater than 0.")
        if direction not in (FORWARD, BACKWARD):
            raise exc.ParameterInvalid(f"Invalid direction: {direction}.")
        with self._lock:
            info = self._data_table(instance, table)
            _check_read_options(options)
            start_values = self._checked_pk(info, start, purpose="range")
            end_values = self._checked_pk(info, end, purpose="range")
            low, high = encode_key(start_values), encode_key(end_values)
            if direction == FORWARD and not low < high:
                raise exc.ParameterInvalid("Begin key must less than end key in FORWARD")
            if direction == BACKWARD and not low > high:
                raise exc.ParameterInvalid("Begin key must more than end key in BACKWARD")
            if direction == FORWARD:
                sql = (
                    "SELECT pk, cols FROM ots_rows WHERE instance=? AND tbl=? AND k>=? AND k<? ORDER BY k ASC"
                )
            else:
                sql = "SELECT pk, cols FROM ots_rows WHERE instance=? AND tbl=? AND k<=? AND k>? ORDER BY k DESC"
            cursor = self._db.execute(sql, (instance, table, low, high))
            rows: list[OutRow] = []
            scanned = scanned_bytes = 0
            next_start: PrimaryKey | None = None
            try:
                for pk_text, cols_text in cursor:
                    key_values = _load_pk(pk_text)
                    if (limit is not None and len(rows) >= limit) or scanned >= MAX_RANGE_ROWS:
                        next_start = key_values
                        break
                    stored = self._visible(info, _load_columns(cols_text))
                    out = self._project(info, key_values, stored, options)
                    size = (
                        row_size(key_values, ((n, v) for n, v, _ in out[1]))
                        if out
                        else row_size(key_values, ())
                    )
                    if scanned and scanned_bytes + size > MAX_RANGE_BYTES:
                        next_start = key_values
                        break
                    scanned += 1
                    scanned_bytes += size
                    if out is not None:
                        rows.append(out)
            finally:
                cursor.close()
            return RangeResult(Consumed(read=capacity_units(scanned_bytes)), rows, next_start)

    # --- internals: tables ----------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._db.in_transaction:  # nested call under the same lock: part of the outer transaction
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _find_table(self, instance: str, name: str) -> TableInfo | None:
        found = self._db.execute(
            "SELECT info FROM ots_tables WHERE instance=? AND name=?", (instance, name)
        ).fetchone()
        return TableInfo.from_json(found[0]) if found else None

    def _table(self, instance: str, name: str) -> TableInfo:
        info = self._find_table(instance, name)
        if info is None:
            raise exc.ObjectNotExist()
        return info

    def _data_table(self, instance: str, name: str) -> TableInfo:
        """The table for a data operation: it exists and is ready (see ``table_not_ready_seconds``).

        ASSUMPTION: in BatchGetRow/BatchWriteRow a table that is not ready fails the whole request (404), as a
        missing one does here."""
        info = self._table(instance, name)
        if self.clock() < self.table_ready_at(info):
            raise exc.TableNotReady()
        return info

    # --- internals: rows ------------------------------------------------------------------------------------
    def _checked_pk(self, info: TableInfo, primary_key: PrimaryKey, *, purpose: str) -> PrimaryKey:
        """The key checked against the schema. ``purpose``: read | range | put | update | delete."""
        schema = info.primary_key
        if len(primary_key) != len(schema):
            raise exc.InvalidPK(f"Validate PK size fail. Input: {len(primary_key)}, Meta: {len(schema)}.")
        checked: PrimaryKey = []
        for (name, value), column in zip(primary_key, schema, strict=True):
            if name != column.name:
                raise exc.InvalidPK(f"Validate PK name fail. Input: {name}, Meta: {column.name}.")
            if value.type in (VT_INF_MIN, VT_INF_MAX):
                if purpose != "range":
                    raise exc.ParameterInvalid(
                        f"INF_MIN or INF_MAX can only be used in a range, primary key name: {name}."
                    )
            elif value.type == VT_AUTO_INCREMENT:
                if purpose in ("read", "range"):
                    raise exc.ParameterInvalid("PKAutoIncr can't be used for read operations.")
                if purpose == "delete":
                    raise exc.ParameterInvalid("Invalid row to delete which with pk auto increment.")
                if purpose == "update":
                    raise exc.ParameterInvalid("PKAutoIncr can't be used for update operations.")
                if not column.auto_increment:
                    raise exc.ParameterInvalid(f"Column {name} is not an auto increment primary key.")
            elif value.type != _PK_VT[column.type]:
                raise exc.InvalidPK(
                    f"Validate PK type fail. Input: VT_{TYPE_NAMES.get(value.type, value.type)}, "
                    f"Meta: VT_{column.type}."
                )
            elif value.type in (VT_STRING, VT_BLOB):
                length = value_size(value)
                if length > MAX_PK_VALUE_BYTES:
                    raise exc.ParameterInvalid(
                        f"The length of primary key column: {name} exceeds the MaxLength: {MAX_PK_VALUE_BYTES} "
                        f"with CurrentLength: {length}."
                    )
            checked.append((name, value))
        return checked

    def _load(self, instance: str, info: TableInfo, key: bytes) -> Columns | None:
        found = self._db.execute(
            "SELECT cols FROM ots_rows WHERE instance=? AND tbl=? AND k=?", (instance, info.name, key)
        ).fetchone()
        if found is None:
            return None
        return self._visible(info, _load_columns(found[0]))

    def _visible(self, info: TableInfo, columns: Columns) -> Columns | None:
        """Versions past the table's time to live are gone, and so are those beyond its max_versions (after an
        UpdateTable lowered it); a row whose every version is gone is gone (a row put without attribute
        columns has none to lose and stays)."""
        if not columns:
            return columns
        horizon = (int(self.clock() * 1000) - info.time_to_live * 1000) if info.time_to_live != -1 else None
        alive: Columns = {}
        for name, versions in columns.items():
            kept = [cell for cell in versions if horizon is None or cell[1] >= horizon][: info.max_versions]
            if kept:
                alive[name] = kept
        return alive or None

    def _project(
        self, info: TableInfo, primary_key: PrimaryKey, stored: Columns | None, options: ReadOptions
    ) -> OutRow | None:
        """What a read returns of a stored row, or None.

        ASSUMPTIONS: attribute columns come back sorted by name; a filter sees only the columns
        ``columns_to_get`` selects (as the docs advise, include the filtered column); a row none of whose
        requested attribute columns exists is not returned unless a primary-key name was requested; the
        versions of a column come newest first, at most ``max_versions`` of those in the time range.
        """
        if stored is None:
            return None
        wanted = set(options.columns)
        pk_requested = bool(wanted & set(info.pk_names))
        selected: list[OutColumn] = []
        seen: dict[str, list[Value]] = {}
        for name in sorted(stored, key=lambda n: n.encode("utf-8")):
            if wanted and name not in wanted:
                continue
            if options.start_column is not None and name < options.start_column:
                continue
            if options.end_column is not None and name >= options.end_column:
                continue
            taken = 0
            for value, timestamp in stored[name]:
                if options.time_range is not None:
                    start, end, specific = options.time_range
                    if specific is not None and timestamp != specific:
                        continue
                    if start is not None and timestamp < start:
                        continue
                    if end is not None and timestamp >= end:
                        continue
                if options.max_versions is not None and taken >= options.max_versions:
                    break
                taken += 1
                selected.append((name, value, timestamp))
                seen.setdefault(name, []).append(value)
        if options.filter is not None and not matches(options.filter, seen):
            return None
        if wanted and not selected and not pk_requested:
            return None
        return primary_key, selected

    def _write(self, instance: str, info: TableInfo, change: RowChange) -> RowResult:
        """One row change inside the caller's transaction; raises on failure, having written nothing (every
        check comes before the first write; only an auto-increment counter may have moved)."""
        purpose = change.kind
        key_values = self._checked_pk(info, change.primary_key, purpose=purpose)
        validate_condition(change.condition.column)
        now_ms = int(self.clock() * 1000)
        auto = [i for i, (_, value) in enumerate(key_values) if value.type == VT_AUTO_INCREMENT]
        if auto:
            if change.condition.existence != IGNORE:
                raise exc.ParameterInvalid(
                    f"Invalid expect:{_EXPECTATION_NAMES[change.condition.existence]} when modify row with pk "
                    "auto increment."
                )
            if change.condition.column is not None:
                raise exc.ParameterInvalid("Can't set condition when modify row with pk auto increment.")
            key_values = list(key_values)
            for position in auto:
                key_values[position] = (
                    key_values[position][0],
                    Value(VT_INTEGER, self._next_auto(instance, info)),
                )
        if change.kind in ("put", "update") and change.delete_marker:
            raise exc.ParameterInvalid(
                "Invalid request of put/update row: unexpected RowDeleteMarker in request."
            )
        new_columns = None
        if change.kind == "put":
            new_columns = _put_columns(info, change.cells, now_ms)
        elif change.kind == "update":
            _check_update_cells(info, change.cells, now_ms)
        if change.kind in ("put", "update"):
            data_size = row_size(
                key_values, ((cell.name, cell.value) for cell in change.cells if cell.value is not None)
            )
            if data_size > MAX_ROW_WRITE_BYTES:
                api = "PutRow" if change.kind == "put" else "UpdateRow"
                raise exc.ParameterInvalid(
                    f"The total data size of {api} request exceeds the limit, limit size: {MAX_ROW_WRITE_BYTES} , "
                    f"data size: {data_size}."
                )
        else:
            if not change.delete_marker:
                raise exc.ParameterInvalid(
                    "Invalid request of delete row: missing RowDeleteMarker in request."
                )
            if change.cells:
                raise exc.ParameterInvalid("Invalid delete row request: unexpected cells in request.")
        key = encode_key(key_values)
        needs_current = (
            change.kind != "put" or change.condition.is_check or change.return_type == RT_AFTER_MODIFY
        )
        current = self._load(instance, info, key) if needs_current else None
        read_cu = 0
        if change.condition.is_check:
            read_cu = 1
            _check_row_condition(change.condition, current)
        write_size = row_size(key_values, ())
        if change.kind == "put":
            assert new_columns is not None
            self._store(instance, info, key, key_values, new_columns)
            write_size = row_size(
                key_values, ((n, v) for n, versions in new_columns.items() for v, _ in versions)
            )
            after: Columns | None = new_columns
        elif change.kind == "update":
            after = _apply_update(
                {n: list(v) for n, v in (current or {}).items()}, change.cells, now_ms, info.max_versions
            )
            write_size = row_size(
                key_values, ((c.name, c.value) for c in change.cells if c.value is not None)
            )
            if after:
                self._store(instance, info, key, key_values, after)
            elif current is not None:
                # ASSUMPTION: a row left without attribute columns by UpdateRow no longer exists
                self._delete(instance, info, key)
        else:
            if current is not None:
                self._delete(instance, info, key)
            after = None
        returned: OutRow | None = None
        if change.return_type == RT_PK:
            returned = (key_values, [])
        elif change.return_type == RT_AFTER_MODIFY:
            wanted = set(change.return_columns)
            returned = (
                key_values,
                [
                    (n, versions[0][0], versions[0][1])
                    for n, versions in sorted((after or {}).items())
                    if not wanted or n in wanted
                ],
            )
        elif change.return_type != RT_NONE:
            raise exc.ParameterInvalid(f"Invalid return type: {change.return_type}.")
        return RowResult(Consumed(read=read_cu, write=capacity_units(write_size)), returned)

    def _store(
        self, instance: str, info: TableInfo, key: bytes, primary_key: PrimaryKey, columns: Columns
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO ots_rows (instance, tbl, k, pk, cols) VALUES (?, ?, ?, ?, ?)",
            (instance, info.name, key, _dump_pk(primary_key), _dump_columns(columns)),
        )

    def _delete(self, instance: str, info: TableInfo, key: bytes) -> None:
        self._db.execute(
            "DELETE FROM ots_rows WHERE instance=? AND tbl=? AND k=?", (instance, info.name, key)
        )

    def _next_auto(self, instance: str, info: TableInfo) -> int:
        """ASSUMPTION: auto-increment values are unique and increasing per table, microsecond-clock based
        (the real ones are per partition and also time-based)."""
        (last,) = self._db.execute(
            "SELECT auto_increment FROM ots_tables WHERE instance=? AND name=?", (instance, info.name)
        ).fetchone()
        value = max(int(last) + 1, int(self.clock() * 1_000_000))
        self._db.execute(
            "UPDATE ots_tables SET auto_increment=? WHERE instance=? AND name=?", (value, instance, info.name)
        )
        return value


_EXPECTATION_NAMES = {IGNORE: "IGNORE", EXPECT_EXIST: "EXPECT_EXIST", EXPECT_NOT_EXIST: "EXPECT_NOT_EXIST"}


# --- pure rules ----------------------------------------------------------------------------------------------
def _check_table_options(ttl: int, max_versions: int, deviation: int) -> None:
    """ASSUMPTION: a TTL between 1 and 86,399 s is refused like 0 (the docs: -1 or at least 86,400)."""
    if ttl == 0 or ttl < -1 or 0 < ttl < 86400:
        raise exc.ParameterInvalid("TimeToLive cannot be 0 or less than -1.")
    if max_versions <= 0:
        raise exc.ParameterInvalid("The maximum versions cannot be less than or equal to 0.")
    if deviation <= 0 or deviation > INT64_MAX // 1_000_000:
        raise exc.ParameterInvalid("The maximum deviation must be in range [0, INT64_MAX/1000000].")


def _check_read_options(options: ReadOptions) -> None:
    if len(options.columns) > MAX_COLUMNS_TO_GET:
        raise exc.ParameterInvalid(
            f"The number of columns from the request exceeds the limit, limit count: {MAX_COLUMNS_TO_GET}, "
            f"column count: {len(options.columns)}."
        )
    for name in options.columns:
        _check_column_name(name)
    if options.max_versions is None and options.time_range is None:
        raise exc.ParameterInvalid("No version condition is specified while querying row.")
    if options.max_versions is not None and options.max_versions <= 0:
        raise exc.ParameterInvalid(
            f"Invalid max versions: {options.max_versions}. Reason: Max versions must be positive."
        )
    if options.time_range is not None:
        start, end, specific = options.time_range
        if specific is not None and (start is not None or end is not None):
            raise exc.ParameterInvalid("Specific tiemstamp and time range cannot be given at the same time.")
        if specific is None and (start is None) != (end is None):
            raise exc.ParameterInvalid("Start and end time must be given at the same time.")
    validate_condition(options.filter)


def _check_duplicate_tables(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise exc.ParameterInvalid(f"Duplicated table name: '{name}'.")
        seen.add(name)


def _check_repeated_rows(info: TableInfo, changes: Sequence[RowChange]) -> None:
    """Repeated rows in one table are allowed, but not with conditions (documented messages).
    ASSUMPTION: they are applied in request order."""
    seen: dict[bytes, RowChange] = {}
    for change in changes:
        if any(value.type not in (VT_INTEGER, VT_STRING, VT_BLOB) for _, value in change.primary_key):
            continue  # refused on its own later
        key = encode_key(change.primary_key)
        if key in seen:
            for repeated in (seen[key], change):
                if repeated.condition.existence != IGNORE:
                    raise exc.ParameterInvalid(
                        "Repeated rows do not support row exist expectation check in BatchModify."
                    )
                if repeated.condition.column is not None:
                    raise exc.ParameterInvalid(
                        "Repeated rows do not support row condition check in BatchModify."
                    )
        seen[key] = change


def _check_row_condition(condition: RowCondition, current: Columns | None) -> None:
    """The row existence expectation first, then the column condition ("Tablestore first checks the row
    existence condition", conditional update pages, e.g.
    https://alibabacloud.com/help/en/tablestore/developer-reference/configure-conditional-update-by-using-python-sdk).

    ASSUMPTION (the docs are silent on a column condition over a row that does not exist, under IGNORE): every
    column of a missing row is missing, so ``pass_if_missing`` decides ("whether the condition check passes when
    the column does not exist in the row", default true: https://help.aliyun.com/document_detail/145462.htm).
    A forward-only upsert relies on it (store/receipts_tablestore.py). Not the strict choice, knowingly: failing
    instead would make such a write never create its row; one UpdateRow on a missing row of the real service
    settles it (to verify before production; ``test_forward_only_upsert_in_batch_write`` pins this reading)."""
    if condition.existence == EXPECT_EXIST and current is None:
        raise exc.ConditionCheckFail()
    if condition.existence == EXPECT_NOT_EXIST and current is not None:
        raise exc.ConditionCheckFail()
    if condition.existence not in _EXPECTATION_NAMES:
        raise exc.ParameterInvalid(f"Invalid row-existence expectation: {condition.existence}.")
    if condition.column is not None:
        values = {name: [value for value, _ in versions] for name, versions in (current or {}).items()}
        if not matches(condition.column, values):
            raise exc.ConditionCheckFail()


def _check_attribute(info: TableInfo, cell: Cell, now_ms: int) -> None:
    _check_column_name(cell.name)
    if cell.name in info.pk_names:
        raise exc.ParameterInvalid(f"Duplicated attribute column name with primary key column: {cell.name}.")
    if cell.value is not None:
        if cell.value.type not in (VT_INTEGER, VT_DOUBLE, VT_BOOLEAN, VT_STRING, VT_BLOB):
            raise exc.ParameterInvalid(
                f"{TYPE_NAMES.get(cell.value.type, cell.value.type)} is an invalid type for the attribute column."
            )
        size = value_size(cell.value)
        if size > MAX_ATTRIBUTE_VALUE_BYTES:
            raise exc.ParameterInvalid(
                f"The length of attribute column: {cell.name} exceeded the MaxLength:{MAX_ATTRIBUTE_VALUE_BYTES} "
                f"with Current Length:{size}."
            )
    if cell.timestamp is not None and cell.op is None:
        if cell.timestamp < 0:
            raise exc.ParameterInvalid(f"Invalid cell timestamp: {cell.timestamp}.")
        deviation_ms = info.max_time_deviation * 1000
        low = now_ms - deviation_ms
        if info.time_to_live != -1:
            low = max(low, now_ms - info.time_to_live * 1000)
        if not low <= cell.timestamp < now_ms + deviation_ms:
            raise exc.ParameterInvalid(f"Invalid timestamp. Cell:{cell.name}.")


def _put_columns(info: TableInfo, cells: Sequence[Cell], now_ms: int) -> Columns:
    """The row a PutRow writes: it replaces every version of every column of an existing row ("if the row
    exists, Tablestore deletes all versions of data in all columns from the existing row, and then writes new
    data": Write data, https://www.alibabacloud.com/help/en/tablestore/developer-reference/
    write-data-by-using-python-sdk). Cells of one
    column with different timestamps are versions of it, at most ``max_versions`` newest kept.
    ASSUMPTION: a PutRow without attribute columns is allowed and makes a row of only its primary key."""
    if len(cells) > MAX_COLUMNS_PER_WRITE:
        raise exc.ParameterInvalid(
            f"The number of attribute columns exceeds the limit, limit count:{MAX_COLUMNS_PER_WRITE}, "
            f"column count: {len(cells)}."
        )
    columns: Columns = {}
    for cell in cells:
        if cell.op is not None:
            raise exc.ParameterInvalid(f"OpType cannot be given for column name:{cell.name} in PutRow.")
        if cell.value is None:
            raise exc.ParameterInvalid("Invalid request of put row: find cells without values.")
        _check_attribute(info, cell, now_ms)
        timestamp = cell.timestamp if cell.timestamp is not None else now_ms
        _add_version(columns, cell.name, cell.value, timestamp, info.max_versions)
    return columns


def _add_version(columns: Columns, name: str, value: Value, timestamp: int, max_versions: int) -> None:
    """A version of a column: one with the same timestamp is overwritten; beyond ``max_versions`` the oldest
    go ("When the number of versions exceeds this limit, Tablestore asynchronously deletes the oldest versions
    ... the oldest versions become unreadable, even before they are physically removed": Data versions and TTL,
    https://alibabacloud.com/help/en/tablestore/data-versions-and-ttl). Here they go at once, so raising
    max_versions later does not bring them back (the docs allow both: "provided they have not yet been
    permanently deleted"). Versions are millisecond timestamps (same page)."""
    versions = [cell for cell in columns.get(name, []) if cell[1] != timestamp]
    versions.append((value, timestamp))
    versions.sort(key=lambda cell: cell[1], reverse=True)
    columns[name] = versions[:max_versions]


def _check_update_cells(info: TableInfo, cells: Sequence[Cell], now_ms: int) -> None:
    if not cells:
        raise exc.ParameterInvalid("Invalid update row request: missing cells in request.")
    if len(cells) > MAX_COLUMNS_PER_WRITE:
        raise exc.ParameterInvalid(
            f"The number of attribute columns exceeds the limit, limit count:{MAX_COLUMNS_PER_WRITE}, "
            f"column count: {len(cells)}."
        )
    for cell in cells:
        _check_attribute(info, cell, now_ms)
        if cell.op is None:
            if cell.value is None:
                raise exc.ParameterInvalid(f"Invalid cell: {cell.name}. Reason: missing value.")
        elif cell.op in (OP_DELETE_ONE_VERSION, OP_DELETE_ALL_VERSIONS):
            if cell.value is not None:
                raise exc.ParameterInvalid(
                    "Column value cannot be given when type is DELETE_ONE_VERSION,DELETE_ALL_VERSION."
                )
            if cell.op == OP_DELETE_ONE_VERSION and cell.timestamp is None:
                raise exc.ParameterInvalid("Timestamp must be given when type is DELETE_ONE_VERSION.")
            if cell.op == OP_DELETE_ALL_VERSIONS and cell.timestamp is not None:
                raise exc.ParameterInvalid("Timestamp cannot be given when type is DELETE_ALL_VERSION.")
        elif cell.op == OP_INCREMENT:
            # ASSUMPTION: the messages of these two refusals
            if cell.value is None or cell.value.type != VT_INTEGER:
                raise exc.ParameterInvalid(f"Increment value of column {cell.name} must be an integer.")
            if cell.timestamp is not None:
                raise exc.ParameterInvalid("Timestamp cannot be given when type is INCREMENT.")
        else:
            raise exc.ParameterInvalid(f"Invalid op type of cell: {cell.op}.")


def _apply_update(columns: Columns, cells: Sequence[Cell], now_ms: int, max_versions: int = 1) -> Columns:
    """Apply an UpdateRow's cells in order: a put adds a version (the same timestamp overwrites it; beyond
    ``max_versions`` the oldest go, :func:`_add_version`); DELETE_ALL_VERSIONS removes the column,
    DELETE_ONE_VERSION the version with that timestamp."""
    for cell in cells:
        if cell.op is None:
            assert cell.value is not None
            timestamp = cell.timestamp if cell.timestamp is not None else now_ms
            _add_version(columns, cell.name, cell.value, timestamp, max_versions)
        elif cell.op == OP_DELETE_ALL_VERSIONS:
            columns.pop(cell.name, None)
        elif cell.op == OP_DELETE_ONE_VERSION:
            kept = [version for version in columns.get(cell.name, []) if version[1] != cell.timestamp]
            if kept:
                columns[cell.name] = kept
            else:
                columns.pop(cell.name, None)
        else:  # increment; ASSUMPTION: of the newest version, written as a new version at the server's time; a
            # missing column counts as 0; another type or an overflow is refused
            assert cell.value is not None
            previous = columns.get(cell.name)
            base = 0
            if previous:
                if previous[0][0].type != VT_INTEGER:
                    raise exc.ParameterInvalid(
                        f"The type of column {cell.name} is not INTEGER, can't increment."
                    )
                base = previous[0][0].value
            total = base + cell.value.value
            if not INT64_MIN <= total <= INT64_MAX:
                raise exc.ParameterInvalid(f"Increment of column {cell.name} overflows INT64.")
            _add_version(columns, cell.name, Value(VT_INTEGER, total), now_ms, max_versions)
    return columns


# --- row (de)serialization -----------------------------------------------------------------------------------
def _dump_pk(primary_key: PrimaryKey) -> str:
    return json.dumps([[name, *_value_to_json(value)] for name, value in primary_key], ensure_ascii=False)


def _load_pk(text: str) -> PrimaryKey:
    return [(item[0], _value_from_json(item[1:])) for item in json.loads(text)]


def _dump_columns(columns: Columns) -> str:
    return json.dumps(
        {
            name: [[*_value_to_json(value), timestamp] for value, timestamp in versions]
            for name, versions in columns.items()
        },
        ensure_ascii=False,
    )


def _load_columns(text: str) -> Columns:
    """Columns as stored: ``{name: [[type, value, ts], ...]}`` (newest first); a database written before
    versions were kept holds one ``[type, value, ts]`` per column, read as that one version."""
    columns: Columns = {}
    for name, item in json.loads(text).items():
        stored = item if item and isinstance(item[0], list) else [item]
        columns[name] = [(_value_from_json(version), int(version[2])) for version in stored]
    return columns


__all__ = [
    "Account",
    "ColumnCondition",
    "CompositeColumnCondition",
    "Consumed",
    "Fault",
    "PrimaryKeySchema",
    "RangeResult",
    "ReadOptions",
    "RequestRecord",
    "RowChange",
    "RowCondition",
    "RowResult",
    "SingleColumnCondition",
    "TableInfo",
    "TablestoreBackend",
    "encode_key",
    "matches",
    "row_size",
]
