"""The canary's gate (rules: ``core.canary``): which batches a job may send while its canary holds.

The senders ask :meth:`CanaryGate.check` each time they look at a job's batches. While the canary's own
batches (the planned batches holding its first N recipients, and their parts) are open, only those are sent.
Once they are resolved, the receipts of their recipients decide (``core.canary.verdict``): passed, the job
goes on; failed, it is paused with the reason; undecided, the senders stop and the job waits ``scheduled``
(the timer starts it again at ``wake_at``; the CLI waits in its loop instead).

The verdict is written to the job row (``JobRecord.canary``) once; an operator's resume of a job a canary
paused marks it ``overridden`` (``jobs.resume_job``), so the canary holds nothing back any more.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

from chatapp_mass.adapters.cams import batch_task_id
from chatapp_mass.core.canary import CanaryState, CanaryTally, verdict
from chatapp_mass.core.options import JobOptions
from chatapp_mass.store.interface import (
    OPEN_STATUSES,
    BatchRecord,
    BatchStatus,
    JobRecord,
    JobStatus,
    Store,
)
from chatapp_mass.store.receipts import DeliveryStatus, ReceiptStore

log = logging.getLogger(__name__)

# How soon a waiting canary looks at its receipts again: as long as it has waited so far, within these bounds
# (receipts usually come within seconds; a slow one is not looked for every few seconds for 15 minutes).
POLL_MIN, POLL_MAX = 5.0, 60.0


class Gate(NamedTuple):
    """What the canary allows now: only ``allowed`` batches; with ``pause``, nothing (the job is paused with
    that reason); with nothing allowed and ``wake_at``, the job waits for receipts until then."""

    allowed: frozenset[int]
    pause: str = ""
    wake_at: float = 0.0
    reason: str = ""


def canary_batches(batches: list[BatchRecord], recipients: int) -> list[BatchRecord]:
    """The batches holding a job's first ``recipients`` valid recipients: the planned batches whose sizes
    add up to it (the planner cut them there: ``BatchPlanner.cut_after``), and every part of them."""
    planned = sorted((b for b in batches if b.root < 0), key=lambda b: b.seq)
    chosen: set[int] = set()
    total = 0
    for batch in planned:
        if total >= recipients:
            break
        chosen.add(batch.seq)
        total += batch.size
    return [b for b in batches if b.seq in chosen or b.root in chosen]


class CanaryGate:
    def __init__(
        self, store: Store, receipts: Callable[[], ReceiptStore], clock: Callable[[], float]
    ) -> None:
        self.store, self._receipts, self.clock = store, receipts, clock

    def check(self, job: JobRecord) -> Gate | None:
        """None: no canary holds the job back (none, or it passed, or an operator overrode it)."""
        if not job.canary:
            return None
        state = CanaryState.model_validate_json(job.canary)
        if not state.holds:
            return None
        if state.verdict == "failed":
            return Gate(frozenset(), pause=state.reason)
        ours = canary_batches(self.store.list_batches(job.job_id), state.options.recipients)
        open_ = [b for b in ours if b.status in OPEN_STATUSES]
        if open_:
            return Gate(frozenset(b.seq for b in open_))
        now = self.clock()
        if not state.sent_at:
            state.sent_at = now
            self.store.update_job(job.job_id, expect=[JobStatus.running], canary=state.model_dump_json())
        found = verdict(self.tally(job, ours), state.options, waited=max(now - state.sent_at, 0.0))
        if not found.decided:
            waited = max(now - state.sent_at, 0.0)
            wake = min(now + min(max(waited, POLL_MIN), POLL_MAX), state.sent_at + state.options.timeout)
            return Gate(frozenset(), wake_at=max(wake, now + 1.0), reason=found.reason)
        state.verdict, state.reason = ("passed" if found.passed else "failed"), found.reason
        # only over a running job (an operator's pause or cancel meanwhile stands). Two senders deciding at once
        # may differ (a receipt arrived between their reads): either verdict is safe, as a pass only lets the
        # job go on and a fail only pauses it for an operator; the last one written is the one kept.
        self.store.update_job(job.job_id, expect=[JobStatus.running], canary=state.model_dump_json())
        log.warning(
            "canary decided",
            extra={"job_id": job.job_id, "verdict": state.verdict, "canary_reason": found.reason},
        )
        return None if found.passed else Gate(frozenset(), pause=found.reason)

    def tally(self, job: JobRecord, ours: list[BatchRecord]) -> CanaryTally:
        """The canary's outcomes: per recipient, its batch's (refused) or its receipt's."""
        options = JobOptions.model_validate(job.options)
        receipts = self._receipts()
        recipients = refused = delivered = failed = 0
        codes: Counter[str] = Counter()
        for batch in ours:
            if batch.status in (BatchStatus.split, BatchStatus.splitting, BatchStatus.cancelled):
                continue  # its parts count (split), or nobody was asked to send it (cancelled)
            if batch.status is BatchStatus.uncertain:
                recipients += batch.size  # may have reached CAMS: no outcome unless receipts come
            elif batch.status is not BatchStatus.sent:
                recipients += batch.size
                refused += batch.size
                codes[batch.code] += batch.size
                continue
            states = receipts.states(options.task_id or batch_task_id(job.job_id, batch.seq))
            for recipient in self.store.batch_recipients(job.job_id, batch.seq):
                recipients += 1
                state = states.get(str(recipient.get("To", "")))
                if state is None:
                    continue
                if state.status in (DeliveryStatus.delivered, DeliveryStatus.read):
                    delivered += 1
                elif state.status is DeliveryStatus.failed:
                    failed += 1
                    codes[state.error_code] += 1
        return CanaryTally(recipients, refused, delivered, failed, codes)


def override(state_json: str) -> str:
    """``JobRecord.canary`` after an operator resumed the job a canary paused: the canary holds no more."""
    state = CanaryState.model_validate_json(state_json)
    if state.verdict == "failed":
        state.verdict = "overridden"
    return state.model_dump_json()
