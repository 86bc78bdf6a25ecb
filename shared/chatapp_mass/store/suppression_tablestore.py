"""The suppression list in the Tablestore store's instance, through its client and its retry rules.

Tables (created by ``init-tables``, listed in ``TablestoreStore._schemas``): ``{prefix}suppressed`` keyed
(space, number) and ``{prefix}suppressed_rows`` keyed (job_id, line). ``add`` and ``remove`` are BatchWriteRow
requests of conditional rows (put if absent, delete if present: the conditions make the counts, and a repeat
a no-op); ``suppressed`` is one BatchGetRow per 100 numbers (the request's row limit).

A write retried after an ambiguous failure (a timeout: it may have landed) and then refused by its condition
is counted as not added (or not removed): the counts are what the caller is told, the list itself is right.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from chatapp_mass.core.errors import StoreError
from chatapp_mass.store.suppression import (
    MarkedRow,
    Suppression,
    SuppressionStore,
    check_limit,
    check_numbers,
    check_reason,
    check_space,
    chunks,
)
from chatapp_mass.store.tablestore import (
    _BATCH_WRITE_ROWS,
    _CONDITION_FAILED,
    TRANSIENT_CODES,
    TablestoreStore,
    _backoff,
    _row_dict,
)


class TablestoreSuppression(SuppressionStore):
    def __init__(self, store: TablestoreStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store, self.clock, self._ts = store, clock, store._ts
        prefix = store.settings.table_prefix
        self.t_numbers, self.t_rows = f"{prefix}suppressed", f"{prefix}suppressed_rows"

    def _conditional_batch(self, items: list[Any], what: str) -> int:
        """BatchWriteRow ``items`` (each with a row condition), 200 a request; transient failures retried
        alone. Returns how many were applied (a condition failure is a row that needed no change)."""
        ts, store, applied = self._ts, self.store, 0
        for start in range(0, len(items), _BATCH_WRITE_ROWS):
            pending = items[start : start + _BATCH_WRITE_ROWS]
            for attempt in range(1, store.settings.max_attempts + 1):
                request = ts.BatchWriteRowRequest()
                request.add(ts.TableInBatchWriteRowItem(self.t_numbers, pending))
                response = store._call(
                    f"BatchWriteRow {what}", partial(store.client.batch_write_row, request)
                )
                (put_ok, put_failed), (delete_ok, delete_failed) = response.get_put(), response.get_delete()
                applied += len(put_ok) + len(delete_ok)
                retry = []
                for result in [*put_failed, *delete_failed]:
                    if result.error_code == _CONDITION_FAILED:
                        continue
                    elif result.error_code in TRANSIENT_CODES:
                        retry.append(pending[result.index])
                    else:
                        raise StoreError(
                            f"Tablestore BatchWriteRow {what}: {result.error_code}: {result.error_message}"
                        )
                if not retry:
                    break
                if attempt == store.settings.max_attempts:
                    raise StoreError(f"Tablestore BatchWriteRow {what}: {len(retry)} rows still failing")
                pending = retry
                time.sleep(_backoff(attempt))
        return applied

    def add(self, space: str, numbers: Sequence[str], *, reason: str, source: str = "") -> int:
        space, reason, numbers = check_space(space), check_reason(reason), check_numbers(numbers)
        ts, now = self._ts, self.clock()
        absent = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
        columns = [("reason", reason), ("at", float(now)), ("source", source)]
        items = [
            ts.PutRowItem(ts.Row([("space", space), ("number", number)], columns), absent)
            for number in numbers
        ]
        return self._conditional_batch(items, "suppress")

    def remove(self, space: str, numbers: Sequence[str]) -> int:
        space, numbers = check_space(space), check_numbers(numbers)
        ts = self._ts
        present = ts.Condition(ts.RowExistenceExpectation.EXPECT_EXIST)
        items = [
            ts.DeleteRowItem(ts.Row([("space", space), ("number", number)]), present) for number in numbers
        ]
        return self._conditional_batch(items, "unsuppress")

    def list(self, space: str, *, after: str = "", limit: int = 100) -> list[Suppression]:
        space, limit = check_space(space), check_limit(limit)
        ts = self._ts
        start = [("space", space), ("number", after if after else ts.INF_MIN)]
        found: list[Suppression] = []
        for row in self.store._range(
            self.t_numbers, start, [("space", space), ("number", ts.INF_MAX)], limit=limit + 1
        ):
            if row["number"] <= after:
                continue  # the page's start itself: the caller had it
            found.append(_suppression(row))
            if len(found) >= limit:
                break
        return found

    def suppressed(self, space: str, numbers: Sequence[str]) -> set[str]:
        space = check_space(space)
        ts, store, found = self._ts, self.store, set()
        for part in chunks(list(dict.fromkeys(numbers))):
            request = ts.BatchGetRowRequest()
            keys = [[("space", space), ("number", number)] for number in part]
            request.add(ts.TableInBatchGetRowItem(self.t_numbers, keys, ["reason"], max_version=1))
            response = store._call("BatchGetRow suppressed", partial(store.client.batch_get_row, request))
            for item in response.get_result_by_table(self.t_numbers):
                if not item.is_ok:
                    raise StoreError(
                        f"Tablestore BatchGetRow suppressed: {item.error_code}: {item.error_message}"
                    )
                if item.row is not None:
                    found.add(_row_dict(item.row)["number"])
        return found

    def mark_rows(self, rows: Sequence[MarkedRow]) -> None:
        if not rows:
            return
        ts = self._ts
        absent = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
        items = [
            ts.PutRowItem(
                ts.Row(
                    [("job_id", row.job_id), ("line", row.line)],
                    [("to", row.to), ("batch_seq", row.batch_seq), ("at", float(row.at))],
                ),
                absent,
            )
            for row in rows
        ]
        self.store._batch_write(self.t_rows, items, "suppressed rows", tolerate=[_CONDITION_FAILED])

    def marked_rows(
        self, job_id: str, first_line: int = 0, last_line: int | None = None
    ) -> builtins.list[MarkedRow]:
        ts = self._ts
        end = [("job_id", job_id), ("line", ts.INF_MAX if last_line is None else last_line + 1)]
        return [
            MarkedRow(job_id, int(row["line"]), row["to"], int(row["batch_seq"]), float(row["at"]))
            for row in self.store._range(self.t_rows, [("job_id", job_id), ("line", first_line)], end)
        ]


def _suppression(row: dict[str, Any]) -> Suppression:
    return Suppression(row["space"], row["number"], row["reason"], float(row["at"]), row.get("source", ""))
