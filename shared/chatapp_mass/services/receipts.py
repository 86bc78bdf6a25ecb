"""Receipts in: decode (``core.receipts``), find each report's job, record the delivery states, keep aside what
cannot be placed, and tell the suppression list about opt-outs and opt-ins.

One request is a handful of store round trips whatever its size (the HTTP push must be answered within 3 s,
ALIBABA-FACTS §6): one look-up per distinct unknown ``TaskId`` (registrations, which never change once made,
are cached in the process), one ``record`` for every delivery state, one ``set_aside`` for the unmatched.

Opt-outs and opt-ins go to hooks ``(space, numbers, reason)`` (the suppression store's ``add``/``remove``
once wired). The space of a receipt is its job's ``CustSpaceId`` option, or ``"default"`` (an unregistered
``TaskId``: ``"default"``). A STOP word in an inbound message opts its sender out in ``"default"`` and, when
the message names one, in its ``CustSpaceId`` too (ASSUMPTION, the strict choice: an inbound message does not
say which job it answers, so it suppresses wherever it may apply). Within one request, the latest of a number's
(un)subscribe events (by ``Timestamp``) decides.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chatapp_mass.core.phone_text import mask_number
from chatapp_mass.core.receipts import (
    DELETED,
    SUBSCRIBE,
    UNSUBSCRIBE,
    DecodedReports,
    StatusEvent,
    decode_inbound,
    decode_mns,
    decode_reports,
    is_stop,
    stop_words,
)
from chatapp_mass.runtime import env
from chatapp_mass.store.interface import Store
from chatapp_mass.store.receipts import DeliveryStatus, Receipt, ReceiptStore, TaskRef

log = logging.getLogger(__name__)

#: ``(space, numbers, reason)``: e.g. ``SuppressionStore.add(space, numbers, reason=reason, source=...)``.
OptHook = Callable[[str, list[str], str], None]
DEFAULT_SPACE = "default"
UNREGISTERED = "unregistered TaskId"
_CACHE_MAX = 10_000  # registrations (and job spaces) kept in the process


@dataclass
class IngestResult:
    """What one request did; ``accepted`` + ``skipped`` = the items it carried."""

    accepted: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # skipped, by named reason
    changed: int = 0  # delivery states moved forward
    unchanged: int = 0  # repeats, and receipts ranking no higher than the state
    deleted: int = 0
    unmatched: int = 0  # receipts of an unregistered TaskId (stored, and kept aside)
    opted_out: int = 0
    opted_in: int = 0

    def ack(self) -> dict[str, Any]:
        """The HTTP answer (ASSUMPTION: the SMS receipt ack, ALIBABA-FACTS §6), with the counts."""
        return {"code": 0, "msg": "success", "accepted": self.accepted, "skipped": self.skipped}


class ReceiptService:
    def __init__(
        self,
        receipts: ReceiptStore,
        on_opt_out: OptHook | None = None,
        on_opt_in: OptHook | None = None,
        *,
        store: Store | None = None,
        words: frozenset[str] | None = None,
    ) -> None:
        """``store``: the main store, to read a registered job's ``CustSpaceId`` (without it: ``"default"``).
        ``words``: the STOP words (default: ``CHATAPP_STOP_WORDS``)."""
        self.receipts, self.on_opt_out, self.on_opt_in, self.store = receipts, on_opt_out, on_opt_in, store
        self.words = words if words is not None else stop_words(os.environ.get(env.CHATAPP_STOP_WORDS))
        self._tasks: dict[str, TaskRef] = {}
        self._spaces: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- ChatAppStatus ----------------------------------------------------------------------------------
    def ingest(self, items: Iterable[Any]) -> IngestResult:
        """The HTTP push form: a list of reports."""
        return self.apply(decode_reports(items))

    def ingest_mns(self, items: Iterable[Any]) -> IngestResult:
        """The MNS form: a list of MNS messages, one report each."""
        return self.apply(decode_mns(items))

    def apply(self, decoded: DecodedReports) -> IngestResult:
        result = IngestResult(
            accepted=len(decoded.events),
            skipped=sum(decoded.skipped.values()),
            reasons=dict(decoded.skipped),
        )
        tasks = self._lookup({e.task_id for e in decoded.events})
        receipts: list[Receipt] = []
        opt_events: list[StatusEvent] = []
        for event in decoded.events:
            if event.kind == DELETED:
                result.deleted += 1
            elif event.kind in (SUBSCRIBE, UNSUBSCRIBE):
                opt_events.append(event)
            else:
                receipts.append(
                    Receipt(
                        event.task_id,
                        event.to,
                        event.message_id,
                        DeliveryStatus(event.kind),
                        event.at_ms,
                        event.error_code,
                        event.error_description,
                        event.from_,
                    )
                )
        if receipts:
            recorded = self.receipts.record(receipts)  # stored even unmatched: a late registration joins
            result.changed, result.unchanged = recorded.changed, recorded.unchanged
            unmatched = [r for r in receipts if r.task_id not in tasks]
            if unmatched:
                self.receipts.set_aside(unmatched, UNREGISTERED)
                result.unmatched = len(unmatched)
        if opt_events:
            result.opted_out, result.opted_in = self._opt(opt_events, tasks)
        if decoded.skipped:
            log.warning("receipts skipped", extra={"skipped": dict(decoded.skipped)})
        log.info(
            "receipts recorded",
            extra={
                "accepted": result.accepted,
                "changed": result.changed,
                "unchanged": result.unchanged,
                "deleted": result.deleted,
                "unmatched": result.unmatched,
            },
        )
        return result

    def _lookup(self, task_ids: set[str]) -> dict[str, TaskRef]:
        """The registered tasks among ``task_ids``: cached ones, the others read once each (a miss is not
        cached: the sender may register it a moment later)."""
        found: dict[str, TaskRef] = {}
        for task_id in task_ids:
            ref = self._tasks.get(task_id)
            if ref is None:
                ref = self.receipts.task(task_id)
                if ref is not None:
                    with self._lock:
                        if len(self._tasks) >= _CACHE_MAX:
                            self._tasks.clear()
                        self._tasks[task_id] = ref
            if ref is not None:
                found[task_id] = ref
        return found

    def _space(self, ref: TaskRef | None) -> str:
        if ref is None or self.store is None:
            return DEFAULT_SPACE
        space = self._spaces.get(ref.job_id)
        if space is None:
            job = self.store.get_job(ref.job_id)
            space = str((job.options.get("CustSpaceId") if job else None) or DEFAULT_SPACE)
            with self._lock:
                if len(self._spaces) >= _CACHE_MAX:
                    self._spaces.clear()
                self._spaces[ref.job_id] = space
        return space

    def _opt(self, events: list[StatusEvent], tasks: dict[str, TaskRef]) -> tuple[int, int]:
        """Viber (un)subscribe: per (space, number) the latest event decides; one hook call per space."""
        latest: dict[tuple[str, str], StatusEvent] = {}
        for event in sorted(events, key=lambda e: e.at_ms):
            latest[(self._space(tasks.get(event.task_id)), event.to)] = event
        outs: dict[str, list[str]] = {}
        ins: dict[str, list[str]] = {}
        for (space, number), event in latest.items():
            (outs if event.kind == UNSUBSCRIBE else ins).setdefault(space, []).append(number)
        self._fire(self.on_opt_out, outs, "unsubscribe")
        self._fire(self.on_opt_in, ins, "subscribe")
        return sum(map(len, outs.values())), sum(map(len, ins.values()))

    @staticmethod
    def _fire(hook: OptHook | None, by_space: dict[str, list[str]], reason: str) -> None:
        for space, numbers in by_space.items():
            log.info(
                "opt event",
                extra={
                    "reason": reason,
                    "space": space,
                    "numbers": [mask_number(n) for n in numbers[:5]],
                    "count": len(numbers),
                    "wired": hook is not None,
                },
            )
            if hook is not None:
                hook(space, numbers, reason)

    # --- ChatAppInbound ---------------------------------------------------------------------------------
    def inbound(self, items: Iterable[Any]) -> IngestResult:
        """Mobile-originated messages: a STOP word opts its sender out (``"stop-keyword"``)."""
        decoded = decode_inbound(items)
        result = IngestResult(
            accepted=len(decoded.messages),
            skipped=sum(decoded.skipped.values()),
            reasons=dict(decoded.skipped),
        )
        outs: dict[str, list[str]] = {}
        for message in decoded.messages:
            if is_stop(message, self.words):
                for space in dict.fromkeys((DEFAULT_SPACE, message.cust_space_id or DEFAULT_SPACE)):
                    numbers = outs.setdefault(space, [])
                    if message.from_ not in numbers:
                        numbers.append(message.from_)
        self._fire(self.on_opt_out, outs, "stop-keyword")
        result.opted_out = len({n for numbers in outs.values() for n in numbers})
        if decoded.skipped:
            log.warning("inbound messages skipped", extra={"skipped": dict(decoded.skipped)})
        return result

    # --- the operator's view ----------------------------------------------------------------------------
    def unmatched(self, limit: int = 100) -> list[dict[str, Any]]:
        """The receipts kept aside, oldest first, as JSON objects."""
        return [
            {
                "task_id": r.task_id,
                "to": r.to,
                "message_id": r.message_id,
                "status": r.status.value,
                "at_ms": r.at_ms,
                "error_code": r.error_code,
                "error_description": r.error_description,
                "reason": why,
            }
            for r, why in self.receipts.set_aside_list(limit)
        ]


def receipts_of(store: Store) -> ReceiptStore | None:
    """The receipt store beside ``store`` (``store.features.open_receipts``), or None for a store that has no
    receipt backend (a test's wrapper around one): receipts are then neither registered nor joined."""
    from chatapp_mass.store.features import open_receipts

    try:
        return open_receipts(store)
    except TypeError:
        return None


def reasons_text(counts: Counter[str] | dict[str, int]) -> str:
    """``missing-To: 2, unknown-status: 1`` (a log line or a CLI's summary)."""
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))
