"""The report's CSV: ``write_report`` writes exactly what ``csv.writer`` writes over the neutralized cells
(it renders faster, reusing a batch's cells: see its docstring), and ``read_ahead``, which the Tablestore
report reads through."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatapp_mass.runtime.ahead import read_ahead
from chatapp_mass.services.report import COLUMNS, neutralize, write_report
from chatapp_mass.store.interface import ReportRow


def reference(rows: list[ReportRow]) -> tuple[str, dict[str, int]]:
    """The report as written row by row through csv.writer (the writer before it was made faster)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
        writer.writerow(
            [row.line, neutralize(row.to), row.status]
            + [neutralize(cell) for cell in (row.group_message_id, row.code, row.message)]
            + [neutralize(cell) for cell in row[6:]]  # delivery, its code and text, its time
        )
    return out.getvalue(), counts


def written(rows: list[ReportRow]) -> tuple[str, dict[str, int]]:
    out = io.StringIO()
    counts = write_report(iter(rows), out)
    return out.getvalue(), counts


# cells as they come: numbers as written, empty, formulas, CSV's specials, digits of other scripts
CELL = st.one_of(
    st.sampled_from(
        [
            "",
            "8613800000000",
            "+44 20 7946 0958",
            "=1+2",
            "@x",
            "-3",
            "a,b",
            'say "hi"',
            "line\nbreak",
            "cr\rhere",
            "\tx",
            " ",
            "١٢٣٤٥٦٧",
            "00",
            "8.61387E+12",
            '"',
            ",",
        ]
    ),
    st.text(max_size=12),
)
DELIVERY = st.one_of(st.sampled_from(["", "sent", "delivered", "read", "failed"]), CELL)
AT = st.one_of(st.sampled_from(["", "2026-12-07T01:02:03Z"]), CELL)
ROW = st.builds(
    ReportRow,
    st.integers(min_value=2, max_value=10**7),
    CELL,
    st.sampled_from(["sent", "failed", "uncertain", "pending", "invalid", "duplicate", "cancelled"]),
    CELL,
    CELL,
    CELL,
    DELIVERY,
    CELL,
    CELL,
    AT,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, max_size=40))
def test_the_same_bytes_and_counts_as_csv_writer(rows: list[ReportRow]) -> None:
    assert written(rows) == reference(rows)


def test_a_batch_s_cells_are_reused_across_blocks_and_counted() -> None:
    sent = ("sent", "gm-1", "OK", "")
    failed = ("failed", "", "Throttling", 'denied, "flow control"')
    rows = [ReportRow(line, f"86138{line:08d}", *(sent if line % 3 else failed)) for line in range(2, 2_502)]
    rows.insert(100, ReportRow(102, "", "invalid", "", "InvalidNumber", "empty"))
    text, counts = written(rows)
    assert (text, counts) == reference(rows)
    assert counts == {"sent": 1_667, "failed": 833, "invalid": 1}
    assert text.splitlines()[101] == "102,,invalid,,InvalidNumber,empty,,,,"


def test_delivery_cells_from_receipts_render_as_csv_writer_would() -> None:
    at = "2026-12-07T01:02:03Z"
    rows = [
        ReportRow(2, "6581230000", "sent", "gm", "OK", "", "read", "", "", at),
        ReportRow(
            3, "6581230001", "sent", "gm", "OK", "", "failed", "131026", "Receiver is incapable, sorry", at
        ),
        ReportRow(
            4, "6581230002", "sent", "gm", "OK", "", "failed", "131026", "Receiver is incapable, sorry", at
        ),
        ReportRow(5, "6581230003", "sent", "gm", "OK", "", "failed", "=1+2", "-oops", at),
        ReportRow(6, "6581230004", "sent", "gm", "OK", ""),
    ]
    text, counts = written(rows)
    assert (text, counts) == reference(rows) and counts == {"sent": 5}
    lines = text.splitlines()
    assert lines[0].endswith(",delivery,delivery_code,delivery_message,delivery_at")
    assert lines[2] == f'3,6581230001,sent,gm,OK,,failed,131026,"Receiver is incapable, sorry",{at}'
    assert lines[4] == f"5,6581230003,sent,gm,OK,,failed,'=1+2,'-oops,{at}"


def test_read_ahead_yields_in_order_then_raises_what_the_producer_raised() -> None:
    def pages() -> Iterator[int]:
        yield from range(5)
        raise RuntimeError("GetRange failed")

    got: list[int] = []
    with pytest.raises(RuntimeError, match="GetRange failed"):
        for item in read_ahead(pages(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_read_ahead_stops_and_closes_the_producer_when_the_consumer_leaves() -> None:
    closed = threading.Event()
    produced: list[int] = []

    def pages() -> Iterator[int]:
        try:
            for n in range(1_000_000):
                produced.append(n)
                yield n
        finally:
            closed.set()

    reader = read_ahead(pages(), depth=2)
    assert [next(reader) for _ in range(3)] == [0, 1, 2]
    reader.close()  # what a consumer's error or break does
    assert closed.wait(10), "the producer was not closed"
    assert len(produced) < 10  # it ran at most depth (+ one in hand) ahead, then stopped
