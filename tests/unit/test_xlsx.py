"""Issue 15, files as people have them: an Excel workbook (.xlsx) is read directly, recognised by content.

Its sheet's rows go through the CSV reader's own rules (chatapp_mass.core.xlsx turns each row into one CSV
line), so these tests check what is particular to a workbook: cells as text (numbers keep their digits), the
sheet chosen, line = sheet row, the files that are refused and why, and the three ways in (the reader, the
CLI, an OSS upload). The workbooks are written by openpyxl into tmp_path or memory."""

from __future__ import annotations

import csv
import datetime
import io
import json
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from chatapp_mass.adapters.cams import CamsClient, CamsSettings
from chatapp_mass.core import xlsx
from chatapp_mass.core.errors import CsvFileError
from chatapp_mass.core.intake import Row, open_recipients
from chatapp_mass.core.options import ChannelType, IntakeOptions, job_identity, parse_job_options
from chatapp_mass.core.xlsx import cell_text, is_xlsx
from chatapp_mass.entry import cli
from chatapp_mass.entry.bootstrap import Services
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.services.jobs import resolve_options, sidecar_key
from chatapp_mass.store.interface import JobStatus
from chatapp_mass.store.sqlite import SqliteStore

from world import META, SEND_FLAGS, World

SOURCE = "list.xlsx"
A, B, C = "8613866661234", "8613866661235", "8613866661236"


def workbook_bytes(*sheets: tuple[str, list[list[Any]]]) -> bytes:
    """A workbook written the ordinary way (openpyxl's write mode), one sheet per (title, rows)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


class Trickle:
    """A stream as an OSS object is: read() only (no seek), a few bytes at a time."""

    def __init__(self, data: bytes, size: int = 5) -> None:
        self._stream = io.BytesIO(data)
        self._size = size

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(self._size if size < 0 else min(size, self._size))


def read(data: bytes | Any, **options: Any) -> list[Row]:
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    with open_recipients(
        stream, source=SOURCE, channel=ChannelType.whatsapp, intake=IntakeOptions(**options)
    ) as reader:
        return list(reader)


def brief(rows: list[Row]) -> list[tuple[int, str, str, str]]:
    return [(row.line, row.to, row.status, row.code) for row in rows]


def file_error(data: bytes | Any, **options: Any) -> CsvFileError:
    with pytest.raises(CsvFileError) as caught:
        read(data, **options)
    error = caught.value
    assert error.source == SOURCE and error.fix  # every file error names the file and says what to do
    return error


# -- cells as text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("+86 138 6666 1234", "+86 138 6666 1234"),
        (True, "TRUE"),
        (False, "FALSE"),
        (8613866661234, "8613866661234"),
        (8613866661234.0, "8613866661234"),  # a phone number typed into a General cell: a float
        (-5.0, "-5"),
        (2.0**53, "9007199254740992.0"),  # past 2**53 a float is no exact integer: not made to look like one
        (1e20, "1e+20"),
        (0.5, "0.5"),
        (1234.25, "1234.25"),
        (datetime.datetime(2026, 3, 1, 9, 30), "2026-03-01T09:30:00"),
        (datetime.date(2026, 3, 1), "2026-03-01"),
        (datetime.time(9, 30), "09:30:00"),
    ],
)
def test_cell_text(value: Any, text: str) -> None:
    assert cell_text(value) == text


def test_numbers_stored_as_numbers_and_as_text_are_both_read() -> None:
    data = workbook_bytes(
        ("List", [["Phone Number", "name"], [8613866661234, "Ana"], ["+86 138 6666 1235", "Ben"], [A, "Dup"]])
    )
    rows = read(data)
    assert brief(rows) == [(2, A, "valid", ""), (3, B, "valid", ""), (4, A, "duplicate", "Duplicate")]
    assert rows[0].template_params == {"name": "Ana"} and rows[2].message == "same recipient as line 2"


def test_a_row_is_reported_on_its_sheet_row() -> None:
    """Line N is sheet row N: empty rows between count, trailing empty rows are not rows at all."""
    data = workbook_bytes(
        (
            "List",
            [
                ["to", "name", "code"],
                [A, "Ana", 7],
                [],
                [None, None, None],
                ["12ab", "Ben", 8],  # row 5: invalid
                [B, "Multi\nline", 9],  # a line break in a cell: still one line
                [C, "Cy"],  # row 7: the empty third cell is an empty template value
                [C, "Cy", 1, "extra"],  # row 8: one cell more than the header
                *[[] for _ in range(50)],
            ],
        )
    )
    rows = read(data)
    assert brief(rows) == [
        (2, A, "valid", ""),
        (5, "12ab", "invalid", "InvalidNumber"),
        (6, B, "valid", ""),
        (7, C, "invalid", "EmptyParam"),
        (8, C, "invalid", "ColumnCount"),
    ]
    assert rows[0].template_params == {"name": "Ana", "code": "7"}
    assert rows[2].template_params == {"name": "Multi line", "code": "9"}
    assert read(data, allow_empty_params=True)[3][:3] == (7, C, "valid")


def test_the_recipient_column_option_applies_to_a_workbook() -> None:
    data = workbook_bytes(("List", [["name", "Cell"], ["Ana", 8613866661234]]))
    assert brief(read(data, recipient_column="cell")) == [(2, A, "valid", "")]
    assert "no recipient column in the header" in file_error(data).problem


def test_a_delimiter_option_is_for_csv_files_only() -> None:
    data = workbook_bytes(("List", [["to", "name"], [A, "Ana; Ben"]]))
    assert read(data, delimiter=";")[0].template_params == {"name": "Ana; Ben"}


# -- sheets --------------------------------------------------------------------------------------------


TWO_SHEETS = workbook_bytes(("Notes", [["to"], [A]]), ("March 2026", [["Mobile"], [8613866661235]]))


def test_the_first_sheet_by_default_another_by_name() -> None:
    assert brief(read(TWO_SHEETS)) == [(2, A, "valid", "")]
    assert brief(read(TWO_SHEETS, sheet="March 2026")) == [(2, B, "valid", "")]
    assert brief(read(TWO_SHEETS, sheet=" march 2026 ")) == [(2, B, "valid", "")]  # as Excel compares names


def test_an_unknown_sheet_names_the_sheets_found() -> None:
    error = file_error(TWO_SHEETS, sheet="April")
    assert error.line is None
    assert error.problem == "no sheet named 'April' in the workbook; sheets found: 'Notes', 'March 2026'"
    assert "--sheet" in error.fix and "x-oss-meta-sheet" in error.fix
    assert str(error).startswith(f"{SOURCE}: no sheet named 'April'")


def test_an_empty_sheet_is_a_file_error() -> None:
    data = workbook_bytes(("List", [["to"], [A]]), ("Empty", []), ("Blank", [[], [None, None]]))
    for sheet in ("Empty", "Blank"):
        error = file_error(data, sheet=sheet)
        assert error.problem == f"the sheet {sheet!r} is empty" and "row 1" in error.fix


def test_a_sheet_without_header_in_row_1_says_so() -> None:
    error = file_error(workbook_bytes(("List", [[], ["to"], [A]])))
    assert (error.line, error.problem) == (1, "line 1 is blank: there is no header row")


def test_a_sheet_named_for_a_csv_is_an_error() -> None:
    error = file_error(b"to\n8613866661234\n", sheet="List")
    assert "not an Excel workbook" in error.problem and "--sheet" in error.fix


def test_the_sheet_is_part_of_the_job_identity_only_when_given() -> None:
    options = parse_job_options(
        {"ChannelType": "whatsapp", "TemplateCode": "T", "Language": "en", "From": "1"}
    )
    plain = job_identity("f" * 64, options, IntakeOptions())
    assert plain == job_identity("f" * 64, options, IntakeOptions(sheet=None))
    assert job_identity("f" * 64, options, IntakeOptions(sheet="March")) != plain


# -- recognised by content -------------------------------------------------------------------------------


def test_a_workbook_is_recognised_by_content_and_streams_are_spooled(monkeypatch: pytest.MonkeyPatch) -> None:
    data = workbook_bytes(("List", [["to", "name"], *[[8613866660000 + i, f"N{i}"] for i in range(300)]]))
    assert data.startswith(b"PK\x03\x04") and not is_xlsx(data[:64])  # openpyxl writes docProps/ first
    expected = brief(read(data))
    assert len(expected) == 300 and expected[0] == (2, "8613866660000", "valid", "")
    assert brief(read(Trickle(data))) == expected  # no seek: spooled in memory
    monkeypatch.setattr(xlsx, "SPOOL_IN_MEMORY", 1024)  # past it, on disk
    assert brief(read(Trickle(data, size=4096))) == expected


def test_a_csv_is_read_as_before_from_a_file_or_a_stream() -> None:
    """Looking at the first bytes leaves a CSV whole, from a seekable file and from a stream alike."""
    data = ("\ufeffto,name\n" + "".join(f"86138666612{i:02d},N{i}\n" for i in range(40))).encode()
    expected = [(i + 2, f"86138666612{i:02d}", "valid", "") for i in range(40)]
    assert brief(read(data)) == expected
    assert brief(read(Trickle(data, size=3))) == expected
    assert brief(read(Trickle(b"to\n" + A.encode(), size=1))) == [(2, A, "valid", "")]


def test_a_zip_that_is_no_workbook_is_still_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("recipients.csv", "to\n8613866661234\n")
    for stream in (io.BytesIO(buffer.getvalue()), Trickle(buffer.getvalue())):
        error = file_error(stream)
        assert error.problem == "a ZIP archive, not a CSV text file"


def test_an_xls_is_still_refused() -> None:
    error = file_error(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    assert (
        error.problem
        == "an Excel 97-2003 workbook (.xls) or a password-protected workbook, not a CSV text file"
    )
    assert "Excel Workbook (.xlsx)" in error.fix and "without a password" in error.fix


def test_a_broken_workbook_names_the_file() -> None:
    data = workbook_bytes(("List", [["to"], [A]]))
    cut = data[: len(data) // 2]  # the central directory is gone
    broken_sheet = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(broken_sheet, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            target.writestr(
                item, b"<worksheet><sheetData><row" if "worksheets/" in item.filename else content
            )
    for broken in (
        cut,
        b"PK\x03\x04" + bytes(22) + (19).to_bytes(2, "little") + bytes(2) + b"[Content_Types].xml",
    ):
        error = file_error(broken)
        assert error.problem.startswith("the workbook cannot be read (") and error.line is None
    error = file_error(broken_sheet.getvalue())
    assert error.problem.startswith("the workbook cannot be read (")


# -- the CLI -----------------------------------------------------------------------------------------------


def send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, data: bytes, *extra: str
) -> tuple[int, str]:
    store = SqliteStore(str(tmp_path / "state.db"))
    offline = CamsClient(
        CamsSettings(endpoint="127.0.0.1:9", protocol="HTTP"), credential=None
    )  # never called
    monkeypatch.setattr(cli, "build_services", lambda **_: Services(store=store, cams=offline))
    (tmp_path / name).write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    argv = ["send", str(tmp_path / name), *SEND_FLAGS, "--dry-run", "--no-progress", *extra]
    code = cli.main([*argv, "--report", str(tmp_path / "report.csv")], out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def report(tmp_path: Path) -> list[tuple[str, str, str, str]]:
    with open(tmp_path / "report.csv", newline="") as file:
        return [(r["line"], r["to"], r["status"], r["code"]) for r in csv.DictReader(file)]


@pytest.mark.parametrize("name", ["list.xlsx", "list.csv"])  # a name can lie: the content decides
def test_cli_dry_run_of_a_workbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    data = workbook_bytes(
        ("Notes", [["nothing here"]]),
        ("List", [["Phone Number", "name"], [8613866661234, "Ana"], ["bad", "Ben"], [8613866661235, "Cy"]]),
    )
    code, output = send(tmp_path, monkeypatch, name, data, "--sheet", "List")
    assert code == 0, output
    assert "nothing sent" in output
    assert report(tmp_path) == [
        ("2", A, "pending", ""),
        ("3", "bad", "invalid", "InvalidNumber"),
        ("4", B, "pending", ""),
    ]


def test_cli_unknown_sheet_exits_2_naming_the_sheets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = send(tmp_path, monkeypatch, "list.xlsx", TWO_SHEETS, "--sheet", "April")
    assert code == 2 and "no sheet named 'April'" in output and "'Notes', 'March 2026'" in output
    assert "Traceback" not in output


# -- an OSS upload -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        yield local


def test_an_uploaded_workbook_is_planned_and_sent(cloud: LocalCloud) -> None:
    world = World(cloud, batch_size=100)
    key = f"incoming/{secrets.token_hex(3)}/march.xlsx"
    data = workbook_bytes(
        ("Notes", [["x"]]), ("List", [["to", "name"], [8613866661234, "Ana"], ["bad", "Ben"]])
    )
    [result] = world.ingest(world.upload(key, data, {**META, "x-oss-meta-sheet": "List"}))
    assert result.status == "planned", result.message
    job = world.store.get_job(result.job_id)
    assert job is not None and job.intake["sheet"] == "List" and (job.valid, job.invalid) == (1, 1)
    world.run_senders()
    assert [m.to for m in cloud.cams.backend.received] == [A]
    job = world.store.get_job(result.job_id)
    assert job is not None and job.status is JobStatus.completed
    base = key[len("incoming/") : -len(".xlsx")]
    assert world.keys(f"reports/{base}.")  # the report sits beside the upload's name, .xlsx dropped


def test_an_uploaded_workbook_with_an_unknown_sheet_fails_naming_the_sheets(cloud: LocalCloud) -> None:
    world = World(cloud)
    key = f"incoming/{secrets.token_hex(3)}.xlsx"
    [result] = world.ingest(world.upload(key, TWO_SHEETS, {**META, "x-oss-meta-sheet": "April"}))
    assert result.status == "failed" and "'Notes', 'March 2026'" in result.message
    error = json.loads(
        world.object(f"reports/{key[len('incoming/') : -len('.xlsx')]}.{result.job_id[:12]}.error.json")
    )
    assert error["problem"] == "file" and "no sheet named 'April'" in error["error"]


def test_sheet_option_keys_and_names_of_workbook_uploads() -> None:
    job = {"channel-type": "whatsapp", "template-code": "T", "language": "en", "from": "8613800000000"}
    for key in ("sheet", "Sheet"):
        _, intake = resolve_options([("meta", {key: " March "}), ("defaults", job)])
        assert intake.sheet == "March"
    assert sidecar_key("incoming/march.xlsx") == "incoming/march.json"
    assert sidecar_key("incoming/march.XLSX") == "incoming/march.json"
    assert sidecar_key("incoming/march.csv") == "incoming/march.json"
