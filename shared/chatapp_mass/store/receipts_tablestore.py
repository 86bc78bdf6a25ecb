"""The receipt store on Tablestore: forward-only delivery state as one conditional UpdateRow per recipient,
batched, so that an HTTP push of a few hundred reports costs one or two round trips (it must be answered
within 3 s, at 2,000 reports/s: ALIBABA-FACTS §6).

Tables (created by ``TablestoreStore.init_tables``; see the table in store/tablestore.py):

- ``receipts`` (task_id, to): status, rank (``RANK``), message_id, at_ms, error_code, error_description, op.
- ``tasks`` (task_id): job_id, seq. Written once (PutRow ``EXPECT_NOT_EXIST``): the first registration stays.
- ``receipts_aside`` (at_ms, receipt_key): the receipt's fields, reason, set_at. ``receipt_key`` is a digest of
  (task_id, to, message_id, status), so a repeated receipt is the same row (PutRow ``EXPECT_NOT_EXIST``: the
  first reason stays); the rows are in the receipts' Timestamp order, which is the listing's "oldest first".
  The key starts with the time, so writes go to the newest partition: fine for a table that only holds what
  should not happen (receipts of unregistered TaskIds), not for the receipts themselves.

How ``record`` keeps the rule :func:`~chatapp_mass.store.receipts.advances`:

- Each recipient's receipts of the call are folded first (the highest rank; of equal ranks the first in the
  call, as applying them one by one would keep), because a BatchWriteRow may not hold the same row twice with a
  condition ("Repeated rows do not support row condition check in BatchModify", the local Tablestore's
  documented message). The folded-away receipts count as ``unchanged``: they did not become the state.
- Each folded receipt is an UpdateRow with ``RowExistenceExpectation.IGNORE`` and the column condition
  ``rank < receipt's rank`` with ``pass_if_missing=True``: a missing row (or one without ``rank``) takes it,
  a row of lower rank takes it, any other fails its condition (``OTSConditionCheckFail``): ``unchanged``, not an
  error. The condition is checked and the row written atomically by the service, so concurrent pushes (and
  the same receipt delivered twice at once) cannot move a state backwards. Sources: conditional update
  (https://www.alibabacloud.com/help/doc-detail/35194.html: a single-value condition on an attribute column;
  "Specify whether the condition is met if the target attribute column does not exist in the row. By
  default, the condition is considered met"; passIfMissing, https://help.aliyun.com/document_detail/145462.htm)
  and BatchWriteRow accepting the same conditions per row (same pages). ASSUMPTION (the docs are silent on a
  column condition over a row that does not exist, under IGNORE): its columns are all missing, so
  ``pass_if_missing`` decides; the local Tablestore does so (``models._check_row_condition``).
- Requests of at most 200 rows (BatchWriteRow's limit) run ``write_threads`` at a time. A request that fails
  transiently is retried whole, rows that fail transiently are retried alone (the store's rules, see
  store/tablestore.py). After an *ambiguous* failure (timeout, 5xx, network) a retried row may fail its
  condition because its first attempt landed: each row carries the call's ``op`` token, and such a row is
  read back: our token there counts it ``changed``. The state is right either way; only the counts need this.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple

from chatapp_mass.core.errors import StoreError
from chatapp_mass.runtime import logs
from chatapp_mass.store.receipts import (
    RANK,
    DeliveryState,
    DeliveryStatus,
    Receipt,
    ReceiptStore,
    RecordResult,
    TaskRef,
)
from chatapp_mass.store.tablestore import (
    _AMBIGUOUS_CODES,
    _BATCH_WRITE_ROWS,
    _CONDITION_FAILED,
    TRANSIENT_CODES,
    TablestoreStore,
    _backoff,
    _describe_network,
    _must_wait,
    _Patience,
    _token,
)

log = logging.getLogger(__name__)

_STATE_COLUMNS = ["status", "message_id", "at_ms", "error_code", "error_description"]
_ASIDE_COLUMNS = [
    "task_id",
    "to",
    "message_id",
    "status",
    "error_code",
    "error_description",
    "from",
    "reason",
]


class _Outcome(NamedTuple):
    changed: int
    unchanged: int


def fold(receipts: Sequence[Receipt]) -> tuple[list[Receipt], int]:
    """One receipt per (task_id, to): the highest rank, of equal ranks the first; and how many were folded away.
    Pure: the same result as applying the receipts one by one, in one write per recipient."""
    kept: dict[tuple[str, str], Receipt] = {}
    for receipt in receipts:
        key = (receipt.task_id, receipt.to)
        held = kept.get(key)
        if held is None or RANK[receipt.status] > RANK[held.status]:
            kept[key] = receipt
    return list(kept.values()), len(receipts) - len(kept)


def receipt_key(receipt: Receipt) -> str:
    """The set-aside row of a receipt: the same for its repeats (idempotent on MessageId and Status, of one
    TaskId and To), of bounded length whatever the fields (a primary key column takes at most 1 KB)."""
    text = "\x1f".join((receipt.task_id, receipt.to, receipt.message_id, receipt.status.value))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class TablestoreReceipts(ReceiptStore):
    def __init__(self, store: TablestoreStore) -> None:
        self.store = store

    # --- tasks --------------------------------------------------------------------------------------------
    def register_task(self, task_id: str, job_id: str, seq: int) -> None:
        store, ts = self.store, self.store._ts
        row = ts.Row([("task_id", task_id)], [("job_id", job_id), ("seq", int(seq))])
        absent = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
        # False (the row exists: an earlier registration, or our own retried one) is fine: the first stays
        store._write("register task", partial(store.client.put_row, store.t_tasks, row, absent))

    def task(self, task_id: str) -> TaskRef | None:
        row = self.store._get(self.store.t_tasks, [("task_id", task_id)], ["job_id", "seq"])
        return TaskRef(str(row["job_id"]), int(row["seq"])) if row else None

    # --- delivery state -----------------------------------------------------------------------------------
    def record(self, receipts: Sequence[Receipt]) -> RecordResult:
        if not receipts:
            return RecordResult(0, 0)
        folded, folded_away = fold(receipts)
        token = _token()
        items = [self._forward_only(receipt, token) for receipt in folded]
        requests = [items[i : i + _BATCH_WRITE_ROWS] for i in range(0, len(items), _BATCH_WRITE_ROWS)]
        if len(requests) == 1 or self.store.settings.write_threads <= 1:
            outcomes = [self._write_request(request, token) for request in requests]
        else:
            with ThreadPoolExecutor(
                self.store.settings.write_threads, thread_name_prefix="ots-receipts"
            ) as pool:
                futures = [pool.submit(logs.carried(self._write_request), r, token) for r in requests]
                outcomes = [future.result() for future in futures]
        changed = sum(outcome.changed for outcome in outcomes)
        unchanged = sum(outcome.unchanged for outcome in outcomes) + folded_away
        return RecordResult(changed, unchanged)

    def _forward_only(self, receipt: Receipt, token: str) -> Any:
        """The UpdateRow that applies ``receipt`` only if the row has no state or a lower-ranked one."""
        ts = self.store._ts
        rank = RANK[receipt.status]
        columns = [
            ("status", receipt.status.value),
            ("rank", rank),
            ("message_id", receipt.message_id),
            ("at_ms", int(receipt.at_ms)),
            ("error_code", receipt.error_code),
            ("error_description", receipt.error_description),
            ("op", token),
        ]
        lower = ts.SingleColumnCondition("rank", rank, ts.ComparatorType.LESS_THAN, pass_if_missing=True)
        condition = ts.Condition(ts.RowExistenceExpectation.IGNORE, lower)
        return ts.UpdateRowItem(
            ts.Row([("task_id", receipt.task_id), ("to", receipt.to)], {"put": columns}), condition
        )

    def _write_request(self, items: list[Any], token: str) -> _Outcome:
        """One BatchWriteRow of ``items`` (at most 200), retried as the module docs say."""
        store, ts = self.store, self.store._ts
        table, settings = store.t_receipts, store.settings
        pending = list(range(len(items)))  # indices into items
        ambiguous: set[int] = set()
        to_check: list[int] = []
        changed = unchanged = 0
        patience = _Patience(settings.table_wait_seconds)
        attempt = 0
        while pending:
            attempt += 1
            request = ts.BatchWriteRowRequest()
            request.add(ts.TableInBatchWriteRowItem(table, [items[i] for i in pending]))
            try:
                response = store.client.batch_write_row(request)
            except ts.OTSServiceError as error:
                code = error.get_error_code()
                if _must_wait(error):
                    if not patience.wait():
                        raise store._waited_too_long("BatchWriteRow receipts", error) from None
                    attempt -= 1
                    continue
                if code not in TRANSIENT_CODES and error.get_http_status() not in (500, 502, 503):
                    raise store._refusal("BatchWriteRow receipts", error) from None
                if code in _AMBIGUOUS_CODES or error.get_http_status() >= 500:
                    ambiguous.update(pending)
                reason = code
            except store._network_errors as error:
                ambiguous.update(pending)
                reason = f"network: {_describe_network(error)}"
            else:
                retry: list[int] = []
                for result in response.get_update_by_table(table):
                    i = pending[result.index]
                    if result.is_ok:
                        changed += 1
                    elif result.error_code == _CONDITION_FAILED:
                        if i in ambiguous:
                            to_check.append(i)
                        else:
                            unchanged += 1
                    elif result.error_code in TRANSIENT_CODES:
                        if result.error_code in _AMBIGUOUS_CODES:
                            ambiguous.add(i)
                        retry.append(i)
                    else:
                        key = dict(items[i].row.primary_key)
                        raise StoreError(
                            f"Tablestore BatchWriteRow receipts: task {key['task_id']!r}: "
                            f"{result.error_code}: {result.error_message}"
                        )
                pending = retry
                if not pending:
                    break
                reason = f"{len(retry)} rows failed transiently"
            if attempt >= settings.max_attempts:
                raise StoreError(
                    f"Tablestore BatchWriteRow receipts: still failing after {attempt} attempts ({reason})"
                )
            log.info(
                "Tablestore write retried",
                extra={"operation": "BatchWriteRow receipts", "reason": reason, "attempt": attempt},
            )
            time.sleep(_backoff(attempt))
        for i in to_check:  # after an ambiguous attempt: did our own earlier attempt land?
            row = store._get(table, list(items[i].row.primary_key), ["op"])
            if row is not None and row.get("op") == token:
                changed += 1
            else:
                unchanged += 1
        return _Outcome(changed, unchanged)

    def states(self, task_id: str) -> dict[str, DeliveryState]:
        ts = self.store._ts
        rows = self.store._range(
            self.store.t_receipts,
            [("task_id", task_id), ("to", ts.INF_MIN)],
            [("task_id", task_id), ("to", ts.INF_MAX)],
            _STATE_COLUMNS,
        )
        return {
            row["to"]: DeliveryState(
                DeliveryStatus(row["status"]),
                str(row.get("message_id", "")),
                int(row.get("at_ms", 0)),
                str(row.get("error_code", "")),
                str(row.get("error_description", "")),
            )
            for row in rows
        }

    def counts(self, task_ids: Sequence[str]) -> dict[DeliveryStatus, int]:
        """Recipients per state over these tasks (a job's delivery figures): a GetRange of each task's rows
        reading only ``status``, ``write_threads`` tasks at a time (a job has a TaskId per batch). Overrides
        the ABC's default (helper "receipts" adds it there), which decodes every column of every state."""
        totals = dict.fromkeys(DeliveryStatus, 0)
        unique = list(dict.fromkeys(task_ids))
        threads = min(self.store.settings.write_threads, len(unique))
        if threads <= 1:
            found = [self._statuses(task_id) for task_id in unique]
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="ots-receipts") as pool:
                found = list(pool.map(logs.carried(self._statuses), unique))
        for statuses in found:
            for status in statuses:
                totals[DeliveryStatus(status)] += 1
        return totals

    def _statuses(self, task_id: str) -> list[str]:
        ts = self.store._ts
        rows = self.store._range(
            self.store.t_receipts,
            [("task_id", task_id), ("to", ts.INF_MIN)],
            [("task_id", task_id), ("to", ts.INF_MAX)],
            ["status"],
        )
        return [str(row["status"]) for row in rows]

    # --- set aside ----------------------------------------------------------------------------------------
    def set_aside(self, receipts: Sequence[Receipt], reason: str) -> None:
        store, ts = self.store, self.store._ts
        absent = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
        now = time.time()
        rows: dict[tuple[int, str], Any] = {}  # one per key: a request may not repeat a row with a condition
        for receipt in receipts:
            pk = (int(receipt.at_ms), receipt_key(receipt))
            if pk in rows:
                continue
            columns = [
                ("task_id", receipt.task_id),
                ("to", receipt.to),
                ("message_id", receipt.message_id),
                ("status", receipt.status.value),
                ("error_code", receipt.error_code),
                ("error_description", receipt.error_description),
                ("from", receipt.from_),
                ("reason", reason),
                ("set_at", now),
            ]
            rows[pk] = ts.PutRowItem(ts.Row([("at_ms", pk[0]), ("receipt_key", pk[1])], columns), absent)
        if rows:  # a row that exists already is the same receipt, set aside before: the first reason stays
            store._batch_write(
                store.t_receipts_aside, list(rows.values()), "receipts aside", tolerate=[_CONDITION_FAILED]
            )

    def set_aside_list(self, limit: int = 100) -> list[tuple[Receipt, str]]:
        if limit <= 0:
            return []
        ts = self.store._ts
        rows = self.store._range(
            self.store.t_receipts_aside,
            [("at_ms", ts.INF_MIN), ("receipt_key", ts.INF_MIN)],
            [("at_ms", ts.INF_MAX), ("receipt_key", ts.INF_MAX)],
            _ASIDE_COLUMNS,
            limit,
        )
        return [
            (
                Receipt(
                    task_id=str(row["task_id"]),
                    to=str(row["to"]),
                    message_id=str(row.get("message_id", "")),
                    status=DeliveryStatus(row["status"]),
                    at_ms=int(row["at_ms"]),
                    error_code=str(row.get("error_code", "")),
                    error_description=str(row.get("error_description", "")),
                    from_=str(row.get("from", "")),
                ),
                str(row.get("reason", "")),
            )
            for row in rows
        ]
