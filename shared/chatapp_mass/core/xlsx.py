"""Excel workbooks (.xlsx) as recipient files: one sheet's rows as the CSV lines the recipient reader takes.

A workbook is recognised by its first bytes (:func:`is_xlsx`), never by its name. Its sheet (the first, or
the one ``sheet`` names) is read with openpyxl in read-only mode, row by row, and each row becomes one
CSV line (UTF-8, comma, every cell quoted), so every rule of :class:`~chatapp_mass.core.intake.RecipientReader`
(recipient column, template values, duplicates, per-row errors) applies unchanged and physical line N is
sheet row N: the report's line numbers are the row numbers Excel shows.

Cells as text (:func:`cell_text`): numbers Excel stores as numbers keep every digit (a phone number
``8613800000000`` typed into a General cell is the float 8613800000000.0 and is written
``8613800000000``, never ``8.6138e+12``); a line break in a cell becomes a space (one row, one line).
Rows are padded to the header's width; empty rows are kept as blank lines (skipped by the reader, line
numbers kept) except after the last row with something in it (a sheet's reported size may be far larger).

The ZIP's central directory is at its end, so the workbook needs a seekable file: a local file is used as is;
a stream (an OSS object) is spooled to a temporary file, in memory up to :data:`SPOOL_IN_MEMORY`.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
import tempfile
import typing
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from itertools import islice
from typing import Any

from chatapp_mass.core.errors import CsvFileError

__all__ = ["is_xlsx", "is_zip", "recipient_lines", "cell_text", "SNIFF_BYTES", "SPOOL_IN_MEMORY"]

ZIP_MAGIC = b"PK\x03\x04"  # a ZIP's first local file header: .xlsx, .ods, .numbers...
SNIFF_BYTES = 64  # the local header (30 bytes) and the first entry's name, as far as is_xlsx looks
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # a streamed workbook is kept in memory up to this size, then on disk
_CHUNK = 1024 * 1024
_ROWS_PER_CHUNK = 512  # rows encoded at once
_EXACT_FLOAT = 2**53  # integral floats below this are exact integers
_WORKBOOK_FIX = (
    'open it in Excel and save it again as "Excel Workbook (.xlsx)", or save the sheet as "CSV UTF-8" and '
    "send the .csv"
)
_LINE_BREAKS = str.maketrans({"\r": " ", "\n": " "})
# A ZIP bomb, refused before openpyxl inflates it (it holds shared strings in memory): a part expanding more
# than MAX_RATIO-fold past BOMB_FLOOR bytes (a 100k-row sheet Excel or openpyxl writes expands ~12-fold), or
# parts expanding past MAX_EXPANDED in all (Excel's 1,048,576 rows of a few columns are ~200 MB).
MAX_RATIO = 100
BOMB_FLOOR = 32 * 1024 * 1024
MAX_EXPANDED = 2 * 1024 * 1024 * 1024


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def is_xlsx(head: bytes) -> bool:
    """Whether the file's first bytes look like an Office Open XML workbook's: a ZIP whose first entry (its
    name follows the 30-byte local header) is the package's ``[Content_Types].xml`` or an ``xl/`` part, as
    Excel writes them. Others (openpyxl) put ``docProps/`` first: :func:`recipient_lines` looks at the
    ZIP's whole directory; this is what tells a broken workbook from another broken ZIP."""
    if not head.startswith(ZIP_MAGIC) or len(head) < 30:
        return False
    name_length = int.from_bytes(head[26:28], "little")
    first_entry = head[30 : 30 + name_length]
    return first_entry == b"[Content_Types].xml" or first_entry.startswith(b"xl/")


def cell_text(value: Any) -> str:
    """A cell's value (openpyxl's, ``data_only``: formulas give their cached result) as CSV text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _EXACT_FLOAT:
            return str(int(value))  # 8613800000000.0 -> 8613800000000
        return str(value)  # the shortest text that reads back as the same float
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _peek(stream: typing.IO[bytes], size: int) -> tuple[bytes, typing.IO[bytes]]:
    """The stream's first ``size`` bytes (fewer at its end) and a stream that still reads from the start."""
    seekable = getattr(stream, "seekable", None)
    if seekable is not None and seekable():
        start = stream.tell()
        head = stream.read(size)
        stream.seek(start)
        return head, stream
    parts: list[bytes] = []
    got = 0
    while got < size:
        part = stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    head = b"".join(parts)
    return head, io.BufferedReader(_Prefixed(head, stream), buffer_size=_CHUNK)


class _Prefixed(io.RawIOBase):
    """Bytes already read from a stream, then the rest of the stream."""

    def __init__(self, head: bytes, stream: typing.IO[bytes]) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            data, self._head = self._head[: len(buffer)], self._head[len(buffer) :]
        else:
            data = self._stream.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        return size


class _Lines(io.RawIOBase):
    """Encoded CSV lines from an iterator of chunks, as a raw stream (io.BufferedReader reads it)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._data = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._data:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._data = chunk
        size = min(len(buffer), len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


@contextmanager
def _seekable(stream: typing.IO[bytes]) -> Iterator[typing.IO[bytes]]:
    seekable = getattr(stream, "seekable", None)
    if seekable is not None and seekable():
        yield stream
        return
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        read = stream.read
        while chunk := read(_CHUNK):
            spool.write(chunk)
        spool.seek(0)
        yield typing.cast(typing.IO[bytes], spool)


def _unreadable(source: str, error: BaseException) -> CsvFileError:
    detail = str(error) or type(error).__name__
    return CsvFileError(source, None, f"the workbook cannot be read ({detail})", _WORKBOOK_FIX)


def _choose_sheet(workbook: Any, source: str, sheet: str | None) -> Any:
    sheets = list(workbook.worksheets)  # chart sheets aside: they hold no rows
    if not sheets:
        raise CsvFileError(source, None, "the workbook has no worksheet", _WORKBOOK_FIX)
    if sheet is None:
        return sheets[0]
    for candidate in sheets:  # Excel's sheet names are unique case aside
        if candidate.title == sheet:
            return candidate
    wanted = sheet.strip().casefold()
    for candidate in sheets:
        if candidate.title.strip().casefold() == wanted:
            return candidate
    found = ", ".join(repr(candidate.title) for candidate in sheets)
    raise CsvFileError(
        source,
        None,
        f"no sheet named {sheet!r} in the workbook; sheets found: {found}",
        "give --sheet (x-oss-meta-sheet or sheet in the sidecar, on an upload) one of the sheets found",
    )


def _encoded(rows: Iterator[tuple[Any, ...]], source: str, title: str) -> Iterator[bytes]:
    """The sheet's rows as UTF-8 CSV lines, a few hundred rows a chunk; the first chunk holds the header."""
    buffer = io.StringIO()
    write = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow
    width = 0  # the header's cells, trailing empty ones aside
    blank = 0  # empty rows not written yet: written only when a row with something in it follows
    written = 0
    started = False
    text = cell_text
    for values in _guarded(rows, source):
        cells = [text(value).translate(_LINE_BREAKS) for value in values]
        end = len(cells)
        while end and not cells[end - 1]:
            end -= 1
        if not end:
            blank += 1
            continue
        if not started:
            width, started = end, True
        if blank:
            buffer.write("\n" * blank)
            blank = 0
        del cells[max(end, width) :]
        if len(cells) < width:
            cells.extend([""] * (width - len(cells)))
        write(cells)
        written += 1
        if written % _ROWS_PER_CHUNK == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if not started:
        raise CsvFileError(
            source,
            None,
            f"the sheet {title!r} is empty",
            "put the header row (the column names, e.g. to,name) in row 1 of the sheet and the recipients "
            "below it, or choose another sheet with --sheet",
        )
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def _guarded(rows: Iterator[tuple[Any, ...]], source: str) -> Iterator[tuple[Any, ...]]:
    """The rows, a broken sheet (bad XML, a missing part) raised as a file error; openpyxl's warnings about
    what it does not support (data validation, conditional formatting...) silenced: they are not ours.
    Taken a few hundred at a time (the warnings filter is set once per batch, not once per row)."""
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                batch = list(islice(rows, _ROWS_PER_CHUNK))
        except Exception as error:  # openpyxl and the XML parser raise many kinds
            raise _unreadable(source, error) from None
        if not batch:
            return
        yield from batch


def _holds_workbook(file: typing.IO[bytes]) -> bool | None:
    """Whether the ZIP's directory has a workbook part (``xl/...``); None when it is no readable ZIP."""
    start = file.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            return any(name.startswith("xl/") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    finally:
        file.seek(start)


_LOCAL_HEADER = re.compile(rb"PK\x03\x04.{22}(..)..", re.DOTALL)


def _names_workbook_parts(file: typing.IO[bytes]) -> bool:
    """Whether a ZIP whose directory cannot be read (cut short, say) names workbook parts in the local
    headers of its first MiB: a broken workbook, not some other archive."""
    start = file.tell()
    try:
        data = file.read(_CHUNK)
    finally:
        file.seek(start)
    if is_xlsx(data):
        return True
    for header in _LOCAL_HEADER.finditer(data):
        length = int.from_bytes(header.group(1), "little")
        name = data[header.end() : header.end() + length]
        if name.startswith(b"xl/") or name == b"[Content_Types].xml":
            return True
    return False


def _check_expansion(file: typing.IO[bytes], source: str) -> None:
    """Refuse a ZIP bomb by the sizes its directory declares (zipfile never inflates a part past them)."""
    start = file.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            parts = archive.infolist()
    finally:
        file.seek(start)
    total = sum(part.file_size for part in parts)
    bomb = next(
        (
            part
            for part in parts
            if part.file_size > BOMB_FLOOR and part.file_size > MAX_RATIO * max(part.compress_size, 1)
        ),
        None,
    )
    if bomb is None and total <= MAX_EXPANDED:
        return
    what = (
        f"its part {bomb.filename} expands {bomb.file_size // max(bomb.compress_size, 1):,}-fold, from "
        f"{bomb.compress_size:,} to {bomb.file_size:,} bytes"
        if bomb is not None
        else f"its parts expand to {total:,} bytes (the limit is {MAX_EXPANDED:,})"
    )
    raise CsvFileError(
        source,
        None,
        f"the workbook is not read: {what} (a ZIP bomb, not a sheet of recipients)",
        _WORKBOOK_FIX,
    )


@contextmanager
def recipient_lines(
    stream: typing.IO[bytes], *, source: str, sheet: str | None
) -> Iterator[tuple[typing.IO[bytes], bool]]:
    """The recipient file as the lines to read, and whether it is an Excel workbook.

    A workbook (recognised by content, never by name) gives its sheet (the first one when ``sheet`` is
    None) as a binary stream of CSV lines, one per sheet row; the workbook is closed on exit. Anything else
    gives the stream itself, from its start (a ZIP that holds no workbook is spooled first, to look: the
    reader then refuses it as an archive). Raises :class:`CsvFileError` for a workbook that cannot be read,
    an unknown sheet (naming the sheets found) or an empty sheet.
    """
    head, stream = _peek(stream, SNIFF_BYTES)
    if not is_zip(head):
        yield stream, False
        return
    with ExitStack() as stack:
        file = stack.enter_context(_seekable(stream))
        workbook = _holds_workbook(file)
        if workbook is None and _names_workbook_parts(file):
            raise _unreadable(source, zipfile.BadZipFile("not a complete ZIP archive"))
        if not workbook:
            yield file, False
            return
        _check_expansion(file, source)
        yield stack.enter_context(_sheet_as_csv(file, source=source, sheet=sheet)), True


@contextmanager
def _sheet_as_csv(file: typing.IO[bytes], *, source: str, sheet: str | None) -> Iterator[typing.IO[bytes]]:
    from openpyxl import load_workbook  # here: only a workbook pays for importing it

    with ExitStack() as stack:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                workbook = load_workbook(file, read_only=True, data_only=True)
        except Exception as error:  # a broken ZIP, a missing part, bad XML: openpyxl raises many kinds
            raise _unreadable(source, error) from None
        stack.callback(workbook.close)
        chosen = _choose_sheet(workbook, source, sheet)
        chunks = _encoded(chosen.iter_rows(values_only=True), source, chosen.title)
        first = next(chunks)  # an empty sheet is refused here, before the reader starts
        lines = _Lines(_chain(first, chunks))
        yield io.BufferedReader(lines, buffer_size=_CHUNK)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
