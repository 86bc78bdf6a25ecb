"""Reconcile ``uncertain`` batches with ListChatappMessage, and resend what is still unaccounted for.

A batch is ``uncertain`` when its call may or may not have reached CAMS (a timeout after sending, a crash
mid-call). Reconciling asks CAMS which of its recipients it has:

- **By GroupMessageId** when the batch knows it (a reply arrived but could not be recorded): exact, that
  call's messages only. Else **one query per recipient**: ``UserNumber`` + ``BusinessNumber`` (the job's
  From) + ``TemplateCode`` + the batch's **call interval** (ALIBABA-FACTS §6). Per number, not one listing
  of the interval: at the account's ceiling it holds up to 10,000 messages a second of *other* batches,
  pages of which would cost far more than one small query per recipient. The queries are paced
  account-wide (``--list-qps``, default 20/s; the quota page gives the API 50/s).
- **The call interval** (:func:`call_interval`): from ``sending_at`` - :data:`CLOCK_SKEW` to ``sending_at``
  + the CAMS client's connect and read timeouts + :data:`CLOCK_SKEW`. ``sending_at`` is when the batch's
  *last* attempt started. A batch may have been attempted several times (throttled, ``not_sent``, a rate
  slot come too late): every earlier attempt was refused or never made, so CAMS took nothing from it; only
  the last one, whose outcome was ambiguous, can have been accepted, and CAMS accepted it, if at all, while
  we were connecting or waiting for its reply. A message to the number outside that interval is another
  call's (the weekly recurring send, a ``--new-job`` run, a forced HTTP repeat, the same job's earlier
  reopened send) and does not make the recipient found: before, the window ran from 120 s before the call
  until the lookup (minutes or days later), and such a message made the recipient ``sent``: lost. A part
  made by a reconciliation inherits its batch's ``sending_at`` (``parts.part_batches``): its recipients were
  sent by that call. A record without ``sending_at`` falls back to the interval ending when the batch
  turned uncertain (``updated_at``): never later than its call could have been.
- **TaskId is no help here.** Each call may carry its batch's :func:`~chatapp_mass.adapters.cams.batch_task_id` (a
  part called by itself: its own seq; the uncertain parts of a reconciliation were sent by their parent's
  call, under the parent's id), but ListChatappMessage neither filters by ``TaskId`` nor returns it (SDK
  request and response models), so the lookup cannot match on it; receipts (ChatAppStatus) can.
- Found recipients become ``sent`` (code ``Reconciled``); the rest stay ``uncertain`` (code ``NotFound``). A
  batch found in part is split (``parts``): runs of found lines become sent parts, the others uncertain parts.
- **WhatsApp and Viber only** (the API covers no other channel): Messenger and Instagram batches stay
  uncertain until an operator decides. The API also needs ``CustSpaceId``: the job's, or one given here.

Deployed, a job that finishes with uncertain batches is looked up by itself ``CHATAPP_RECONCILE_AFTER`` s later
(a sender invocation ``{"job_id", "reconcile": true}``, ``sender.Sender.reconcile``), and its report object
is written again. Nothing is ever sent by reconciling. Resending (:func:`reopen_uncertain`) is an explicit
operator action (CLI ``reconcile --resend`` / ``send --resend-uncertain``, HTTP ``POST /jobs/{id}/resend-uncertain``),
logged with ``operator_decision``; for WhatsApp and Viber it reconciles first, so only recipients CAMS does
not have are sent again, and it refuses when reconciling cannot run (unless told to skip it).

**Residual ambiguity** (what the interval cannot tell apart; ``RECONCILE-NOTE.md``):

- *Another call inside the interval.* A message to the same number, from the same From, with the same
  template, accepted by CAMS within the ~55 s of this batch's interval (two jobs with overlapping lists
  sending at the same time; the same file sent concurrently as a new job or a forced repeat) is taken for
  this batch's: that recipient is marked ``sent`` though this call may not have reached CAMS. Nothing in
  a ListChatappMessage item names the call (no ``TaskId``, no ``GroupMessageId``).
- *A late timestamp.* Which time ``StartTime``/``EndTime`` compare (the call's acceptance, or each
  message's dispatch, ``SendTime``) is not documented. If CAMS queues a mass send and stamps a message
  later than the interval's end (a backlog, or acceptance after our read timeout gave up), that message is
  not found: the recipient stays ``uncertain`` (``NotFound``), never wrongly ``sent``, but an operator's
  resend then sends it twice. The interval errs on this side on purpose: a false "not found" is visible
  and needs a decision; a false "found" is a silent loss.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from chatapp_mass.adapters.cams import CamsClient, ListPage
from chatapp_mass.core.errors import ChatAppMassError
from chatapp_mass.core.options import JobOptions
from chatapp_mass.runtime import logs
from chatapp_mass.services.parts import Part, finish_split, runs, split_batch
from chatapp_mass.services.ratelimit import SlidingWindowLimiter
from chatapp_mass.services.suppress import suppression_of
from chatapp_mass.store.interface import (
    BatchRecord,
    BatchStatus,
    JobRecord,
    JobStatus,
    Store,
    generation,
    part_seq,
)

log = logging.getLogger(__name__)

LIST_QPS = 20
PAGE_SIZE = 100
CLOCK_SKEW = 10.0
"""Seconds added on both sides of a call's interval. ``sending_at`` is our clock, read just before the rate
slot; the interval is compared with the service's clock. It covers: the two clocks' difference (Function
Compute's and CAMS's hosts are NTP-synced: well under a second); ``sending_at`` being written ahead of the
slot (``ratelimit.DEFAULT_LEAD``, 50 ms) plus a wait there behind other processes' slots (up to a few
seconds at the account's rate); the request's transfer (a full batch is ~100 KB of body). Wider lets more
of another call's messages pass for this one's; narrower risks missing this call's own."""
_RETRIES = 6  # a throttled or failed query: again after 0.2, 0.4, 0.8, 1.6, 2 s


class ReconcileError(ChatAppMassError):
    """Reconciling could not run (channel, CustSpaceId) or ListChatappMessage kept failing."""


@dataclass
class ReconcileResult:
    batches: int = 0  # uncertain batches looked at
    found: int = 0  # recipients CAMS has: now sent
    not_found: int = 0  # recipients it does not have: still uncertain
    queries: int = 0
    left: int = 0  # uncertain batches not looked at (deadline)
    skipped: str = ""  # why nothing could be looked at
    error: str = ""  # a batch left as it was: ListChatappMessage kept failing
    # The batches (or parts) this lookup left uncertain: the only ones a resend that reconciled may reopen.
    # A batch that became uncertain after the lookup (a sweeper took its sender for dead meanwhile) was not
    # looked up, and CAMS may well have it.
    looked_up: list[int] = field(default_factory=list)
    # Of those, the claim each had when looked up (owner, claim_expires): a reopen is fenced by it. A paused
    # sender that never made its call gives an uncertain batch back and may send it again meanwhile (a new
    # claim): that call was not looked up, so the batch must not be reopened on this lookup's word.
    fences: dict[int, tuple[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("looked_up")
        data.pop("fences")
        return data


@dataclass
class _Query:
    client: CamsClient
    limiter: SlidingWindowLimiter
    queries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def page(self, query: dict[str, Any]) -> ListPage:
        for attempt in range(_RETRIES):
            self.limiter.acquire()
            with self.lock:
                self.queries += 1
            page = self.client.list_messages(query)
            if page.ok or not _transient(page.code) or attempt == _RETRIES - 1:
                return page
            self.limiter.sleep(min(0.2 * 2**attempt, 2.0))
        raise AssertionError("unreachable")


def _transient(code: str) -> bool:
    return code.startswith(("Throttling", "System.", "ServiceUnavailable", "InternalError")) or code in (
        "ReadTimeout",
        "TransportError",
        "ConnectFailed",
        "NonJsonReply",
    )


class Reconciler:
    def __init__(
        self,
        store: Store,
        cams: CamsClient,
        *,
        qps: int = LIST_QPS,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.store, self.cams, self.clock, self.sleep = store, cams, clock, sleep
        self.limiter = SlidingWindowLimiter(
            store, limit=qps, key="cams:ListChatappMessage", margin=0.0, clock=clock, sleep=sleep
        )
        self.concurrency = concurrency

    def reconcile(
        self, job: JobRecord, *, cust_space_id: str | None = None, deadline: float | None = None
    ) -> ReconcileResult:
        """Look up every uncertain batch of ``job`` (until ``deadline`` on ``clock``, between batches)."""
        result = ReconcileResult()
        options = JobOptions.model_validate(job.options)
        for half_done in self.store.list_batches(job.job_id, [BatchStatus.splitting]):
            finish_split(self.store, half_done)  # a lookup that died mid-split (finishing twice is harmless)
        uncertain = self.store.list_batches(job.job_id, [BatchStatus.uncertain])
        if not uncertain:
            return result
        why = unreconcilable(options, cust_space_id)
        if why:
            result.skipped, result.left = why, len(uncertain)
            return result
        query = _Query(self.cams, self.limiter)
        for index, batch in enumerate(uncertain):
            if deadline is not None and self.clock() >= deadline:
                result.left = len(uncertain) - index
                break
            try:
                found, missing = self._batch(
                    job, options, cust_space_id or options.cust_space_id or "", batch, query, result
                )
            except ReconcileError as error:
                result.error, result.left = str(error), len(uncertain) - index
                break
            result.batches += 1
            result.found += found
            result.not_found += missing
        result.queries = query.queries
        log.info(
            "reconciled uncertain batches with ListChatappMessage",
            extra={"job_id": job.job_id, **{k: v for k, v in result.to_dict().items() if v}},
        )
        return result

    def _batch(
        self,
        job: JobRecord,
        options: JobOptions,
        cust_space_id: str,
        batch: BatchRecord,
        query: _Query,
        left: ReconcileResult,
    ) -> tuple[int, int]:
        all_rows = self.store.batch_rows(job.job_id, batch.seq)
        # Lines the sender left out as suppressed were never in the call: nothing to look up, nothing to
        # resend (resolved with the found ones; the report says ``suppressed`` for them).
        suppression = suppression_of(self.store)
        marked = (
            {row.line for row in suppression.marked_rows(job.job_id, all_rows[0][0], all_rows[-1][0])}
            if suppression is not None and all_rows
            else set()
        )
        rows = [(line, recipient) for line, recipient in all_rows if line not in marked]
        base: dict[str, Any] = {
            "ChannelType": options.channel_type.value,
            "BusinessNumber": options.from_,
            "CustSpaceId": cust_space_id,
            "EventAction": "DOWN",
        }
        if batch.group_message_id:
            have = self._numbers(query, {**base, "GroupMessageId": batch.group_message_id})
            found = {line for line, recipient in rows if recipient["To"] in have}
        else:
            start, end = call_interval(batch, self.cams.call_timeout)
            base.update(StartTime=int(start * 1000), EndTime=int(end * 1000))
            if options.template_code:
                base["TemplateCode"] = options.template_code

            def has(recipient: dict[str, Any]) -> bool:
                return recipient["To"] in self._numbers(
                    query, {**base, "UserNumber": recipient["To"]}, pages=1
                )

            with ThreadPoolExecutor(self.concurrency) as pool:
                hits = list(pool.map(logs.carried(has), [recipient for _, recipient in rows]))
            found = {line for (line, _), hit in zip(rows, hits, strict=True) if hit}
        self._record(job, batch, [line for line, _ in all_rows], found | marked, left)
        return len(found), len(rows) - len(found)

    def _numbers(self, query: _Query, params: dict[str, Any], pages: int = 10_000) -> set[str]:
        numbers: set[str] = set()
        for index in range(1, pages + 1):
            page = query.page({**params, "Page": {"Index": index, "Size": PAGE_SIZE}})
            if not page.ok:
                raise ReconcileError(f"ListChatappMessage failed: {page.code}: {page.message}")
            numbers.update(
                str(item.get("UserNumber") or "")
                for item in page.items
                if item.get("EventAction", "DOWN") == "DOWN"
            )
            if len(page.items) < PAGE_SIZE:
                break
        return numbers

    def _record(
        self, job: JobRecord, batch: BatchRecord, lines: list[int], found: set[int], left: ReconcileResult
    ) -> None:
        """Write what the lookup found; the seqs it left uncertain go to ``left``."""
        at = datetime.fromtimestamp(self.clock(), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        hit = Part(
            0, 0, 0, BatchStatus.sent, "Reconciled", f"found by ListChatappMessage at {at}: CAMS has it"
        )
        miss = Part(
            0,
            0,
            0,
            BatchStatus.uncertain,
            "NotFound",
            f"not found by ListChatappMessage at {at}; resent only on an operator's decision "
            f"(chatapp-mass reconcile {job.job_id[:12]} --resend)",
        )
        extra = {"job_id": job.job_id, "batch": batch.seq, "recipients": len(lines), "found": len(found)}
        if len(found) == len(lines) or not found:
            like = hit if found else miss
            if (
                self.store.transition_batch(
                    job.job_id,
                    batch.seq,
                    expect=[BatchStatus.uncertain],
                    to=like.status,
                    code=like.code,
                    message=like.message,
                    expect_owner=batch.owner or None,  # the very claim looked up (see fences)
                    expect_expires=batch.claim_expires if batch.owner else None,
                )
                and not found
            ):
                left.looked_up.append(batch.seq)
                if batch.owner:
                    left.fences[batch.seq] = (batch.owner, batch.claim_expires)
        else:
            parts = runs(lines, found, hit=hit, miss=miss)
            if split_batch(
                self.store,
                batch,
                parts,
                expect=[BatchStatus.uncertain],
                expect_owner=batch.owner or None,
                code="Reconciled",
                message=f"{len(found)} of {len(lines)} found by ListChatappMessage",
            ):
                depth = generation(batch.seq) + 1
                left.looked_up.extend(
                    part_seq(p.first_line, depth) for p in parts if p.status is BatchStatus.uncertain
                )
        log.log(logging.INFO if found else logging.WARNING, "uncertain batch reconciled", extra=extra)


def call_interval(batch: BatchRecord, call_timeout: float, skew: float = CLOCK_SKEW) -> tuple[float, float]:
    """When CAMS can have accepted ``batch``'s last call (epoch seconds, both ends included): from its start
    (``sending_at``) until it gave up (``call_timeout``: the client's connect plus read timeouts), widened by
    ``skew`` on both sides. ``call_timeout`` is the reconciler's client's (``CamsClient.call_timeout``),
    standing for the sender's: both are built from ``CamsSettings``, with the same timeouts.

    Without ``sending_at`` (a record from before it existed), the ``call_timeout`` before ``updated_at``, when
    the batch turned uncertain: the call had ended by then. (Once looked up, ``updated_at`` is that lookup's
    time, and a later lookup of such a record finds nothing: it stays uncertain, the safe side.)"""
    if batch.sending_at:
        return batch.sending_at - skew, batch.sending_at + call_timeout + skew
    return batch.updated_at - call_timeout - skew, batch.updated_at + skew


def unreconcilable(options: JobOptions, cust_space_id: str | None = None) -> str:
    """Why this job's uncertain batches cannot be looked up ("" if they can)."""
    if not options.channel_type.uses_phone_numbers:
        return (
            f"ListChatappMessage covers WhatsApp and Viber only, not {options.channel_type.value}: these "
            "batches stay uncertain until an operator decides (resend without reconciling, or leave them)"
        )
    if not (cust_space_id or options.cust_space_id):
        return (
            "ListChatappMessage needs CustSpaceId, and the job has none: give it (--cust-space-id, or "
            '"cust_space_id" in the HTTP body)'
        )
    return ""


def reopen_uncertain(
    store: Store,
    job_id: str,
    *,
    reason: str,
    only: Iterable[int] | None = None,
    fences: Mapping[int, tuple[str, float]] | None = None,
) -> tuple[int, int]:
    """The operator's decision: the job's uncertain batches (``only`` those seqs, if given: what a lookup
    just left uncertain) go back to ``pending`` to be sent again. Logged, per batch, at WARNING with
    ``operator_decision``. Returns (batches, recipients)."""
    batches = recipients = 0
    chosen = None if only is None else set(only)
    for batch in store.list_batches(job_id, [BatchStatus.uncertain]):
        if chosen is not None and batch.seq not in chosen:
            log.warning(
                "uncertain batch not reopened: it became uncertain after the lookup (look it up again)",
                extra={"job_id": job_id, "batch": batch.seq},
            )
            continue
        fence = (fences or {}).get(batch.seq)
        if store.transition_batch(
            job_id,
            batch.seq,
            expect=[BatchStatus.uncertain],
            to=BatchStatus.pending,
            owner="",
            claim_expires=0.0,
            # the claim it had when looked up (``ReconcileResult.fences``): not one taken since
            expect_owner=fence[0] if fence else None,
            expect_expires=fence[1] if fence else None,
        ):
            batches += 1
            recipients += batch.size
            log.warning(
                "uncertain batch reopened for sending (operator decision)",
                extra={
                    "job_id": job_id,
                    "batch": batch.seq,
                    "recipients": batch.size,
                    "operator_decision": True,
                    "reason": reason,
                },
            )
    return batches, recipients


@dataclass
class ResendResult:
    reconciled: ReconcileResult
    batches: int = 0
    recipients: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "reconciled": self.reconciled.to_dict(),
            "resent_batches": self.batches,
            "resent_recipients": self.recipients,
        }


def resend_uncertain(
    store: Store,
    reconciler: Reconciler | None,
    job: JobRecord,
    *,
    reconcile: bool = True,
    cust_space_id: str | None = None,
    deadline: float | None = None,
    before_reopen: Callable[[], None] | None = None,
) -> ResendResult:
    """Reconcile (WhatsApp/Viber, unless ``reconcile`` is False), then reopen what is still uncertain.

    Refuses (:class:`ReconcileError`) when reconciling was asked for and could not finish: resending then
    could send twice what CAMS already has. Messenger/Instagram cannot be reconciled: resending them is the
    operator's decision as such. ``before_reopen`` runs once something is to be reopened, before it is: the
    caller takes the job out of its finished state there, so that a crash in between never leaves a
    "finished" job with pending batches (a ``ready`` one is started by the timer)."""
    if job.status in (JobStatus.cancelled, JobStatus.planning, JobStatus.failed):
        raise ReconcileError(f"job {job.job_id} is {job.status.value}: nothing is resent")
    options = JobOptions.model_validate(job.options)
    result = ReconcileResult()
    if reconcile and options.channel_type.uses_phone_numbers:
        if reconciler is None:
            raise ReconcileError("no CAMS client to reconcile with")
        result = reconciler.reconcile(job, cust_space_id=cust_space_id, deadline=deadline)
        if result.skipped or result.error or result.left:
            why = (
                result.skipped
                or result.error
                or f"{result.left} uncertain batches not reconciled in time: again"
            )
            raise ReconcileError(
                f"not resent: {why} (or resend without reconciling, knowing that recipients "
                "CAMS already has then get the message twice)"
            )
    how = (
        "after reconciling"
        if reconcile and options.channel_type.uses_phone_numbers
        else "without reconciling"
    )
    if not store.list_batches(job.job_id, [BatchStatus.uncertain]):
        return ResendResult(result)
    if before_reopen is not None:
        before_reopen()
    looked_up = result.looked_up if reconcile and options.channel_type.uses_phone_numbers else None
    batches, recipients = reopen_uncertain(
        store, job.job_id, reason=f"operator resend {how}", only=looked_up, fences=result.fences
    )
    return ResendResult(result, batches, recipients)
