"""The per-recipient report: one CSV row per input record, in input order."""

from __future__ import annotations

import csv
from typing import IO, Iterable

from chatapp_mass.phones import looks_like_phone_as_written
from chatapp_mass.store import ReportRow

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
            [row.line, neutralize(row.to), row.status, neutralize(row.group_message_id),
             neutralize(row.code), neutralize(row.message)]
        )
    return counts
