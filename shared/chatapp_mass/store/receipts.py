"""Delivery receipts (ChatAppStatus): what happened to each message after CAMS accepted its call.

A receipt names its message by the call's ``TaskId`` and the recipient (``To``), and carries the per-message
``MessageId`` CAMS gave it. The store keeps one :class:`DeliveryState` per (task_id, to) and moves it only
forward (:data:`RANK`): a late ``Delivered`` never overwrites ``Read``, a repeat changes nothing, so receipts are
idempotent on (MessageId, Status) whatever order and however often they arrive (ALIBABA-FACTS §6: receipts may
repeat). The sender registers each call's ``TaskId`` (:meth:`ReceiptStore.register_task`) before the call, so a
receipt can always find its job; one whose ``TaskId`` is not registered is stored all the same and also kept
aside (:meth:`ReceiptStore.set_aside`), never dropped.

ASSUMPTION (the docs do not say how ``MessageId`` relates to ``TaskId``/``GroupMessageId``; ALIBABA-FACTS §6
"UNVERIFIED"): a receipt carries the ``TaskId`` of the call that sent its message, as sent. The local CAMS
(``alibaba_localcloud.cams``) pushes receipts exactly so.

Backends: ``receipts_sqlite.SqliteReceipts`` and ``receipts_tablestore.TablestoreReceipts``; one contract suite
(tests/contract/test_receipts_contract.py) runs on both. ``store.features.open_receipts`` picks one for a main
store.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple


class DeliveryStatus(str, Enum):
    """A message's delivery state, from its receipts (Status ``Sent``, ``Failed``, ``Delivered``, ``Read``)."""

    sent = "sent"
    failed = "failed"
    delivered = "delivered"
    read = "read"


# Forward only: a state changes to a receipt's status only if that ranks higher. ``failed`` ranks below
# ``delivered``: a message reported delivered was delivered, whatever a failure report arriving after it says.
RANK = {DeliveryStatus.sent: 1, DeliveryStatus.failed: 2, DeliveryStatus.delivered: 3, DeliveryStatus.read: 4}


class Receipt(NamedTuple):
    """One ChatAppStatus report, decoded at the edge (``core.receipts``); ``to`` in the wire form."""

    task_id: str
    to: str
    message_id: str
    status: DeliveryStatus
    at_ms: int  # the report's Timestamp
    error_code: str = ""
    error_description: str = ""
    from_: str = ""


class DeliveryState(NamedTuple):
    """What the store holds for one (task_id, to): the highest-ranked receipt seen."""

    status: DeliveryStatus
    message_id: str
    at_ms: int
    error_code: str = ""
    error_description: str = ""


class TaskRef(NamedTuple):
    """Which call a ``TaskId`` names: a job's batch (``seq``), or a whole job (its own ``--task-id``: -1)."""

    job_id: str
    seq: int


class RecordResult(NamedTuple):
    changed: int  # receipts that moved a state forward (or created one)
    unchanged: int  # repeats and receipts that ranked no higher than the state


def advances(state: DeliveryState | None, receipt: Receipt) -> bool:
    """Whether ``receipt`` moves ``state`` forward: the one rule every backend applies (as a condition)."""
    return state is None or RANK[receipt.status] > RANK[state.status]


class ReceiptStore(abc.ABC):
    @abc.abstractmethod
    def register_task(self, task_id: str, job_id: str, seq: int) -> None:
        """Record that ``task_id`` names batch ``seq`` of ``job_id`` (idempotent; the first registration
        stays). Called by the sender before its call."""

    @abc.abstractmethod
    def task(self, task_id: str) -> TaskRef | None:
        """The registration of ``task_id``, or None."""

    @abc.abstractmethod
    def record(self, receipts: Sequence[Receipt]) -> RecordResult:
        """Apply the receipts, each atomically and only forward (:func:`advances`), in as few round trips as
        the backend allows (the HTTP push must be answered within 3 s). Idempotent; any order."""

    @abc.abstractmethod
    def states(self, task_id: str) -> dict[str, DeliveryState]:
        """Every recipient of ``task_id`` that has a receipt: ``to -> state``."""

    def counts(self, task_ids: Sequence[str]) -> dict[DeliveryStatus, int]:
        """How many recipients of these tasks are in each state (a job's delivery figures). This default reads
        every state (:meth:`states`, once per task); a backend may count in fewer round trips."""
        totals = dict.fromkeys(DeliveryStatus, 0)
        for task_id in dict.fromkeys(task_ids):
            for state in self.states(task_id).values():
                totals[state.status] += 1
        return totals

    def failed_codes(self, task_ids: Sequence[str]) -> dict[str, int]:
        """How many recipients of these tasks failed, by ErrorCode, most first (the job page's "most common
        failures"). This default reads every state of the tasks; a backend may do it in fewer round trips."""
        codes: dict[str, int] = {}
        for task_id in dict.fromkeys(task_ids):
            for state in self.states(task_id).values():
                if state.status is DeliveryStatus.failed:
                    codes[state.error_code] = codes.get(state.error_code, 0) + 1
        return dict(sorted(codes.items(), key=lambda item: (-item[1], item[0])))

    @abc.abstractmethod
    def set_aside(self, receipts: Sequence[Receipt], reason: str) -> None:
        """Keep receipts the store cannot place (an unregistered TaskId) for an operator (idempotent)."""

    @abc.abstractmethod
    def set_aside_list(self, limit: int = 100) -> list[tuple[Receipt, str]]:
        """The receipts kept aside, with why, oldest first."""
