"""The recipient-file reader: encoding, delimiter, header rules, row validation, de-duplication, physical line
numbers, over-long lines, and a property test over generated files."""

from __future__ import annotations

import csv
import hashlib
import io
import string
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatapp_mass.core import intake
from chatapp_mass.core.errors import CsvFileError
from chatapp_mass.core.intake import CELL_LIMIT_BYTES, RECIPIENT_COLUMNS, RecipientReader, Row, sha256_of
from chatapp_mass.core.options import ChannelType, IntakeOptions
from chatapp_mass.core.phones import describe_invalid

SOURCE = "recipients.csv"
MIB = 1024 * 1024
A, B, C, D = "8613866661234", "8613866661235", "8613866661236", "8613866661237"


def reader(
    data: bytes | str, channel: ChannelType = ChannelType.whatsapp, stream: object = None, **options: object
) -> RecipientReader:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return RecipientReader(
        stream if stream is not None else io.BytesIO(data),
        source=SOURCE,
        channel=channel,
        intake=IntakeOptions(**options),
    )


def read(data: bytes | str, **kwargs: object) -> list[Row]:
    recipients = reader(data, **kwargs)
    rows = list(recipients)
    assert recipients.counts == {
        status: sum(row.status == status for row in rows) for status in ("valid", "invalid", "duplicate")
    }
    return rows


def brief(rows: list[Row]) -> list[tuple[int, str, str, str]]:
    return [(row.line, row.to, row.status, row.code) for row in rows]


def file_error(data: bytes | str, **kwargs: object) -> CsvFileError:
    with pytest.raises(CsvFileError) as caught:
        read(data, **kwargs)
    error = caught.value
    assert error.source == SOURCE and SOURCE in str(error)
    assert error.fix  # every file error says what to do
    return error


class Trickle:
    """A binary stream that is not an io class and returns at most ``size`` bytes a read."""

    def __init__(self, data: bytes, size: int = 3) -> None:
        self.data, self.position, self.size = data, 0, size

    def read(self, n: int = -1) -> bytes:
        n = self.size if n < 0 else min(n, self.size)
        chunk = self.data[self.position : self.position + n]
        self.position += len(chunk)
        return chunk


# -- encoding -------------------------------------------------------------------------------------------


def test_utf8_bom_is_dropped() -> None:
    recipients = reader(b"\xef\xbb\xbfto,name\n+86 138 6666 1234,Ann\n")
    assert recipients.header.columns == ("to", "name")
    assert recipients.header.recipient_column == "to"
    assert brief(list(recipients)) == [(2, A, "valid", "")]


def test_bom_only_is_dropped_at_the_start() -> None:
    rows = read(b"\xef\xbb\xbfto,name\n+86 138 6666 1234,\xef\xbb\xbfAnn\n")
    assert rows[0].template_params == {"name": "\ufeffAnn"}  # a BOM in a cell is data


def test_undecodable_byte_in_the_header_is_a_file_error_on_line_1() -> None:
    error = file_error(b"to,na\xffme\n+86 138 6666 1234,Ann\n")
    assert error.line == 1
    assert "line 1" in str(error)
    assert "not UTF-8" in error.problem and "0xff" in error.problem and "byte 6 of the line" in error.problem
    assert "UTF-8" in error.fix


def test_undecodable_byte_in_a_data_row_is_a_file_error_with_its_physical_line() -> None:
    # The module reads each line as UTF-8 on its own: a bad byte makes the file unusable (it is not a
    # row-level invalid), reported with the line it is on, after the rows before it.
    data = (
        b'to,name\n+86 138 6666 1234,"Ann\nSmith"\n\n+86 138 6666 1235,Bob\n+86 138 6666 1236,Caf\xe9\n+1,x\n'
    )
    recipients = reader(data)
    seen: list[Row] = []
    with pytest.raises(CsvFileError) as caught:
        for row in recipients:
            seen.append(row)
    error = caught.value
    assert brief(seen) == [(2, A, "valid", ""), (5, B, "valid", "")]
    assert error.source == SOURCE and error.line == 6
    assert str(error).startswith(f"{SOURCE}, line 6: not UTF-8 text (byte 0xe9 at byte 22 of the line)")
    assert "UTF-8" in error.fix


def test_utf16_file_is_named_as_such() -> None:
    error = file_error("to,name\n+8613866661234,Ann\n".encode("utf-16"))
    assert error.line == 1 and "UTF-16" in error.problem and "UTF-8" in error.fix


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"to,na\x00me\n", 1),
        (b"to,name\n+8613866661234,Ann\n+8613866661235,B\x00b\n", 3),
    ],
)
def test_nul_character_is_a_file_error(data: bytes, line: int) -> None:
    error = file_error(data)
    assert error.line == line and "NUL" in error.problem


def test_non_ascii_text_is_kept() -> None:
    rows = read("to,name\n+86 138 6666 1234,Zoë 张伟 🙂\n")
    assert rows[0].template_params == {"name": "Zoë 张伟 🙂"}


# -- delimiter -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "row", "delimiter", "params"),
    [
        ("to,name,city", "+86 138 6666 1234,Ann; B,Paris\tX", ",", {"name": "Ann; B", "city": "Paris\tX"}),
        ("to;name;city", "+86 138 6666 1234;Ann, B;Paris\tX", ";", {"name": "Ann, B", "city": "Paris\tX"}),
        (
            "to\tname\tcity",
            "+86 138 6666 1234\tAnn, B\tParis; X",
            "\t",
            {"name": "Ann, B", "city": "Paris; X"},
        ),
        (
            '"name,full";to',
            "Ann, B;+86 138 6666 1234",
            ";",
            {"name,full": "Ann, B"},
        ),  # quoted ',' not counted
        ("to,name;x", "+86 138 6666 1234,a;b", ",", {"name;x": "a;b"}),  # a tie goes to the comma
        ("to", "+86 138 6666 1234", ",", None),  # no delimiter at all: comma
    ],
)
def test_delimiter_is_sniffed_from_the_header(
    header: str, row: str, delimiter: str, params: dict[str, str] | None
) -> None:
    recipients = reader(f"{header}\n{row}\n")
    assert recipients.header.delimiter == delimiter
    rows = list(recipients)
    assert brief(rows) == [(2, A, "valid", "")]
    assert rows[0].template_params == params


def test_forced_delimiter_wins_over_sniffing() -> None:
    data = "to;a,b,c\n+86 138 6666 1234;x,y,z\n"
    error = file_error(data)  # sniffed: two commas against one semicolon, so columns 'to;a', 'b', 'c'
    assert "no recipient column" in error.problem
    recipients = reader(data, delimiter=";")
    assert recipients.header.delimiter == ";" and recipients.header.columns == ("to", "a,b,c")
    assert [row.template_params for row in recipients] == [{"a,b,c": "x,y,z"}]
    assert "no recipient column" in file_error("to\tname,city\n1\t2\n").problem  # a tie: comma
    tabbed = reader("to\tname,city\n+86 138 6666 1234\tAnn, Paris\n", delimiter="\t")
    assert tabbed.header.columns == ("to", "name,city")
    assert [row.template_params for row in tabbed] == [{"name,city": "Ann, Paris"}]


# -- header ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    list(RECIPIENT_COLUMNS)
    + ["To", " PHONE ", "Mobile", "NUMBER", " recipient", "\tTo\t"]
    + ["Phone Number", "phone_number", "Phone-Number", "PhoneNumber", "phone  number", "MSISDN"]
    + ["WhatsApp", "WhatsApp Number", "whatsapp_number", "Mobile Number", "mobile-number", "Viber Number"],
)
def test_recipient_column_names(name: str) -> None:
    recipients = reader(f"name,{name},code\nAnn,+86 138 6666 1234,C1\n", delimiter=",")
    assert recipients.header.recipient_column == name.strip()
    assert recipients.header.param_columns == ("name", "code")
    assert [row.template_params for row in recipients] == [{"name": "Ann", "code": "C1"}]


def test_recipient_columns_are_the_documented_names() -> None:
    assert RECIPIENT_COLUMNS == (
        "to",
        "phone",
        "phone number",
        "mobile",
        "mobile number",
        "whatsapp",
        "whatsapp number",
        "viber",
        "viber number",
        "msisdn",
        "number",
        "recipient",
    )


ACCEPTED = (
    "name the recipient column one of: to, phone, phone number, mobile, mobile number, whatsapp, "
    "whatsapp number, viber, viber number, msisdn, number, recipient (case, spaces, underscores and dashes "
    "aside), or give its name with --recipient-column NAME (on an upload: the x-oss-meta-recipient-column "
    "metadata or recipient-column in the sidecar)"
)


@pytest.mark.parametrize(
    ("header", "found"),
    [
        ("name,code", "'name', 'code'"),
        ("Cell Phone,name", "'Cell Phone', 'name'"),
        ("tel,name", "'tel', 'name'"),
        ("t o,name", "'t o', 'name'"),
        ("recipients,name", "'recipients', 'name'"),
        ('"to"x,name', "'tox', 'name'"),
    ],
)
def test_no_recipient_column_lists_the_headers_found_and_the_accepted_names(header: str, found: str) -> None:
    error = file_error(f"{header}\n+8613866661234,Ann\n")
    assert error.line == 1 and error.problem == f"no recipient column in the header; headers found: {found}"
    assert error.fix == ACCEPTED
    assert str(error) == f"{SOURCE}, line 1: {error.problem} — {ACCEPTED}"


def test_a_long_header_is_listed_cut_short() -> None:
    header = ",".join(f"c{i}" for i in range(25))
    error = file_error(f"{header}\n1\n")
    assert error.problem.endswith("'c18', 'c19' and 5 more")


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("to,phone", "two recipient columns: 'to' (column 1) and 'phone' (column 2)"),
        ("name,Mobile,x,NUMBER", "two recipient columns: 'Mobile' (column 2) and 'NUMBER' (column 4)"),
        (
            "Phone Number,WhatsApp",
            "two recipient columns: 'Phone Number' (column 1) and 'WhatsApp' (column 2)",
        ),
    ],
)
def test_two_recipient_columns_is_a_file_error(header: str, problem: str) -> None:
    error = file_error(f"{header}\n1,2,3,4\n")
    assert error.line == 1 and error.problem == problem
    assert "rename the other, or choose one with --recipient-column NAME" in error.fix


def test_excel_scientific_notation_is_invalid_with_the_reason_and_the_fix() -> None:
    rows = read("phone;name\n8.6138E+12;Ann\n8,6138E+12;Bob\n+86 138 6666 1234;Cy\n", delimiter=";")
    lost = "(digits are lost) — format the column as text and export again"
    assert [(row.line, row.to, row.status, row.code, row.message) for row in rows] == [
        (2, "8.6138E+12", "invalid", "InvalidNumber", f"Excel turned this number into 8.6138E+12 {lost}"),
        (3, "8,6138E+12", "invalid", "InvalidNumber", f"Excel turned this number into 8,6138E+12 {lost}"),
        (4, A, "valid", "", ""),
    ]


# -- --recipient-column -----------------------------------------------------------------------------------


@pytest.mark.parametrize("named", ["Cell", "cell", " CELL "])
def test_a_named_recipient_column_is_read(named: str) -> None:
    recipients = reader("name,Cell,code\nAnn,+86 138 6666 1234,C1\n", recipient_column=named)
    assert recipients.header.recipient_column == "Cell"
    assert [(row.to, row.template_params) for row in recipients] == [(A, {"name": "Ann", "code": "C1"})]


def test_a_named_recipient_column_picks_one_of_two_and_the_other_is_a_value() -> None:
    data = "Phone,Mobile\n+86 138 6666 1234,+86 138 6666 1235\n"
    assert file_error(data).problem.startswith("two recipient columns")
    recipients = reader(data, recipient_column="mobile")
    assert recipients.header.recipient_column == "Mobile" and recipients.header.param_columns == ("Phone",)
    assert [(row.to, row.template_params) for row in recipients] == [(B, {"Phone": "+86 138 6666 1234"})]


def test_a_named_recipient_column_matches_word_gaps_like_the_usual_names() -> None:
    recipients = reader("Contact_Number,name\n+86 138 6666 1234,Ann\n", recipient_column="contact number")
    assert recipients.header.recipient_column == "Contact_Number"


def test_a_named_recipient_column_missing_from_the_header_lists_the_headers_found() -> None:
    error = file_error("to,name\n+86 138 6666 1234,Ann\n", recipient_column="Cell")
    assert error.line == 1
    assert error.problem == (
        "no column named 'Cell' (--recipient-column) in the header; headers found: 'to', 'name'"
    )
    assert error.fix == (
        "give --recipient-column one of the headers found (case, spaces, underscores and dashes aside)"
    )


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("to,,name", "column 2 of the header has no name"),
        ("to, ,name", "column 2 of the header has no name"),
        ("to,name,", "column 3 of the header has no name"),
        (",to", "column 1 of the header has no name"),
        ("to,name,Name", "column 3 ('Name') repeats the name of column 2"),
        ("to,name, NAME ", "column 3 ('NAME') repeats the name of column 2"),
        ("to,TO", "column 2 ('TO') repeats the name of column 1"),
    ],
)
def test_blank_or_repeated_column_names_are_file_errors(header: str, problem: str) -> None:
    error = file_error(f"{header}\n+8613866661234,a,b\n")
    assert error.line == 1 and error.problem == problem


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"])
def test_empty_file_is_a_file_error(data: bytes) -> None:
    error = file_error(data)
    assert error.line == 1 and error.problem == "the file is empty"


@pytest.mark.parametrize("data", [b"\n", b"  \n", b"\r\n", b"\xef\xbb\xbf\nto\n"])
def test_blank_first_line_is_a_file_error(data: bytes) -> None:
    error = file_error(data)
    assert error.line == 1 and "no header row" in error.problem


@pytest.mark.parametrize("data", [b"to,name", b"to,name\n", b"to,name\r\n", b"to,name\n\n\n,\n"])
def test_header_only_file_has_no_rows(data: bytes) -> None:
    recipients = reader(data)
    assert recipients.header.columns == ("to", "name")
    assert list(recipients) == []
    assert recipients.counts == {"valid": 0, "invalid": 0, "duplicate": 0}


def test_header_longer_than_16_mib_is_a_file_error() -> None:
    error = file_error(b"to," + b"n" * (17 * MIB) + b"\n+8613866661234,x\n")
    assert error.line == 1 and "longer than 16 MiB" in error.problem


def test_header_is_read_when_the_reader_is_made() -> None:
    with pytest.raises(CsvFileError):
        reader(b"name\nAnn\n")  # no iteration needed


# -- rows ---------------------------------------------------------------------------------------------


def test_param_columns_become_template_params_with_each_rows_own_values() -> None:
    data = (
        "name,to,code,note\n"
        "Ann,+86 138 6666 1234,C-1,  spaced  \n"
        'Bob,+86 138 6666 1235,"C-2, with comma","say ""hi"""\n'
        'Cy,+86 138 6666 1236,C-3,"two\nlines"\n'
    )
    recipients = reader(data)
    assert recipients.header.param_columns == ("name", "code", "note")
    rows = list(recipients)
    assert brief(rows) == [(2, A, "valid", ""), (3, B, "valid", ""), (4, C, "valid", "")]
    assert [row.template_params for row in rows] == [
        {"name": "Ann", "code": "C-1", "note": "  spaced  "},  # values as written, not trimmed
        {"name": "Bob", "code": "C-2, with comma", "note": 'say "hi"'},
        {"name": "Cy", "code": "C-3", "note": "two\nlines"},
    ]
    assert list(rows[0].template_params) == ["name", "code", "note"]  # column order


def test_a_file_with_no_param_columns_has_no_template_params() -> None:
    rows = read("phone\n+86 138 6666 1234\n+86 138 6666 1235\n")
    assert brief(rows) == [(2, A, "valid", ""), (3, B, "valid", "")]
    assert [row.template_params for row in rows] == [None, None]


def test_column_count() -> None:
    rows = read("to,name\n+86 138 6666 1234,Ann,extra\n+86 138 6666 1235\n+86 138 6666 1236,Cy\n")
    assert brief(rows) == [
        (2, "+86 138 6666 1234", "invalid", "ColumnCount"),
        (3, "+86 138 6666 1235", "invalid", "ColumnCount"),
        (4, C, "valid", ""),
    ]
    assert rows[0].message == "3 cells, header has 2"
    assert rows[1].message == "1 cell, header has 2"
    assert rows[0].template_params is None


def test_column_count_of_a_record_running_over_lines_hints_at_an_open_quote() -> None:
    rows = read(
        'to,name,code\n+86 138 6666 1234,"unclosed,1\n+86 138 6666 1235,Bob,2\n+86 138 6666 1236,Cy,3\n'
    )
    assert brief(rows) == [(2, "+86 138 6666 1234", "invalid", "ColumnCount")]
    assert rows[0].message == (
        "2 cells, header has 3 (the record runs from line 2 to 4: is a quote left open?)"
    )


def test_a_quote_left_open_to_the_end_of_the_file_is_refused_not_sent() -> None:
    """The cells add up (the open quote swallowed the rest of the file into the last one): without a
    check, line 2 was sent with lines 3-4 inside its template value and their recipients lost."""
    rows = read('to,name\n+86 138 6666 1234,"unclosed\n+86 138 6666 1235,Bob\n+86 138 6666 1236,Cy\n')
    assert brief(rows) == [(2, "+86 138 6666 1234", "invalid", "UnclosedQuote")]
    assert "a quote opened on line 2 is never closed" in rows[0].message and "lines 2 to 4" in rows[0].message
    closed = read('to,name\n+86 138 6666 1234,"two\nlines"\n+86 138 6666 1235,Bob\n')
    assert [r.status for r in closed] == ["valid", "valid"]  # a quoted line break is a cell's


def test_cell_too_large_counts_utf8_bytes() -> None:
    limit = CELL_LIMIT_BYTES
    assert limit == 64 * 1024
    data = (
        "to,name\n"
        f"+86 138 6666 1234,{'x' * limit}\n"  # exactly 64 KiB: fine
        f"+86 138 6666 1235,{'x' * (limit + 1)}\n"
        f"+86 138 6666 1236,{'é' * (limit // 2)}\n"  # 64 KiB in 32768 characters: fine
        f"+86 138 6666 1237,{'é' * (limit // 2 + 1)}\n"  # 65538 bytes, far fewer characters
        f"{'1' * (limit + 1)},Bob\n"  # the recipient cell itself
        "+86 138 6666 1235,Bob\n"
    )
    rows = read(data)
    assert brief(rows) == [
        (2, A, "valid", ""),
        (3, "+86 138 6666 1235", "invalid", "CellTooLarge"),
        (4, C, "valid", ""),
        (5, "+86 138 6666 1237", "invalid", "CellTooLarge"),
        (6, "", "invalid", "CellTooLarge"),
        (7, B, "valid", ""),
    ]
    assert rows[0].template_params == {"name": "x" * limit}
    assert rows[1].message == "the cell in column 2 (name) is 65537 bytes; the limit is 65536 (64 KiB)"
    assert rows[3].message == "the cell in column 2 (name) is 65538 bytes; the limit is 65536 (64 KiB)"
    assert rows[4].message == "the cell in column 1 (to) is 65537 bytes; the limit is 65536 (64 KiB)"


def test_missing_recipient() -> None:
    rows = read("name,to\nAnn,\nBob,   \n,\n  ,  \nCy,+86 138 6666 1234\n")
    assert brief(rows) == [
        (2, "", "invalid", "MissingRecipient"),
        (3, "", "invalid", "MissingRecipient"),
        (6, A, "valid", ""),
    ]
    assert rows[0].message == "no recipient in column 2 (to)"


def test_empty_param() -> None:
    data = "to,name,code\n+86 138 6666 1234,Ann,\n+86 138 6666 1235, ,C\n+86 138 6666 1236,Cy,C3\nabc,,\n"
    rows = read(data)
    assert brief(rows) == [
        (2, "+86 138 6666 1234", "invalid", "EmptyParam"),
        (3, "+86 138 6666 1235", "invalid", "EmptyParam"),
        (4, C, "valid", ""),
        (5, "abc", "invalid", "EmptyParam"),
    ]  # checked before the number
    assert rows[0].message == (
        "empty value for template parameter 'code' (column 3); fill it in or allow "
        "empty parameters (--allow-empty-params)"
    )
    assert "'name' (column 2)" in rows[1].message


def test_empty_param_is_white_space_of_any_kind_and_the_first_such_column_is_named() -> None:
    """Blank is what str.isspace says (no-break, ideographic, tab...): the reader tests all values at once
    and then names the first blank column."""
    data = (
        "to,name,code,note\n"
        "+86 138 6666 1234,Ann,\u3000,\t\n"
        "+86 138 6666 1235,\u00a0,C,x\n"
        "+86 138 6666 1236,A\u00a0B,C,x\n"
    )
    rows = read(data)
    assert brief(rows) == [
        (2, "+86 138 6666 1234", "invalid", "EmptyParam"),
        (3, "+86 138 6666 1235", "invalid", "EmptyParam"),
        (4, C, "valid", ""),
    ]
    assert "'code' (column 3)" in rows[0].message
    assert "'name' (column 2)" in rows[1].message
    assert rows[2].template_params == {"name": "A\u00a0B", "code": "C", "note": "x"}


def test_allow_empty_params_accepts_empty_values() -> None:
    rows = read("to,name,code\n+86 138 6666 1234,Ann,\n+86 138 6666 1235, ,C\n", allow_empty_params=True)
    assert brief(rows) == [(2, A, "valid", ""), (3, B, "valid", "")]
    assert [row.template_params for row in rows] == [{"name": "Ann", "code": ""}, {"name": " ", "code": "C"}]
    # a record of nothing but blanks is still skipped, and a missing recipient still refused
    rows = read("to,name\n,\n,Ann\n", allow_empty_params=True)
    assert brief(rows) == [(3, "", "invalid", "MissingRecipient")]


@pytest.mark.parametrize(
    "written", ["12345", "abc", "1-800-FLOWERS", "+999 123", "+", "07400 123456", "+44 7400 123456/7"]
)
def test_invalid_number(written: str) -> None:
    [row] = read(f"to,name\n  {written}  ,Ann\n")
    assert (row.line, row.to, row.status, row.code) == (2, written, "invalid", "InvalidNumber")
    assert row.message == describe_invalid(written, None)
    assert row.template_params is None


def test_default_country_reads_national_numbers() -> None:
    data = "to\n07400 123456\n+44 7400 123456\n8613866661234\n+86 138 6666 1234\n"
    rows = read(data, default_country="gb")
    assert brief(rows) == [
        (2, "447400123456", "valid", ""),
        (3, "447400123456", "duplicate", "Duplicate"),
        (4, "8613866661234", "invalid", "InvalidNumber"),
        (5, A, "valid", ""),
    ]
    assert "national number of GB" in rows[2].message
    assert brief(read(data)) == [
        (2, "07400 123456", "invalid", "InvalidNumber"),
        (3, "447400123456", "valid", ""),
        (4, A, "valid", ""),
        (5, A, "duplicate", "Duplicate"),
    ]


def test_duplicates_name_the_first_line_even_when_written_differently() -> None:
    data = (
        "to,name\n"
        "+86 138 6666 1234,first\n"  # 2
        "+86 138 6666 1235,other\n"  # 3
        "0086138 6666 1234,again\n"  # 4
        "8613866661234,again\n"  # 5
        "+86-138-6666-1234,again\n"  # 6
        "(+86) 138.6666.1234,again\n"  # 7: '(' before '+' is not a number
        "00 86 138 6666 1235,other again\n"  # 8
    )
    rows = read(data)
    assert brief(rows) == [
        (2, A, "valid", ""),
        (3, B, "valid", ""),
        (4, A, "duplicate", "Duplicate"),
        (5, A, "duplicate", "Duplicate"),
        (6, A, "duplicate", "Duplicate"),
        (7, "(+86) 138.6666.1234", "invalid", "InvalidNumber"),
        (8, B, "duplicate", "Duplicate"),
    ]
    assert [row.message for row in rows if row.status == "duplicate"] == ["same recipient as line 2"] * 3 + [
        "same recipient as line 3"
    ]
    assert all(row.template_params is None for row in rows if row.status != "valid")


def test_duplicate_points_at_the_first_valid_occurrence_not_an_invalid_one() -> None:
    rows = read("to,name\n+86 138 6666 1234,\n+86 138 6666 1234,a,b\n8613866661234,ok\n+8613866661234,dup\n")
    assert brief(rows) == [
        (2, "+86 138 6666 1234", "invalid", "EmptyParam"),
        (3, "+86 138 6666 1234", "invalid", "ColumnCount"),
        (4, A, "valid", ""),
        (5, A, "duplicate", "Duplicate"),
    ]
    assert rows[3].message == "same recipient as line 4"


@pytest.mark.parametrize("channel", [ChannelType.messenger, ChannelType.instagram])
def test_user_ids_are_kept_as_written_and_deduplicated_exactly(channel: ChannelType) -> None:
    data = (
        "to,name\n 1234567890123456 ,a\npsid-abc,b\n1234567890123456,c\n01234567890123456,d\n"
        "PSID-ABC,e\npsid-abc,f\n99999999999999999999999,g\n99999999999999999999999,h\n"
        "+8613866661234,i\n"
    )
    rows = read(data, channel=channel)
    assert brief(rows) == [
        (2, "1234567890123456", "valid", ""),
        (3, "psid-abc", "valid", ""),
        (4, "1234567890123456", "duplicate", "Duplicate"),
        (5, "01234567890123456", "valid", ""),  # a leading zero makes another id
        (6, "PSID-ABC", "valid", ""),  # ids are case-sensitive
        (7, "psid-abc", "duplicate", "Duplicate"),
        (8, "99999999999999999999999", "valid", ""),
        (9, "99999999999999999999999", "duplicate", "Duplicate"),
        (10, "+8613866661234", "valid", ""),  # not normalized
    ]
    assert [row.message for row in rows if row.code] == [
        "same recipient as line 2",
        "same recipient as line 3",
        "same recipient as line 8",
    ]


@pytest.mark.parametrize("blank", ["", " ", "\t", ",", ", ,", ",,,", " , , , ", '"",""', ",,,,,,,,,,"])
def test_blank_records_are_skipped_and_line_numbers_stay_physical(blank: str) -> None:
    data = f"to,name\n{blank}\n+86 138 6666 1234,Ann\n{blank}\n{blank}\n+86 138 6666 1235,Bob\n{blank}"
    assert brief(read(data)) == [(3, A, "valid", ""), (6, B, "valid", "")]


def test_quoted_cells_with_delimiters_doubled_quotes_and_newlines() -> None:
    data = (
        "to,name,note\n"  # 1
        '"+86 138 6666 1234","Smith, Ann","she said ""hi"""\n'  # 2
        '+86 138 6666 1235,"Bob\nthe\nbuilder","a,b"\n'  # 3-5
        '"+86 138 6666\n1236",Cy,c\n'  # 6-7: a line break inside the number is not formatting
        '+86 138 6666 1237,"Dee","one\n\ntwo"\n'  # 8-10
        "+86 138 6666 1234,Ann again,x\n"  # 11
    )
    rows = read(data)
    assert brief(rows) == [
        (2, A, "valid", ""),
        (3, B, "valid", ""),
        (6, "+86 138 6666\n1236", "invalid", "InvalidNumber"),
        (8, D, "valid", ""),
        (11, A, "duplicate", "Duplicate"),
    ]
    assert [row.template_params for row in rows if row.status == "valid"] == [
        {"name": "Smith, Ann", "note": 'she said "hi"'},
        {"name": "Bob\nthe\nbuilder", "note": "a,b"},
        {"name": "Dee", "note": "one\n\ntwo"},
    ]


def test_crlf_file() -> None:
    data = b'to,name\r\n+86 138 6666 1234,Ann\r\n\r\n+86 138 6666 1235,"B\r\nob"\r\n+86 138 6666 1236,Cy\r\n'
    rows = read(data)
    assert brief(rows) == [(2, A, "valid", ""), (4, B, "valid", ""), (6, C, "valid", "")]
    assert [row.template_params for row in rows] == [{"name": "Ann"}, {"name": "B\r\nob"}, {"name": "Cy"}]


def test_bare_cr_inside_an_unquoted_cell_is_a_file_error_with_its_line() -> None:
    recipients = reader(b"to,name\n+86 138 6666 1234,Ann\n\n+86 138 6666 1235,B\rob\n+86 138 6666 1236,Cy\n")
    seen: list[Row] = []
    with pytest.raises(CsvFileError) as caught:
        for row in recipients:
            seen.append(row)
    assert brief(seen) == [(2, A, "valid", "")]
    error = caught.value
    assert error.line == 4 and "carriage return (CR) inside an unquoted cell" in error.problem
    assert "LF or CRLF" in error.fix


def test_cr_inside_a_quoted_cell_is_data() -> None:
    rows = read(b'to,name\n+86 138 6666 1234,"A\rnn"\n+86 138 6666 1235,Bob\n')
    assert brief(rows) == [(2, A, "valid", ""), (3, B, "valid", "")]
    assert rows[0].template_params == {"name": "A\rnn"}


def test_cr_only_line_ends_are_reported_as_such() -> None:
    error = file_error(b"to,name\r+86 138 6666 1234,Ann\r+86 138 6666 1235,Bob\r")
    assert error.line == 1 and "carriage return" in error.problem and "LF or CRLF" in error.fix


# -- over-long lines -----------------------------------------------------------------------------------


def test_line_over_16_mib_is_skimmed_reported_and_reading_carries_on() -> None:
    huge = b"x" * (17 * MIB)
    data = (
        b"to,name\n+86 138 6666 1234,Ann\n+86 138 6666 1235,"
        + huge
        + b"\n+86 138 6666 1236,Cy\n+8613866661234,dup\n+86 138 6666 1235,Bob\n"
    )
    rows = read(data)
    assert brief(rows) == [
        (2, A, "valid", ""),
        (3, "+86 138 6666 1235", "invalid", "CellTooLarge"),
        (4, C, "valid", ""),
        (5, A, "duplicate", "Duplicate"),
        (6, B, "valid", ""),
    ]
    assert rows[1].message == f"the cell in column 2 (name) is {len(huge)} bytes; the limit is 65536 (64 KiB)"
    assert rows[3].message == "same recipient as line 2"


def test_long_line_is_not_buffered_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reader asks for at most the line cap at once; with a small cap a long line is skimmed in chunks.
    monkeypatch.setattr(intake, "_MIN_LINE_CAP", 4096)
    monkeypatch.setattr(intake, "_CHUNK", 1000)
    monkeypatch.setattr(intake, "_PER_COLUMN_CAP", 1)
    sizes: list[int] = []

    class Recording(Trickle):
        def read(self, n: int = -1) -> bytes:
            sizes.append(n)
            return super().read(n)

    data = b'to,name\n+86 138 6666 1234,"' + b"y" * 200_000 + b'"\n+86 138 6666 1235,Bob\n'
    recipients = reader(b"", stream=Recording(data, size=10**9))
    rows = list(recipients)
    assert brief(rows) == [(2, "+86 138 6666 1234", "invalid", "CellTooLarge"), (3, B, "valid", "")]
    assert max(sizes) <= 1024 * 1024  # the BufferedReader's buffer, never the whole line


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_long_line_inside_a_multi_line_record_keeps_physical_lines(line_end: bytes) -> None:
    huge = b"z" * (17 * MIB)
    data = line_end.join([b"to,name", b'+86 138 6666 1234,"a', huge, b'b"', b"+86 138 6666 1235,Bob", b""])
    rows = read(data)
    assert brief(rows) == [(2, "+86 138 6666 1234", "invalid", "CellTooLarge"), (5, B, "valid", "")]


def test_long_line_with_one_cell_is_a_column_count() -> None:
    rows = read(b"to,name\n" + b"9" * (17 * MIB) + b"\n+86 138 6666 1235,Bob\n")
    assert brief(rows) == [(2, "", "invalid", "ColumnCount"), (3, B, "valid", "")]
    assert rows[0].message == "1 cell, header has 2"


def test_long_line_keeps_the_recipient_cell_after_the_big_one() -> None:
    rows = read(b"name,to\n" + b"n" * (17 * MIB) + b",+86 138 6666 1234\nBob,+86 138 6666 1234\n")
    assert brief(rows) == [(2, "+86 138 6666 1234", "invalid", "CellTooLarge"), (3, A, "valid", "")]
    assert rows[0].message.startswith("the cell in column 1 (name) is 17825792 bytes")


def test_long_last_line_without_a_line_end() -> None:
    rows = read(b"to,name\n+86 138 6666 1234,Ann\n+86 138 6666 1235," + b"x" * (17 * MIB))
    assert brief(rows) == [(2, A, "valid", ""), (3, "+86 138 6666 1235", "invalid", "CellTooLarge")]


def test_bad_byte_deep_in_a_long_line_is_reported_with_its_line() -> None:
    error = file_error(
        b"to,name\n+86 138 6666 1234,Ann\n+86 138 6666 1235," + b"x" * (17 * MIB) + b"\xff\nx,y\n"
    )
    assert error.line == 3 and f"(byte 0xff at byte {18 + 17 * MIB + 1} of the line)" in error.problem


def test_cell_over_the_csv_field_limit_is_skimmed() -> None:
    big = b"y" * (2 * MIB)  # under the 16 MiB line cap, over csv's 1 MiB field limit
    data = (
        b'to,name\n+86 138 6666 1234,"' + big + b'"\n+86 138 6666 1235,"a\n' + big + b'\nb"\n'
        b"+86 138 6666 1236," + big + b"\n+86 138 6666 1237,Dee\n"
    )
    rows = read(data)
    assert brief(rows) == [
        (2, "+86 138 6666 1234", "invalid", "CellTooLarge"),
        (3, "+86 138 6666 1235", "invalid", "CellTooLarge"),
        (6, "+86 138 6666 1236", "invalid", "CellTooLarge"),
        (7, D, "valid", ""),
    ]
    assert rows[1].message == (
        f"the cell in column 2 (name) is {len(big) + 4} bytes; the limit is 65536 (64 KiB)"
    )
    assert csv.field_size_limit() >= MIB


# -- streams, iteration, counts, hashing ---------------------------------------------------------------


def test_any_object_with_read_is_a_stream() -> None:
    data = b'to,name\n+86 138 6666 1234,Ann\n+86 138 6666 1235,"B\nob"\n+86 138 6666 1234,x\n'
    rows = read(b"", stream=Trickle(data, size=3))
    assert brief(rows) == [(2, A, "valid", ""), (3, B, "valid", ""), (5, A, "duplicate", "Duplicate")]


def test_stream_without_read_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="binary file-like"):
        reader(b"", stream=object())


def test_a_reader_is_iterated_once() -> None:
    recipients = reader("to\n+86 138 6666 1234\n")
    assert len(list(recipients)) == 1
    with pytest.raises(RuntimeError, match="once"):
        iter(recipients)


def test_counts_follow_the_rows_yielded() -> None:
    recipients = reader(
        "to,name\n+86 138 6666 1234,a\nabc,b\n8613866661234,c\n+86 138 6666 1235,\n+86 138 6666 1236,d\n"
    )
    assert recipients.counts == {"valid": 0, "invalid": 0, "duplicate": 0}
    progress = []
    for _ in recipients:
        progress.append(dict(recipients.counts))
    assert progress == [
        {"valid": 1, "invalid": 0, "duplicate": 0},
        {"valid": 1, "invalid": 1, "duplicate": 0},
        {"valid": 1, "invalid": 1, "duplicate": 1},
        {"valid": 1, "invalid": 2, "duplicate": 1},
        {"valid": 2, "invalid": 2, "duplicate": 1},
    ]


def test_sha256_of_reads_to_the_end_from_the_current_position() -> None:
    data = bytes(range(256)) * (5 * 4096 + 7)  # over 1 MiB: several chunks
    assert sha256_of(io.BytesIO(data)) == hashlib.sha256(data).hexdigest()
    stream = io.BytesIO(data)
    stream.seek(1000)
    assert sha256_of(stream) == hashlib.sha256(data[1000:]).hexdigest()
    assert stream.read() == b""  # read to the end
    assert sha256_of(io.BytesIO(b"")) == hashlib.sha256(b"").hexdigest()
    assert sha256_of(Trickle(data, size=70_000)) == hashlib.sha256(data).hexdigest()


# -- the de-duplication table -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.integers(1, 2**64 - 1), st.integers(1, 40)), max_size=300))
def test_first_seen_table_remembers_the_first_line_through_growth(keys: list[int]) -> None:
    seen = intake._FirstSeen(bits=2)  # tiny: grows many times
    model: dict[int, int] = {}
    for line, key in enumerate(keys, start=2):
        assert seen.first_int(key, line) == model.get(key, 0)
        model.setdefault(key, line)
    assert len(seen) == len(model)
    for key, line in model.items():
        assert seen.first_int(key, 10**9) == line


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(string.digits, min_size=1, max_size=22), st.text(string.ascii_letters + "-é0", max_size=5)
        ),
        max_size=100,
    )
)
def test_first_seen_table_keeps_string_ids_apart(keys: list[str]) -> None:
    seen = intake._FirstSeen(bits=2)
    model: dict[str, int] = {}
    for line, key in enumerate(keys, start=2):
        assert seen.first(key, line) == model.get(key, 0)
        model.setdefault(key, line)
    assert len(seen) == len(model)


def test_many_distinct_recipients_in_one_file() -> None:
    # 20,000 distinct numbers grow the table past its first size; every repeat still finds its first line
    numbers = [f"861380000{index:04d}" for index in range(10_000)] + [
        f"4474001{index:05d}" for index in range(10_000)
    ]
    lines = ["to"] + [f"+{number}" for number in numbers] + [f"00{number}" for number in numbers[::997]]
    rows = read("\n".join(lines) + "\n")
    assert len(rows) == len(lines) - 1
    assert [row.status for row in rows[:20_000]] == ["valid"] * 20_000
    assert [row.to for row in rows[:20_000]] == numbers
    assert [(row.status, row.message) for row in rows[20_000:]] == [
        ("duplicate", f"same recipient as line {index + 2}") for index in range(0, 20_000, 997)
    ]


# -- the property test ------------------------------------------------------------------------------------


def _valid_pool() -> list[tuple[str, list[str]]]:
    """(E.164 digits, ways to write it)."""
    pool = []
    for digits, code in (
        ("8613866661234", 2),
        ("8613866661235", 2),
        ("447400123456", 2),
        ("447911123456", 2),
        ("14155552671", 1),
        ("12125550123", 1),
        ("4915123456789", 2),
        ("33612345678", 2),
        ("919876543210", 2),
        ("390612345678", 2),
    ):
        rest = digits[code:]
        pool.append(
            (
                digits,
                [
                    digits,
                    "+" + digits,
                    "00" + digits,
                    f"+{digits[:code]} {rest[:3]} {rest[3:]}",
                    f"00 {digits[:code]}-{rest[:3]}-{rest[3:]}",
                    f"+{digits[:code]} ({rest[:3]}) {rest[3:6]}.{rest[6:]}",
                ],
            )
        )
    return pool


VALID_POOL = _valid_pool()
INVALID_POOL = [
    "12345",
    "+999 123",
    "call me",
    "+44 20",
    "86-138",
    "+",
    "1-800-FLOWERS",
    "0000",
    "07400 123456",
    "+86 138 6666 12345",
    "x",
    "+1 555 0100",
]


def test_property_pools_are_what_they_claim() -> None:
    from chatapp_mass.core.phones import normalize_number

    for digits, writings in VALID_POOL:
        assert {normalize_number(text, None) for text in writings} == {digits}
    assert all(normalize_number(text, None) is None for text in INVALID_POOL)


_TEXT = 'ab ,;"\n\t\ré'
_param = st.one_of(
    st.text(alphabet=_TEXT, max_size=6),
    st.text(alphabet=_TEXT, min_size=20, max_size=60),
    st.text(alphabet=_TEXT.replace("\n", ""), min_size=180, max_size=400),
)  # a long line
_record = st.one_of(
    st.tuples(st.just("number"), st.integers(0, len(VALID_POOL) - 1), st.integers(0, 5), _param),
    st.tuples(st.just("invalid"), st.sampled_from(INVALID_POOL), _param),
    st.tuples(st.just("missing"), _param),
    st.tuples(st.just("extra"), st.sampled_from(INVALID_POOL + ["+8613866661234"]), _param),
    st.tuples(st.just("blank"), st.sampled_from(["", " ", ",", " , ", ",,", ",,,,", '"",'])),
)

# Limits small enough for generated rows to reach them: a cell over 24 bytes is CellTooLarge, one over 40
# characters is over the csv module's field limit (skimmed), and a line over 168 bytes (the cap for two
# columns) is skimmed in 16-byte chunks.
_SMALL = {
    "CELL_LIMIT_BYTES": 24,
    "_PER_COLUMN_CAP": 52,
    "_MIN_LINE_CAP": 100,
    "_CHUNK": 16,
    "_CSV_FIELD_LIMIT": 40,
}


def _cell(value: str) -> str:
    if any(char in value for char in ',"\n\r;\t') or value != value.strip(" "):
        return '"' + value.replace('"', '""') + '"'
    return value


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_record, max_size=40),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
    st.booleans(),
    st.integers(1, 50),
    st.booleans(),
)
def test_every_record_is_yielded_once_with_its_physical_line(
    records: list[tuple], line_end: str, bom: bool, allow_empty: bool, chunk: int, small: bool
) -> None:
    limit = _SMALL["CELL_LIMIT_BYTES"] if small else CELL_LIMIT_BYTES
    text = ["to,name" + line_end]
    expected: list[tuple[int, str, str, str, str]] = []
    first_line: dict[str, int] = {}
    line = 2
    for record in records:
        kind = record[0]
        if kind == "blank":
            text.append(record[1] + line_end)
            line += 1
            continue
        param = record[-1]
        if kind == "number":
            digits, writings = VALID_POOL[record[1]]
            written = writings[record[2] % len(writings)]
        elif kind in ("invalid", "extra"):
            written = record[1]
        else:
            written = ""
        text.append(f"{_cell(written)},{_cell(param)}{',x' if kind == 'extra' else ''}{line_end}")
        empty_param = not param or param.isspace()
        given_to = written if _size(written) <= limit else ""
        if kind == "extra":
            expected.append((line, given_to, "invalid", "ColumnCount", ""))
        elif _size(written) > limit or _size(param) > limit:
            expected.append((line, given_to, "invalid", "CellTooLarge", ""))
        elif not written:
            if not empty_param:
                expected.append((line, "", "invalid", "MissingRecipient", ""))
        elif empty_param and not allow_empty:
            expected.append((line, written, "invalid", "EmptyParam", ""))
        elif kind == "invalid":
            expected.append((line, written, "invalid", "InvalidNumber", ""))
        elif digits in first_line:
            message = f"same recipient as line {first_line[digits]}"
            expected.append((line, digits, "duplicate", "Duplicate", message))
        else:
            first_line[digits] = line
            expected.append((line, digits, "valid", "", param))
        line += 1 + param.count("\n")
    data = ("\ufeff" if bom else "") + "".join(text)
    saved_field_limit = csv.field_size_limit()
    try:
        with pytest.MonkeyPatch.context() as patch:
            if small:
                for name, value in _SMALL.items():
                    patch.setattr(intake, name, value)
                csv.field_size_limit(_SMALL["_CSV_FIELD_LIMIT"])
            recipients = RecipientReader(
                Trickle(data.encode("utf-8"), size=chunk),
                source=SOURCE,
                channel=ChannelType.whatsapp,
                intake=IntakeOptions(allow_empty_params=allow_empty),
            )
            rows = list(recipients)
    finally:
        csv.field_size_limit(saved_field_limit)
    got = [
        (
            row.line,
            row.to,
            row.status,
            row.code,
            row.message if row.status == "duplicate" else (row.template_params or {}).get("name", ""),
        )
        for row in rows
    ]
    assert got == expected
    valid = [row.to for row in rows if row.status == "valid"]
    assert len(valid) == len(set(valid))
    assert all(row.status in ("valid", "invalid", "duplicate") for row in rows)
    assert recipients.counts == {
        status: sum(row.status == status for row in rows) for status in ("valid", "invalid", "duplicate")
    }
    lines = [row.line for row in rows]
    assert lines == sorted(set(lines))


# -- the skimmer follows the csv module ----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet='ab,"é \r', max_size=12), min_size=1, max_size=4),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
    st.integers(0, 3),
    st.lists(st.integers(1, 6), max_size=10),
)
def test_skimmer_counts_cells_like_the_csv_module(
    lines: list[str], line_end: str, last_has_end: bool, recipient_index: int, cuts: list[int]
) -> None:
    """What a skimmed record reports (cells, first over-size cell, recipient cell, lines used) is what the
    csv module would have parsed, however the lines are cut into chunks."""
    physical = [line + line_end for line in lines]
    if not last_has_end:
        physical[-1] = lines[-1]
    limit = 5
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(intake, "CELL_LIMIT_BYTES", limit)
        skim = intake._Skim(",", recipient_index)
        ended = False
        for text in physical:
            chunks, rest = [], text
            for cut in cuts:
                chunks.append(rest[:cut])
                rest = rest[cut:]
            chunks.append(rest)
            for chunk in chunks:
                if not skim.bare_cr:
                    skim.feed(chunk)
            if skim.bare_cr:
                break
            if text.endswith("\n") and skim.end_line():
                ended = True
                break
        if not ended and not skim.bare_cr:
            if not physical[-1].endswith("\n"):
                skim.end_line()
            skim.end_of_data()
    parsed = csv.reader(iter(physical), delimiter=",", quotechar='"', doublequote=True, strict=False)
    try:
        cells = next(parsed, [])
    except csv.Error as error:  # a CR inside an unquoted cell: the skimmer notices it on the same line
        assert "new-line character" in str(error)
        assert skim.bare_cr and skim.lines + 1 == parsed.line_num
        return
    assert not skim.bare_cr
    assert skim.cells == len(cells)
    assert skim.lines == parsed.line_num
    sizes = [len(cell.encode("utf-8")) for cell in cells]
    big = next(((index, size) for index, size in enumerate(sizes) if size > limit), None)
    assert skim.big == big
    if recipient_index < len(cells):
        assert skim.recipient == (cells[recipient_index] if sizes[recipient_index] <= limit else "")
    else:
        assert skim.recipient is None


@pytest.mark.parametrize(
    "line",
    [
        b"+86 138 6666 1235,x\ry" + b"z" * (17 * MIB),  # in the first chunk of a long line
        b"+86 138 6666 1235," + b"z" * (17 * MIB) + b"x\ry",  # in its last chunk
        b'+86 138 6666 1235,"' + b"z" * (2 * MIB) + b'"x\ry',  # after a cell over the csv field limit
        b'+86 138 6666 1235,"a\n' + b"z" * (17 * MIB) + b'"x\ry',  # on the second line of a long record
    ],
)
def test_bare_cr_in_a_skimmed_record_is_reported_on_its_own_line(line: bytes) -> None:
    recipients = reader(b"to,name\n+86 138 6666 1234,a\n" + line + b"\n+86 138 6666 1236,c\n")
    seen: list[Row] = []
    with pytest.raises(CsvFileError) as caught:
        for row in recipients:
            seen.append(row)
    assert brief(seen) == [(2, A, "valid", "")]
    assert caught.value.line == 3 + line.count(b"\n")
    assert "carriage return (CR)" in caught.value.problem


# -- a spreadsheet or archive given for a CSV -------------------------------------------------------------


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return buffer.getvalue()


EXPORT = (
    'open it in Excel and save it as "CSV UTF-8" (format the phone column as text first, so long numbers '
    "keep their digits), then send the .csv"
)


XLS_FIX = (
    'open it in Excel and save it, without a password, as "Excel Workbook (.xlsx)" (read as it is) or as "CSV '
    'UTF-8" (format the phone column as text first, so long numbers keep their digits), then send that file'
)
WORKBOOK_FIX = (
    'open it in Excel and save it again as "Excel Workbook (.xlsx)", or save the sheet as "CSV UTF-8" and '
    "send the .csv"
)


def opened_error(data: bytes) -> CsvFileError:
    """The file error of ``data`` read as the product reads a file (a workbook recognised by content)."""
    with (
        pytest.raises(CsvFileError) as caught,
        intake.open_recipients(
            io.BytesIO(data), source=SOURCE, channel=ChannelType.whatsapp, intake=IntakeOptions()
        ) as recipients,
    ):
        list(recipients)
    return caught.value


@pytest.mark.parametrize(
    ("data", "problem", "fix"),
    [
        # a workbook is read (tests/unit/test_xlsx.py): these are broken ones, whose parts are not XML
        (
            _zip("[Content_Types].xml", "_rels/.rels", "xl/workbook.xml"),
            "the workbook cannot be read (",
            WORKBOOK_FIX,
        ),
        (_zip("xl/workbook.xml"), "the workbook cannot be read (", WORKBOOK_FIX),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
            "an Excel 97-2003 workbook (.xls) or a password-protected workbook, not a CSV text file",
            XLS_FIX,
        ),
        (_zip("recipients.csv"), "a ZIP archive, not a CSV text file", "unzip it and send the CSV inside"),
    ],
)
def test_a_workbook_or_archive_is_named_for_what_it_is(data: bytes, problem: str, fix: str) -> None:
    error = opened_error(data)
    assert error.source == SOURCE and error.line is None
    assert error.problem.startswith(problem) and error.fix == fix
    assert str(error) == f"{SOURCE}: {error.problem} — {fix}"


def test_the_reader_alone_still_refuses_a_workbook() -> None:
    """Given a workbook directly (not through open_recipients), the CSV reader names it, not its bytes."""
    error = file_error(_zip("[Content_Types].xml", "xl/workbook.xml"))
    assert error.problem == "an Excel workbook (.xlsx), not a CSV text file" and error.fix == EXPORT


@pytest.mark.parametrize("seconds", [20, 21])  # 00:00:20 is time field 0x000A: a newline byte at offset 10
def test_a_workbook_whose_zip_header_holds_a_newline_byte_is_still_a_workbook(seconds: int) -> None:
    """CI once saw "a ZIP archive": the header's time held 0x0A, so the first "line" ended before the name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("[Content_Types].xml", "xl/workbook.xml"):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 12, 4, 0, 0, seconds)), "<x/>")
    assert buffer.getvalue()[10] == 0x0A
    error = file_error(buffer.getvalue())
    assert error.problem == "an Excel workbook (.xlsx), not a CSV text file" and error.fix == EXPORT
