"""Test helpers shared by several test files: sample recipient files and an independent oracle of who
should receive them."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

from chatapp_mass.core.phones import normalize_number
from chatapp_mass.entry.sample import write_sample_csv


def sample_bytes(rows: int, seed: int) -> bytes:
    out = io.StringIO()
    write_sample_csv(out, rows, seed=seed)
    return out.getvalue().encode()


def valid_numbers(data: bytes) -> set[str]:
    """The numbers a sample file must reach: a parsable number with both template values present."""
    return {
        number
        for row in csv.DictReader(io.StringIO(data.decode("utf-8")))
        if (number := normalize_number(row["to"].strip(), None))
        and row["name"].strip()
        and row["code"].strip()
    }


FINAL_ROW = {"sent", "failed", "uncertain", "invalid", "duplicate", "cancelled"}


def first_valid_rows(data: bytes) -> dict[str, dict[str, str]]:
    """Each valid number's first row's template values (a later row of the number is a duplicate)."""
    firsts: dict[str, dict[str, str]] = {}
    for row in csv.DictReader(io.StringIO(data.decode("utf-8"))):
        number = normalize_number(row["to"].strip(), None)
        if number and row["name"].strip() and row["code"].strip() and number not in firsts:
            firsts[number] = {"name": row["name"], "code": row["code"]}
    return firsts


def audit_job(data: bytes, received: list[Any], report: list[dict[str, str]], *, final: bool) -> list[str]:
    """What is wrong with one job, from CAMS's own record of what it received (``received``: its messages
    of this job, with ``to`` and ``template_params``) and a report of the job (its rows as dicts), as
    counts — empty when nothing is. ``final``: the report is the job's last word (every run of it ended),
    so every row must be in a final status and every valid number accounted for.

    Checked: no number received twice; nothing received that the file does not hold, nor with another
    row's template values; every input line in the report exactly once; every row reported ``sent`` was
    received; and when final: no row without a final status, every valid number received or reported
    uncertain or failed (never lost), and nothing CAMS received reported failed or not sent."""
    firsts = first_valid_rows(data)
    got = Counter(message.to for message in received)
    problems = []
    twice = [n for n, times in got.items() if times > 1]
    if twice:
        problems.append(
            f"{len(twice)} numbers received more than once ({sum(got[n] for n in twice)} messages)"
        )
    unknown = set(got) - set(firsts)
    if unknown:
        problems.append(f"{len(unknown)} numbers received that are not valid recipients of the file")
    wrong = sum(1 for m in received if m.to in firsts and dict(m.template_params) != firsts[m.to])
    if wrong:
        problems.append(f"{wrong} messages received with another row's template values")
    rows = data.decode("utf-8").count("\n") - 1
    lines = Counter(int(r["line"]) for r in report)
    if set(lines) != set(range(2, rows + 2)) or max(lines.values(), default=0) > 1:
        problems.append(
            f"report lines: {len(set(range(2, rows + 2)) - set(lines))} missing, "
            f"{sum(1 for times in lines.values() if times > 1)} twice, of {rows}"
        )
    status = {r["to"]: r["status"] for r in report if r["status"] not in ("duplicate", "invalid")}
    sent_not_received = [n for n, s in status.items() if s == "sent" and not got.get(n)]
    if sent_not_received:
        problems.append(f"{len(sent_not_received)} recipients reported sent that CAMS never received")
    if final:
        open_rows = Counter(r["status"] for r in report if r["status"] not in FINAL_ROW)
        if open_rows:
            problems.append(f"rows without a final status: {dict(open_rows)}")
        lost = [n for n in firsts if status.get(n) not in ("uncertain", "failed") and not got.get(n)]
        if lost:
            problems.append(
                f"{len(lost)} valid recipients neither received nor reported uncertain or failed "
                f"(their statuses: {dict(Counter(status.get(n) for n in lost))})"
            )
        denied = Counter(status.get(n) for n in got if status.get(n) not in ("sent", "uncertain"))
        if denied:
            problems.append(f"received by CAMS but reported otherwise: {dict(denied)}")
    return problems
