"""The per-recipient report: one CSV row per input record, in input order; with what the receipts said.

Delivery (issue 17) is joined here, never in a store: :func:`report_rows` walks a job's rows (the store's
``report_rows``) beside the receipt store's states of each batch that may have reached CAMS, by ``TaskId``
(the job's own ``--task-id``, else ``batch_task_id(job_id, seq)``) and recipient. A part is its own call with
its own seq; a split batch counts too, since a batch split by a reconciliation (``reconcile``) had its
messages sent by its own call, under its own TaskId, before it was split (of several states of one number,
the furthest wins). A batch's rows are contiguous in line order, so the states of only the batches around
the current line are held (a batch's worth, not a job's).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

from chatapp_mass.adapters.cams import batch_task_id
from chatapp_mass.core.phone_text import looks_like_phone_as_written
from chatapp_mass.services.receipts import receipts_of
from chatapp_mass.services.streaming import plan_unfinished
from chatapp_mass.services.suppress import report_rows as suppressed_rows
from chatapp_mass.services.suppress import summary_suppressed
from chatapp_mass.store.interface import (
    OPEN_STATUSES,
    BatchRecord,
    BatchStatus,
    JobRecord,
    ReportRow,
    Store,
)
from chatapp_mass.store.receipts import RANK, DeliveryState, DeliveryStatus, ReceiptStore

COLUMNS = (
    "line",
    "to",
    "status",
    "group_message_id",
    "code",
    "message",
    "delivery",
    "delivery_code",
    "delivery_message",
    "delivery_at",
)
_FORMULA_START = ("=", "@", "\t", "\r")


def neutralize(cell: str) -> str:
    """Defuse spreadsheet formula injection: a leading ' makes the cell plain text.

    Cells starting with ``=``, ``@``, tab or CR always; ``+`` or ``-`` unless the cell is a phone number as
    written (``+44 20 7946 0958`` stays as it is).
    """
    if not cell:
        return cell
    if cell.startswith(_FORMULA_START) or (cell[0] in "+-" and not looks_like_phone_as_written(cell)):
        return "'" + cell
    return cell


def write_report(rows: Iterable[ReportRow], out: IO[str]) -> dict[str, int]:
    """Write the report; returns the count of rows per status.

    The bytes are those of ``csv.writer`` (``lineterminator="\\n"``, minimal quoting) over the neutralized
    cells, rendered faster: the batch's four cells (status, GroupMessageId, code, message) are the same for
    its thousand rows, so they are rendered once per distinct value and reused; so are a receipt's code and
    text; a number that is plain digits (every valid row's), a delivery state and its ISO time need neither
    neutralizing nor quoting; anything else goes through ``csv.writer``. Lines are written ~1,000 at a time.
    A job is done only when its report is written, after its last call: at 1M rows, the report from the store
    to OSS took 4.9 s (Tablestore) and 4.4 s (SQLite) with ``csv.writer`` per row and each row's batch looked
    up, 2.5 s now (``bench/bench_report.py``; ``tests/unit/test_report_writer.py`` checks the bytes against
    ``csv.writer``).
    """
    cells = _Cells()
    out.write(cells.render(COLUMNS))
    tails: dict[tuple[str, ...], list[Any]] = {}  # the batch's four cells -> [rendered, status, rows]
    receipts: dict[tuple[str, str], str] = {}  # a receipt's (code, text) -> rendered
    block: list[str] = []
    for row in rows:
        key = row[2:6]
        tail = tails.get(key)
        if tail is None:
            status, group_message_id, code, message = key
            rendered = cells.render(
                (status, neutralize(group_message_id), neutralize(code), neutralize(message))
            )
            tail = tails[key] = [rendered[:-1], status, 0]
        tail[2] += 1
        to = row.to
        if not (to.isdigit() and to.isascii()):  # "", or as a person wrote it: the csv module's way
            to = cells.render((neutralize(to), ""))[:-2]  # a second cell: a lone "" would be quoted
        delivery, delivery_at = row.delivery, row.delivery_at
        if delivery or delivery_at or row.delivery_code or row.delivery_message:
            said = (row.delivery_code, row.delivery_message)
            text = receipts.get(said)
            if text is None:
                if len(receipts) >= _RECEIPT_TEXTS:
                    receipts.clear()
                text = receipts[said] = cells.render(tuple(neutralize(cell) for cell in said))[:-1]
            if _PLAIN.fullmatch(delivery) and _PLAIN.fullmatch(delivery_at):
                block.append(f"{row.line},{to},{tail[0]},{delivery},{text},{delivery_at}\n")
            else:  # not one of ours: the csv module's way
                odd = (delivery, *said, delivery_at)
                block.append(f"{row.line},{to},{tail[0]},{cells.render(tuple(map(neutralize, odd)))}")
        else:
            block.append(f"{row.line},{to},{tail[0]},,,,\n")
        if len(block) >= _BLOCK:
            out.write("".join(block))
            block.clear()
    out.write("".join(block))
    counts: dict[str, int] = {}
    for _, status, n in tails.values():
        counts[status] = counts.get(status, 0) + n
    return counts


_BLOCK = 1_000  # report lines per write
_RECEIPT_TEXTS = 10_000  # distinct (ErrorCode, ErrorDescription) kept rendered
# a cell that csv.writer does not quote and neutralize leaves as it is (a delivery state, an ISO time, "")
_PLAIN = re.compile(r"(?:[0-9A-Za-z][0-9A-Za-z:.-]*)?")


class _Cells:
    """Cells rendered as ``csv.writer`` renders them (its quoting rules, not a copy of them)."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def render(self, cells: Iterable[str]) -> str:
        """The cells as one CSV line, ending in ``\\n``."""
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(cells)
        return self._buffer.getvalue()


def utc_timestamp(at: float) -> str:
    """A time as the CLI, the reports' summaries and the HTTP API all print it: UTC, ISO 8601, ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


# --- delivery (receipts) -----------------------------------------------------------------------------------
# batches whose call may have reached CAMS (a split one: before a reconciliation split it)
_CALLED = (BatchStatus.sent, BatchStatus.uncertain, BatchStatus.split, BatchStatus.splitting)
_CALLED_ROWS = frozenset({"sent", "uncertain"})  # their rows' report status


def task_id_of(job: JobRecord, seq: int) -> str:
    """The ``TaskId`` a batch (or part) of ``job`` was sent with: the job's own, else its batch's."""
    own = job.options.get("TaskId")
    return str(own) if own else batch_task_id(job.job_id, seq)


def report_rows(
    store: Store, job: JobRecord, receipts: ReceiptStore | None | bool = True
) -> Iterator[ReportRow]:
    """The job's report rows (``store.report_rows``, with the lines the sender left out as suppressed:
    ``services.suppress``) with their delivery columns filled from the receipts.

    ``receipts``: True (default) opens the receipt store beside ``store``; None or False: no delivery."""
    rows = suppressed_rows(store, job.job_id)  # lines the sender left out read ``suppressed``
    found = receipts_of(store) if receipts is True else receipts or None
    if found is None:
        return rows
    return _joined(rows, _Deliveries(store, job, found))


def _joined(rows: Iterable[ReportRow], deliveries: _Deliveries) -> Iterator[ReportRow]:
    try:
        yield from _join(rows, deliveries)
    finally:
        deliveries.close()


def _join(rows: Iterable[ReportRow], deliveries: _Deliveries) -> Iterator[ReportRow]:
    for row in rows:
        if row.status in _CALLED_ROWS:
            state = deliveries.at(row.line, row.to)
            if state is not None:
                yield ReportRow(
                    row.line,
                    row.to,
                    row.status,
                    row.group_message_id,
                    row.code,
                    row.message,
                    state.status.value,
                    state.error_code,
                    state.error_description,
                    utc_timestamp(state.at_ms / 1000),
                )
                continue
        yield row


_AHEAD = 8  # batches whose states are read ahead of the walk, in parallel (a range read each on Tablestore)


class _Deliveries:
    """The delivery state of a row, by its line and number: the states of the batches whose line range holds
    the line, read ahead of the walk (:data:`_AHEAD` batches at once: on Tablestore a batch's states are a
    range read of ~0.2 s, so a 1,000-batch job read one by one would take minutes) and dropped once it is
    past them."""

    def __init__(self, store: Store, job: JobRecord, receipts: ReceiptStore) -> None:
        self.receipts = receipts
        self.job = job
        self.whole: dict[str, DeliveryState] | None = None
        self.leaves: list[BatchRecord] = []
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: dict[int, Future[dict[str, DeliveryState]]] = {}  # index in leaves -> its states
        self.next = 0
        self.horizon = -1  # the least last line of the batches held (-1: none held)
        self.active: list[tuple[BatchRecord, dict[str, DeliveryState]]] = []
        own = job.options.get("TaskId")
        if own:  # every call of the job carried the user's TaskId
            self.whole = receipts.states(str(own))
            return
        self.leaves = sorted(store.list_batches(job.job_id, list(_CALLED)), key=lambda b: b.first_line)
        if any(b.last_line < b.first_line or b.last_line == 0 for b in self.leaves):  # bounds unknown (old)
            self.whole = {}
            for index in range(len(self.leaves)):
                self.whole.update(self._states(index))
            self.close()

    def _states(self, index: int) -> dict[str, DeliveryState]:
        """The states of leaf ``index``, the next ones being read meanwhile."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_AHEAD, thread_name_prefix="report-receipts")
        for ahead in range(index, min(index + _AHEAD, len(self.leaves))):
            if ahead not in self._ahead:
                task_id = task_id_of(self.job, self.leaves[ahead].seq)
                self._ahead[ahead] = self._pool.submit(self.receipts.states, task_id)
        return self._ahead.pop(index).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def at(self, line: int, to: str) -> DeliveryState | None:
        if self.whole is not None:
            return self.whole.get(to)
        if line > self.horizon:  # past a batch held: drop it
            self.active = [(b, states) for b, states in self.active if b.last_line >= line]
            self.horizon = min((b.last_line for b, _ in self.active), default=-1)
        while self.next < len(self.leaves) and self.leaves[self.next].first_line <= line:
            batch = self.leaves[self.next]
            self.next += 1
            if batch.last_line >= line:
                self.active.append((batch, self._states(self.next - 1)))
            else:  # no row of it in the report (its rows were passed already): not read
                self._ahead.pop(self.next - 1, None)
                self.horizon = batch.last_line if self.horizon < 0 else min(self.horizon, batch.last_line)
        found: DeliveryState | None = None
        for batch, states in self.active:
            if batch.first_line <= line <= batch.last_line:
                state = states.get(to)
                if state is not None and (found is None or RANK[state.status] > RANK[found.status]):
                    found = state
        return found


def delivery_fingerprint(store: Store, job: JobRecord) -> str:
    """The job's receipt states counted by status over the batches its report joins (``s.f.d.r``): every change
    of a state moves one recipient up the ranks, so the figure changes with every receipt that changes the
    report, and only then. "" without a receipt store."""
    receipts = receipts_of(store)
    if receipts is None:
        return ""
    own = job.options.get("TaskId")
    ids = (
        [str(own)] if own else [task_id_of(job, b.seq) for b in store.list_batches(job.job_id, list(_CALLED))]
    )
    counts = receipts.counts(ids) if ids else dict.fromkeys(DeliveryStatus, 0)
    return ".".join(str(counts[status]) for status in DeliveryStatus)


def delivery_summary(
    store: Store, job: JobRecord, accepted: int, receipts: ReceiptStore | None
) -> dict[str, Any]:
    """The job's delivery figures over its ``accepted`` recipients (batches ``sent``, and ``split`` ones whose
    messages a reconciliation found sent). Cumulative, a funnel:
    ``sent`` = a receipt said at least Sent (sent, delivered or read), ``delivered`` = delivered or read,
    ``read``, and ``failed``; ``awaiting`` = accepted with no final receipt yet (none, or only Sent);
    ``failed_codes``: the failed by ErrorCode, most first (at most 10); each rate is over ``accepted``."""
    counts = dict.fromkeys(DeliveryStatus, 0)
    codes: dict[str, int] = {}
    if receipts is not None and accepted:
        own = job.options.get("TaskId")
        ids = (
            [str(own)]
            if own
            else [
                task_id_of(job, b.seq)
                for b in store.list_batches(job.job_id, [BatchStatus.sent, BatchStatus.split])
            ]
        )
        counts = receipts.counts(ids)
        if counts[DeliveryStatus.failed]:
            codes = dict(list(receipts.failed_codes(ids).items())[:10])
    read = counts[DeliveryStatus.read]
    delivered = counts[DeliveryStatus.delivered] + read
    figures = {
        "sent": counts[DeliveryStatus.sent] + delivered,
        "delivered": delivered,
        "read": read,
        "failed": counts[DeliveryStatus.failed],
    }

    def rate(n: int) -> float:
        return round(min(n / accepted, 1.0), 4) if accepted else 0.0

    return {
        "accepted": accepted,
        **figures,
        "awaiting": max(accepted - delivered - figures["failed"], 0),
        "failed_codes": codes,
        "delivered_rate": rate(delivered),
        "read_rate": rate(read),
        "failed_rate": rate(figures["failed"]),
    }


def job_summary(store: Store, job: JobRecord, *, delivery: bool = True) -> dict[str, Any]:
    """The job at a glance, in recipients: what `chatapp-mass status` prints and the summary object holds.

    ``totals_final`` is False while the plan is still written (a job sends while it is planned: see
    ``services.streaming``): ``rows``, ``valid``, ``invalid``, ``duplicate`` and ``batches`` are then the
    figures of the plan so far (zero until it ends), and ``pending`` only counts batches written so far.
    ``delivery``: what the receipts said of the accepted recipients (:func:`delivery_summary`); left out
    (``delivery=False``) where only the counts are wanted (a listing of jobs)."""
    totals = store.batch_totals(job.job_id)

    def recipients(*statuses: BatchStatus) -> int:
        return sum(totals.get(s, (0, 0))[1] for s in statuses)

    summary = {
        "job_id": job.job_id,
        "status": job.status.value,
        "reason": job.reason,
        "source": job.source,
        "channel": job.options.get("ChannelType"),
        "template": job.options.get("TemplateCode") or job.options.get("TemplateName"),
        "totals_final": not plan_unfinished(job),
        "rows": job.total_rows,
        "valid": job.valid,
        "invalid": job.invalid,
        "duplicate": job.duplicate,
        "batches": job.batches,
        "sent": recipients(BatchStatus.sent),
        "failed": recipients(BatchStatus.failed),
        "uncertain": recipients(BatchStatus.uncertain),
        "cancelled": recipients(BatchStatus.cancelled),
        "pending": recipients(*OPEN_STATUSES),
        "created_at": utc_timestamp(job.created_at),
        "updated_at": utc_timestamp(job.updated_at),
        # when a scheduled job starts: its own time, or when the messaging limit's window frees (its reason)
        **({"scheduled_at": utc_timestamp(job.scheduled_at)} if job.scheduled_at else {}),
    }
    # ``suppressed``: rows suppressed when planned plus those the sender left out (taken from the status of
    # the batch that holds them: they were not sent, failed or pending)
    summary_suppressed(store, job.job_id, summary, job.suppressed)
    if delivery:
        summary["delivery"] = delivery_summary(store, job, recipients(BatchStatus.sent), receipts_of(store))
    return summary
