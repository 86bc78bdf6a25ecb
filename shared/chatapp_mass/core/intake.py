"""The streaming recipient-file reader: header rules, row validation, number normalization, de-duplication.

Longer than 500 lines: the reader is one streaming pass (header rules, the physical line of quoted cells, row
validation, normalization, de-duplication) whose steps share the reader's position; apart, each would need
that state handed to it.

Pure: a binary stream in, one :class:`Row` per input record out; no store, no network. Callers open a file
with :func:`open_recipients`, which also reads an Excel workbook (recognised by content): its sheet's rows
become CSV lines (:mod:`chatapp_mass.core.xlsx`), one per sheet row, read by the same rules.

How it reads (see the module tests for each rule):

- The stream is read one physical line at a time (split on LF; a CR before it belongs to the line), each
  line decoded as UTF-8 on its own so an undecodable byte is reported with its line number. A BOM at the
  start is dropped. The decoded lines feed the stdlib ``csv`` reader (C), so quoted cells may hold
  delimiters, doubled quotes and line breaks; a record's line is the physical line it starts on.
- Memory: the reader holds the current record and the de-duplication table only. The table keeps the
  recipient as a 64-bit integer and its first line in two flat arrays (16 bytes a slot), so it grows with
  the number of distinct recipients, about 24-32 bytes each, never with the file size.
- A physical line longer than ``max(16 MiB, columns x 128 KiB)`` cannot be a valid record; it is not
  buffered but skimmed in chunks (as is a record the csv module refuses for its field-size limit), and the
  record is reported invalid (ColumnCount or CellTooLarge) before reading carries on.
- Blank records (only empty or white-space cells, e.g. an empty line or ``,,,``) are skipped.
- File errors (:class:`CsvFileError`, nothing is sent) rather than invalid rows: an undecodable byte or a
  NUL on any line, and a carriage return outside quotes that is not part of a line end (CR-only line ends,
  a stray CR in a cell), each reported with its physical line. Rows before it have been yielded already.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import typing
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any, NamedTuple

from chatapp_mass.core.errors import CsvFileError
from chatapp_mass.core.options import ChannelType, IntakeOptions
from chatapp_mass.core.phone_fast import normalize as _normalize
from chatapp_mass.core.phones import _region, describe_invalid
from chatapp_mass.core.xlsx import is_xlsx

__all__ = [
    "Row",
    "Header",
    "RecipientReader",
    "open_recipients",
    "sha256_of",
    "RECIPIENT_COLUMNS",
    "CELL_LIMIT_BYTES",
]

# The header names read as the recipient column, as the error message lists them. A header name matches
# one case-insensitively, with spaces, underscores and dashes between words taken as one separator or none
# ("Phone Number", "phone_number", "PhoneNumber"): the names exports from Notify, CRMs and spreadsheets use.
# Names that only look similar ("tel", "recipients") are not guessed at: --recipient-column names any other.
RECIPIENT_COLUMNS = (
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
_WORD_GAP = re.compile(r"[\s_-]+")
_HEADERS_SHOWN = 20  # a "headers found" list names at most this many


def _column_key(name: str) -> str:
    """A header name compared the way recipient names are: case-folded, word gaps as one space."""
    return _WORD_GAP.sub(" ", name.strip().casefold())


_RECIPIENT_KEYS = frozenset(RECIPIENT_COLUMNS) | {name.replace(" ", "") for name in RECIPIENT_COLUMNS}


def _headers_found(columns: tuple[str, ...]) -> str:
    """The header's names as written, for an error message; a long header is cut short."""
    shown = ", ".join(repr(name[:60]) for name in columns[:_HEADERS_SHOWN])
    more = len(columns) - _HEADERS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


CELL_LIMIT_BYTES = 64 * 1024
_CSV_FIELD_LIMIT = 1024 * 1024  # csv's own limit (characters); bigger cells are skimmed, not stored
_MIN_LINE_CAP = 16 * 1024 * 1024  # bytes read at once for one physical line
_PER_COLUMN_CAP = 2 * CELL_LIMIT_BYTES + 4  # a full cell of doubled quotes, its quotes and a delimiter
_CHUNK = 1024 * 1024
_BOM = codecs.BOM_UTF8
_ZIP = b"PK\x03\x04"  # a ZIP's first local file header: .xlsx, .ods, .numbers...
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a compound file: .xls (Excel 97-2003)
# Fed to the csv reader in place of an over-long line: whatever state the reader is in, this makes it
# raise csv.Error ("new-line character seen in unquoted field"), so the record can be skimmed instead.
_POISON = '"\r"\rx'


class Row(NamedTuple):
    """One input record. A NamedTuple, not a frozen dataclass: one is built per input line, and a frozen
    dataclass's ``__init__`` costs three times as much (immutable all the same)."""

    line: int  # physical line where the record starts (header = line 1)
    to: str  # normalized recipient (valid/duplicate), or the cell as given (trimmed) when invalid
    status: str  # "valid" | "invalid" | "duplicate"
    code: str = (
        ""  # "" | InvalidNumber | MissingRecipient | EmptyParam | ColumnCount | CellTooLarge | UnclosedQuote
        # | Duplicate
    )
    message: str = ""  # human reason; for Duplicate: "same recipient as line 7"
    template_params: dict[str, str] | None = None  # valid rows only (None when the file has no param columns)
    extra: dict[str, Any] | None = None  # valid rows only: Payload, FlowAction, ProductAction (JSON jobs)


# A Row from its seven fields in order, without the NamedTuple's ``__new__`` (a Python function taking
# keywords and defaults): one per valid line. The same object: a Row is its tuple.
_new_row: Callable[[tuple[Any, ...]], Row] = partial(tuple.__new__, Row)


@dataclass(frozen=True, slots=True)
class Header:
    delimiter: str
    columns: tuple[str, ...]  # names as written, trimmed
    recipient_column: str  # as written, trimmed
    param_columns: tuple[str, ...]  # TemplateParams keys, in column order


def sha256_of(stream: typing.IO[bytes]) -> str:
    """Hex SHA-256 of a binary stream read to its end in 1 MiB chunks (from where it is now)."""
    digest = hashlib.sha256()
    read = stream.read
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            return digest.hexdigest()
        digest.update(chunk)


class _RawAdapter(io.RawIOBase):
    """Any object with ``read(n)`` as a raw stream, so io.BufferedReader gives it a fast ``readline``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        if not data:
            return 0
        size = len(data)
        buffer[:size] = data
        return size


def _readline_of(stream: Any) -> Callable[[int], bytes]:
    if isinstance(stream, (io.BytesIO, io.BufferedReader, io.BufferedRandom)):
        return stream.readline  # C readline with a size limit
    if not hasattr(stream, "read"):
        raise TypeError("RecipientReader needs a binary file-like object with read()")
    return io.BufferedReader(_RawAdapter(stream), buffer_size=_CHUNK).readline


class _FirstSeen:
    """De-duplication: recipient -> line it was first seen on, compactly.

    Integer keys in 1..2**64-1 (phone numbers, numeric user ids) live in an open-addressing table of two
    ``array('Q')`` (key, line), linear probing, load <= 0.7: 16 bytes a slot. Other keys go to a dict.
    """

    __slots__ = ("_keys", "_lines", "_mask", "_shift", "_used", "_limit", "_other")

    def __init__(self, bits: int = 14) -> None:
        self._other: dict[str, int] = {}
        self._allocate(bits)

    def _allocate(self, bits: int) -> None:
        size = 1 << bits
        self._keys = array("Q", bytes(8 * size))
        self._lines = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._shift = 64 - bits
        self._used = 0
        self._limit = int(size * 0.7)

    def first_int(self, key: int, line: int) -> int:
        """The line ``key`` was first seen on, or 0 after recording it as seen on ``line``."""
        keys = self._keys
        mask = self._mask
        slot = ((key * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> self._shift
        while True:
            found = keys[slot]
            if found == key:
                return self._lines[slot]
            if found == 0:
                break
            slot = (slot + 1) & mask
        keys[slot] = key
        self._lines[slot] = line
        self._used += 1
        if self._used > self._limit:
            self._grow()
        return 0

    def first(self, key: str, line: int) -> int:
        if key.isascii() and key.isdigit() and key[0] != "0" and len(key) <= 19:  # < 2**64, no leading 0
            return self.first_int(int(key), line)
        other = self._other
        seen = other.get(key)
        if seen is not None:
            return seen
        other[key] = line
        return 0

    def _grow(self) -> None:
        keys, lines, used = self._keys, self._lines, self._used
        self._allocate(64 - self._shift + 1)
        new_keys, new_lines, mask, shift = self._keys, self._lines, self._mask, self._shift
        for index, key in enumerate(keys):
            if key:
                slot = ((key * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> shift
                while new_keys[slot]:
                    slot = (slot + 1) & mask
                new_keys[slot] = key
                new_lines[slot] = lines[index]
        self._used = used

    def __len__(self) -> int:
        return self._used + len(self._other)


def _sniff(line: str) -> str:
    """The most frequent of comma, semicolon and tab outside quotes (ties: that order); comma if none."""
    counts = {",": 0, ";": 0, "\t": 0}
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts.values())
    return next(d for d in (",", ";", "\t") if counts[d] == best) if best else ","


def _utf8_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _too_large(cell: str) -> int:
    """The cell's UTF-8 size when over the limit, else 0."""
    if len(cell) * 4 <= CELL_LIMIT_BYTES:
        return 0
    size = _utf8_bytes(cell)
    return size if size > CELL_LIMIT_BYTES else 0


def _quote_left_open(lines: Iterable[str], delimiter: str) -> bool:
    """Whether a record's physical lines end inside a quoted cell (the end of the file came first)."""
    try:
        for _ in csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=True):
            pass
    except csv.Error as error:
        return "unexpected end of data" in str(error)
    return False


def _is_blank(cells: Iterable[str]) -> bool:
    return all(not cell or cell.isspace() for cell in cells)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class _Skim:
    """Follows one record the way the csv module parses it (default dialect, non-strict) without keeping
    its cells: counts them, notes the first over-size cell and keeps the recipient cell when small."""

    START_RECORD, START_FIELD, IN_FIELD, IN_QUOTED, QUOTE_IN_QUOTED, EAT_CRNL = range(6)

    def __init__(self, delimiter: str, recipient_index: int) -> None:
        self.delimiter = delimiter
        self.recipient_index = recipient_index
        self.unquoted_stop = re.compile("[" + re.escape(delimiter) + "\r\n]")
        self.state = self.START_RECORD
        self.cells = 0
        self.size = 0  # UTF-8 bytes of the current cell
        self.big: tuple[int, int] | None = None  # (cell index, bytes) of the first over-size cell
        self.recipient_parts: list[str] = []
        self.recipient: str | None = None
        self.lines = 0  # physical lines ended so far
        self.bare_cr = False

    def _add(self, text: str) -> None:
        if not text:
            return
        self.size += _utf8_bytes(text)
        if self.cells == self.recipient_index and self.size <= CELL_LIMIT_BYTES:
            self.recipient_parts.append(text)

    def _save(self) -> None:
        if self.size > CELL_LIMIT_BYTES and self.big is None:
            self.big = (self.cells, self.size)
        if self.cells == self.recipient_index:
            self.recipient = "".join(self.recipient_parts) if self.size <= CELL_LIMIT_BYTES else ""
            self.recipient_parts = []
        self.cells += 1
        self.size = 0

    def feed(self, text: str) -> None:
        """Characters of the record (no line end handling: see :meth:`end_line`)."""
        S = self
        pos, end = 0, len(text)
        delimiter = self.delimiter
        while pos < end:
            state = S.state
            if state == S.IN_QUOTED:
                quote = text.find('"', pos)
                if quote < 0:
                    S._add(text[pos:])
                    return
                S._add(text[pos:quote])
                S.state = S.QUOTE_IN_QUOTED
                pos = quote + 1
                continue
            if state == S.IN_FIELD:
                stop = S.unquoted_stop.search(text, pos)
                if stop is None:
                    S._add(text[pos:])
                    return
                S._add(text[pos : stop.start()])
                pos = stop.start()
                char = text[pos]
                S._save()
                S.state = S.START_FIELD if char == delimiter else S.EAT_CRNL
                pos += 1
                continue
            char = text[pos]
            pos += 1
            newline = char == "\n" or char == "\r"
            if state == S.START_RECORD:
                if newline:
                    S.state = S.EAT_CRNL
                    continue
                state = S.state = S.START_FIELD
            if state == S.START_FIELD:
                if newline:
                    S._save()
                    S.state = S.EAT_CRNL
                elif char == '"':
                    S.state = S.IN_QUOTED
                elif char == delimiter:
                    S._save()
                else:
                    S._add(char)
                    S.state = S.IN_FIELD
            elif state == S.QUOTE_IN_QUOTED:
                if char == '"':
                    S._add(char)
                    S.state = S.IN_QUOTED
                elif char == delimiter:
                    S._save()
                    S.state = S.START_FIELD
                elif newline:
                    S._save()
                    S.state = S.EAT_CRNL
                else:
                    S._add(char)
                    S.state = S.IN_FIELD
            elif state == S.EAT_CRNL and not newline:
                self.bare_cr = True
                return

    def end_line(self) -> bool:
        """The end of a physical line; True when it ends the record."""
        self.lines += 1
        state = self.state
        if state in (self.START_FIELD, self.IN_FIELD, self.QUOTE_IN_QUOTED):
            self._save()
        if state != self.IN_QUOTED:
            self.state = self.START_RECORD
            return True
        return False

    def end_of_data(self) -> None:
        if self.state == self.IN_QUOTED:  # an unclosed quote runs to the end of the file
            self._save()
        self.state = self.START_RECORD


class RecipientReader:
    """Reads a recipient CSV from a binary stream; iterate for one :class:`Row` per record.

    ``header`` is read when the reader is made (file-level problems raise :class:`CsvFileError` there);
    iterating may still raise CsvFileError for a later line (undecodable bytes, a NUL, a bare CR).
    ``counts`` holds the valid / invalid / duplicate rows so far. A reader can be iterated once.

    Note: raises the csv module's process-wide ``field_size_limit`` to at least 1 MiB.
    """

    def __init__(
        self, stream: typing.IO[bytes], *, source: str, channel: ChannelType, intake: IntakeOptions
    ) -> None:
        self.source = source
        self.channel = ChannelType(channel)
        self.intake = intake
        self.counts: dict[str, int] = {"valid": 0, "invalid": 0, "duplicate": 0}
        # The cells of the refused (invalid or duplicate) record last yielded, as the file has them: read
        # it when that row comes out (an errors file). None for a record too large to keep (skimmed). Set
        # for refused records only: a valid one costs nothing.
        self.refused_cells: list[str] | None = None
        self._region = _region(intake.default_country)
        self._readline = _readline_of(stream)
        self._cap = _MIN_LINE_CAP
        self._pending: list[str] = []  # the physical lines of the record being read
        self._skimming = False  # lines are going to the skimmer, not the csv reader
        self._poisoned = False
        self._started = False
        if csv.field_size_limit() < _CSV_FIELD_LIMIT:
            csv.field_size_limit(_CSV_FIELD_LIMIT)

        first = self._first_line()
        delimiter = intake.delimiter or _sniff(first)
        self._lines = self._physical_lines(first)
        self._reader = csv.reader(
            self._lines,
            delimiter=delimiter,
            quotechar='"',
            doublequote=True,
            skipinitialspace=False,
            strict=False,
        )
        try:
            names = next(self._reader)
        except csv.Error as error:
            if "new-line character" in str(error):  # CR-only line ends (old Mac) or a CR in a header name
                raise CsvFileError(
                    source,
                    self._reader.line_num or 1,
                    "a carriage return (CR) inside an unquoted cell",
                    "save the file with LF or CRLF line ends, or quote the cell",
                ) from None
            raise CsvFileError(
                source,
                1,
                f"the header row cannot be read ({error})",
                "the first line must name the columns, e.g. to,name",
            ) from None
        self.header = self._check_header(names, delimiter)
        self._pending.clear()
        self._cap = max(_MIN_LINE_CAP, len(names) * _PER_COLUMN_CAP + 64)

    # -- reading lines -----------------------------------------------------------------------------

    def _decode_error(
        self, raw: bytes, line: int, error: UnicodeDecodeError, offset: int = 0
    ) -> CsvFileError:
        if line == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return CsvFileError(self.source, 1, "the file is UTF-16, not UTF-8", "save it as CSV UTF-8")
        bad = raw[error.start : error.start + 1].hex()
        return CsvFileError(
            self.source,
            line,
            f"not UTF-8 text (byte 0x{bad} at byte {offset + error.start + 1} of the line)",
            'save the file as UTF-8 ("CSV UTF-8" in Excel)',
        )

    def _nul_error(self, line: int) -> CsvFileError:
        return CsvFileError(
            self.source, line, "the line holds a NUL character: not a text file", "save the file as CSV UTF-8"
        )

    def _not_text(self, raw: bytes) -> CsvFileError | None:
        """A spreadsheet or archive given for a CSV, recognised by its first bytes (names can lie).

        Without this an old workbook is "not UTF-8 text (byte 0xd0...)", which does not tell anyone to
        export it. An ``.xlsx`` (:func:`~chatapp_mass.core.xlsx.is_xlsx`) is read by :func:`open_recipients`
        and never reaches a reader; an encrypted ``.xlsx`` is an OLE2 compound file, so refused as ``.xls``.
        """
        fix = (
            'open it in Excel and save it as "CSV UTF-8" (format the phone column as text first, so long '
            "numbers keep their digits), then send the .csv"
        )
        if raw.startswith(_OLE2):  # also a password-protected .xlsx: an encrypted package in a compound file
            return CsvFileError(
                self.source,
                None,
                "an Excel 97-2003 workbook (.xls) or a password-protected workbook, not a CSV text file",
                'open it in Excel and save it, without a password, as "Excel Workbook (.xlsx)" (read as it '
                'is) or as "CSV UTF-8" (format the phone column as text first, so long numbers keep their '
                "digits), then send that file",
            )
        if not raw.startswith(_ZIP):
            return None
        # the "line" ends at the first 0x0A byte, which a ZIP header can hold (its time, CRC or sizes): read on
        # until the first entry's name is whole, so a workbook is told from another archive whatever its time
        while len(raw) < 30 or len(raw) < 30 + int.from_bytes(raw[26:28], "little"):
            more = self._readline(_MIN_LINE_CAP)
            if not more:
                break
            raw += more
        if is_xlsx(raw):  # read by open_recipients; here only when a caller gave the reader a workbook
            return CsvFileError(self.source, None, "an Excel workbook (.xlsx), not a CSV text file", fix)
        return CsvFileError(
            self.source, None, "a ZIP archive, not a CSV text file", "unzip it and send the CSV inside"
        )

    def _first_line(self) -> str:
        raw = self._readline(_MIN_LINE_CAP)
        if not raw:
            raise CsvFileError(
                self.source, 1, "the file is empty", "the first line must name the columns, e.g. to,name"
            )
        binary = self._not_text(raw)
        if binary is not None:
            raise binary
        if len(raw) >= _MIN_LINE_CAP and raw[-1] != 10:
            raise CsvFileError(
                self.source,
                1,
                "the first line is longer than 16 MiB: not a CSV header",
                "the first line must name the columns, e.g. to,name",
            )
        if raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
            if not raw:
                raise CsvFileError(
                    self.source, 1, "the file is empty", "the first line must name the columns, e.g. to,name"
                )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise self._decode_error(raw, 1, error) from None
        if "\x00" in text:
            raise self._nul_error(1)
        if not text.strip():
            raise CsvFileError(
                self.source,
                1,
                "line 1 is blank: there is no header row",
                "the first line must name the columns, e.g. to,name",
            )
        return text

    def _physical_lines(self, first: str) -> Iterator[str]:
        """Decoded physical lines for the csv reader; each also goes to ``_pending``."""
        pending = self._pending
        append = pending.append
        readline = self._readline
        append(first)
        yield first
        cap = self._cap
        line = 1
        while True:
            raw = readline(cap)
            if not raw:
                return
            line += 1
            if len(raw) >= cap and raw[-1] != 10:
                yield from self._long_line(raw, line)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise self._decode_error(raw, line, error) from None
            if "\x00" in text:
                raise self._nul_error(line)
            append(text)
            yield text

    def _long_line(self, raw: bytes, line: int) -> Iterator[str]:
        """An over-long physical line: stop the csv reader, then give the line to the skimmer in chunks."""
        if not self._skimming:
            self._poisoned = True
            yield _POISON
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        while True:
            last = raw[-1:] == b"\n"
            following = b"" if last else self._readline(_CHUNK)
            try:
                text = decoder.decode(raw, final=last or not following)
            except UnicodeDecodeError as error:
                raise self._decode_error(raw, line, error, offset) from None
            if "\x00" in text:
                raise self._nul_error(line)
            yield text
            if last or not following:
                return
            offset += len(raw)
            raw = following

    # -- header --------------------------------------------------------------------------------------

    def _check_header(self, names: list[str], delimiter: str) -> Header:
        source = self.source
        columns = tuple(name.strip() for name in names)
        seen: dict[str, int] = {}
        for index, name in enumerate(columns):
            if not name:
                raise CsvFileError(
                    source,
                    1,
                    f"column {index + 1} of the header has no name",
                    "name every column (or delete the empty one)",
                )
            folded = name.casefold()
            if folded in seen:
                raise CsvFileError(
                    source,
                    1,
                    f"column {index + 1} ({name!r}) repeats the name of column {seen[folded] + 1}",
                    "give every column its own name",
                )
            seen[folded] = index
        self._recipient_index = self._recipient_column(columns)
        self._param_indexes = tuple(i for i in range(len(columns)) if i != self._recipient_index)
        return Header(
            delimiter=delimiter,
            columns=columns,
            recipient_column=columns[self._recipient_index],
            param_columns=tuple(columns[i] for i in self._param_indexes),
        )

    def _recipient_column(self, columns: tuple[str, ...]) -> int:
        """The index of the recipient column; a file error when there is none or two.

        A column named with ``recipient_column`` (--recipient-column) is the recipient column and the
        usual names are not looked for, so a file with both "Phone" and "Mobile" can pick one (the other
        becomes a template value).
        """
        source = self.source
        chosen = self.intake.recipient_column
        accepted = ", ".join(RECIPIENT_COLUMNS)
        if chosen is not None:
            key = _column_key(chosen)
            recipients = [index for index, name in enumerate(columns) if _column_key(name) == key]
            if not recipients:
                raise CsvFileError(
                    source,
                    1,
                    f"no column named {chosen!r} (--recipient-column) in the header; "
                    f"headers found: {_headers_found(columns)}",
                    "give --recipient-column one of the headers found (case, spaces, underscores and "
                    "dashes aside)",
                )
        else:
            recipients = [index for index, name in enumerate(columns) if _column_key(name) in _RECIPIENT_KEYS]
        if not recipients:
            raise CsvFileError(
                source,
                1,
                f"no recipient column in the header; headers found: {_headers_found(columns)}",
                f"name the recipient column one of: {accepted} (case, spaces, underscores and dashes "
                "aside), or give its name with --recipient-column NAME (on an upload: the "
                "x-oss-meta-recipient-column metadata or recipient-column in the sidecar)",
            )
        if len(recipients) > 1:
            first, second = recipients[0], recipients[1]
            raise CsvFileError(
                source,
                1,
                f"two recipient columns: {columns[first]!r} (column {first + 1}) "
                f"and {columns[second]!r} (column {second + 1})",
                f"keep one column named {accepted}; rename the other, or choose one with "
                "--recipient-column NAME",
            )
        return recipients[0]

    # -- records -------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Row]:
        if self._started:
            raise RuntimeError("a RecipientReader reads its stream once; make a new one to read again")
        self._started = True
        return self._rows()

    def _invalid(self, line: int, to: str, code: str, message: str) -> Row:
        self.counts["invalid"] += 1
        return Row(line, to, "invalid", code, message)

    def _given(self, cells: list[str]) -> str:
        """The recipient cell as given (trimmed) for an invalid row; '' when missing or over-size."""
        index = self._recipient_index
        if index >= len(cells) or _too_large(cells[index]):
            return ""
        return cells[index].strip()

    def _column_count(self, line: int, last_line: int, cells: int, to: str) -> Row:
        expected = len(self.header.columns)
        message = f"{_plural(cells, 'cell')}, header has {expected}"
        if last_line > line:
            message += f" (the record runs from line {line} to {last_line}: is a quote left open?)"
        return self._invalid(line, to, "ColumnCount", message)

    def _rows(self) -> Iterator[Row]:
        reader = self._reader
        pending = self._pending
        clear = pending.clear
        counts = self.counts
        header = self.header
        columns = header.columns
        ncols = len(columns)
        rec = self._recipient_index
        params = tuple(zip(self._param_indexes, header.param_columns, strict=True))
        keys = header.param_columns
        pick: Callable[[list[str]], Any] | None = None
        if len(keys) == 1:
            only = self._param_indexes[0]
            pick = lambda cells: (cells[only],)
        elif keys:
            pick = itemgetter(*self._param_indexes)
        check_empty = not self.intake.allow_empty_params
        phone = self.channel.uses_phone_numbers
        region = self._region
        normalize = _normalize
        seen = _FirstSeen()
        first_int = seen.first_int
        first_id = seen.first
        invalid = self._invalid
        limit_chars = CELL_LIMIT_BYTES // 4
        valid_row = _new_row
        strip = str.strip

        offset = 0  # physical lines read beside the csv reader (skimmed records)
        last = reader.line_num  # the last physical line read
        while True:
            try:
                for cells in reader:
                    line = last + 1
                    last = reader.line_num + offset
                    if last > line and len(cells) == ncols and _quote_left_open(pending, header.delimiter):
                        # a quote never closed: the csv reader (strict=False) took every line after it, to
                        # the end of the file, as one cell, and the cells still add up (else ColumnCount
                        # below says so); sent, it would lose those lines' recipients in a template value
                        clear()
                        self.refused_cells = cells
                        yield invalid(
                            line,
                            self._given(cells),
                            "UnclosedQuote",
                            f"a quote opened on line {line} is never closed: lines {line} to {last} (the end "
                            "of the file) were read as one record; close the quote or remove it",
                        )
                        continue
                    clear()
                    if len(cells) != ncols:
                        if not _is_blank(cells):
                            self.refused_cells = cells
                            yield self._column_count(line, last, len(cells), self._given(cells))
                        continue
                    if max(map(len, cells)) > limit_chars:
                        big = next(
                            ((i, size) for i, cell in enumerate(cells) if (size := _too_large(cell))), None
                        )
                        if big is not None:
                            index, size = big
                            self.refused_cells = cells
                            yield invalid(
                                line,
                                self._given(cells),
                                "CellTooLarge",
                                f"the cell in column {index + 1} ({columns[index]}) is {size} bytes; "
                                f"the limit is {CELL_LIMIT_BYTES} (64 KiB)",
                            )
                            continue
                    to = cells[rec].strip()
                    if not to:
                        if not _is_blank(cells):
                            self.refused_cells = cells
                            yield invalid(
                                line,
                                "",
                                "MissingRecipient",
                                f"no recipient in column {rec + 1} ({columns[rec]})",
                            )
                        continue
                    values = pick(cells) if pick else ()
                    # empty or white space only (isspace) is what strip() leaves nothing of: all() in C
                    if check_empty and not all(map(strip, values)):
                        index, key = next((i, k) for i, k in params if not cells[i].strip())
                        self.refused_cells = cells
                        yield invalid(
                            line,
                            to,
                            "EmptyParam",
                            f"empty value for template parameter {key!r} (column {index + 1}); "
                            "fill it in or allow empty parameters (--allow-empty-params)",
                        )
                        continue
                    if phone:
                        number = normalize(to, region)
                        if number is None:
                            self.refused_cells = cells
                            yield invalid(line, to, "InvalidNumber", describe_invalid(to, region))
                            continue
                        first = first_int(int(number), line)
                        to = number
                    else:
                        first = first_id(to, line)
                    if first:
                        counts["duplicate"] += 1
                        self.refused_cells = cells
                        yield Row(line, to, "duplicate", "Duplicate", f"same recipient as line {first}")
                        continue
                    counts["valid"] += 1
                    yield valid_row(
                        (
                            line,
                            to,
                            "valid",
                            "",
                            "",
                            dict(zip(keys, values, strict=True)) if pick else None,
                            None,
                        )
                    )
                return
            except csv.Error as error:
                start = last + 1
                if not (self._poisoned or "field larger than field limit" in str(error)):
                    line = reader.line_num + offset
                    if "new-line character" in str(error):
                        raise CsvFileError(
                            self.source,
                            line,
                            "a carriage return (CR) inside an unquoted cell",
                            "save the file with LF or CRLF line ends, or quote the cell",
                        ) from None
                    raise CsvFileError(
                        self.source,
                        line,
                        f"the CSV cannot be read ({error})",
                        "check the quotes on that line; save the file as CSV UTF-8",
                    ) from None
                row, last = self._skim(start)
                offset = last - reader.line_num
                if row is not None:
                    self.refused_cells = None  # skimmed, not kept: too large
                    yield row

    def _skim(self, start: int) -> tuple[Row | None, int]:
        """Follow the record starting on line ``start`` that the csv reader gave up on; returns its row
        and its last physical line."""
        skim = _Skim(self._reader.dialect.delimiter, self._recipient_index)
        lines = list(self._pending)
        self._pending.clear()
        self._poisoned = False
        self._skimming = True
        ended = False
        try:
            for text in lines:
                skim.feed(text)
                if skim.bare_cr:  # reported on this line: do not count its end
                    break
                if text.endswith("\n") and skim.end_line():
                    ended = True
                    break
            partial = bool(lines) and not lines[-1].endswith("\n")
            while not ended and not skim.bare_cr:
                more = next(self._lines, None)
                self._pending.clear()
                if more is None:
                    if partial:
                        skim.end_line()
                    skim.end_of_data()
                    break
                skim.feed(more)
                if skim.bare_cr:
                    break
                partial = not more.endswith("\n")
                if not partial and skim.end_line():
                    ended = True
        finally:
            self._skimming = False
        last = start + max(skim.lines, 1) - 1
        if skim.bare_cr:
            raise CsvFileError(
                self.source,
                start + skim.lines,
                "a carriage return (CR) inside an unquoted cell",
                "save the file with LF or CRLF line ends, or quote the cell",
            )
        if skim.cells == 0:
            return None, last  # nothing in it after all
        to = (skim.recipient or "").strip()
        columns = self.header.columns
        if skim.cells != len(columns):
            return self._column_count(start, last, skim.cells, to), last
        if skim.big is not None:
            index, size = skim.big
            message = (
                f"the cell in column {index + 1} ({columns[index]}) is {size} bytes; "
                f"the limit is {CELL_LIMIT_BYTES} (64 KiB)"
            )
        else:  # pragma: no cover - cannot happen: an over-long record has too many or too large cells
            message = f"the record from line {start} to {last} is too large"
        return self._invalid(start, to, "CellTooLarge", message), last


@contextmanager
def open_recipients(
    stream: typing.IO[bytes], *, source: str, channel: ChannelType, intake: IntakeOptions
) -> Iterator[RecipientReader]:
    """The reader of a recipient file, a CSV or an Excel workbook (.xlsx) recognised by its first bytes.

    A workbook's sheet (``intake.sheet``, else the first) is read as CSV lines, one per sheet row
    (:func:`~chatapp_mass.core.xlsx.sheet_as_csv`), so its rows are checked exactly as a CSV's and a row's
    line is its sheet row. ``intake.sheet`` for a file that is no workbook is an error, not ignored: the
    user meant another file.
    """
    from chatapp_mass.core.xlsx import recipient_lines

    with recipient_lines(stream, source=source, sheet=intake.sheet) as (lines, workbook):
        if workbook:  # the lines are comma-separated whatever --delimiter says (that is for CSV files)
            if intake.delimiter not in (None, ","):
                intake = intake.model_copy(update={"delimiter": ","})
        elif intake.sheet is not None:
            raise CsvFileError(
                source,
                None,
                f"a sheet is named ({intake.sheet!r}) but the file is not an Excel workbook (.xlsx)",
                "leave out --sheet (x-oss-meta-sheet, sheet in the sidecar) for a CSV file, or send the workbook",
            )
        yield RecipientReader(lines, source=source, channel=channel, intake=intake)


class JsonRecipients:
    """Records from a JSON list of recipients (an HTTP-submitted job), checked like CSV rows: numbers
    normalized (WhatsApp/Viber) or ids kept (Messenger/Instagram), first occurrence wins, empty template
    parameters refused unless allowed. A record's "line" is its position in the list, from 1.

    ``items`` are already shaped at the edge (``To`` a string; ``TemplateParams`` a string map; ``Payload``,
    ``FlowAction``, ``ProductAction`` as the API takes them): this class decides validity, not structure.
    """

    EXTRA_FIELDS = ("Payload", "FlowAction", "ProductAction")

    def __init__(
        self, items: Iterable[dict[str, Any]], *, channel: ChannelType, intake: IntakeOptions
    ) -> None:
        self.items = items
        self.channel = ChannelType(channel)
        self.intake = intake
        self.counts: dict[str, int] = {"valid": 0, "invalid": 0, "duplicate": 0}

    def __iter__(self) -> Iterator[Row]:
        region = _region(self.intake.default_country)
        phone = self.channel.uses_phone_numbers
        seen: dict[str, int] = {}
        for line, item in enumerate(self.items, start=1):
            to = str(item.get("To") or "").strip()
            params = item.get("TemplateParams") or None
            if not to:
                self.counts["invalid"] += 1
                yield Row(line, "", "invalid", "MissingRecipient", f"recipient {line} has no To")
                continue
            if params and not self.intake.allow_empty_params:
                empty = next((key for key, value in params.items() if not str(value).strip()), None)
                if empty is not None:
                    self.counts["invalid"] += 1
                    yield Row(
                        line,
                        to,
                        "invalid",
                        "EmptyParam",
                        f"empty value for template parameter {empty!r}; fill it in or allow empty parameters",
                    )
                    continue
            if phone:
                number = _normalize(to, region)
                if number is None:
                    self.counts["invalid"] += 1
                    yield Row(line, to, "invalid", "InvalidNumber", describe_invalid(to, region))
                    continue
                to = number
            first = seen.get(to)
            if first is not None:
                self.counts["duplicate"] += 1
                yield Row(line, to, "duplicate", "Duplicate", f"same recipient as recipient {first}")
                continue
            seen[to] = line
            self.counts["valid"] += 1
            extra = {key: item[key] for key in self.EXTRA_FIELDS if item.get(key) not in (None, [], {})}
            yield Row(
                line,
                to,
                "valid",
                "",
                "",
                {str(k): str(v) for k, v in params.items()} if params else None,
                extra or None,
            )
