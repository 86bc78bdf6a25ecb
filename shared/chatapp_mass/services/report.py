"""The per-recipient report: one CSV row per input record, in input order."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable
from typing import IO, Any

from chatapp_mass.core.phone_text import looks_like_phone_as_written
from chatapp_mass.services.streaming import plan_unfinished
from chatapp_mass.store.interface import OPEN_STATUSES, BatchStatus, JobRecord, ReportRow, Store

COLUMNS = ("line", "to", "status", "group_message_id", "code", "message")
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
    """Write the report; returns the count of rows per status."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
        writer.writerow(
            [
                row.line,
                neutralize(row.to),
                row.status,
                neutralize(row.group_message_id),
                neutralize(row.code),
                neutralize(row.message),
            ]
        )
    return counts


def job_summary(store: Store, job: JobRecord) -> dict[str, Any]:
    """The job at a glance, in recipients: what `chatapp-mass status` prints and the summary object holds.

    ``totals_final`` is False while the plan is still written (a job sends while it is planned: see
    ``services.streaming``): ``rows``, ``valid``, ``invalid``, ``duplicate`` and ``batches`` are then the
    figures of the plan so far (zero until it ends), and ``pending`` only counts batches written so far."""
    totals = store.batch_totals(job.job_id)

    def recipients(*statuses: BatchStatus) -> int:
        return sum(totals.get(s, (0, 0))[1] for s in statuses)

    return {
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
        "created_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.created_at)),
        "updated_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.updated_at)),
    }
