"""The messaging limit's window (``reach``) in the main store's Tablestore instance: table ``{prefix}reach``.

One row per From number (primary key ``from_number``): ``entries`` (JSON, ``reach.encode``), ``version`` and
``op``, like the rate window's row (``TablestoreStore._rate_write``). A change reads the row, reads the clock
after the read, decides with the pure rules of ``reach`` and writes on condition that the version is still
the one read (``EXPECT_NOT_EXIST`` for a first row); a lost race reads again. The writes go through the
store's ``_write``: retried, and an ambiguous attempt told apart by the ``op`` token it wrote. The table is
created with the others (``TablestoreStore._schemas``, ``chatapp-mass init-tables``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatapp_mass.store import reach
from chatapp_mass.store.reach import DAY, Entry, Grant, ReachStore, Usage
from chatapp_mass.store.tablestore import TablestoreStore, _token


class TablestoreReach(ReachStore):
    def __init__(self, store: TablestoreStore, *, clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.clock = clock or store.clock
        self.table = f"{store.settings.table_prefix}reach"

    def _row(self, from_number: str) -> dict[str, Any] | None:
        return self.store._get(self.table, [("from_number", from_number)])

    def _put(self, from_number: str, row: dict[str, Any] | None, entries: list[Entry]) -> bool:
        """Write the entries on condition that the row is still the version read."""
        ts = self.store._ts
        pk = [("from_number", from_number)]
        version = int(row["version"]) if row else 0
        token = _token()
        columns = [("entries", reach.encode(entries)), ("version", version + 1), ("op", token)]
        if row is None:
            condition = ts.Condition(ts.RowExistenceExpectation.EXPECT_NOT_EXIST)
            write = lambda: self.store.client.put_row(self.table, ts.Row(pk, columns), condition)  # noqa: E731
        else:
            condition = ts.Condition(
                ts.RowExistenceExpectation.EXPECT_EXIST,
                ts.SingleColumnCondition("version", version, ts.ComparatorType.EQUAL, pass_if_missing=False),
            )
            write = lambda: self.store.client.update_row(  # noqa: E731
                self.table, ts.Row(pk, {"put": columns}), condition
            )
        return self.store._write("messaging limit window", write, self.store._op_is(self.table, pk, token))

    def reserve(
        self,
        from_number: str,
        count: int,
        limit: int | None,
        *,
        token: str,
        window: float = DAY,
        now: float | None = None,
    ) -> Grant:
        while True:
            row = self._row(from_number)
            at = self.clock() if now is None else now  # after the read, like the rate window's stamp
            grant, written = reach.reserve_entries(
                reach.decode(row["entries"]) if row else [], count, limit, window, at, token
            )
            if written is None or self._put(from_number, row, written):
                return grant
            # another sender won this version: read again

    def release(self, from_number: str, token: str, *, window: float = DAY, now: float | None = None) -> bool:
        while True:
            row = self._row(from_number)
            at = self.clock() if now is None else now
            written = reach.release_entries(reach.decode(row["entries"]) if row else [], token, at, window)
            if written is None:
                return False
            if self._put(from_number, row, written):
                return True

    def settle(
        self, from_number: str, token: str, at: float, *, window: float = DAY, now: float | None = None
    ) -> bool:
        while True:
            row = self._row(from_number)
            current = self.clock() if now is None else now
            written = reach.settle_entries(
                reach.decode(row["entries"]) if row else [], token, at, current, window
            )
            if written is None:
                return False
            if self._put(from_number, row, written):
                return True

    def usage(self, from_number: str, *, window: float = DAY, now: float | None = None) -> Usage:
        row = self._row(from_number)
        return reach.usage_of(
            reach.decode(row["entries"]) if row else [], self.clock() if now is None else now, window
        )
