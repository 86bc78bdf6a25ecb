"""Retention on Tablestore (see ``store.retention``): the service deletes expired rows itself, by the tables'
time to live that ``init-tables`` sets (``TablestoreStore.init_tables``), so there is nothing to purge."""

from __future__ import annotations

from chatapp_mass.store.retention import PURGE_CHUNK, PurgeResult, RetentionStore
from chatapp_mass.store.tablestore import TablestoreStore


class TablestoreRetention(RetentionStore):
    def __init__(self, store: TablestoreStore) -> None:
        self.store = store

    def purge_finished(
        self, before: float, *, dry_run: bool = False, now: float | None = None, chunk: int = PURGE_CHUNK
    ) -> PurgeResult:
        del now, chunk  # nothing is deleted here
        return PurgeResult(
            before=before,
            dry_run=dry_run,
            note=(
                "Tablestore deletes the rows itself: the rows and batches tables' time to live (set by "
                "`chatapp-mass init-tables` from CHATAPP_RETENTION_DAYS) expires them; jobs keep their summary"
            ),
        )

    def claim_daily(self, now: float) -> bool:
        del now
        return False  # never a purge to run: the timer costs no Tablestore call for it
