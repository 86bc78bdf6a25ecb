"""The suppression list at work: the planner's check per chunk of rows, the sender's check per batch just
before its call, the report and summary that say ``suppressed``, and what the CLI and HTTP API manage.

The list itself (and why it is checked twice) is ``store.suppression``'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from chatapp_mass.core.phone_text import mask_number
from chatapp_mass.store.features import open_suppression
from chatapp_mass.store.interface import (
    REPORT_STATUS,
    BatchRecord,
    BatchStatus,
    Leaves,
    ReportRow,
    Store,
)
from chatapp_mass.store.suppression import MarkedRow, SuppressionStore

log = logging.getLogger(__name__)

PLAN_CHUNK = 2_000  # rows per plan-time lookup (a lookup is one round trip per 100 numbers)
SUPPRESSED = "suppressed"  # the row status (RowStatus.suppressed) and the report's status
CODE = "Suppressed"


def suppression_of(store: Store) -> SuppressionStore | None:
    """The suppression list beside ``store``; None for a store of no backend (a test double wrapping one)."""
    try:
        return open_suppression(store)
    except TypeError:
        log.warning("no suppression list for this store: numbers are not checked against it")
        return None


def opt_out_hook(store: Store) -> Callable[[str, list[str], str], None] | None:
    """What the receipt service calls for a Viber ``unsubscribe`` or a STOP reply (``services.receipts``):
    the numbers go on the space's list, with that reason. None: no list beside ``store``.

    A Viber ``subscribe`` takes nobody off the list (the strict choice: a number an operator or a STOP put
    there stays until someone removes it; ``chatapp-mass suppress remove``)."""
    sup = suppression_of(store)
    if sup is None:
        return None

    def opt_out(space: str, numbers: list[str], reason: str) -> None:
        added = sup.add(space, numbers, reason=reason, source="cams receipt")
        log.warning("numbers opted out", extra={"space": space, "reason": reason, "added": added})

    return opt_out


def planned_message(space: str) -> str:
    return f"on the suppression list of space {space!r} when the job was planned: not sent"


def sender_message(space: str) -> str:
    return f"added to the suppression list of space {space!r} after the job was planned: left out of its call"


# --- plan time ------------------------------------------------------------------------------------------
def without_suppressed(
    records: Iterable[Any], sup: SuppressionStore, space: str, chunk: int = PLAN_CHUNK
) -> Iterator[Any]:
    """The intake's rows as they come, a valid one whose number is on the list turned ``suppressed``. The
    list is looked up once per ``chunk`` rows (one round trip per 100 of their valid numbers), not per row.
    While the space's list is empty (one short read per chunk) the rows pass as they come, read no further
    ahead than without a list: the plan's first batch goes out as early."""
    rows = iter(records)
    while True:
        if not sup.list(space, limit=1):
            for passed, row in enumerate(rows, 1):
                yield row
                if passed >= chunk:
                    break
            else:
                return
            continue
        buffer = list(islice(rows, chunk))
        if not buffer:
            return
        yield from _judged(buffer, sup, space)


def _judged(rows: list[Any], sup: SuppressionStore, space: str) -> list[Any]:
    numbers = [row.to for row in rows if row.status == "valid"]
    if not numbers:
        return rows
    found = sup.suppressed(space, numbers)
    if not found:
        return rows
    message = planned_message(space)
    return [
        row._replace(status=SUPPRESSED, code=CODE, message=message, template_params=None, extra=None)
        if row.status == "valid" and row.to in found
        else row
        for row in rows
    ]


# --- send time ------------------------------------------------------------------------------------------
def drop_suppressed(
    sup: SuppressionStore,
    job_id: str,
    space: str,
    batch: BatchRecord,
    rows: list[tuple[int, dict[str, Any]]],
    clock: Callable[[], float] = time.time,
) -> tuple[list[tuple[int, dict[str, Any]]], list[int]]:
    """The batch's rows to call for, and the lines left out: numbers on the list now, and lines marked
    already (by an earlier attempt at this batch, or its parent's before a split), which stay left out even
    if their number left the list since. New ones are marked before the call, so the report says
    ``suppressed`` for them whatever happens to the call."""
    if not rows:
        return rows, []
    marked = {row.line for row in sup.marked_rows(job_id, rows[0][0], rows[-1][0])}
    numbers = [str(recipient.get("To", "")) for line, recipient in rows if line not in marked]
    # an empty list (the usual case) is one read, not a lookup per 100 numbers
    found = sup.suppressed(space, numbers) if numbers and sup.list(space, limit=1) else set()
    if not found and not marked:
        return rows, []
    now, fresh = clock(), []
    kept, dropped = [], []
    for line, recipient in rows:
        if line in marked:
            dropped.append(line)
        elif recipient.get("To") in found:
            dropped.append(line)
            fresh.append(MarkedRow(job_id, line, str(recipient["To"]), batch.rows_seq, now))
        else:
            kept.append((line, recipient))
    sup.mark_rows(fresh)
    log.info(
        "suppressed recipients left out of the call",
        extra={
            "job_id": job_id,
            "batch": batch.seq,
            "suppressed": len(dropped),
            "numbers": [mask_number(row.to) for row in fresh[:5]],
        },
    )
    return kept, dropped


# --- report and summary ---------------------------------------------------------------------------------
def report_rows(store: Store, job_id: str, sup: SuppressionStore | None = None) -> Iterator[ReportRow]:
    """The job's report (``Store.report_rows``) with the lines the sender left out saying ``suppressed``."""
    sup = sup if sup is not None else suppression_of(store)
    marked = sup.marked_rows(job_id) if sup is not None else []
    rows = store.report_rows(job_id)
    if not marked:
        yield from rows
        return
    message = "added to the suppression list after the job was planned: left out of its call"
    by_line = {row.line: row for row in marked}
    for row in rows:
        if row.line in by_line:
            yield ReportRow(row.line, row.to, SUPPRESSED, "", CODE, message)
        else:
            yield row


def summary_suppressed(store: Store, job_id: str, counts: dict[str, Any], planned: int) -> None:
    """Move the recipients the sender left out from the report status of the batch holding them to
    ``suppressed`` (``counts``: ``services.report.job_summary``'s figures, changed in place), and add the
    rows suppressed at plan time (``planned``)."""
    sup = suppression_of(store)
    marked = sup.marked_rows(job_id) if sup is not None else []
    counts[SUPPRESSED] = planned + len(marked)
    if not marked:
        return
    leaves = Leaves(store.list_batches(job_id))
    for row in marked:
        holder = leaves.holder(row.batch_seq, row.line)
        status = REPORT_STATUS[holder.status] if holder is not None else "pending"
        if status in counts and counts[status] > 0:
            counts[status] -= 1


def all_suppressed_fields(space: str, size: int) -> dict[str, Any]:
    """How a batch whose every recipient is suppressed is resolved: ``sent`` (nothing left to send; no call
    made), saying so."""
    return {
        "code": CODE,
        "message": f"all {size} recipients are on the suppression list of space {space!r}: no call was made",
    }


RESOLVED_ALL_SUPPRESSED = BatchStatus.sent


# --- managing the list ------------------------------------------------------------------------------------
def normalize_numbers(raw: Sequence[str], default_country: str | None) -> tuple[list[str], list[str]]:
    """The numbers in the wire form, as the product normalizes recipients (``core.phones``), and the ones
    that are not phone numbers (as given)."""
    from chatapp_mass.core.phones import normalize_number

    good: list[str] = []
    bad: list[str] = []
    for text in raw:
        text = text.strip()
        if not text:
            continue
        number = normalize_number(text, default_country)
        (good if number is not None else bad).append(number if number is not None else text)
    return list(dict.fromkeys(good)), bad
