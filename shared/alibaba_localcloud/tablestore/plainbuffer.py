"""PlainBuffer, the row encoding inside Tablestore's protobuf messages: decode what clients send, encode replies.

Written from ``tablestore/plainbuffer/*`` (SDK 6.4.8) and checked against it by the tests. The SDK's own reader
cannot decode the cells of an UpdateRow (its ``TAG_CELL_TYPE`` branch names an undefined ``cell_type``), so the
emulator reads rows itself; it writes rows itself too, with typed values (the SDK's builder picks the wire type
from the Python type: ``bytes`` becomes a STRING there, only ``bytearray`` a BINARY).

Layout (all integers little-endian)::

    row     = HEADER(u32 0x75) TAG_ROW_PK cell* [TAG_ROW_DATA cell*] [TAG_DELETE_ROW_MARKER]
              TAG_ROW_CHECKSUM crc8                (several rows share one HEADER in GetRange replies)
    cell    = TAG_CELL TAG_CELL_NAME u32 name [TAG_CELL_VALUE u32 len value] [TAG_CELL_TYPE op]
              [TAG_CELL_TIMESTAMP i64] TAG_CELL_CHECKSUM crc8
    value   = VT_INTEGER i64 | VT_DOUBLE f64 | VT_BOOLEAN u8 | VT_STRING u32 utf8 | VT_BLOB u32 bytes
              | VT_INF_MIN | VT_INF_MAX | VT_AUTO_INCREMENT

Checksums are CRC-8 (polynomial 0x07). A cell's covers its name, the value's bytes from the type byte on, then
the timestamp, then the operation; a row's covers each cell checksum in order and a final 1 (delete marker)
or 0.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

HEADER = 0x75

TAG_ROW_PK = 0x01
TAG_ROW_DATA = 0x02
TAG_CELL = 0x03
TAG_CELL_NAME = 0x04
TAG_CELL_VALUE = 0x05
TAG_CELL_TYPE = 0x06
TAG_CELL_TIMESTAMP = 0x07
TAG_DELETE_ROW_MARKER = 0x08
TAG_ROW_CHECKSUM = 0x09
TAG_CELL_CHECKSUM = 0x0A

# cell operations (UpdateRow)
OP_DELETE_ALL_VERSIONS = 0x01
OP_DELETE_ONE_VERSION = 0x03
OP_INCREMENT = 0x04
OPERATIONS = frozenset({OP_DELETE_ALL_VERSIONS, OP_DELETE_ONE_VERSION, OP_INCREMENT})

# variant types
VT_INTEGER = 0x00
VT_DOUBLE = 0x01
VT_BOOLEAN = 0x02
VT_STRING = 0x03
VT_NULL = 0x06
VT_BLOB = 0x07
VT_INF_MIN = 0x09
VT_INF_MAX = 0x0A
VT_AUTO_INCREMENT = 0x0B

TYPE_NAMES = {
    VT_INTEGER: "INTEGER",
    VT_DOUBLE: "DOUBLE",
    VT_BOOLEAN: "BOOLEAN",
    VT_STRING: "STRING",
    VT_NULL: "NULL",
    VT_BLOB: "BINARY",
    VT_INF_MIN: "INF_MIN",
    VT_INF_MAX: "INF_MAX",
    VT_AUTO_INCREMENT: "AUTO_INCREMENT",
}
SENTINELS = frozenset({VT_INF_MIN, VT_INF_MAX, VT_AUTO_INCREMENT})

_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


CRC8_TABLE = _crc8_table()


def crc8(crc: int, data: bytes | bytearray | memoryview) -> int:
    table = CRC8_TABLE
    for byte in data:
        crc = table[crc ^ byte]
    return crc


class PlainBufferError(ValueError):
    """The bytes are not a well-formed PlainBuffer row; the message is the service's wording."""


class Value(NamedTuple):
    """A typed value: ``type`` is a VT_* code; ``value`` an int, float, bool, str, bytes, or None (sentinels)."""

    type: int
    value: Any

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, str(self.type))


INF_MIN = Value(VT_INF_MIN, None)
INF_MAX = Value(VT_INF_MAX, None)
AUTO_INCREMENT = Value(VT_AUTO_INCREMENT, None)


@dataclass(frozen=True)
class Cell:
    """An attribute cell as sent: ``op`` is None for a plain put, else one of the OP_* codes."""

    name: str
    value: Value | None
    timestamp: int | None = None
    op: int | None = None


@dataclass(frozen=True)
class PlainRow:
    primary_key: list[tuple[str, Value]]
    cells: list[Cell]
    delete_marker: bool = False


# --- values ----------------------------------------------------------------------------------------------
def value_bytes(value: Value) -> bytes:
    """The value from its type byte on (what a cell's TAG_CELL_VALUE holds after the length, and what a
    SingleColumnValueFilter's ``column_value`` holds)."""
    vt, v = value
    if vt == VT_INTEGER:
        return bytes((VT_INTEGER,)) + _I64.pack(v)
    if vt == VT_STRING:
        raw: bytes = v.encode("utf-8")
        return bytes((VT_STRING,)) + _U32.pack(len(raw)) + raw
    if vt == VT_BLOB:
        return bytes((VT_BLOB,)) + _U32.pack(len(v)) + bytes(v)
    if vt == VT_BOOLEAN:
        return bytes((VT_BOOLEAN, 1 if v else 0))
    if vt == VT_DOUBLE:
        return bytes((VT_DOUBLE,)) + _F64.pack(v)
    if vt in SENTINELS:
        return bytes((vt,))
    raise PlainBufferError(f"data format is invalid, unknown variant type occured: {vt}.")


def parse_value_bytes(raw: bytes, name: str = "") -> Value:
    """The inverse of :func:`value_bytes` (exactly one value, nothing left over)."""
    if not raw:
        raise PlainBufferError(f"Cell data broken, attr has no value, name:{name}.")
    vt = raw[0]
    body = raw[1:]
    if vt == VT_INTEGER and len(body) == 8:
        return Value(VT_INTEGER, _I64.unpack(body)[0])
    if vt == VT_DOUBLE and len(body) == 8:
        number = _F64.unpack(body)[0]
        if math.isnan(number):
            raise PlainBufferError("NaN can't be set to double value.")
        if math.isinf(number):
            raise PlainBufferError("Infinity can't be set to double value.")
        return Value(VT_DOUBLE, number)
    if vt == VT_BOOLEAN:
        if len(body) != 1:
            raise PlainBufferError(f"Invalid boolean real value, value length: {len(body)}.")
        return Value(VT_BOOLEAN, body[0] != 0)
    if vt in (VT_STRING, VT_BLOB):
        if len(body) < 4 or _U32.unpack(body[:4])[0] != len(body) - 4:
            raise PlainBufferError(f"Cell data broken, wrong string format, size: {len(body)}.")
        data = bytes(body[4:])
        if vt == VT_BLOB:
            return Value(VT_BLOB, data)
        try:
            return Value(VT_STRING, data.decode("utf-8"))
        except UnicodeDecodeError:
            raise PlainBufferError(f"Value of column {name} must be UTF8 encoding.") from None
    if vt in SENTINELS and not body:
        return Value(vt, None)
    if vt in (VT_INTEGER, VT_DOUBLE) or vt in SENTINELS:
        raise PlainBufferError("Cell data broken, has more data in cell, but they can't be parsed.")
    raise PlainBufferError("data format is invalid, unknown variant type occured.")


def _short() -> PlainBufferError:
    return PlainBufferError("Cell data broken, length is shorter than expect.")


def _slice(buf: bytes, pos: int, size: int) -> tuple[bytes, int]:
    end = pos + size
    if size < 0 or end > len(buf):
        raise _short()
    return buf[pos:end], end


def _read_cell(buf: bytes, pos: int, primary: bool) -> tuple[Cell, int, int, int]:
    """One cell from just after its TAG_CELL: the cell, its checksum, the tag after it and that tag's end."""
    tag = buf[pos]
    pos += 1
    if tag != TAG_CELL_NAME:
        raise PlainBufferError(
            "Cell data broken, no PK follow PKTag." if primary else "Cell data broken, attr has no name."
        )
    raw_name, pos = _slice(buf, pos + 4, _U32.unpack_from(buf, pos)[0])
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError:
        raise PlainBufferError("Invalid column name: not UTF-8.") from None
    checksum = crc8(0, raw_name)
    tag = buf[pos]
    pos += 1
    value: Value | None = None
    if tag == TAG_CELL_VALUE:
        raw_value, pos = _slice(buf, pos + 4, _U32.unpack_from(buf, pos)[0])
        if not raw_value:
            raise PlainBufferError(f"Cell data broken, attr has no value, name:{name}.")
        value = parse_value_bytes(raw_value, name)
        checksum = crc8(checksum, raw_value)
        tag = buf[pos]
        pos += 1
    elif primary:
        raise PlainBufferError(f"Cell data broken, PK value cannot be NULL, name: {name}.")
    op: int | None = None
    timestamp: int | None = None
    for _ in range(2):  # the SDKs write the type before the timestamp; accept either order
        if tag == TAG_CELL_TYPE and op is None:
            if primary:
                raise PlainBufferError(f"OpType cannot be given for primary key name :{name}.")
            op = buf[pos]
            if op not in OPERATIONS:
                raise PlainBufferError(f"Invalid op type of cell: {op}.")
            tag = buf[pos + 1]
            pos += 2
        elif tag == TAG_CELL_TIMESTAMP and timestamp is None:
            if primary:
                raise PlainBufferError(f"Timestamp cannot be given for primary key name:{name}.")
            timestamp = _I64.unpack_from(buf, pos)[0]
            checksum = crc8(checksum, buf[pos : pos + 8])
            tag = buf[pos + 8]
            pos += 9
    if op is not None:
        checksum = CRC8_TABLE[checksum ^ op]
    if tag != TAG_CELL_CHECKSUM:
        raise PlainBufferError(f"Invalid Column({name}): missing checksum.")
    sent = buf[pos]
    if sent != checksum:
        raise PlainBufferError(f"Cell data broken, checksum is mismatch, {sent} : {checksum} :")
    return Cell(name, value, timestamp, op), checksum, buf[pos + 1], pos + 2


def decode_row(data: bytes) -> PlainRow:
    """Exactly one row (a PutRow/UpdateRow/DeleteRow change, or a primary key)."""
    buf = bytes(data)
    try:
        return _decode_row(buf)
    except (IndexError, struct.error):
        raise _short() from None


def _decode_row(buf: bytes) -> PlainRow:
    if len(buf) < 4:
        raise PlainBufferError("Input encoded PK broken, length is shorter than expect.")
    header = _I32.unpack_from(buf, 0)[0]
    if header != HEADER:
        raise PlainBufferError(f"Cell data broken, mismatch header, actual: {header}, expect: {HEADER}.")
    if buf[4] != TAG_ROW_PK:
        raise PlainBufferError("Cell data broken, PK is empty.")
    row_checksum = 0
    primary_key: list[tuple[str, Value]] = []
    cells: list[Cell] = []
    tag, pos = buf[5], 6
    while tag == TAG_CELL:
        cell, checksum, tag, pos = _read_cell(buf, pos, True)
        assert cell.value is not None
        primary_key.append((cell.name, cell.value))
        row_checksum = CRC8_TABLE[row_checksum ^ checksum]
    if tag == TAG_ROW_DATA:
        tag, pos = buf[pos], pos + 1
        if tag != TAG_CELL:
            raise PlainBufferError("Cell data broken, no Cells follow CellTag.")
        while tag == TAG_CELL:
            cell, checksum, tag, pos = _read_cell(buf, pos, False)
            cells.append(cell)
            row_checksum = CRC8_TABLE[row_checksum ^ checksum]
    delete_marker = tag == TAG_DELETE_ROW_MARKER
    if delete_marker:
        tag, pos = buf[pos], pos + 1
    row_checksum = CRC8_TABLE[row_checksum ^ (1 if delete_marker else 0)]
    if tag != TAG_ROW_CHECKSUM:
        raise PlainBufferError("Invalid row: missing checksum.")
    sent = buf[pos]
    if sent != row_checksum:
        raise PlainBufferError(f"Cell data broken, checksum is mismatch, {sent} : {row_checksum} :")
    if pos + 1 != len(buf):
        raise PlainBufferError("Cell data broken, has more data in cell, but they can't be parsed.")
    return PlainRow(primary_key, cells, delete_marker)


# --- writing -----------------------------------------------------------------------------------------------
def _cell_bytes(name: str, value: Value | None, timestamp: int | None) -> tuple[bytes, int]:
    raw_name = name.encode("utf-8")
    parts = [bytes((TAG_CELL, TAG_CELL_NAME)), _U32.pack(len(raw_name)), raw_name]
    checksum = crc8(0, raw_name)
    if value is not None:
        raw_value = value_bytes(value)
        parts += [bytes((TAG_CELL_VALUE,)), _U32.pack(len(raw_value)), raw_value]
        checksum = crc8(checksum, raw_value)
    if timestamp is not None:
        raw_ts = _I64.pack(timestamp)
        parts += [bytes((TAG_CELL_TIMESTAMP,)), raw_ts]
        checksum = crc8(checksum, raw_ts)
    parts.append(bytes((TAG_CELL_CHECKSUM, checksum)))
    return b"".join(parts), checksum


def _row_bytes(
    primary_key: Sequence[tuple[str, Value]], columns: Iterable[tuple[str, Value, int | None]] = ()
) -> bytes:
    parts = [bytes((TAG_ROW_PK,))]
    row_checksum = 0
    for name, value in primary_key:
        data, checksum = _cell_bytes(name, value, None)
        parts.append(data)
        row_checksum = CRC8_TABLE[row_checksum ^ checksum]
    columns = list(columns)
    if columns:
        parts.append(bytes((TAG_ROW_DATA,)))
        for name, value, timestamp in columns:
            data, checksum = _cell_bytes(name, value, timestamp)
            parts.append(data)
            row_checksum = CRC8_TABLE[row_checksum ^ checksum]
    row_checksum = CRC8_TABLE[row_checksum ^ 0]
    parts.append(bytes((TAG_ROW_CHECKSUM, row_checksum)))
    return b"".join(parts)


def encode_row(
    primary_key: Sequence[tuple[str, Value]], columns: Iterable[tuple[str, Value, int | None]] = ()
) -> bytes:
    """One row as the service returns it: primary key, then attribute columns with their timestamps."""
    return _I32.pack(HEADER) + _row_bytes(primary_key, columns)


def encode_rows(
    rows: Iterable[tuple[Sequence[tuple[str, Value]], Iterable[tuple[str, Value, int | None]]]],
) -> bytes:
    """Several rows behind one header (GetRange); ``b""`` for none."""
    bodies = [_row_bytes(pk, columns) for pk, columns in rows]
    if not bodies:
        return b""
    return _I32.pack(HEADER) + b"".join(bodies)


def encode_primary_key(primary_key: Sequence[tuple[str, Value]]) -> bytes:
    return encode_row(primary_key)
