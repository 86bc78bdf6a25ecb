"""The receipt store on this backend: PLACEHOLDER (issue 17 in progress), replaced by its implementation."""

from __future__ import annotations

from collections.abc import Sequence

from chatapp_mass.store.receipts import DeliveryState, Receipt, ReceiptStore, RecordResult, TaskRef
from chatapp_mass.store.sqlite import SqliteStore


class SqliteReceipts(ReceiptStore):
    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def register_task(self, task_id: str, job_id: str, seq: int) -> None:
        raise NotImplementedError

    def task(self, task_id: str) -> TaskRef | None:
        raise NotImplementedError

    def record(self, receipts: Sequence[Receipt]) -> RecordResult:
        raise NotImplementedError

    def states(self, task_id: str) -> dict[str, DeliveryState]:
        raise NotImplementedError

    def set_aside(self, receipts: Sequence[Receipt], reason: str) -> None:
        raise NotImplementedError

    def set_aside_list(self, limit: int = 100) -> list[tuple[Receipt, str]]:
        raise NotImplementedError
