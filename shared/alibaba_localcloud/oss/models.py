"""State and rules of the local OSS: buckets, objects, multipart uploads, copies, listing, ranges, events,
faults, what it saw.

Longer than 500 lines: the OSS backend, moto-style: one class holding the service's state and every rule the
SDK can reach (objects, multipart, copy, listing, events), each citing its source.

No HTTP here: ``responses.py`` parses a request and checks its signature, then calls one
:class:`OssBackend` method and shapes what it returns (or the :class:`~.exceptions.OssError` it raises).

Storage: metadata in SQLite (``DATA_DIR/oss.sqlite3``, or ``:memory:`` without a data directory), bodies as
files (``DATA_DIR/objects/ab/<blob id>``; a private temporary directory, removed by :meth:`OssBackend.close`,
without one). Four tables::

    buckets(name PRIMARY KEY, region, created, acl, storage_class)
    objects(bucket, key, blob, size, etag, crc64, content_md5, content_type, last_modified,
            user_meta JSON, headers JSON, object_type, PRIMARY KEY (bucket, key))
    uploads(upload_id PRIMARY KEY, bucket, key, initiated, content_type, user_meta JSON, headers JSON)
    parts(upload_id, part_number, blob, size, etag, crc64, last_modified, PRIMARY KEY (upload_id, part_number))

Parts are blobs like objects' bodies; completing an upload joins the listed parts into a new blob file in
1 MiB chunks (never the whole object in memory) and drops the upload.

A body is never held in memory: an upload is streamed in 1 MiB chunks into a temporary file while its MD5
and CRC-64 are computed, then renamed to a fresh blob id and committed; a download streams from an open
file. Blob files are never rewritten (an overwrite gets a new blob and the old one is unlinked), so a
download already under way keeps reading the version it opened. Metadata operations run under one lock;
body transfers run outside it.

Keys are listed in UTF-8 byte order (SQLite's BINARY collation on UTF-8 text, which is also Python's code
point order), as OSS lists them.

Semantics chosen where the real service's are unknown are marked ``ASSUMPTION:`` below.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO, Literal, Protocol

import crcmod

from alibaba_localcloud._accounts import DEFAULT_REGION, Account, AccountRegistry

from . import exceptions as exc

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "1000000000000001"  # ASSUMPTION: any 16-digit id; real ones are the Alibaba Cloud UID
DEFAULT_MAX_CLOCK_SKEW = 15 * 60.0  # OSS refuses a Date more than 15 minutes off (RequestTimeTooSkewed)
MAX_OBJECT_SIZE = 5 * 1024**3  # PutObject's documented limit (5 GB)
MAX_KEY_BYTES = 1023
MAX_LIST_KEYS = 1000
DATABASE_FILE = "oss.sqlite3"
CHUNK = 1024 * 1024
EVENT_OBJECT_CREATED_PUT = "ObjectCreated:PutObject"
# The event names of the other uploads (ALIBABA-FACTS §2: the trigger's events are these with "oss:")
EVENT_OBJECT_CREATED_COPY = "ObjectCreated:CopyObject"
EVENT_OBJECT_CREATED_MULTIPART = "ObjectCreated:CompleteMultipartUpload"
# Multipart limits (help.aliyun.com/en/oss/user-guide/0017-00000219 and 0017-00000220): part numbers 1-10000,
# parts 100 KB-5 GB except the last. "100 KB" is 100 * 1024 bytes as oss2.defaults.min_part_size spells it.
MAX_PART_NUMBER = 10000
MIN_PART_SIZE = 100 * 1024
MAX_PART_SIZE = 5 * 1024**3
MAX_MULTIPART_OBJECT_SIZE = 48_800 * 1024**4  # 48.8 TB, OSS's documented object size limit
MAX_LIST_PARTS = 1000
MAX_LIST_UPLOADS = 1000

_CRC64_POLY = 0x142F0E1EBA9EA3693  # CRC-64/XZ (ECMA-182, reflected), as oss2.utils.Crc64
_CRC64_XOROUT = 0xFFFFFFFFFFFFFFFF
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")

EventDelivery = Literal["sync", "thread"]
Subscriber = Callable[[dict[str, Any]], None]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# --- records ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str  # upper-case hex MD5, no quotes (what the OSS event carries)
    crc64: str  # unsigned decimal, as in x-oss-hash-crc64ecma
    content_md5: str  # base64 of the MD5
    content_type: str
    last_modified: int  # Unix seconds
    user_meta: dict[str, str] = field(default_factory=dict)  # ``x-oss-meta-*`` names, lower-case
    headers: dict[str, str] = field(default_factory=dict)  # Cache-Control, Content-Disposition, ...
    blob: str = ""
    object_type: str = "Normal"
    storage_class: str = "Standard"

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'


@dataclass(frozen=True)
class PartInfo:
    """One uploaded part of a multipart upload."""

    part_number: int
    size: int
    etag: str  # upper-case hex MD5 of the part, no quotes
    crc64: str
    last_modified: int
    blob: str = ""
    content_md5: str = ""

    @property
    def quoted_etag(self) -> str:
        return f'"{self.etag}"'


@dataclass(frozen=True)
class MultipartUpload:
    """A multipart upload under way: what InitiateMultipartUpload was given."""

    upload_id: str
    bucket: str
    key: str
    initiated: int  # Unix seconds (listed as .000Z: oss2 parses whole seconds only)
    content_type: str
    user_meta: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class PartsPage:
    upload: MultipartUpload
    parts: list[PartInfo]
    is_truncated: bool
    next_marker: int | None


@dataclass(frozen=True)
class UploadsPage:
    uploads: list[MultipartUpload]
    is_truncated: bool


@dataclass(frozen=True)
class BucketInfo:
    name: str
    region: str
    created: int
    acl: str = "private"
    storage_class: str = "Standard"


@dataclass(frozen=True)
class ListPage:
    """One ListObjects page: objects and common prefixes in key order, and where the next page starts."""

    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str | None  # the last key or common prefix returned when truncated


@dataclass
class RecordedRequest:
    """One request that reached the service (admin calls excluded), with what it was answered."""

    seq: int
    arrived_at: float
    method: str
    bucket: str | None
    key: str | None
    operation: str
    status: int
    code: str  # "OK" or the error code
    request_id: str
    access_key_id: str | None = None
    client_host: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Failure:
    code: str
    message: str | None
    status: int


@dataclass
class _Faults:
    fail_next: deque[_Failure] = field(default_factory=deque)
    slow_next: deque[float] = field(default_factory=deque)


# --- pure rules ------------------------------------------------------------------------------------------
def validate_bucket_name(name: str) -> None:
    """3-63 characters: lower-case letters, digits and hyphens, starting and ending with a letter or digit."""
    if not _BUCKET_RE.fullmatch(name or ""):
        raise exc.InvalidBucketName(BucketName=name)


def validate_key(key: str) -> None:
    """1-1023 UTF-8 bytes, not starting with '/' or '\\' (the documented object naming rules)."""
    if not key:
        raise exc.InvalidObjectName("The object name must not be empty.", Key=key)
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise exc.InvalidObjectName(
            f"The Length of Object name must be less than {MAX_KEY_BYTES + 1}.", Key=key
        )
    if key[0] in "/\\":
        raise exc.InvalidObjectName("The object name must not start with '/' or '\\'.", Key=key)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise exc.InvalidObjectName("The object name must be valid UTF-8.", Key=key) from None


def validate_part_number(number: int) -> None:
    """1-10000 (help.aliyun.com/en/oss/user-guide/0017-00000220, its message quoted)."""
    if not 1 <= number <= MAX_PART_NUMBER:
        raise exc.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive.",
            ArgumentName="partNumber",
            ArgumentValue=number,
        )


def decode_content_md5(value: str | None) -> bytes | None:
    """The 16-byte digest a Content-MD5 header carries; InvalidDigest when it is not base64 of 16 bytes."""
    if value is None:
        return None
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise exc.InvalidDigest().with_detail("Content-MD5", value)
    return digest


def resolve_range(header: str | None, size: int, *, standard: bool = False) -> tuple[int, int] | None:
    """``(first, last)`` (inclusive) to answer 206 with, or ``None`` to answer 200 with the whole object.

    Default behaviour (documented, "Use HTTP Range requests to get OSS resources in segments"): an invalid
    or out-of-range Range is ignored and the whole object is returned with 200 — ``bytes=0-1000``,
    ``bytes=1000-2000``, ``bytes=1000-`` and ``bytes=-2000`` on a 1,000-byte object all give 200.

    With ``x-oss-range-behavior: standard`` (``standard=True``, documented): an end past the object is
    clamped (206) and a start at or past the end is 416 ``InvalidRange``.

    ASSUMPTIONS: a syntactically invalid header (``byte=0-1``, ``bytes=5-3``, ``bytes=-``) is ignored in
    both modes (HTTP's rule); several ranges: the first one is used by default (an older OSS page says so),
    416 in standard mode (the 416 page names multiple ranges as a cause); ``bytes=-0`` is ignored by
    default and 416 in standard mode; with standard, a suffix longer than the object is the whole object
    as 206, and any range on an empty object is 416.
    """
    if not header:
        return None
    spec = header.strip()
    if "," in spec:
        if standard and spec.startswith("bytes="):
            raise exc.InvalidRange()
        spec = spec.split(",", 1)[0].strip()
    match = _RANGE_RE.fullmatch(spec)
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first_text, last_text = match.groups()
    if first_text:
        first = int(first_text)
        last = int(last_text) if last_text else size - 1
        if last_text and last < first:
            return None
        if first >= size:
            if standard:
                raise exc.InvalidRange()
            return None
        if last >= size:
            if not standard:
                return None
            last = size - 1
        return first, last
    suffix = int(last_text)
    if suffix == 0 or size == 0:
        if standard:
            raise exc.InvalidRange()
        return None
    if suffix > size:
        return (0, size - 1) if standard else None
    return size - suffix, size - 1


def successor(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix`` (non-empty)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # not encodable in UTF-8: skip the surrogates
                nxt = 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    raise ValueError("no successor of the greatest prefix")


def encode_continuation_token(position: str) -> str:
    """ASSUMPTION: real tokens are opaque; ours are the urlsafe base64 of the last key/prefix returned."""
    return base64.urlsafe_b64encode(position.encode("utf-8")).decode("ascii")


def decode_continuation_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        raise exc.InvalidArgument(
            "The continuation token provided is incorrect.",
            ArgumentName="continuation-token",
            ArgumentValue=token,
        ) from None


def iso8601(timestamp: float) -> str:
    """``2022-08-13T06:45:43.000Z`` (milliseconds, UTC), the format of events and listings."""
    whole = int(timestamp)
    millis = round((timestamp - whole) * 1000)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def rule_id_for(bucket: str) -> str:
    """ASSUMPTION: the id of the (one) notification rule of a bucket; stable, 40 hex like the sample."""
    return hashlib.sha1(f"local-oss-rule:{bucket}".encode()).hexdigest()


def object_created_event(
    *,
    bucket: str,
    key: str,
    size: int,
    delta_size: int,
    etag: str,
    region: str,
    account_id: str,
    principal_id: str,
    source_ip: str,
    request_id: str,
    event_time: float,
    event_name: str = EVENT_OBJECT_CREATED_PUT,
) -> dict[str, Any]:
    """The FC3 OSS-trigger event for one created object, as ALIBABA-FACTS §2's sample spells it.

    ``eventName`` carries no ``oss:`` prefix; ``eTag`` is the upper-case hex MD5 without quotes.
    ASSUMPTIONS: ``deltaSize`` is the change in stored size (size of a new object; new minus old size on an
    overwrite); ``ownerIdentity`` and ``principalId`` are the account id (the emulator has one owner).
    """
    return {
        "events": [
            {
                "eventName": event_name,
                "eventSource": "acs:oss",
                "eventTime": iso8601(event_time),
                "eventVersion": "1.0",
                "oss": {
                    "bucket": {
                        "arn": f"acs:oss:{region}:{account_id}:{bucket}",
                        "name": bucket,
                        "ownerIdentity": account_id,
                    },
                    "object": {"deltaSize": delta_size, "eTag": etag, "key": key, "size": size},
                    "ossSchemaVersion": "1.0",
                    "ruleId": rule_id_for(bucket),
                },
                "region": region,
                "requestParameters": {"sourceIPAddress": source_ip},
                "responseElements": {"requestId": request_id},
                "userIdentity": {"principalId": principal_id},
            }
        ]
    }


def new_crc64() -> Any:
    return crcmod.Crc(_CRC64_POLY, initCrc=0, rev=True, xorOut=_CRC64_XOROUT)


def _copy_hashing(source: Readable, target: BinaryIO, limit: int) -> tuple[int, Any, Any]:
    """Copy in chunks; (size, md5, crc64). EntityTooLarge past ``limit`` bytes."""
    md5, crc, size = hashlib.md5(), new_crc64(), 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            return size, md5, crc
        size += len(chunk)
        if size > limit:
            raise exc.EntityTooLarge(MaxSizeAllowed=limit)
        md5.update(chunk)
        crc.update(chunk)
        target.write(chunk)


# --- the backend -----------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY, region TEXT NOT NULL, created INTEGER NOT NULL,
    acl TEXT NOT NULL DEFAULT 'private', storage_class TEXT NOT NULL DEFAULT 'Standard');
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL, key TEXT NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    crc64 TEXT NOT NULL, content_md5 TEXT NOT NULL, content_type TEXT NOT NULL,
    last_modified INTEGER NOT NULL, user_meta TEXT NOT NULL, headers TEXT NOT NULL,
    PRIMARY KEY (bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, initiated REAL NOT NULL,
    content_type TEXT NOT NULL, user_meta TEXT NOT NULL, headers TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, blob TEXT NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, crc64 TEXT NOT NULL, last_modified INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_number)) WITHOUT ROWID;
"""
_OBJECT_COLUMNS = (
    "bucket, key, size, etag, crc64, content_md5, content_type, last_modified, user_meta, "
    "headers, blob, object_type"
)
_PART_COLUMNS = "part_number, blob, size, etag, crc64, last_modified"
_UPLOAD_COLUMNS = "upload_id, bucket, key, initiated, content_type, user_meta, headers"
_LIST_BATCH = 1000


def _object_from_row(row: tuple[Any, ...]) -> ObjectInfo:
    (
        bucket,
        key,
        size,
        etag,
        crc64,
        content_md5,
        content_type,
        last_modified,
        user_meta,
        headers,
        blob,
        object_type,
    ) = row
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=size,
        etag=etag,
        crc64=crc64,
        content_md5=content_md5,
        content_type=content_type,
        last_modified=last_modified,
        user_meta=json.loads(user_meta),
        headers=json.loads(headers),
        blob=blob,
        object_type=object_type,
    )


def _part_from_row(row: tuple[Any, ...]) -> PartInfo:
    part_number, blob, size, etag, crc64, last_modified = row
    return PartInfo(part_number, size, etag, crc64, last_modified, blob)


def _upload_from_row(row: tuple[Any, ...]) -> MultipartUpload:
    upload_id, bucket, key, initiated, content_type, user_meta, headers = row
    return MultipartUpload(
        upload_id, bucket, key, initiated, content_type, json.loads(user_meta), json.loads(headers)
    )


class OssBackend(AccountRegistry):
    """The local OSS account: credentials, buckets and objects, event subscribers, faults, records.

    ``data_dir``: keep the SQLite file and the bodies there, so a new backend on the same directory sees the
    same buckets and objects; without it the metadata is ``:memory:`` and the bodies live in a private
    temporary directory that :meth:`close` removes.

    ``event_delivery``: ``"sync"`` (default) calls subscribers on the request thread, after the object is
    committed and outside the lock, *before* the PUT is answered — so when ``put_object`` returns in the
    client, every subscriber has run (a subscriber's exception is logged and does not fail the PUT).
    ``"thread"`` hands events to one dispatcher thread that calls subscribers in order, like the real
    service's asynchronous notification; :meth:`flush_events` waits for it to catch up.

    Thread-safe: metadata work runs under one lock; bodies stream outside it.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        region_id: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        max_clock_skew: float | None = DEFAULT_MAX_CLOCK_SKEW,
        max_object_size: int = MAX_OBJECT_SIZE,
        event_delivery: EventDelivery = "sync",
        url_encode_event_keys: bool = False,
        min_part_size: int = MIN_PART_SIZE,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        if event_delivery not in ("sync", "thread"):
            raise ValueError("event_delivery is 'sync' or 'thread'")
        self._lock = threading.RLock()
        self.region_id = region_id
        self.account_id = account_id
        self.max_clock_skew = max_clock_skew
        self.max_object_size = max_object_size
        self.event_delivery: EventDelivery = event_delivery
        #: ASSUMPTION switch: whether the real event URL-encodes ``oss.object.key`` is unverified; off = raw
        self.url_encode_event_keys = url_encode_event_keys
        self.min_part_size = min_part_size
        self.max_multipart_object_size = MAX_MULTIPART_OBJECT_SIZE
        self.clock = clock
        self._random = random.Random(seed)
        self._accounts: dict[str, Account] = {}
        self._subscribers: list[Subscriber] = []
        self._faults = _Faults()
        self.requests: list[RecordedRequest] = []
        self.events: list[dict[str, Any]] = []
        self.data_dir = os.path.abspath(os.fspath(data_dir)) if data_dir is not None else None
        self._root: str | None = None  # where blobs live; created on first use
        self._conn: sqlite3.Connection | None = None
        self._dispatcher: _Dispatcher | None = None
        self._cleanup: weakref.finalize[Any, Any] | None = None  # removes a private temporary directory

    # --- storage lifecycle ------------------------------------------------------------------------------
    @property
    def root(self) -> str:
        """The directory holding ``objects/`` and ``tmp/`` (the data directory, or a private temp dir)."""
        with self._lock:
            self._open()
            assert self._root is not None
            return self._root

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self.data_dir is not None:
            root = self.data_dir
            os.makedirs(root, exist_ok=True)
            database = os.path.join(root, DATABASE_FILE)
        else:
            root = tempfile.mkdtemp(prefix="chatapp-local-oss-")
            database = ":memory:"
            # removed by close(), or when the backend is collected / the interpreter exits
            self._cleanup = weakref.finalize(self, shutil.rmtree, root, True)
        shutil.rmtree(os.path.join(root, "tmp"), ignore_errors=True)  # uploads cut short by a crash
        os.makedirs(os.path.join(root, "tmp"), exist_ok=True)
        os.makedirs(os.path.join(root, "objects"), exist_ok=True)
        conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        if database != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")  # a commit per PUT without a full fsync each time
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(objects)")}
        if "object_type" not in columns:  # a data directory written before multipart upload existed
            conn.execute("ALTER TABLE objects ADD COLUMN object_type TEXT NOT NULL DEFAULT 'Normal'")
        self._root, self._conn = root, conn
        return conn

    def close(self) -> None:
        """Stop the dispatcher and close the database; a private temporary directory is removed.

        The backend may be used again afterwards: it reopens (the data directory's state, or empty).
        """
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.stop()
        with self._lock:
            self._dispatcher = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._cleanup is not None:
                self._cleanup()
                self._cleanup = None
            self._root = None

    def _blob_path(self, blob: str) -> str:
        assert self._root is not None
        return os.path.join(self._root, "objects", blob[:2], blob)

    def _remove_blob(self, blob: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._blob_path(blob))

    # --- buckets ----------------------------------------------------------------------------------------
    def create_bucket(
        self, name: str, *, acl: str | None = None, storage_class: str | None = None
    ) -> BucketInfo:
        """PutBucket. ASSUMPTION: creating a bucket that already exists (every bucket here has the same
        owner) succeeds and leaves it as it was."""
        validate_bucket_name(name)
        with self._lock:
            conn = self._open()
            existing = self._bucket(name)
            if existing is not None:
                return existing
            info = BucketInfo(
                name, self.region_id, int(self.clock()), acl or "private", storage_class or "Standard"
            )
            conn.execute(
                "INSERT INTO buckets VALUES (?, ?, ?, ?, ?)",
                (info.name, info.region, info.created, info.acl, info.storage_class),
            )
            return info

    def delete_bucket(self, name: str) -> None:
        with self._lock:
            conn = self._open()
            self._require_bucket(name)
            if (
                conn.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,)).fetchone()
                or conn.execute("SELECT 1 FROM uploads WHERE bucket = ? LIMIT 1", (name,)).fetchone()
            ):
                # ASSUMPTION: uploads under way keep a bucket from being deleted, like objects do
                raise exc.BucketNotEmpty(BucketName=name)
            conn.execute("DELETE FROM buckets WHERE name = ?", (name,))

    def bucket(self, name: str) -> BucketInfo | None:
        with self._lock:
            self._open()
            return self._bucket(name)

    def list_buckets(self) -> list[BucketInfo]:
        with self._lock:
            rows = (
                self._open()
                .execute("SELECT name, region, created, acl, storage_class FROM buckets ORDER BY name")
                .fetchall()
            )
        return [BucketInfo(*row) for row in rows]

    def _bucket(self, name: str) -> BucketInfo | None:
        assert self._conn is not None
        row = self._conn.execute(
            "SELECT name, region, created, acl, storage_class FROM buckets WHERE name = ?", (name,)
        ).fetchone()
        return BucketInfo(*row) if row else None

    def _require_bucket(self, name: str) -> BucketInfo:
        info = self._bucket(name)
        if info is None:
            raise exc.NoSuchBucket(BucketName=name)
        return info

    # --- objects ----------------------------------------------------------------------------------------
    def put_object_stream(
        self,
        bucket: str,
        key: str,
        body: Readable,
        *,
        content_type: str | None = None,
        user_meta: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content_md5: str | None = None,
        forbid_overwrite: bool = False,
        request_id: str | None = None,
        source_ip: str = "127.0.0.1",
        notify: bool = True,
    ) -> ObjectInfo:
        """PutObject: stream ``body`` to disk, check Content-MD5, commit, then emit the OSS event.

        ``user_meta`` names are full header names (``x-oss-meta-author``); they are stored lower-case.
        """
        validate_key(key)
        expected_md5 = decode_content_md5(content_md5)
        tmp_path = self._new_tmp(bucket, "upload-")
        try:
            with open(tmp_path, "wb") as target:
                size, md5, crc = _copy_hashing(body, target, self.max_object_size)
            if expected_md5 is not None and md5.digest() != expected_md5:
                raise exc.InvalidDigest(
                    "The Content-MD5 you specified did not match what was received."
                ).with_detail("Content-MD5", content_md5)
            return self._commit(
                bucket,
                key,
                tmp_path,
                size=size,
                etag=md5.hexdigest().upper(),
                crc64=str(crc.crcValue),
                content_md5=base64.b64encode(md5.digest()).decode("ascii"),
                content_type=content_type,
                user_meta=user_meta,
                headers=headers,
                forbid_overwrite=forbid_overwrite,
                event_name=EVENT_OBJECT_CREATED_PUT if notify else None,
                request_id=request_id,
                source_ip=source_ip,
            )
        finally:
            _remove_quietly(tmp_path)

    def _new_tmp(self, bucket: str, prefix: str) -> str:
        """A new empty file under ``tmp/`` (the bucket checked first); the caller removes it."""
        with self._lock:
            self._open()
            self._require_bucket(bucket)
            tmp_dir = os.path.join(self.root, "tmp")
        fd, tmp_path = tempfile.mkstemp(dir=tmp_dir, prefix=prefix)
        os.close(fd)
        return tmp_path

    def _commit(
        self,
        bucket: str,
        key: str,
        pending: str | None,
        *,
        size: int,
        etag: str,
        crc64: str,
        content_md5: str,
        content_type: str | None,
        user_meta: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        forbid_overwrite: bool,
        event_name: str | None,
        request_id: str | None,
        source_ip: str,
        object_type: str = "Normal",
        same_blob: bool = False,
        before: Callable[[], None] | None = None,
    ) -> ObjectInfo:
        """Store the body written at ``pending`` as ``bucket/key`` (replacing any object there), then emit
        ``event_name`` (none when ``None``) to the subscribers, outside the lock.

        ``same_blob``: keep the current object's body (a copy of an object onto itself changes only its
        metadata). ``before`` runs under the lock before anything changes (it may raise to refuse).
        """
        meta = {name.lower(): value for name, value in (user_meta or {}).items()}
        event: dict[str, Any] | None = None
        with self._lock:
            conn = self._open()
            self._require_bucket(bucket)
            if before is not None:
                before()
            old = self._object(bucket, key)
            if forbid_overwrite and old is not None:
                raise exc.FileAlreadyExists(Key=key)
            now = self.clock()
            if same_blob:
                if old is None:
                    raise exc.NoSuchKey(Key=key)
                blob = old.blob
            else:
                blob = uuid.uuid4().hex
            info = ObjectInfo(
                bucket=bucket,
                key=key,
                size=size,
                etag=etag,
                crc64=crc64,
                content_md5=content_md5,
                content_type=content_type or "application/octet-stream",
                last_modified=int(now),
                user_meta=meta,
                headers=dict(headers or {}),
                blob=blob,
                object_type=object_type,
            )
            path = self._blob_path(info.blob)
            if not same_blob:
                assert pending is not None
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(pending, path)
            try:
                conn.execute(
                    f"INSERT OR REPLACE INTO objects ({_OBJECT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        bucket,
                        key,
                        info.size,
                        info.etag,
                        info.crc64,
                        info.content_md5,
                        info.content_type,
                        info.last_modified,
                        json.dumps(meta),
                        json.dumps(info.headers),
                        info.blob,
                        info.object_type,
                    ),
                )
            except BaseException:
                if not same_blob:
                    os.remove(path)
                raise
            if old is not None and old.blob != info.blob:
                self._remove_blob(old.blob)
            if event_name is not None:
                event = object_created_event(
                    bucket=bucket,
                    key=_event_key(key, self.url_encode_event_keys),
                    size=size,
                    delta_size=size - (old.size if old is not None else 0),
                    etag=info.etag,
                    region=self.region_id,
                    account_id=self.account_id,
                    principal_id=self.account_id,
                    source_ip=source_ip,
                    request_id=request_id or self.new_request_id(),
                    event_time=now,
                    event_name=event_name,
                )
                self.events.append(copy.deepcopy(event))
        if event is not None:
            self._deliver(event)
        return info

    # --- CopyObject -------------------------------------------------------------------------------------
    def copy_object(
        self,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        *,
        replace_metadata: bool = False,
        content_type: str | None = None,
        user_meta: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        forbid_overwrite: bool = False,
        request_id: str | None = None,
        source_ip: str = "127.0.0.1",
    ) -> ObjectInfo:
        """CopyObject (https://help.aliyun.com/document_detail/31979.html): ``bucket/key`` becomes a copy
        of ``source_bucket/source_key``; emits ``ObjectCreated:CopyObject``.

        Metadata (``x-oss-metadata-directive``, same page and "modify object metadata"): COPY (default)
        takes the source's user metadata, Content-Type and stored headers and ignores the request's;
        REPLACE takes only the request's. Copying an object onto itself changes only its metadata (the
        doc: "OSS only modifies the source object's metadata and does not copy its content").
        The body is copied file to file (the kernel's copy), never read into memory.
        ASSUMPTIONS: the copy keeps the source's ETag, CRC-64 and object type (S3's documented rule: "the
        source and destination ETag is identical"); a copy onto itself also emits the event; the 5 GB
        limit of a copy between buckets is not enforced (objects here are far smaller).
        """
        validate_key(key)
        validate_key(source_key)
        with self._lock:
            self._open()
            self._require_bucket(bucket)
            self._require_bucket(source_bucket)
            source = self._object(source_bucket, source_key)
            if source is None:
                raise exc.NoSuchKey(Key=source_key)
            source_path = self._blob_path(source.blob)
            same = (source_bucket, source_key) == (bucket, key)
            if not same:  # a link keeps the bytes even if the source is deleted or overwritten meanwhile
                link = self._new_tmp_locked("copy-")
                os.remove(link)
                os.link(source_path, link)
        if not replace_metadata:
            content_type, user_meta, headers = source.content_type, source.user_meta, source.headers
        if same:
            return self._commit(
                bucket,
                key,
                None,
                same_blob=True,
                size=source.size,
                etag=source.etag,
                crc64=source.crc64,
                content_md5=source.content_md5,
                content_type=content_type,
                user_meta=user_meta,
                headers=headers,
                forbid_overwrite=forbid_overwrite,
                event_name=EVENT_OBJECT_CREATED_COPY,
                request_id=request_id,
                source_ip=source_ip,
                object_type=source.object_type,
            )
        tmp_path: str | None = None
        try:
            tmp_path = self._new_tmp(bucket, "copy-")
            shutil.copyfile(link, tmp_path)
            return self._commit(
                bucket,
                key,
                tmp_path,
                size=source.size,
                etag=source.etag,
                crc64=source.crc64,
                content_md5=source.content_md5,
                content_type=content_type,
                user_meta=user_meta,
                headers=headers,
                forbid_overwrite=forbid_overwrite,
                event_name=EVENT_OBJECT_CREATED_COPY,
                request_id=request_id,
                source_ip=source_ip,
                object_type=source.object_type,
            )
        finally:
            _remove_quietly(tmp_path)
            _remove_quietly(link)

    def _new_tmp_locked(self, prefix: str) -> str:
        assert self._root is not None
        fd, path = tempfile.mkstemp(dir=os.path.join(self._root, "tmp"), prefix=prefix)
        os.close(fd)
        return path

    # --- multipart upload -------------------------------------------------------------------------------
    def initiate_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        user_meta: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> MultipartUpload:
        """InitiateMultipartUpload (https://help.aliyun.com/en/oss/developer-reference/initiatemultipartupload):
        a new upload id; an existing object of that name is not affected. The Content-Type, ``x-oss-meta-*``
        and stored headers given here become the object's at completion. ASSUMPTION: ids are 32 upper-case
        hex digits (the doc's sample ``0004B9B2D2F7815C432C9057C031****`` is 32 characters)."""
        validate_key(key)
        upload = MultipartUpload(
            uuid.uuid4().hex.upper(),
            bucket,
            key,
            int(self.clock()),
            content_type or "application/octet-stream",
            {name.lower(): value for name, value in (user_meta or {}).items()},
            dict(headers or {}),
        )
        with self._lock:
            conn = self._open()
            self._require_bucket(bucket)
            conn.execute(
                f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (
                    upload.upload_id,
                    bucket,
                    key,
                    upload.initiated,
                    upload.content_type,
                    json.dumps(upload.user_meta),
                    json.dumps(upload.headers),
                ),
            )
        return upload

    def upload_part_stream(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: Readable,
        *,
        content_md5: str | None = None,
    ) -> PartInfo:
        """UploadPart: stream one part to disk (never to memory); uploading a part number again replaces it.

        Part numbers are 1-10000 (InvalidArgument otherwise, 0017-00000220); a part is at most 5 GB; the
        100 KB minimum is checked at completion only ("OSS does not verify part sizes during UploadPart",
        help.aliyun.com/en/oss/user-guide/0017-00000219). An unknown upload id is NoSuchUpload (404,
        0017-00000244). The part's ETag is the upper-case hex MD5 of its bytes, as for PutObject.
        """
        validate_part_number(part_number)
        expected_md5 = decode_content_md5(content_md5)
        with self._lock:
            self._open()
            self._require_upload(bucket, key, upload_id)
        tmp_path = self._new_tmp(bucket, "part-")
        try:
            with open(tmp_path, "wb") as target:
                size, md5, crc = _copy_hashing(body, target, MAX_PART_SIZE)
            if expected_md5 is not None and md5.digest() != expected_md5:
                raise exc.InvalidDigest(
                    "The Content-MD5 you specified did not match what was received."
                ).with_detail("Content-MD5", content_md5)
            part = PartInfo(
                part_number,
                size,
                md5.hexdigest().upper(),
                str(crc.crcValue),
                int(self.clock()),
                uuid.uuid4().hex,
                base64.b64encode(md5.digest()).decode("ascii"),
            )
            with self._lock:
                conn = self._open()
                self._require_upload(bucket, key, upload_id)  # aborted or completed meanwhile
                old = conn.execute(
                    f"SELECT {_PART_COLUMNS} FROM parts WHERE upload_id = ? AND part_number = ?",
                    (upload_id, part_number),
                ).fetchone()
                path = self._blob_path(part.blob)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(tmp_path, path)
                conn.execute(
                    f"INSERT OR REPLACE INTO parts (upload_id, {_PART_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                    (
                        upload_id,
                        part.part_number,
                        part.blob,
                        part.size,
                        part.etag,
                        part.crc64,
                        part.last_modified,
                    ),
                )
                if old is not None:
                    self._remove_blob(old[1])
            return part
        finally:
            _remove_quietly(tmp_path)

    def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]] | None,
        *,
        forbid_overwrite: bool = False,
        request_id: str | None = None,
        source_ip: str = "127.0.0.1",
    ) -> ObjectInfo:
        """CompleteMultipartUpload (https://help.aliyun.com/en/oss/developer-reference/completemultipartupload):
        join the listed ``(part number, ETag)`` parts into the object, then emit
        ``ObjectCreated:CompleteMultipartUpload``. ``parts=None`` is ``x-oss-complete-all: yes`` (every
        uploaded part, in part-number order; help.aliyun.com/document_detail/480267.html).

        Checked as the docs say: part numbers ascending (InvalidPartOrder, 0042-00000209), each part
        uploaded with that ETag (InvalidPart, "How do I fix the InvalidPart error"), every part but the last
        at least 100 KB (EntityTooSmall, 0042-00000213). The object's ETag is ``<hex>-<part count>``
        (upper case; the form OSS answers, aliyun/aliyun-oss-php-sdk issue #32: ``DBBCA06B...8B-5``);
        ASSUMPTION: hex = MD5 of the concatenated binary part MD5s (S3's rule; OSS documents only "a unique
        value generated based on specific rules, not the MD5 of the content"). The object has no
        Content-MD5, ``x-oss-object-type: Multipart`` and the CRC-64 of the whole content (oss2's
        ``complete_multipart_upload`` compares it with the CRC it combines from the parts).
        The parts are joined file to file in 1 MiB chunks outside the lock: the whole object is never in
        memory. ASSUMPTION: parts uploaded but not listed are discarded with the upload (S3's rule).
        """
        with self._lock:
            conn = self._open()
            upload = self._require_upload(bucket, key, upload_id)
            stored = {
                row[0]: _part_from_row(row)
                for row in conn.execute(
                    f"SELECT {_PART_COLUMNS} FROM parts WHERE upload_id = ? ORDER BY part_number",
                    (upload_id,),
                )
            }
            if parts is None:
                chosen = list(stored.values())
                if not chosen:
                    raise exc.InvalidPart("No part has been uploaded for this upload id.", UploadId=upload_id)
            else:
                if not parts:
                    raise exc.MalformedXML("The CompleteMultipartUpload body lists no Part.")
                chosen = []
                previous = 0
                for number, etag in parts:
                    if number <= previous:
                        raise exc.InvalidPartOrder(PartNumber=number)
                    previous = number
                    part = stored.get(number)
                    if part is None or part.etag != etag.strip().strip('"').upper():
                        raise exc.InvalidPart(PartNumber=number, ETag=etag)
                    chosen.append(part)
            for part in chosen[:-1]:
                if part.size < self.min_part_size:
                    raise exc.EntityTooSmall(
                        PartNumber=part.part_number, ProposedSize=part.size, MinSizeAllowed=self.min_part_size
                    )
            links = []
            try:  # links keep the parts' bytes whatever happens to the upload meanwhile
                for part in chosen:
                    link = self._new_tmp_locked("join-")
                    os.remove(link)
                    os.link(self._blob_path(part.blob), link)
                    links.append(link)
            except BaseException:
                for link in links:
                    _remove_quietly(link)
                raise
        tmp_path: str | None = None
        try:
            tmp_path = self._new_tmp(bucket, "complete-")
            crc = new_crc64()
            digests = hashlib.md5()
            size = 0
            with open(tmp_path, "wb") as target:
                for part, link in zip(chosen, links, strict=True):
                    digests.update(bytes.fromhex(part.etag))
                    with open(link, "rb") as source:
                        while chunk := source.read(CHUNK):
                            crc.update(chunk)
                            target.write(chunk)
                            size += len(chunk)
            if size > self.max_multipart_object_size:
                raise exc.EntityTooLarge(MaxSizeAllowed=self.max_multipart_object_size)
            etag = f"{digests.hexdigest().upper()}-{len(chosen)}"

            def finish_upload() -> None:  # under the lock, right before the object is stored
                self._require_upload(bucket, key, upload_id)  # a concurrent Complete or Abort won
                self._drop_upload(upload_id)

            return self._commit(
                bucket,
                key,
                tmp_path,
                size=size,
                etag=etag,
                crc64=str(crc.crcValue),
                content_md5="",
                content_type=upload.content_type,
                user_meta=upload.user_meta,
                headers=upload.headers,
                forbid_overwrite=forbid_overwrite,
                event_name=EVENT_OBJECT_CREATED_MULTIPART,
                request_id=request_id,
                source_ip=source_ip,
                object_type="Multipart",
                before=finish_upload,
            )
        finally:
            _remove_quietly(tmp_path)
            for link in links:
                _remove_quietly(link)

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """AbortMultipartUpload: the upload and its parts are gone; its id is NoSuchUpload from then on."""
        with self._lock:
            self._open()
            self._require_upload(bucket, key, upload_id)
            self._drop_upload(upload_id)

    def list_parts(
        self, bucket: str, key: str, upload_id: str, *, marker: int = 0, max_parts: int = MAX_LIST_PARTS
    ) -> PartsPage:
        """ListParts (https://alibabacloud.com/help/en/oss/developer-reference/listparts): parts with a
        number greater than ``marker``, ascending, at most ``max_parts``; ``NextPartNumberMarker`` when
        truncated."""
        with self._lock:
            conn = self._open()
            upload = self._require_upload(bucket, key, upload_id)
            rows = conn.execute(
                f"SELECT {_PART_COLUMNS} FROM parts WHERE upload_id = ? AND part_number > ? "
                "ORDER BY part_number LIMIT ?",
                (upload_id, marker, max_parts + 1),
            ).fetchall()
        parts = [_part_from_row(row) for row in rows[:max_parts]]
        truncated = len(rows) > max_parts
        return PartsPage(upload, parts, truncated, parts[-1].part_number if truncated and parts else None)

    def list_multipart_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = MAX_LIST_UPLOADS,
    ) -> UploadsPage:
        """ListMultipartUploads: uploads under way, by key then initiation time, after
        (``key_marker``, ``upload_id_marker``). ASSUMPTION: without ``upload_id_marker`` every upload of
        ``key_marker`` is skipped (S3's documented rule); ties in time are ordered by upload id."""
        with self._lock:
            conn = self._open()
            self._require_bucket(bucket)
            rows = conn.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE bucket = ? AND key >= ? "
                "ORDER BY key, initiated, upload_id",
                (bucket, prefix),
            ).fetchall()
        uploads = [_upload_from_row(row) for row in rows]
        uploads = [u for u in uploads if u.key.startswith(prefix)]
        if key_marker:
            if upload_id_marker:
                position = next(
                    (
                        i
                        for i, u in enumerate(uploads)
                        if (u.key, u.upload_id) == (key_marker, upload_id_marker)
                    ),
                    None,
                )
                uploads = (
                    uploads[position + 1 :]
                    if position is not None
                    else [u for u in uploads if u.key > key_marker]
                )
            else:
                uploads = [u for u in uploads if u.key > key_marker]
        page = uploads[:max_uploads]
        truncated = len(uploads) > max_uploads
        return UploadsPage(page, truncated)

    def _require_upload(self, bucket: str, key: str, upload_id: str) -> MultipartUpload:
        assert self._conn is not None
        self._require_bucket(bucket)
        row = self._conn.execute(
            f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = ?", (upload_id,)
        ).fetchone()
        if row is None or row[1] != bucket or row[2] != key:
            raise exc.NoSuchUpload(UploadId=upload_id)
        return _upload_from_row(row)

    def _drop_upload(self, upload_id: str) -> None:
        assert self._conn is not None
        blobs = [
            row[0] for row in self._conn.execute("SELECT blob FROM parts WHERE upload_id = ?", (upload_id,))
        ]
        self._conn.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
        self._conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
        for blob in blobs:
            self._remove_blob(blob)

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        with self._lock:
            self._open()
            self._require_bucket(bucket)
            info = self._object(bucket, key)
        if info is None:
            raise exc.NoSuchKey(Key=key)
        return info

    def open_object(self, bucket: str, key: str) -> tuple[ObjectInfo, BinaryIO]:
        """The object's metadata and its body opened for reading (the caller closes it)."""
        with self._lock:
            self._open()
            self._require_bucket(bucket)
            info = self._object(bucket, key)
            if info is None:
                raise exc.NoSuchKey(Key=key)
            return info, open(self._blob_path(info.blob), "rb")  # the caller closes it

    def delete_object(self, bucket: str, key: str) -> bool:
        """DeleteObject; True when something was deleted (OSS answers 204 either way)."""
        with self._lock:
            conn = self._open()
            self._require_bucket(bucket)
            info = self._object(bucket, key)
            if info is None:
                return False
            conn.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
            self._remove_blob(info.blob)
            return True

    def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 100,
    ) -> ListPage:
        """ListObjects (V1 ``marker`` / V2 ``start-after``): entries strictly after ``start_after``.

        With a delimiter, keys sharing ``prefix + ... + delimiter`` collapse into one common prefix, which
        counts as one entry towards ``max_keys``. ASSUMPTION: a common prefix not greater than
        ``start_after`` is skipped whole (so every entry of a page is greater than the marker).
        """
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last: str | None = None
        truncated = False
        lower, inclusive = (prefix, True) if prefix > start_after else (start_after, False)
        with self._lock:
            conn = self._open()
            self._require_bucket(bucket)
            done = False
            while not done:
                after = ">=" if inclusive else ">"
                rows = conn.execute(
                    f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key {after} ? "
                    "ORDER BY key LIMIT ?",
                    (bucket, lower, _LIST_BATCH),
                ).fetchall()
                reseek: str | None = None
                for row in rows:
                    key = row[1]
                    if not key.startswith(prefix):
                        done = True
                        break
                    cut = key.find(delimiter, len(prefix)) if delimiter else -1
                    if cut >= 0:
                        common = key[: cut + len(delimiter)]
                        reseek = successor(common)
                        if common <= start_after:
                            break
                        if len(objects) + len(prefixes) >= max_keys:
                            truncated = done = True
                            break
                        prefixes.append(common)
                        last = common
                        break
                    if len(objects) + len(prefixes) >= max_keys:
                        truncated = done = True
                        break
                    objects.append(_object_from_row(row))
                    last = key
                if done:
                    break
                if reseek is not None:
                    lower, inclusive = reseek, True
                elif len(rows) < _LIST_BATCH:
                    break
                else:
                    lower, inclusive = rows[-1][1], False
        return ListPage(objects, prefixes, truncated, last if truncated else None)

    def _object(self, bucket: str, key: str) -> ObjectInfo | None:
        assert self._conn is not None
        row = self._conn.execute(
            f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ?", (bucket, key)
        ).fetchone()
        return _object_from_row(row) if row else None

    # --- helpers for tests ------------------------------------------------------------------------------
    def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes | str | BinaryIO,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        notify: bool = True,
    ) -> ObjectInfo:
        """Store an object without HTTP (``metadata`` names without the ``x-oss-meta-`` prefix).

        It emits the ObjectCreated event like an HTTP PutObject unless ``notify=False``.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        stream: Readable = io.BytesIO(data) if isinstance(data, bytes) else data
        meta = {f"x-oss-meta-{name}": value for name, value in (metadata or {}).items()}
        return self.put_object_stream(
            bucket, key, stream, content_type=content_type, user_meta=meta, notify=notify
        )

    def get_object_bytes(self, bucket: str, key: str) -> bytes:
        _, body = self.open_object(bucket, key)
        with body:
            return body.read()

    def object_info(self, bucket: str, key: str) -> ObjectInfo | None:
        with self._lock:
            self._open()
            return self._object(bucket, key)

    def keys(self, bucket: str) -> list[str]:
        with self._lock:
            rows = (
                self._open()
                .execute("SELECT key FROM objects WHERE bucket = ? ORDER BY key", (bucket,))
                .fetchall()
            )
        return [row[0] for row in rows]

    def reset(self) -> None:
        """Forget recorded requests and events and pending faults, and delete every object and upload.

        Buckets (now empty), accounts, subscribers and configuration are kept.
        """
        with self._lock:
            conn = self._open()
            blobs = [
                row[0] for row in conn.execute("SELECT blob FROM objects UNION ALL SELECT blob FROM parts")
            ]
            conn.execute("DELETE FROM objects")
            conn.execute("DELETE FROM parts")
            conn.execute("DELETE FROM uploads")
            for blob in blobs:
                self._remove_blob(blob)
            self.requests = []
            self.events = []
            self._faults = _Faults()

    # --- events -----------------------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` once per created object (the FC3 OSS event dict; each call gets its own
        copy). Returns a function that unsubscribes it. See the class doc for which thread calls it."""
        with self._lock:
            self._subscribers.append(callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def flush_events(self, timeout: float = 5.0) -> bool:
        """Wait until the dispatcher thread has delivered every event (always True in ``"sync"`` mode)."""
        dispatcher = self._dispatcher
        return True if dispatcher is None else dispatcher.wait_idle(timeout)

    def _deliver(self, event: dict[str, Any]) -> None:
        if self.event_delivery == "sync":
            self._call_subscribers(event)
            return
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = _Dispatcher(self._call_subscribers)
            dispatcher = self._dispatcher
        dispatcher.put(event)

    def _call_subscribers(self, event: dict[str, Any]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(copy.deepcopy(event))
            except Exception:  # a subscriber's failure is its own; the object is stored
                log.exception("local OSS: event subscriber %r failed", callback)

    # --- fault injection --------------------------------------------------------------------------------
    def fail_next(
        self, n: int = 1, code: str = "InternalError", status: int = 500, message: str | None = None
    ) -> None:
        """The next ``n`` authenticated requests fail with ``code``/``status``; nothing is stored."""
        with self._lock:
            for _ in range(n):
                self._faults.fail_next.append(_Failure(code, message, status))

    def slow_next(self, n: int = 1, seconds: float = 1.0) -> None:
        """The next ``n`` authenticated requests are answered ``seconds`` late (after their work is done)."""
        with self._lock:
            for _ in range(n):
                self._faults.slow_next.append(float(seconds))

    def take_faults(self) -> tuple[exc.OssError | None, float]:
        """For one request: the injected failure (if any) and the delay (0.0 if none)."""
        with self._lock:
            failure = self._faults.fail_next.popleft() if self._faults.fail_next else None
            delay = self._faults.slow_next.popleft() if self._faults.slow_next else 0.0
        error = exc.error_for(failure.code, failure.message, failure.status) if failure else None
        return error, delay

    def configure(self, **options: Any) -> None:
        """Apply the admin endpoint's options: fail_next, slow_next, max_clock_skew, max_object_size,
        min_part_size, url_encode_event_keys."""
        for name, value in options.items():
            if name == "fail_next":
                self.fail_next(**(value if isinstance(value, dict) else {"n": int(value)}))
            elif name == "slow_next":
                self.slow_next(**(value if isinstance(value, dict) else {"n": 1, "seconds": float(value)}))
            elif name == "max_clock_skew":
                self.max_clock_skew = None if value is None else float(value)
            elif name == "max_object_size":
                self.max_object_size = int(value)
            elif name == "min_part_size":
                self.min_part_size = int(value)
            elif name == "url_encode_event_keys":
                self.url_encode_event_keys = bool(value)
            else:
                raise ValueError(f"unknown local OSS option {name!r}")

    # --- records ----------------------------------------------------------------------------------------
    def new_request_id(self) -> str:
        """24 upper-case hex digits, like ``58F9FF2D3DF792092E12044C``."""
        with self._lock:
            return f"{self._random.getrandbits(96):024X}"

    def record_request(
        self,
        *,
        method: str,
        bucket: str | None,
        key: str | None,
        operation: str,
        status: int,
        code: str,
        request_id: str,
        access_key_id: str | None = None,
        client_host: str = "",
        arrived_at: float | None = None,
    ) -> RecordedRequest:
        with self._lock:
            at = self.clock() if arrived_at is None else arrived_at
            record = RecordedRequest(
                len(self.requests) + 1,
                at,
                method,
                bucket,
                key,
                operation,
                status,
                code,
                request_id,
                access_key_id,
                client_host,
            )
            self.requests.append(record)
            return record

    def snapshot_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_dict() for r in self.requests]

    def snapshot_events(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.events)


def _remove_quietly(path: str | None) -> None:
    if path is None:
        return
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _event_key(key: str, url_encode: bool) -> str:
    if not url_encode:
        return key
    from urllib.parse import quote_plus

    return quote_plus(key, safe="/")


class _Dispatcher:
    """One daemon thread calling subscribers in order (``event_delivery="thread"``)."""

    def __init__(self, deliver: Callable[[dict[str, Any]], None]) -> None:
        self._deliver = deliver
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any] | None] = deque()
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="local-oss-events", daemon=True)
        self._thread.start()

    def put(self, event: dict[str, Any] | None) -> None:
        with self._cond:
            self._queue.append(event)
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, timeout: float = 5.0) -> None:
        self.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                event = self._queue.popleft()
                self._busy = event is not None
            if event is None:
                with self._cond:
                    self._cond.notify_all()
                return
            try:
                self._deliver(event)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
