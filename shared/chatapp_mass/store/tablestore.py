"""Tablestore implementation of :class:`~chatapp_mass.store.interface.Store` (production, and the local cloud).

Longer than 500 lines: the whole Store interface on Tablestore: every conditional write as the service's row
and column conditions, batch writes chunked to its limits, the table definitions and init-tables; together, so
each method reads against its SQLite twin.

Tables (``prefix`` defaults to ``chatapp_``; created idempotently by :meth:`TablestoreStore.init_tables`, which
``chatapp-mass init-tables --store tablestore://INSTANCE`` runs at deploy time; see "Tables" below):

==================  ==========================================  ==============================================
table               primary key                                 columns
==================  ==========================================  ==============================================
``jobs``            job_id                                      the JobRecord (options/intake as JSON), op
``job_index``       part ("jobs"), created_desc, job_id         (listing newest first without a scan)
``batches``         job_id, seq                                 the BatchRecord, op
``rows``            job_id, line (a chunk's first input line)   last_line, count, data: a chunk of up to 128
                                                                input records, consecutive in line order
                                                                (below)
``rate``            key                                         stamps (JSON), version
``job_status``      status, job_id                              op, at: the jobs in each status the timer
                                                                sweeps (below)
``requests``        digest (of an API request's body and query) job_id, at, op: the API's repeat check, one
                                                                conditional write (``claim_request``)
``receipts``        task_id, to                                 status, rank, message_id, at_ms, error_code,
                                                                error_description, op: delivery state
                                                                (``receipts_tablestore``)
``tasks``           task_id                                     job_id, seq: which batch a TaskId names
``receipts_aside``  at_ms, receipt_key                          the receipt, reason, set_at: unplaceable ones
``reach``           from_number                                 entries (JSON), version, op: the messaging
                                                                limit's window (``reach_tablestore``)
==================  ==========================================  ==============================================

How the interface's promises are kept:

- **Conditional writes** are Tablestore row conditions: ``transition_batch`` is one UpdateRow with
  ``EXPECT_EXIST`` and a column condition "status is one of expect" (an OR of EQUAL conditions);
  ``create_job`` is a PutRow with ``EXPECT_NOT_EXIST``; a planned batch is written with ``EXPECT_NOT_EXIST``
  so re-planning never resets one. One claimant ever wins.
- **Retries** are ours, not the SDK's (its ``DefaultRetryPolicy`` retries some writes and not others, and
  not network errors; ALIBABA-FACTS §5): transient codes (``OTSServerBusy``, ``OTSTimeout``,
  ``OTSPartitionUnavailable``, ...) and network errors are retried with jittered backoff, then
  :class:`StoreError`. A write retried after an *ambiguous* failure (timeout, 5xx, network) may have been
  applied the first time; its retry then fails its own condition. Every conditional write therefore carries
  a fresh ``op`` token, and a condition failure after an ambiguous attempt reads the row back: our token
  there means our write landed (True), anything else means someone else's did (False).
- **BatchWriteRow** is split by 200 rows and ~3.5 MB and is not atomic: rows that fail with a transient
  code are retried by themselves; a batch row that fails its ``EXPECT_NOT_EXIST`` already exists (fine).
- **Input records are stored in chunks**, not one row each: the SDK encodes and decodes rows with a
  pure-Python PlainBuffer codec, ~0.4 ms of CPU per row, so a row per record made planning a million
  recipients cost minutes of CPU, and reading a 1,000-recipient batch over 0.1 s. ``put_plan`` sorts its
  rows and writes them as chunk rows of one job, of up to ``_CHUNK_RECORDS`` records and ~1 MB of JSON
  (far under the 2 MB limit of one value), keyed by the first line, with ``data`` = zlib-compressed compact
  JSON ``[[line, to, status, code, message, batch_seq, recipient], ...]``. Writing the same rows again
  writes the same chunk rows (PutRow, no condition): idempotent, as long as a job's ``put_plan`` calls
  repeat earlier ones or do not overlap them, which the engine ensures (calls of consecutive lines;
  ``clear_plan`` before a re-plan). The PK column keeps its name ``line``: an existing table keeps its
  schema (``init_tables`` never alters one), and rows of the older one-record-per-row layout (no
  ``data``) are read as one-record chunks.
- **A batch's recipients** are found by line range: a batch holds consecutive valid rows, so its rows lie
  between its ``first_line`` and ``last_line``. A BACKWARD GetRange from that first line (limit 1) finds
  the chunk holding it; unless it also holds the last line, a FORWARD GetRange finds the chunks starting
  after the first line up to the last. Chunks are small (128 records) so that a batch reads little more
  than its own records, whatever ``--batch-size``. Decoded, filtered on ``batch_seq``.
- **Jobs by status** (``jobs_in``, for the timer): ``job_status`` holds a row per job in a status of
  ``SWEPT_STATUSES``, none for finished jobs, so a firing reads one short key range per status it wants and
  100,000 finished jobs cost nothing. See "the job_status index" below for how it is kept.
- **The rate window** is one row per key: the last ``limit`` stamps and a version. Acquire reads it, reads
  the clock, and writes the new stamp list with "version unchanged" as the condition; a lost race re-reads.
  The stamp is read after the row, so it is never earlier than any stamp it was compared with. Reserve and
  depart (departure counting, ``ratewindow``) keep the holds in a ``holds`` column (JSON token -> not_before)
  of the same row, written under the same version condition; a reader that predates it ignores the column.

- **Tables** are created at deploy time, not at a function's cold start: table-metadata operations are limited
  to 10 per second per instance (a burst of cold starts each listing the tables would be refused with
  ``OTSQuotaExhausted`` "Too frequent table operations.") and a new table answers ``OTSTableNotReady`` for
  seconds after CreateTable (general limits and error codes pages, ALIBABA-FACTS "Added 2026-12-04").
  :func:`open_store` (the functions, the CLI) assumes the tables exist and makes no table operation at all; a
  missing table is a :class:`StoreError` saying to run ``chatapp-mass init-tables``. :meth:`init_tables`
  (the command, the local cloud, tests, the demo) lists the tables once, creates the missing ones and waits
  until each answers a read. Both waits -- a table not ready yet, the table-operation quota -- are waited
  out for up to ``table_wait_seconds`` (default 120 s; the CreateTable page says "in most cases ... one
  minute"), without using up ``max_attempts``. The SDK's own retry policy would retry both, but it is off
  here (NoRetryPolicy, see Retries).

Credentials come from the Alibaba Cloud default chain (FC's role STS variables included), refreshed as they
expire, unless explicit ones are passed (the local cloud). Endpoint: ``CHATAPP_TABLESTORE_ENDPOINT`` or the
region's public endpoint ``https://INSTANCE.REGION.ots.aliyuncs.com``.
"""

from __future__ import annotations

import importlib.machinery
import json
import logging
import os
import random
import secrets
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import partial
from json.encoder import encode_basestring as _quoted
from operator import itemgetter
from typing import Any, TypeVar

import urllib3

from chatapp_mass.core.errors import OptionsError, StoreError
from chatapp_mass.core.planning import sender_json
from chatapp_mass.runtime import env, logs
from chatapp_mass.runtime.ahead import read_ahead
from chatapp_mass.store import ratewindow
from chatapp_mass.store.interface import (
    JOB_COUNTERS,
    JOB_UPDATABLE,
    SWEPT_STATUSES,
    BatchRecord,
    BatchStatus,
    JobKey,
    JobRecord,
    JobStatus,
    Leaves,
    RateGrant,
    ReportRow,
    RequestClaim,
    RowRecord,
    RowStatus,
    Store,
    check_counts,
    check_swept,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_JOB_FIELDS = [f.name for f in fields(JobRecord)]
_BATCH_FIELDS = [f.name for f in fields(BatchRecord)]
_BATCH_UPDATABLE = set(_BATCH_FIELDS) - {"job_id", "seq", "size", "status", "first_line", "last_line", "root"}

TRANSIENT_CODES = frozenset(
    {
        "OTSServerBusy",
        "OTSTimeout",
        "OTSPartitionUnavailable",
        "OTSServerUnavailable",
        "OTSInternalServerError",
        "OTSRowOperationConflict",
        "OTSNotEnoughCapacityUnit",
        "OTSTableNotReady",
        "OTSOperationThrottled",
        "OTSOperationConflict",
    }
)
# Waited out by time (``table_wait_seconds``), not by attempts: a table that is not ready yet, and the
# per-instance table-operation quota ("Too frequent table operations." is the only OTSQuotaExhausted that is
# retryable: the error-codes page, and tablestore/retry.py; "Number of tables exceeded the quota." is not).
_TABLE_NOT_READY = "OTSTableNotReady"
_QUOTA_EXHAUSTED, _TOO_FREQUENT = "OTSQuotaExhausted", "Too frequent table operations."
_NO_SUCH_TABLE = "OTSObjectNotExist"
# Failures after which the write may or may not have been applied.
_AMBIGUOUS_CODES = frozenset({"OTSTimeout", "OTSInternalServerError", "OTSServerUnavailable"})
_CONDITION_FAILED = "OTSConditionCheckFail"
_BATCH_WRITE_ROWS = 200
_BATCH_WRITE_BYTES = 3_500_000  # under the 4 MB request limit, with room for the encoding's overhead
_BATCH_GET_ROWS = 100
# Input records per chunk row (see the module docs). Small, so that a sender reads little more than its batch
# (a 1,000-recipient batch reads 8 or 9 chunks); each chunk row costs the SDK's codec about one old row.
_CHUNK_RECORDS = 128
_CHUNK_JSON_BYTES = 1_000_000  # before compression: a chunk of large records stays far under the limit below
# zlib's level 5, not its default 6: on the recipient files of bench_intake the same size (0.05% smaller) in a
# fifth less time, the largest share of a chunk's encoding (level 4: 4% larger). Any level reads back alike.
_CHUNK_ZLIB_LEVEL = 5
_MAX_VALUE_BYTES = 2 * 1024 * 1024  # Tablestore's limit for one attribute value
# Tablestore's limit for the data of one PutRow/UpdateRow (general limits; the local Tablestore enforces it). A
# chunk row stays far under it (one value under _MAX_VALUE_BYTES, a few integers); a job row is checked.
_MAX_ROW_WRITE_BYTES = 4 * 1024 * 1024
_INDEX_PART = "jobs"
_MAX_TIME_MS = 10**13
_CLAIM_ROUNDS = 8  # claim_request: rounds of (claim, read the holder, take an expired one over)


@dataclass(frozen=True)
class TablestoreSettings:
    endpoint: str
    instance: str
    table_prefix: str = "chatapp_"
    socket_timeout: float = 10.0
    max_attempts: int = 8  # per call, transient failures included (~10 s of backoff in all)
    write_threads: int = 4  # BatchWriteRow calls in flight while planning
    table_wait_seconds: float = (
        120.0  # how long a table not ready yet / the table-operation quota is waited out
    )

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] = os.environ) -> TablestoreSettings:
        """``tablestore://INSTANCE``; the endpoint from ``CHATAPP_TABLESTORE_ENDPOINT`` or the region."""
        instance = url[len("tablestore://") :].strip("/")
        if not instance or "/" in instance:
            raise OptionsError(f"--store {url!r}: use tablestore://INSTANCE (the Tablestore instance name)")
        endpoint = environ.get(env.CHATAPP_TABLESTORE_ENDPOINT, "").strip()
        if not endpoint:
            region = environ.get(env.ALIBABA_CLOUD_REGION_ID) or env.DEFAULT_REGION
            endpoint = f"https://{instance}.{region}.ots.aliyuncs.com"
        if not endpoint.startswith(("http://", "https://")):
            raise OptionsError(f"{env.CHATAPP_TABLESTORE_ENDPOINT}={endpoint!r}: use http(s)://host[:port]")
        prefix = environ.get(env.CHATAPP_TABLE_PREFIX, "chatapp_")
        return cls(endpoint=endpoint.rstrip("/"), instance=instance, table_prefix=prefix)


class _Patience:
    """Waits out a table that is not ready yet, or the table-operation quota: bounded by time, not attempts."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None
        self.rounds = 0

    def wait(self) -> bool:
        """Sleep a little and say True, or False once ``seconds`` have passed since the first wait."""
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.seconds
        if now >= self.deadline:
            return False
        self.rounds += 1
        time.sleep(min(0.05 * 2 ** min(self.rounds, 5), 1.0, self.deadline - now) * random.uniform(0.5, 1.0))
        return True


def _must_wait(error: Any) -> bool:
    code: str = error.get_error_code()
    return code == _TABLE_NOT_READY or (
        code == _QUOTA_EXHAUSTED and error.get_error_message() == _TOO_FREQUENT
    )


def import_sdk() -> Any:
    """``import tablestore``, without the numpy it would load for nothing.

    The SDK imports flatbuffers (for time series and SQL results: features the product never calls), whose
    modules each run ``flatbuffers.compat.import_numpy()`` when imported: it imports numpy whenever
    ``PathFinder`` finds it installed (the SDK declares it). That is 19 MiB and ~80 ms of every function's cold
    start (``bench/bench_coldstart.py --numpy``), an eighth of an ingest instance's peak memory. So while the SDK
    is first imported, ``PathFinder`` does not find numpy (as where it is not installed: those modules then only
    lack their ``...AsNumpy`` accessors); it finds everything else, and numpy too right after. Where numpy or the
    SDK is loaded already, the import is left as it is. ``tests/unit/test_tablestore_import.py`` checks both.
    """
    logs.quiet_tablestore_import()  # its "Native C++ encoder not available" notice (see logs)
    if "tablestore" in sys.modules or "numpy" in sys.modules:
        import tablestore

        return tablestore
    finder = importlib.machinery.PathFinder
    found = finder.find_spec

    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        return None if name == "numpy" else found(name, path, target)

    finder.find_spec = find_spec  # type: ignore[method-assign,assignment]
    try:
        import tablestore
    finally:
        finder.find_spec = found  # type: ignore[method-assign]
    return tablestore


def _default_chain_provider() -> Any:
    """A ``tablestore`` credentials provider over ``alibabacloud_credentials``' default chain (refreshes STS)."""
    import_sdk()  # quiet, and without numpy
    from alibabacloud_credentials.client import Client as CredentialClient
    from tablestore.credentials import Credentials, CredentialsProvider

    chain = CredentialClient()

    class _ChainProvider(CredentialsProvider):  # type: ignore[misc]
        def get_credentials(self) -> Any:
            try:
                current = chain.get_credential()
            except Exception as error:  # the chain's own exception types vary by provider
                raise StoreError(
                    f"Tablestore: no Alibaba Cloud credentials ({error}). Set ALIBABA_CLOUD_ACCESS_KEY_ID and "
                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN for STS), or a profile in "
                    "~/.alibabacloud/credentials; in Function Compute the function's role provides them"
                ) from None
            return Credentials(
                current.access_key_id, current.access_key_secret, current.security_token or None
            )

    return _ChainProvider()


class TablestoreStore(Store):
    def __init__(
        self,
        settings: TablestoreSettings,
        *,
        access_key_id: str = "",
        access_key_secret: str = "",
        security_token: str = "",
        create_tables: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``create_tables``: run :meth:`init_tables` now (tests, the demo, the local cloud); the functions and the
        CLI open the store through :func:`open_store`, which does not (see "Tables" in the module docs)."""
        tablestore = import_sdk()

        self.settings = settings
        self.clock = clock  # stamps updated_at (a simulation runs the store on its own clock)
        self._ts = tablestore
        # The SDK wraps some network failures in OTSClientError and lets others through as urllib3 (or
        # socket) errors: a dropped connection or a read timeout arrives as urllib3's ProtocolError or
        # ReadTimeoutError. All of them are "the network", and retried alike (as ambiguous, for writes).
        self._network_errors = (tablestore.OTSClientError, urllib3.exceptions.HTTPError, OSError)
        prefix = settings.table_prefix
        self.t_jobs, self.t_index = f"{prefix}jobs", f"{prefix}job_index"
        self.t_batches, self.t_rows, self.t_rate = f"{prefix}batches", f"{prefix}rows", f"{prefix}rate"
        self.t_requests = f"{prefix}requests"
        self.t_receipts, self.t_tasks = f"{prefix}receipts", f"{prefix}tasks"  # store/receipts_tablestore.py
        self.t_receipts_aside = f"{prefix}receipts_aside"
        common = dict(
            instance_name=settings.instance,
            socket_timeout=settings.socket_timeout,
            retry_policy=tablestore.NoRetryPolicy(),
            logger_name="chatapp_mass.tablestore_sdk",
        )
        if access_key_id:
            self.client = tablestore.OTSClient(
                settings.endpoint,
                access_key_id,
                access_key_secret,
                sts_token=security_token or None,
                **common,
            )
        else:
            self.client = tablestore.OTSClient(
                settings.endpoint, credentials_provider=_default_chain_provider(), **common
            )
        logging.getLogger("chatapp_mass.tablestore_sdk").setLevel(logging.CRITICAL)  # we log what matters
        if create_tables:
            self.init_tables()

    # --- plumbing ---------------------------------------------------------------------------------------
    def _refusal(self, what: str, error: Any) -> StoreError:
        """The StoreError for an error that is not retried: a missing table says how to create the tables."""
        code, message = error.get_error_code(), error.get_error_message()
        if code == _NO_SUCH_TABLE:
            return StoreError(
                f"Tablestore {what}: {code}: a table of this store (prefix {self.settings.table_prefix!r}) does not "
                f"exist in instance {self.settings.instance!r}. Create the tables once, at deploy time: "
                f"`chatapp-mass init-tables --store tablestore://{self.settings.instance}` "
                f"(with {env.CHATAPP_TABLE_PREFIX}={self.settings.table_prefix} and the deploying account's "
                "credentials; see deploy/README.md)"
            )
        return StoreError(f"Tablestore {what}: {code}: {message}")

    def _waited_too_long(self, what: str, error: Any) -> StoreError:
        return StoreError(
            f"Tablestore {what}: {error.get_error_code()}: {error.get_error_message()} -- still so "
            f"after {self.settings.table_wait_seconds:g} s"
        )

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one SDK call, retrying transient failures (and waiting out a table not ready yet or the
        table-operation quota); anything else becomes a StoreError."""
        patience = _Patience(self.settings.table_wait_seconds)
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except self._ts.OTSServiceError as error:
                code = error.get_error_code()
                if _must_wait(error):
                    if not patience.wait():
                        raise self._waited_too_long(what, error) from None
                    attempt -= 1
                    continue
                if code not in TRANSIENT_CODES and error.get_http_status() not in (500, 502, 503):
                    raise self._refusal(what, error) from None
                reason = code
            except self._network_errors as error:
                reason = f"network: {_describe_network(error)}"
            if attempt >= self.settings.max_attempts:
                raise StoreError(f"Tablestore {what}: still failing after {attempt} attempts ({reason})")
            log.info(
                "Tablestore call retried", extra={"operation": what, "reason": reason, "attempt": attempt}
            )
            time.sleep(_backoff(attempt))

    def _write(self, what: str, fn: Callable[[], Any], landed: Callable[[], bool] | None = None) -> bool:
        """A conditional write: True if applied, False if its condition failed.

        After an ambiguous failure (see the module docs), a condition failure asks ``landed`` whether our
        own earlier attempt is what the row shows.
        """
        ambiguous = False
        patience = _Patience(self.settings.table_wait_seconds)
        attempt = 0
        while True:
            attempt += 1
            try:
                fn()
                return True
            except self._ts.OTSServiceError as error:
                code = error.get_error_code()
                if code == _CONDITION_FAILED:
                    return bool(ambiguous and landed is not None and landed())
                if _must_wait(error):  # refused before it ran: nothing ambiguous
                    if not patience.wait():
                        raise self._waited_too_long(what, error) from None
                    attempt -= 1
                    continue
                if code not in TRANSIENT_CODES and error.get_http_status() not in (500, 502, 503):
                    raise self._refusal(what, error) from None
                ambiguous = ambiguous or code in _AMBIGUOUS_CODES or error.get_http_status() >= 500
                reason = code
            except self._network_errors as error:
                ambiguous = True
                reason = f"network: {_describe_network(error)}"
            if attempt >= self.settings.max_attempts:
                raise StoreError(f"Tablestore {what}: still failing after {attempt} attempts ({reason})")
            log.info(
                "Tablestore write retried", extra={"operation": what, "reason": reason, "attempt": attempt}
            )
            time.sleep(_backoff(attempt))

    def _get(
        self, table: str, pk: list[tuple[str, Any]], columns: list[str] | None = None
    ) -> dict[str, Any] | None:
        _, row, _ = self._call(
            f"GetRow {table}", lambda: self.client.get_row(table, pk, columns, max_version=1)
        )
        return _row_dict(row) if row is not None else None

    def _op_is(self, table: str, pk: list[tuple[str, Any]], token: str) -> Callable[[], bool]:
        def check() -> bool:
            row = self._get(table, pk, ["op"])
            return row is not None and row.get("op") == token

        return check

    def _range(
        self,
        table: str,
        start: list[tuple[str, Any]],
        end: list[tuple[str, Any]],
        columns: list[str] | None = None,
        limit: int | None = None,
        backward: bool = False,
        column_filter: Any = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows in ``[start, end)`` (``backward``: from ``start`` down to, not including, ``end``), following
        ``next_start_primary_key`` page by page (a page may even be empty)."""
        for page in self._range_pages(table, start, end, columns, limit, backward, column_filter):
            yield from page

    def _range_pages(
        self,
        table: str,
        start: list[tuple[str, Any]] | None,
        end: list[tuple[str, Any]],
        columns: list[str] | None = None,
        limit: int | None = None,
        backward: bool = False,
        column_filter: Any = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """:meth:`_range` a GetRange page at a time (``column_filter``: rows the service leaves out; a page
        may then hold none, and the range goes on)."""
        ts = self._ts
        direction = ts.Direction.BACKWARD if backward else ts.Direction.FORWARD
        left = limit
        while start is not None:
            page_start = start
            _, start, rows, _ = self._call(
                f"GetRange {table}",
                partial(
                    self.client.get_range,
                    table,
                    direction,
                    page_start,
                    end,
                    columns,
                    left,
                    column_filter=column_filter,
                    max_version=1,
                ),
            )
            yield [_row_dict(row) for row in rows]
            if left is not None:
                left -= len(rows)
                if left <= 0:
                    return

    def _batch_write(
        self, table: str, items: Sequence[Any], what: str, *, tolerate: Iterable[str] = ()
    ) -> None:
        """BatchWriteRow in requests of bounded size; rows failing transiently are retried alone; ``tolerate``
        codes are fine."""
        ts = self._ts
        requests: list[list[Any]] = []
        request: list[Any] = []
        size = 0
        for item in items:
            item_size = _approx_size(item.row)
            if request and (len(request) >= _BATCH_WRITE_ROWS or size + item_size > _BATCH_WRITE_BYTES):
                requests.append(request)
                request, size = [], 0
            request.append(item)
            size += item_size
        if request:
            requests.append(request)
        tolerated = set(tolerate)

        def write(rows: list[Any]) -> None:
            pending = rows
            for attempt in range(1, self.settings.max_attempts + 1):
                request = ts.BatchWriteRowRequest()
                request.add(ts.TableInBatchWriteRowItem(table, pending))
                response = self._call(f"BatchWriteRow {what}", partial(self.client.batch_write_row, request))
                results = sorted(
                    [*response.get_put()[1], *response.get_update()[1], *response.get_delete()[1]],
                    key=lambda r: r.index,
                )
                retry = []
                for result in results:
                    if result.error_code in tolerated:
                        continue
                    if result.error_code in TRANSIENT_CODES:
                        retry.append(pending[result.index])
                        continue
                    raise StoreError(
                        f"Tablestore BatchWriteRow {what}: {result.error_code}: {result.error_message}"
                    )
                if not retry:
                    return
                if attempt == self.settings.max_attempts:
                    raise StoreError(f"Tablestore BatchWriteRow {what}: {len(retry)} rows still failing")
                pending = retry
                time.sleep(_backoff(attempt))

        if len(requests) <= 1 or self.settings.write_threads <= 1:
            for part in requests:
                write(part)
            return
        with ThreadPoolExecutor(self.settings.write_threads, thread_name_prefix="ots-write") as pool:
            for future in [pool.submit(logs.carried(write), part) for part in requests]:
                future.result()

    def _schemas(self) -> dict[str, list[tuple[str, str]]]:
        return {
            self.t_jobs: [("job_id", "STRING")],
            self.t_index: [("part", "STRING"), ("created_desc", "INTEGER"), ("job_id", "STRING")],
            self.t_batches: [("job_id", "STRING"), ("seq", "INTEGER")],
            self.t_rows: [("job_id", "STRING"), ("line", "INTEGER")],
            self.t_rate: [("key", "STRING")],
            self.t_status: [("status", "STRING"), ("job_id", "STRING")],
            self.t_requests: [("digest", "STRING")],
            self.t_receipts: [("task_id", "STRING"), ("to", "STRING")],
            self.t_tasks: [("task_id", "STRING")],
            self.t_receipts_aside: [("at_ms", "INTEGER"), ("receipt_key", "STRING")],
            f"{self.settings.table_prefix}reach": [("from_number", "STRING")],  # the messaging limit (reach)
        }

    def init_tables(self) -> dict[str, list[str]]:
        """Create the tables that are missing and wait until every table answers a read; then index the jobs of
        older releases (once). Idempotent, and a concurrent initializer is fine. One ListTable and a CreateTable
        per missing table: the deploy step (``chatapp-mass init-tables``), never a function's cold start.
        Returns ``{"created": [...], "existing": [...]}``."""
        ts = self._ts
        schemas = self._schemas()
        existing = set(self._call("ListTable", self.client.list_table))
        created: list[str] = []
        for table, schema in schemas.items():
            if table in existing:
                continue
            meta = ts.TableMeta(table, schema)
            options = ts.TableOptions(time_to_live=-1, max_version=1)
            throughput = ts.ReservedThroughput(ts.CapacityUnit(0, 0))
            try:
                self._call(
                    f"CreateTable {table}",
                    partial(self.client.create_table, meta, options, throughput),
                )
                created.append(table)
            except StoreError as error:
                if "OTSObjectAlreadyExist" not in str(error):
                    raise
        for table, schema in schemas.items():  # a read waits out OTSTableNotReady (_call)
            probe = [(name, 0 if kind == "INTEGER" else "#ready") for name, kind in schema]
            self._call(
                f"GetRow {table} (is the table ready?)",
                partial(self.client.get_row, table, probe, None, max_version=1),
            )
        self._index_jobs_of_older_releases()
        log.info(
            "Tablestore tables ready", extra={"tables_created": created, "instance": self.settings.instance}
        )
        return {"created": created, "existing": sorted(set(schemas) - set(created))}

    # --- jobs -------------------------------------------------------------------------------------------
    def create_job(self, job: JobRecord) -> bool:
        ts = self._ts
        index_pk = [
            ("part", _INDEX_PART),
            ("created_desc", _created_desc(job.created_at)),
            ("job_id", job.job_id),
        ]
        token = _token()
        data = asdict(job)
        data["options"] = json.dumps(job.options, sort_keys=True)
        data["intake"] = json.dumps(job.intake, sort_keys=True)
        data["status"] = job.status.value
        columns = [(k, v) for k, v in data.items() if k != "job_id"] + [("op", token), ("index_op", token)]
        _check_job_row(job.job_id, columns)  # before any write of the job
        # The index row first: a job row always has one (a dangling index row is skipped when listing).
        self._call(
            "PutRow job_index",
            lambda: self.client.put_row(
                self.t_index,
                ts.Row(index_pk, [("at", job.created_at)]),
                ts.Condition(ts.RowExistenceExpectation.IGNORE),
            ),
        )
        self._put_status_row(job.status.value, job.job_id, token)  # first, too: see the job_status index
        pk = [("job_id", job.job_id)]
        return self._write(
            "create job",
            lambda: self.client.put_row(
                self.t_jobs, ts.Row(pk, columns), ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
            ),
            self._op_is(self.t_jobs, pk, token),
        )

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._get(self.t_jobs, [("job_id", job_id)])
        return _job(row) if row else None

    def find_jobs(self, prefix: str) -> list[str]:
        if not prefix:
            return []
        rows = self._range(
            self.t_jobs, [("job_id", prefix)], [("job_id", prefix + "\U0010ffff")], ["status"], 5
        )
        return [row["job_id"] for row in rows if row["job_id"].startswith(prefix)][:5]

    def list_jobs(self, limit: int = 50, *, after: JobKey | None = None) -> list[JobRecord]:
        ts = self._ts
        start = [("part", _INDEX_PART), ("created_desc", ts.INF_MIN), ("job_id", ts.INF_MIN)]
        if after is not None:  # the first index row after that job's ("\0": the least id greater than its id)
            start = [
                ("part", _INDEX_PART),
                ("created_desc", _created_desc(after.created_at)),
                ("job_id", after.job_id + "\0"),
            ]
        end = [("part", _INDEX_PART), ("created_desc", ts.INF_MAX), ("job_id", ts.INF_MAX)]
        jobs: list[JobRecord] = []
        while len(jobs) < limit:  # an index row without its job (see create_job) is passed over: read on
            want = limit - len(jobs)
            rows = list(self._range(self.t_index, start, end, ["at"], want))
            found = self._jobs_by_id([row["job_id"] for row in rows])
            jobs += [found[row["job_id"]][0] for row in rows if row["job_id"] in found]
            if len(rows) < want:
                break
            last = rows[-1]
            start = [
                ("part", _INDEX_PART),
                ("created_desc", last["created_desc"]),
                ("job_id", last["job_id"] + "\0"),
            ]
        return jobs

    # --- the API's repeat check -----------------------------------------------------------------------------
    def claim_request(
        self, digest: str, job_id: str, *, at: float, window: float, force: bool = False
    ) -> RequestClaim | None:
        ts = self._ts
        pk = [("digest", digest)]
        for _ in range(_CLAIM_ROUNDS):
            token = _token()
            row = ts.Row(pk, [("job_id", job_id), ("at", at), ("op", token)])
            landed = self._op_is(self.t_requests, pk, token)
            if force:
                anyway = ts.Condition(ts.RowExistenceExpectation.IGNORE)
                self._call("PutRow requests", partial(self.client.put_row, self.t_requests, row, anyway))
                return None
            absent = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
            if self._write(
                "claim request", partial(self.client.put_row, self.t_requests, row, absent), landed
            ):
                return None
            held = self._get(self.t_requests, pk, ["job_id", "at", "op"])
            if held is None:
                continue  # released meanwhile: claim it afresh
            if float(held["at"]) >= at - window:
                return RequestClaim(str(held["job_id"]), float(held["at"]))
            # expired: take it over, only if it is still the very row read (its op), else someone else did
            same = ts.Condition(
                ts.RowExistenceExpectation.EXPECT_EXIST,
                ts.SingleColumnCondition("op", held["op"], ts.ComparatorType.EQUAL, pass_if_missing=False),
            )
            if self._write(
                "take over request", partial(self.client.put_row, self.t_requests, row, same), landed
            ):
                return None
        raise StoreError(f"Tablestore claim request {digest}: still contended after {_CLAIM_ROUNDS} rounds")

    def release_request(self, digest: str, job_id: str) -> None:
        ts = self._ts
        condition = ts.Condition(
            ts.RowExistenceExpectation.EXPECT_EXIST,
            ts.SingleColumnCondition("job_id", job_id, ts.ComparatorType.EQUAL, pass_if_missing=False),
        )
        row = ts.Row([("digest", digest)])
        self._write("DeleteRow requests", lambda: self.client.delete_row(self.t_requests, row, condition))

    def update_job(
        self,
        job_id: str,
        *,
        expect: Iterable[JobStatus] | None = None,
        expect_plan_owner: str | None = None,
        expect_plan_expires: float | None = None,
        **changes: Any,
    ) -> bool:
        unknown = set(changes) - JOB_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        if "status" in changes:
            return self._update_job_status(
                job_id, expect, changes, plan_owner=expect_plan_owner, plan_expires=expect_plan_expires
            )
        token = _token()
        values = {k: (v.value if isinstance(v, JobStatus) else v) for k, v in changes.items()}
        values["updated_at"] = self.clock()
        values["op"] = token
        pk = [("job_id", job_id)]
        condition = self._status_condition(
            [s.value for s in expect] if expect is not None else None,
            plan_owner=expect_plan_owner,
            plan_expires=expect_plan_expires,
        )
        row = self._ts.Row(pk, {"put": list(values.items())})
        return self._write(
            "update job",
            lambda: self.client.update_row(self.t_jobs, row, condition),
            self._op_is(self.t_jobs, pk, token),
        )

    def delete_job(self, job_id: str, *, plan_owner: str | None = None) -> bool:
        ts = self._ts
        job = self.get_job(job_id)
        if job is None:
            return False
        # The job row first, on the lease's condition: a planner that lost its lease deletes nothing.
        condition = self._status_condition(None, plan_owner=plan_owner)
        if not self._write(
            "delete job",
            lambda: self.client.delete_row(self.t_jobs, ts.Row([("job_id", job_id)]), condition),
            lambda: self.get_job(job_id) is None,
        ):
            return False
        self.clear_plan(job_id)
        index_pk = [
            ("part", _INDEX_PART),
            ("created_desc", _created_desc(job.created_at)),
            ("job_id", job_id),
        ]
        self._call(
            "DeleteRow job_index",
            lambda: self.client.delete_row(
                self.t_index, ts.Row(index_pk), ts.Condition(ts.RowExistenceExpectation.IGNORE)
            ),
        )
        self._drop_status_row(job.status.value, job_id, op=None)
        return True

    # --- plan -------------------------------------------------------------------------------------------
    def clear_plan(self, job_id: str) -> None:
        ts = self._ts
        ignore = ts.Condition(ts.RowExistenceExpectation.IGNORE)
        # the keys, with a column every row has (chunks: last_line; one-record rows and batches: status)
        present = ["last_line", "status"]
        for table, key in ((self.t_rows, "line"), (self.t_batches, "seq")):
            keys = [
                row[key]
                for row in self._range(
                    table,
                    [("job_id", job_id), (key, ts.INF_MIN)],
                    [("job_id", job_id), (key, ts.INF_MAX)],
                    present,
                )
            ]
            items = [ts.DeleteRowItem(ts.Row([("job_id", job_id), (key, value)]), ignore) for value in keys]
            self._batch_write(table, items, f"clear {table}")

    def put_plan(self, rows: list[RowRecord], batches: list[BatchRecord]) -> None:
        ts = self._ts
        ignore = ts.Condition(ts.RowExistenceExpectation.IGNORE)
        # bytearray: the SDK writes bytes as a STRING column, only a bytearray as BINARY
        items = []
        for chunk in _encode_chunks(rows):
            columns = [
                ("last_line", chunk.last_line),
                ("count", chunk.count),
                ("data", bytearray(chunk.data)),
            ]
            items.append(
                ts.PutRowItem(ts.Row([("job_id", chunk.job_id), ("line", chunk.first_line)], columns), ignore)
            )
        self._batch_write(self.t_rows, items, "rows")
        # A batch is written once (EXPECT_NOT_EXIST): re-planning never resets a batch that exists.
        new = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
        batch_items = []
        for b in batches:
            data = asdict(b)
            data["status"] = b.status.value
            columns = [(k, v) for k, v in data.items() if k not in ("job_id", "seq")] + [("op", "")]
            batch_items.append(ts.PutRowItem(ts.Row([("job_id", b.job_id), ("seq", b.seq)], columns), new))
        self._batch_write(self.t_batches, batch_items, "batches", tolerate=[_CONDITION_FAILED])

    # --- batches ----------------------------------------------------------------------------------------
    def get_batch(self, job_id: str, seq: int) -> BatchRecord | None:
        row = self._get(self.t_batches, [("job_id", job_id), ("seq", seq)])
        return _batch(row) if row else None

    def list_batches(
        self, job_id: str, statuses: Iterable[BatchStatus] | None = None, *, limit: int | None = None
    ) -> list[BatchRecord]:
        # Statuses are filtered by the service (a GetRange column filter): a sender lists a job's open and
        # in-flight batches every second or two, and of a 1,000-batch job most are done; decoding every
        # row (pure-Python PlainBuffer) was most of a sender's CPU, and slowed the store's other calls.
        ts = self._ts
        wanted = None if statuses is None else sorted({s.value for s in statuses})
        if wanted == [] or (limit is not None and limit <= 0):
            return []
        rows = self._range(
            self.t_batches,
            [("job_id", job_id), ("seq", ts.INF_MIN)],
            [("job_id", job_id), ("seq", ts.INF_MAX)],
            limit=limit,
            column_filter=None if wanted is None else self._status_is(wanted),
        )
        return [_batch(row) for row in rows if wanted is None or row["status"] in wanted]

    def batch_rows(self, job_id: str, seq: int) -> list[tuple[int, dict[str, Any]]]:
        ts = self._ts
        batch = self._get(
            self.t_batches, [("job_id", job_id), ("seq", seq)], ["first_line", "last_line", "root"]
        )
        first = int(batch.get("first_line", 0)) if batch else 0
        last = int(batch.get("last_line", 0)) if batch else 0
        root = int(batch.get("root", -1)) if batch else -1
        rows_seq = root if root >= 0 else seq  # a part holds its root's rows in its line range
        if not (first and last):  # a batch planned without line bounds: scan the job
            chunks = self._range(
                self.t_rows,
                [("job_id", job_id), ("line", ts.INF_MIN)],
                [("job_id", job_id), ("line", ts.INF_MAX)],
            )
            return [
                (r[_LINE], r[_RECIPIENT])
                for chunk in chunks
                for r in _chunk_records(chunk)
                if r[_BATCH_SEQ] == rows_seq and r[_RECIPIENT]
            ]
        # the chunk holding the first line starts at or before it; the others start after it, up to the last
        found = list(
            self._range(
                self.t_rows,
                [("job_id", job_id), ("line", first)],
                [("job_id", job_id), ("line", ts.INF_MIN)],
                limit=1,
                backward=True,
            )
        )
        if last > first and (not found or _last_line(found[0]) < last):
            found.extend(
                self._range(
                    self.t_rows,
                    [("job_id", job_id), ("line", first + 1)],
                    [("job_id", job_id), ("line", last + 1)],
                )
            )
        return [
            (r[_LINE], r[_RECIPIENT])
            for chunk in found
            for r in _chunk_records(chunk)
            if first <= r[_LINE] <= last and r[_BATCH_SEQ] == rows_seq and r[_RECIPIENT]
        ]

    def transition_batch(
        self,
        job_id: str,
        seq: int,
        *,
        expect: Iterable[BatchStatus],
        to: BatchStatus,
        expect_owner: str | None = None,
        expect_expires: float | None = None,
        **changes: Any,
    ) -> bool:
        unknown = set(changes) - _BATCH_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update batch fields {sorted(unknown)}")
        token = _token()
        increment = changes.pop("attempts", None)
        values: dict[str, Any] = {"status": to.value, **changes, "updated_at": self.clock(), "op": token}
        columns: dict[str, list[tuple[str, Any]]] = {"put": list(values.items())}
        if increment:
            columns["increment"] = [("attempts", int(increment))]
        pk = [("job_id", job_id), ("seq", seq)]
        condition = self._status_condition(
            [s.value for s in expect], owner=expect_owner, claim_expires=expect_expires
        )
        row = self._ts.Row(pk, columns)
        return self._write(
            f"transition batch to {to.value}",
            lambda: self.client.update_row(self.t_batches, row, condition),
            self._op_is(self.t_batches, pk, token),
        )

    def renew_claim(self, job_id: str, seq: int, *, owner: str, until: float) -> bool:
        token = _token()
        pk = [("job_id", job_id), ("seq", seq)]
        condition = self._status_condition(
            [BatchStatus.claimed.value, BatchStatus.sending.value], owner=owner
        )
        row = self._ts.Row(pk, {"put": [("claim_expires", until), ("op", token)]})
        return self._write(
            "renew claim",
            lambda: self.client.update_row(self.t_batches, row, condition),
            self._op_is(self.t_batches, pk, token),
        )

    def batch_totals(self, job_id: str) -> dict[BatchStatus, tuple[int, int]]:
        totals: dict[BatchStatus, tuple[int, int]] = {}
        for batch in self.list_batches(job_id):
            if batch.status is BatchStatus.split:
                continue  # its parts count
            count, size = totals.get(batch.status, (0, 0))
            totals[batch.status] = (count + 1, size + batch.size)
        return totals

    # --- report -----------------------------------------------------------------------------------------
    def report_rows(self, job_id: str) -> Iterator[ReportRow]:
        # Read ahead: the next page is fetched by a thread while this one is written, so a 1M-row report's
        # round trips and the server's time are not added to the rendering's (bench/bench_report.py).
        ts = self._ts
        leaves = Leaves(self.list_batches(job_id))
        pages = self._range_pages(
            self.t_rows,
            [("job_id", job_id), ("line", ts.INF_MIN)],
            [("job_id", job_id), ("line", ts.INF_MAX)],
        )
        valid = RowStatus.valid.value
        for page in read_ahead(pages, depth=2):
            for chunk in page:  # decoded here, a chunk at a time: a decoded page is ~100,000 objects
                for line, to, status, code, message, batch_seq, _ in _chunk_records(chunk):
                    if status != valid:
                        yield ReportRow(line, to, status, "", code, message)
                    else:
                        yield leaves.row(line, to, batch_seq)

    # --- rate window ------------------------------------------------------------------------------------
    def rate_acquire(
        self,
        key: str,
        limit: int,
        window: float,
        clock: Callable[[], float],
        *,
        peek: bool = False,
        force: bool = False,
    ) -> float:
        while True:
            row = self._get(self.t_rate, [("key", key)])
            now = clock()  # after the read: see the module docs
            stamps, holds = _rate_entries(row, now, window)
            times = ratewindow.counted(stamps, holds.values(), now, window)
            if len(times) >= limit and not force:
                return max(times[len(times) - limit] + window - now, 0.001)
            if peek:
                return 0.0
            if self._rate_write(key, row, sorted(stamps + [now])[-limit:], holds):
                return 0.0
            # another acquirer won this version: read again

    def rate_reserve(
        self, key: str, limit: int, window: float, clock: Callable[[], float], *, token: str, lead: float
    ) -> RateGrant:
        while True:
            row = self._get(self.t_rate, [("key", key)])
            now = clock()  # after the read: see the module docs
            stamps, holds = _rate_entries(row, now, window)
            slot = ratewindow.next_slot(
                ratewindow.counted(stamps, holds.values(), now, window), limit, window, now
            )
            if slot - now > lead:
                return RateGrant(False, max(slot - now - lead, 0.001))
            if self._rate_write(key, row, stamps[-limit:], {**holds, token: slot}):
                return RateGrant(True, slot)

    def rate_depart(self, key: str, token: str, at: float, clock: Callable[[], float]) -> None:
        while True:
            row = self._get(self.t_rate, [("key", key)])
            now = clock()
            stamps, holds = _rate_entries(row, now, float("inf"))
            not_before = holds.pop(token, at)
            # the newest ``limit`` departures decide every later wait (acquire and reserve trim to them)
            kept = sorted(stamps + [max(at, not_before)])[-_RATE_KEPT:]
            if self._rate_write(key, row, kept, holds):
                return

    def _rate_write(
        self, key: str, row: dict[str, Any] | None, stamps: list[float], holds: dict[str, float]
    ) -> bool:
        """Write the window's row on condition that its version is still the one read."""
        ts = self._ts
        pk = [("key", key)]
        version = int(row["version"]) if row else 0
        token = _token()
        columns = [
            ("stamps", json.dumps(stamps)),
            ("holds", json.dumps(holds)),
            ("version", version + 1),
            ("op", token),
        ]
        if row is None:
            condition = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
            write = lambda: self.client.put_row(self.t_rate, ts.Row(pk, columns), condition)
        else:
            condition = ts.Condition(
                ts.RowExistenceExpectation.EXPECT_EXIST,
                ts.SingleColumnCondition("version", version, ts.ComparatorType.EQUAL, pass_if_missing=False),
            )
            write = lambda: self.client.update_row(self.t_rate, ts.Row(pk, {"put": columns}), condition)
        return self._write("rate window", write, self._op_is(self.t_rate, pk, token))

    # --- the job_status index: the timer at any scale (issue 11) -----------------------------------------
    # A row (status, job_id) for each job in a status of SWEPT_STATUSES; ``op`` is the token of the status
    # change that wrote it, which the job row keeps as ``index_op``; ``at`` is when (ms). Tablestore has no
    # transaction across the two tables, so the order of the writes keeps the one promise that matters, "a
    # job is never hidden from jobs_in", and leaves at worst a stale row, which readers skip and remove:
    #
    # - A status change reads the job (status, index_op), writes the new status's row, then updates the job
    #   on condition that its status *and* index_op are still what it read (so no other status change came
    #   between), and only then deletes the old status's row, on condition that the row's op is the old
    #   index_op: a row a later change wrote again (the job left the status and came back) has a new op and
    #   stays. A crash between the steps leaves the old row (stale) or the new one of a change that did not
    #   happen (stale); the job's own row is there whenever the job is in a listed status.
    # - ``jobs_in`` reads a status's rows, the jobs by BatchGetRow, and lists those still in that status. A
    #   row whose job is elsewhere (or gone) is skipped, and deleted (on its op) once it is older than
    #   _STALE_STATUS_ROW_MS: a younger one may be the row of a change still between its two writes.
    # - ``settle_job`` deletes the job's row of its current status (on the op the job names).
    # - Jobs written before this index existed have no index_op: the first store to find the index without
    #   its marker row writes a row for each (op "", which is what a missing index_op stands for), then the
    #   marker.
    @property
    def t_status(self) -> str:
        return f"{self.settings.table_prefix}job_status"

    def _put_status_row(self, status: str, job_id: str, op: str) -> None:
        if status not in _SWEPT:
            return
        ts = self._ts
        row = ts.Row([("status", status), ("job_id", job_id)], [("op", op), ("at", _now_ms())])
        self._call(
            "PutRow job_status",
            lambda: self.client.put_row(self.t_status, row, ts.Condition(ts.RowExistenceExpectation.IGNORE)),
        )

    def _drop_status_row(self, status: str, job_id: str, op: str | None) -> None:
        """Delete the row if it still carries ``op`` (None: whatever it carries)."""
        if status not in _SWEPT:
            return
        ts = self._ts
        if op is None:
            condition = ts.Condition(ts.RowExistenceExpectation.IGNORE)
        else:
            condition = ts.Condition(
                ts.RowExistenceExpectation.EXPECT_EXIST,
                ts.SingleColumnCondition("op", op, ts.ComparatorType.EQUAL, pass_if_missing=False),
            )
        row = ts.Row([("status", status), ("job_id", job_id)])
        self._write("DeleteRow job_status", lambda: self.client.delete_row(self.t_status, row, condition))

    def _update_job_status(
        self,
        job_id: str,
        expect: Iterable[JobStatus] | None,
        changes: dict[str, Any],
        *,
        plan_owner: str | None = None,
        plan_expires: float | None = None,
    ) -> bool:
        """update_job when ``status`` is among the changes: see the job_status index above. ``plan_owner`` and
        ``plan_expires``: the planning lease's fence (``Store.update_job``), part of the write's condition."""
        ts = self._ts
        new = JobStatus(changes["status"]).value
        expected = None if expect is None else {JobStatus(s).value for s in expect}
        pk = [("job_id", job_id)]
        for _ in range(_STATUS_CHANGE_ROUNDS):
            current = self._get(self.t_jobs, pk, ["status", "index_op", "plan_owner", "plan_expires"])
            if current is None or (expected is not None and current["status"] not in expected):
                return False
            if (plan_owner is not None and current.get("plan_owner") != plan_owner) or (
                plan_expires is not None and current.get("plan_expires") != plan_expires
            ):
                return False  # the lease is not (or no longer) the one the caller holds
            old, old_op = current["status"], current.get("index_op")  # old_op None: a job of an older release
            token = _token()
            values = {k: (v.value if isinstance(v, JobStatus) else v) for k, v in changes.items()}
            values.update(updated_at=self.clock(), op=token)
            if old == new:  # no index change: only that it is still in that status
                condition = self._status_condition([old], plan_owner=plan_owner, plan_expires=plan_expires)
            else:
                values["index_op"] = token
                both = ts.CompositeColumnCondition(ts.LogicalOperator.AND)
                both.add_sub_condition(
                    ts.SingleColumnCondition("status", old, ts.ComparatorType.EQUAL, pass_if_missing=False)
                )
                # a missing index_op passes only as missing: no token is ""
                both.add_sub_condition(
                    ts.SingleColumnCondition(
                        "index_op", old_op or "", ts.ComparatorType.EQUAL, pass_if_missing=old_op is None
                    )
                )
                for column, value in (("plan_owner", plan_owner), ("plan_expires", plan_expires)):
                    if value is not None:
                        both.add_sub_condition(
                            ts.SingleColumnCondition(
                                column, value, ts.ComparatorType.EQUAL, pass_if_missing=False
                            )
                        )
                condition = ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST, both)
                self._put_status_row(new, job_id, token)
            if self._job_write(pk, values, condition, token):
                if old != new:
                    self._drop_status_row(old, job_id, old_op or "")
                return True
            # The new status's row stays, stale, for readers to remove (jobs_in): deleting it here could
            # delete the row of the change that won, if that change wrote the same key just before us.
            # another change came between our read and our write: read again
        raise StoreError(
            f"Tablestore update job {job_id}: its status kept changing under {_STATUS_CHANGE_ROUNDS} "
            "attempts to change it"
        )

    def _job_write(
        self, pk: list[tuple[str, Any]], values: dict[str, Any], condition: Any, token: str
    ) -> bool:
        row = self._ts.Row(pk, {"put": list(values.items())})
        return self._write(
            "update job",
            lambda: self.client.update_row(self.t_jobs, row, condition),
            self._op_is(self.t_jobs, pk, token),
        )

    def _jobs_by_id(self, ids: list[str]) -> dict[str, tuple[JobRecord, dict[str, Any]]]:
        """BatchGetRow of jobs: id -> (the job, its row)."""
        ts = self._ts
        found: dict[str, tuple[JobRecord, dict[str, Any]]] = {}
        for start in range(0, len(ids), _BATCH_GET_ROWS):
            keys = [[("job_id", job_id)] for job_id in ids[start : start + _BATCH_GET_ROWS]]
            request = ts.BatchGetRowRequest()
            request.add(ts.TableInBatchGetRowItem(self.t_jobs, keys, max_version=1))
            response = self._call("BatchGetRow jobs", partial(self.client.batch_get_row, request))
            for item in response.get_result_by_table(self.t_jobs):
                if not item.is_ok:
                    raise StoreError(f"Tablestore BatchGetRow jobs: {item.error_code}: {item.error_message}")
                if item.row is not None:
                    row = _row_dict(item.row)
                    found[row["job_id"]] = (_job(row), row)
        return found

    def jobs_in(self, statuses: Iterable[JobStatus], limit: int | None = None) -> list[JobRecord]:
        ts = self._ts
        listed: list[JobRecord] = []
        for status in check_swept(statuses):
            rows = self._range(
                self.t_status,
                [("status", status.value), ("job_id", ts.INF_MIN)],
                [("status", status.value), ("job_id", ts.INF_MAX)],
                ["op", "at"],
            )
            while limit is None or len(listed) < limit:
                page = [row for _, row in zip(range(_BATCH_GET_ROWS), rows, strict=False)]
                if not page:
                    break
                jobs = self._jobs_by_id([row["job_id"] for row in page])
                for row in page:
                    job, _ = jobs.get(row["job_id"], (None, None))
                    if job is not None and job.status is status:
                        if limit is None or len(listed) < limit:
                            listed.append(job)
                    elif _now_ms() - int(row.get("at", 0)) > _STALE_STATUS_ROW_MS:
                        self._drop_status_row(status.value, row["job_id"], row.get("op", ""))
        return listed

    def settle_job(self, job_id: str, status: JobStatus) -> bool:
        current = self._get(self.t_jobs, [("job_id", job_id)], ["status", "index_op"])
        if current is None or current["status"] != JobStatus(status).value:
            return False
        self._drop_status_row(current["status"], job_id, current.get("index_op") or "")
        return True

    def _index_jobs_of_older_releases(self) -> None:
        ts = self._ts
        marker = [("status", _INDEXED_MARKER), ("job_id", "")]
        if self._get(self.t_status, marker, ["at"]) is not None:
            return
        items = []
        for row in self._range(
            self.t_jobs, [("job_id", ts.INF_MIN)], [("job_id", ts.INF_MAX)], ["status", "index_op"]
        ):
            if row.get("status") in _SWEPT and "index_op" not in row:
                items.append(
                    ts.PutRowItem(
                        ts.Row(
                            [("status", row["status"]), ("job_id", row["job_id"])],
                            [("op", ""), ("at", _now_ms())],
                        ),
                        ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST),
                    )
                )
        self._batch_write(self.t_status, items, "index jobs by status", tolerate=[_CONDITION_FAILED])
        self._call(
            "PutRow job_status",
            lambda: self.client.put_row(
                self.t_status,
                ts.Row(marker, [("at", _now_ms())]),
                ts.Condition(ts.RowExistenceExpectation.IGNORE),
            ),
        )

    # --- per-job counters (issue 11) --------------------------------------------------------------------
    def add_job_counts(self, job_id: str, **deltas: int) -> dict[str, int]:
        """One UpdateRow: an atomic increment of each counter column, returning the columns it incremented
        (ReturnType RT_AFTER_MODIFY with their names; see _return_after_modify). Retried like any call; after
        an ambiguous failure (the increment may have been applied) the row is read first: its ``count_op``
        still ours means it was, and its totals are returned instead of counting twice. (Should another
        addition have come in between, the retry counts again: rare, and an over-count of one batch.)"""
        ts = self._ts
        counts = check_counts(deltas)
        pk = [("job_id", job_id)]
        columns = [f"count_{name}" for name in JOB_COUNTERS]
        if not any(counts.values()):
            return self._read_counts(job_id, None)[0]
        token = _token()
        row = ts.Row(
            pk,
            {
                "increment": [(f"count_{name}", delta) for name, delta in counts.items()],
                "put": [("count_op", token)],
            },
        )
        condition = ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST)
        client = self._return_after_modify()
        ambiguous = False
        patience = _Patience(self.settings.table_wait_seconds)
        attempt = 0
        while True:
            attempt += 1
            if ambiguous:
                totals, landed = self._read_counts(job_id, token)
                if landed:
                    return totals
            try:
                _, returned = client.update_row(
                    self.t_jobs, row, condition, return_type=_AfterModify(tuple(columns))
                )
                if returned is None:  # a service that returned nothing: read (ours is in, maybe others too)
                    return self._read_counts(job_id, None)[0]
                values = {column[0]: column[1] for column in returned.attribute_columns or []}
                return {name: int(values.get(f"count_{name}", 0)) for name in JOB_COUNTERS}
            except self._ts.OTSServiceError as error:
                code = error.get_error_code()
                if code == _CONDITION_FAILED:
                    raise KeyError(job_id) from None
                if _must_wait(error):
                    if not patience.wait():
                        raise self._waited_too_long("add job counts", error) from None
                    attempt -= 1
                    continue
                if code not in TRANSIENT_CODES and error.get_http_status() not in (500, 502, 503):
                    raise self._refusal("add job counts", error) from None
                ambiguous = ambiguous or code in _AMBIGUOUS_CODES or error.get_http_status() >= 500
                reason = code
            except self._network_errors as error:
                ambiguous = True
                reason = f"network: {_describe_network(error)}"
            if attempt >= self.settings.max_attempts:
                raise StoreError(
                    f"Tablestore add job counts: still failing after {attempt} attempts ({reason})"
                )
            log.info(
                "Tablestore write retried",
                extra={"operation": "add job counts", "reason": reason, "attempt": attempt},
            )
            time.sleep(_backoff(attempt))

    def _read_counts(self, job_id: str, token: str | None) -> tuple[dict[str, int], bool]:
        """The totals now, and whether the row's ``count_op`` is ``token``. KeyError if no such job."""
        columns = [
            "status",
            "count_op",
            *(f"count_{name}" for name in JOB_COUNTERS),
        ]  # status: every job has it
        row = self._get(self.t_jobs, [("job_id", job_id)], columns)
        if row is None:
            raise KeyError(job_id)
        totals = {name: int(row.get(f"count_{name}", 0)) for name in JOB_COUNTERS}
        return totals, token is not None and row.get("count_op") == token

    def _return_after_modify(self) -> Any:
        """The client, able to ask UpdateRow for ReturnType RT_AFTER_MODIFY.

        The service and its protocol have it (table_store.proto: ``ReturnContent {return_type = 1;
        return_column_names = 2}``, ``RT_AFTER_MODIFY = 2``; the atomic counter docs,
        https://www.alibabacloud.com/help/en/tablestore/developer-reference/java-atomic-counters: increment,
        addReturnColumn, RT_AFTER_MODIFY), but the Python SDK's ReturnType only has RT_NONE and RT_PK
        (ALIBABA-FACTS §"Atomic increment"). So this client's UpdateRow encoder is wrapped once: a
        ``return_type`` of ``_AfterModify(columns)`` encodes as the SDK does for none, then sets those two
        fields. The SDK's UpdateRow decoder already returns the row the response carries."""
        encoder = self.client.protocol.encoder
        if not getattr(encoder, "_chatapp_after_modify", False):
            from tablestore.protobuf import table_store_pb2

            original = encoder.api_encode_map["UpdateRow"]

            def encode(
                table_name: str, row: Any, condition: Any, return_type: Any = None, transaction_id: Any = None
            ) -> Any:
                if not isinstance(return_type, _AfterModify):
                    return original(table_name, row, condition, return_type, transaction_id)
                encoded = original(table_name, row, condition, None, transaction_id)
                # the SDK's native encoder returns bytes in a wrapper: as a message, to set the fields
                proto = table_store_pb2.UpdateRowRequest.FromString(encoded.SerializeToString())
                proto.return_content.return_type = table_store_pb2.RT_AFTER_MODIFY
                proto.return_content.return_column_names.extend(return_type.columns)
                return proto

            encoder.api_encode_map["UpdateRow"] = encode
            encoder._chatapp_after_modify = True
        return self.client

    # --- helpers ----------------------------------------------------------------------------------------
    def _status_is(self, states: Iterable[str]) -> Any:
        """The column condition "status is one of ``states``" (a missing column is not): an OR of EQUALs."""
        ts = self._ts
        singles = [
            ts.SingleColumnCondition("status", s, ts.ComparatorType.EQUAL, pass_if_missing=False)
            for s in states
        ]
        if len(singles) == 1:
            return singles[0]
        either = ts.CompositeColumnCondition(ts.LogicalOperator.OR)
        for single in singles:
            either.add_sub_condition(single)
        return either

    def _status_condition(self, states: list[str] | None, **equal: Any) -> Any:
        """The row exists, its status is one of ``states`` (if given) and each ``column=value`` of ``equal``
        whose value is not None holds: the owner token of a fenced write (a missing column is not equal)."""
        ts = self._ts
        conditions: list[Any] = [self._status_is(states)] if states else []
        for column, value in equal.items():
            if value is not None:
                conditions.append(
                    ts.SingleColumnCondition(column, value, ts.ComparatorType.EQUAL, pass_if_missing=False)
                )
        if not conditions:
            return ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST)
        if len(conditions) == 1:
            return ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST, conditions[0])
        both = ts.CompositeColumnCondition(ts.LogicalOperator.AND)
        for condition in conditions:
            both.add_sub_condition(condition)
        return ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST, both)


def _created_desc(created_at: float) -> int:
    """The job index's sort key: newest first, by the millisecond."""
    return _MAX_TIME_MS - int(created_at * 1000)


def _token() -> str:
    return secrets.token_hex(8)


# --- the job_status index, per-job counters (issue 11) -----------------------------------------------------
_SWEPT = frozenset(s.value for s in SWEPT_STATUSES)
_STATUS_CHANGE_ROUNDS = 32
# A row of the index whose job is not in its status is removed by readers only this long after it was written:
# until then it may be the row of a status change between its two writes (seconds, with every retry).
_STALE_STATUS_ROW_MS = 10 * 60 * 1000
_INDEXED_MARKER = "#jobs-of-older-releases-indexed"  # a key no status has


@dataclass(frozen=True)
class _AfterModify:
    """UpdateRow's ReturnType RT_AFTER_MODIFY, returning these columns (see _return_after_modify)."""

    columns: tuple[str, ...]


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- chunks of input records (see the module docs) ---------------------------------------------------------
# A record in a chunk: [line, to, status, code, message, batch_seq, recipient]
_LINE, _BATCH_SEQ, _RECIPIENT = 0, 5, 6


@dataclass(frozen=True)
class _Chunk:
    job_id: str
    first_line: int
    last_line: int
    count: int
    data: bytes  # zlib-compressed JSON list of records


_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # json.dumps, set up once


# A status's JSON string, by status (a str Enum: its value hashes and compares as the status itself).
_STATUS_JSON = {status: _quoted(status.value) for status in RowStatus}
_JOB_AND_LINE = itemgetter(0, 1)  # a RowRecord's (job_id, line), in C: the chunks' order


def _record_json(row: RowRecord) -> str:
    """``json.dumps([line, to, status, code, message, batch_seq, recipient], ensure_ascii=False,
    separators=(",", ":"))``, written directly when the fields have their usual types (the recipient by
    :func:`~chatapp_mass.core.planning.sender_json`); ``tests/unit/test_tablestore_chunks.py`` compares."""
    _, line, to, status, code, message, seq, recipient, text = row
    if (
        type(line) is int
        and (seq is None or type(seq) is int)
        and (recipient is None or type(recipient) is dict)
        and type(to) is str
        and type(code) is str
        and type(message) is str
    ):
        if recipient is None:
            text = "null"
        elif text is None:  # the planner's own encoding when it carries one (the same bytes: sender_json)
            text = sender_json(recipient)
        quoted_status = _STATUS_JSON.get(status) or _quoted(status.value)
        if not code and not message:  # a valid row
            return f'[{line},{_quoted(to)},{quoted_status},"","",{"null" if seq is None else seq},{text}]'
        return (
            f"[{line},{_quoted(to)},{quoted_status},{_quoted(code)},{_quoted(message)},"
            f"{'null' if seq is None else seq},{text}]"
        )
    return _COMPACT_JSON([line, to, status.value, code, message, seq, recipient])


def _encode_chunks(rows: Iterable[RowRecord]) -> list[_Chunk]:
    """Rows (any order, any jobs) as chunks of one job's consecutive records, in line order.

    A chunk's records are joined as text and encoded once; a record's UTF-8 size (the chunk's bound) is its
    length when ASCII (``isascii`` is a flag of the string, free), else that of its encoding."""
    chunks: list[_Chunk] = []
    parts: list[str] = []
    size = 0
    job_id, first, last = "", 0, 0

    def close() -> None:
        data = zlib.compress(("[" + ",".join(parts) + "]").encode("utf-8"), _CHUNK_ZLIB_LEVEL)
        if len(data) > _MAX_VALUE_BYTES - 1024:  # only one huge record can get there (_CHUNK_JSON_BYTES)
            raise StoreError(
                f"job {job_id}, input line {first}: the record takes {len(data):,} bytes "
                f"compressed, over Tablestore's limit of {_MAX_VALUE_BYTES:,} bytes for one value"
            )
        chunks.append(_Chunk(job_id, first, last, len(parts), data))

    record_json, append = _record_json, parts.append
    for row in sorted(rows, key=_JOB_AND_LINE):  # the engine's rows are in order already: one pass
        row_job, line = row[0], row[1]
        part = record_json(row)
        part_size = len(part) if part.isascii() else len(part.encode("utf-8"))
        if parts and (
            len(parts) >= _CHUNK_RECORDS or size + part_size > _CHUNK_JSON_BYTES or row_job != job_id
        ):
            close()
            parts, size = [], 0
            append = parts.append
        if not parts:
            job_id, first = row_job, line
        append(part)
        size += part_size + 1
        last = line
    if parts:
        close()
    return chunks


def _chunk_records(row: dict[str, Any]) -> list[list[Any]]:
    """The input records a ``rows`` table row holds, in line order."""
    data = row.get("data")
    if data is not None:
        records: list[list[Any]] = json.loads(zlib.decompress(data))
        return records
    # a row of the one-record-per-row layout (before chunks)
    recipient = row.get("recipient")
    return [
        [
            row["line"],
            row.get("to", ""),
            row["status"],
            row.get("code", ""),
            row.get("message", ""),
            row.get("batch_seq"),
            json.loads(recipient) if recipient else None,
        ]
    ]


def _last_line(row: dict[str, Any]) -> int:
    return int(row.get("last_line", row["line"]))


def _describe_network(error: BaseException) -> str:
    getter = getattr(error, "get_error_message", None)
    return str(getter() if getter else error) or type(error).__name__


def _backoff(attempt: int) -> float:
    return min(0.05 * 2.0**attempt, 2.0) * random.uniform(0.5, 1.0)


def _row_dict(row: Any) -> dict[str, Any]:
    data: dict[str, Any] = {name: value for name, value in row.primary_key}
    for column in row.attribute_columns or []:
        data[column[0]] = column[1]
    return data


def _check_job_row(job_id: str, columns: list[tuple[str, Any]]) -> None:
    """A job row Tablestore would refuse, refused here with what is too big (before any write of the job)."""
    sizes = {name: len(value.encode("utf-8")) if isinstance(value, str) else 8 for name, value in columns}
    for name, size in sizes.items():
        if size > _MAX_VALUE_BYTES:
            raise StoreError(
                f"job {job_id}: its {name} take {size:,} bytes, over Tablestore's limit of "
                f"{_MAX_VALUE_BYTES:,} bytes for one value: pass less (per-recipient data belongs in "
                "the CSV's columns)"
            )
    total = sum(sizes.values()) + sum(len(name) for name in sizes)
    if total > _MAX_ROW_WRITE_BYTES:
        raise StoreError(
            f"job {job_id}: its row takes {total:,} bytes, over Tablestore's limit of "
            f"{_MAX_ROW_WRITE_BYTES:,} bytes for one row write: pass smaller options"
        )


def _approx_size(row: Any) -> int:
    size = 64
    columns = row.attribute_columns
    if isinstance(columns, dict):
        columns = [c for group in columns.values() for c in group]
    for column in [*row.primary_key, *(columns or [])]:
        size += len(column[0]) + 16
        value = column[1] if len(column) > 1 else None
        if isinstance(value, str):
            size += len(value.encode("utf-8"))
        elif isinstance(value, (bytes, bytearray)):
            size += len(value)
    return size


def _job(row: dict[str, Any]) -> JobRecord:
    data = {name: row[name] for name in _JOB_FIELDS if name in row}
    data["options"] = json.loads(data.get("options") or "{}")
    data["intake"] = json.loads(data.get("intake") or "{}")
    data["status"] = JobStatus(data["status"])
    return JobRecord(**data)


def _batch(row: dict[str, Any]) -> BatchRecord:
    data = {name: row[name] for name in _BATCH_FIELDS if name in row}
    data["status"] = BatchStatus(data["status"])
    return BatchRecord(**data)


_RATE_KEPT = 1000  # departures rate_depart keeps (it does not know the limit): more than any --qps


def _rate_entries(
    row: dict[str, Any] | None, now: float, window: float
) -> tuple[list[float], dict[str, float]]:
    """The rate row's departures inside the window and its holds not yet expired (``ratewindow``)."""
    if row is None:
        return [], {}
    stamps = sorted(s for s in json.loads(row["stamps"]) if s > now - window)
    holds = json.loads(row.get("holds") or "{}")
    return stamps, {t: nb for t, nb in holds.items() if not ratewindow.expired_hold(nb, now, window)}
