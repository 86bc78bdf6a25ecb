"""HTTP in, reply out: parse a path-style OSS request, check its signature, call the backend, shape the reply.

Addressing: ``oss2`` uses path style for an IP or ``localhost`` endpoint, so ``/`` is the service
(ListBuckets), ``/<bucket>/`` (or ``/<bucket>``) a bucket and ``/<bucket>/<percent-encoded key>`` an object.

Authentication (V4 signatures; V1 refused unless allowed) lives in :mod:`.auth`, called once per request.

No business rules here: those live in :mod:`.models`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable
from urllib.parse import quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from chatapp_mass.localcloud._http import RequestHead, is_loopback, json_object

from . import exceptions as exc
from .auth import SUBRESOURCES, OssAuthenticator, http_date, query_params
from .models import (
    MAX_LIST_KEYS,
    ListPage,
    ObjectInfo,
    OssBackend,
    Readable,
    decode_content_md5,
    decode_continuation_token,
    encode_continuation_token,
    iso8601,
    resolve_range,
    validate_bucket_name,
    validate_key,
)

ADMIN_PREFIX = "/_localoss/"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type", "response-content-language": "Content-Language",
    "response-expires": "Expires", "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition", "response-content-encoding": "Content-Encoding",
}
# sub-resources the emulator serves; any other one is 501 NotImplemented
_BUCKET_SUBRESOURCES = frozenset({"continuation-token", "security-token", "delete"})
_OBJECT_SUBRESOURCES = frozenset({"objectMeta", "security-token", *_RESPONSE_OVERRIDES})
_STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")


class _Empty:
    def read(self, size: int = -1, /) -> bytes:
        return b""


@dataclass
class HttpRequest(RequestHead):
    """A parsed HTTP request, independent of the server framework; ``body`` is a stream (read it once)."""

    body: Readable = field(default_factory=_Empty)
    client_host: str = "127.0.0.1"

    @property
    def params(self) -> dict[str, str]:
        """Query parameters as the SDK meant them ('+' is a space; on a repeated key the last one wins)."""
        return query_params(self)

    @property
    def is_chunked(self) -> bool:
        return "chunked" in (self.header("transfer-encoding") or "").lower()


@dataclass
class Reply:
    """What to answer. ``stream`` (an open file, positioned) replaces ``body``; ``length`` is the
    Content-Length when it is not ``len(body)`` (a stream, or a HEAD answered without its body)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: BinaryIO | None = None
    length: int | None = None
    send_body: bool = True
    code: str = "OK"  # the error code, for the record
    latency: float = 0.0
    close_connection: bool = False

    @property
    def content_length(self) -> int:
        return self.length if self.length is not None else len(self.body)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


# --- replies (pure) --------------------------------------------------------------------------------------
def error_xml(error: exc.OssError, request_id: str, host_id: str) -> bytes:
    parts = [f"<Code>{escape(error.code)}</Code>", f"<Message>{escape(error.message)}</Message>",
             f"<RequestId>{request_id}</RequestId>", f"<HostId>{escape(host_id)}</HostId>"]
    parts += [f"<{name}>{escape(value)}</{name}>" for name, value in error.details.items()]
    return (XML_DECLARATION + "<Error>\n  " + "\n  ".join(parts) + "\n</Error>\n").encode("utf-8")


def object_headers(info: ObjectInfo, *, whole: bool = True) -> list[tuple[str, str]]:
    headers = [("Content-Type", info.content_type), ("ETag", info.quoted_etag),
               ("Last-Modified", http_date(info.last_modified)), ("Accept-Ranges", "bytes"),
               ("x-oss-object-type", info.object_type), ("x-oss-storage-class", info.storage_class),
               ("x-oss-hash-crc64ecma", info.crc64)]
    if whole:
        headers.append(("Content-MD5", info.content_md5))
    headers += [(name, value) for name, value in info.headers.items()]
    headers += [(name, value) for name, value in sorted(info.user_meta.items())]
    return headers


def _element(name: str, value: Any) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _listed(value: str, url: bool) -> str:
    return quote(value, safe="/") if url else value


def list_objects_xml(bucket: str, page: ListPage, *, owner: str, url: bool, v2: bool, prefix: str,
                     delimiter: str, max_keys: int, marker: str = "", start_after: str = "",
                     continuation_token: str = "", fetch_owner: bool = True) -> bytes:
    out = [XML_DECLARATION, "<ListBucketResult>", _element("Name", bucket),
           _element("Prefix", _listed(prefix, url))]
    if v2:
        if start_after:
            out.append(_element("StartAfter", _listed(start_after, url)))
        if continuation_token:
            out.append(_element("ContinuationToken", continuation_token))
    else:
        out.append(_element("Marker", _listed(marker, url)))
    out.append(_element("MaxKeys", max_keys))
    out.append(_element("Delimiter", _listed(delimiter, url)))
    if url:
        out.append(_element("EncodingType", "url"))
    out.append(_element("IsTruncated", "true" if page.is_truncated else "false"))
    if page.is_truncated and page.next_marker is not None:
        if v2:
            out.append(_element("NextContinuationToken", encode_continuation_token(page.next_marker)))
        else:
            out.append(_element("NextMarker", _listed(page.next_marker, url)))
    if v2:
        out.append(_element("KeyCount", len(page.objects) + len(page.common_prefixes)))
    for info in page.objects:
        out += ["<Contents>", _element("Key", _listed(info.key, url)),
                _element("LastModified", iso8601(info.last_modified)), _element("ETag", info.quoted_etag),
                _element("Type", info.object_type), _element("Size", info.size),
                _element("StorageClass", info.storage_class)]
        if fetch_owner:
            out += ["<Owner>", _element("ID", owner), _element("DisplayName", owner), "</Owner>"]
        out.append("</Contents>")
    for common in page.common_prefixes:
        out += ["<CommonPrefixes>", _element("Prefix", _listed(common, url)), "</CommonPrefixes>"]
    out.append("</ListBucketResult>\n")
    return "".join(out).encode("utf-8")


def split_path(path: str) -> tuple[str | None, str | None]:
    """``(bucket, key)``: ``(None, None)`` for the service, ``(bucket, None)`` for a bucket."""
    trimmed = path.removeprefix("/")
    if not trimmed:
        return None, None
    bucket, sep, raw_key = trimmed.partition("/")
    bucket = unquote(bucket)
    if not sep or not raw_key:
        return bucket, None
    try:
        return bucket, unquote(raw_key, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise exc.InvalidObjectName("The object name must be valid UTF-8.", Key=raw_key) from None


# --- the service ---------------------------------------------------------------------------------------
Handler = Callable[[HttpRequest, str, str, str], Reply]


class OssResponse:
    """The OSS REST API on one endpoint: routing, authentication, operations, error replies, records."""

    def __init__(self, backend: OssBackend, *, allow_v1_signatures: bool = False) -> None:
        self.backend = backend
        self.auth = OssAuthenticator(backend, allow_v1_signatures=allow_v1_signatures)

    def dispatch(self, request: HttpRequest) -> Reply:
        backend = self.backend
        request_id = backend.new_request_id()
        arrived_at = backend.clock()
        bucket: str | None = None
        key: str | None = None
        operation = "Unknown"
        access_key_id: str | None = None
        delay = 0.0
        try:
            bucket, key = split_path(request.path)
            operation, handler = self._route(request, bucket, key)
            account = self.auth.authenticate(request, bucket, key)
            access_key_id = account.access_key_id
            if handler is None:
                raise _unsupported(operation, request, key)
            if bucket is not None:
                validate_bucket_name(bucket)
            failure, delay = backend.take_faults()
            if failure is not None:
                raise failure
            reply = handler(request, bucket or "", key or "", request_id)
        except exc.OssError as error:
            reply = self.error_reply(error, request, request_id)
        reply.latency = delay
        reply.headers.append(("x-oss-request-id", request_id))
        if request.method == "HEAD":
            reply.send_body = False
        backend.record_request(method=request.method, bucket=bucket, key=key, operation=operation,
                               status=reply.status, code=reply.code, request_id=request_id,
                               access_key_id=access_key_id, client_host=request.client_host,
                               arrived_at=arrived_at)
        return reply

    def error_reply(self, error: exc.OssError, request: HttpRequest, request_id: str) -> Reply:
        host_id = request.header("host") or f"oss-{self.backend.region_id}.aliyuncs.com"
        body = error_xml(error, request_id, host_id)
        reply = Reply(error.http_status, [("Content-Type", "application/xml")], body, code=error.code)
        if request.method == "HEAD":
            reply.headers.append(("x-oss-err", base64.b64encode(body).decode("ascii")))
            reply.body, reply.length = b"", 0
        return reply

    # --- routing ----------------------------------------------------------------------------------------
    def _route(self, request: HttpRequest, bucket: str | None, key: str | None
               ) -> tuple[str, Handler | None]:
        """The operation's name and handler (``None``: known but not served -> 405/501 after auth)."""
        method, params = request.method, request.params
        if bucket is None:
            return ("ListBuckets", self._list_buckets) if method == "GET" else ("MethodNotAllowed", None)
        if key is None:
            extra = sorted(name for name in params
                           if name in SUBRESOURCES and name not in _BUCKET_SUBRESOURCES)
            if extra:
                return f"{method} ?{extra[0]}", None
            if method == "PUT":
                return "PutBucket", self._put_bucket
            if method == "GET":
                if params.get("list-type") == "2":
                    return "ListObjectsV2", self._list_objects_v2
                return "ListObjects", self._list_objects
            if method == "DELETE":
                return "DeleteBucket", self._delete_bucket
            if method == "HEAD":
                return "HeadBucket", self._head_bucket
            if method == "POST":
                return ("DeleteMultipleObjects", self._delete_multiple_objects) if "delete" in params \
                    else ("PostBucket", None)
            return "MethodNotAllowed", None
        extra = sorted(name for name in params if name in SUBRESOURCES and name not in _OBJECT_SUBRESOURCES)
        if extra:
            return f"{method} ?{extra[0]}", None
        if method == "PUT":
            if request.header("x-oss-copy-source"):
                return "CopyObject", None
            return "PutObject", self._put_object
        if method == "GET" and "objectMeta" not in params:
            return "GetObject", self._get_object
        if method == "HEAD":
            return ("GetObjectMeta", self._get_object_meta) if "objectMeta" in params \
                else ("HeadObject", self._head_object)
        if method == "DELETE":
            return "DeleteObject", self._delete_object
        return "MethodNotAllowed", None

    # --- operations -------------------------------------------------------------------------------------
    def _list_buckets(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        owner = self.backend.account_id
        out = [XML_DECLARATION, "<ListAllMyBucketsResult>", "<Owner>", _element("ID", owner),
               _element("DisplayName", owner), "</Owner>", "<Buckets>"]
        for info in self.backend.list_buckets():
            out += ["<Bucket>", _element("CreationDate", iso8601(info.created)),
                    _element("ExtranetEndpoint", f"oss-{info.region}.aliyuncs.com"),
                    _element("IntranetEndpoint", f"oss-{info.region}-internal.aliyuncs.com"),
                    _element("Location", f"oss-{info.region}"), _element("Name", info.name),
                    _element("Region", info.region), _element("StorageClass", info.storage_class),
                    "</Bucket>"]
        out.append("</Buckets></ListAllMyBucketsResult>\n")
        return _xml_reply("".join(out).encode("utf-8"))

    def _put_bucket(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        config = request.body.read(64 * 1024)
        storage_class = None
        if b"<StorageClass>" in config:
            storage_class = config.split(b"<StorageClass>", 1)[1].split(b"<", 1)[0].decode("utf-8", "replace")
        self.backend.create_bucket(bucket, acl=request.header("x-oss-acl"), storage_class=storage_class)
        return Reply(200, [("Location", f"/{bucket}")])

    def _delete_bucket(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        self.backend.delete_bucket(bucket)
        return Reply(204)

    def _head_bucket(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        """ASSUMPTION: 200 when the bucket exists (NoSuchBucket otherwise), with no headers of note."""
        if self.backend.bucket(bucket) is None:
            raise exc.NoSuchBucket(BucketName=bucket)
        return Reply(200)

    def _list_objects(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        params = request.params
        prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
        marker = params.get("marker", "")
        max_keys = _max_keys(params)
        url = params.get("encoding-type") == "url"
        page = self.backend.list_objects(bucket, prefix=prefix, delimiter=delimiter, start_after=marker,
                                         max_keys=max_keys)
        return _xml_reply(list_objects_xml(
            bucket, page, owner=self.backend.account_id, url=url, v2=False, prefix=prefix,
            delimiter=delimiter, max_keys=max_keys, marker=marker))

    def _list_objects_v2(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        params = request.params
        prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
        token, start_after = params.get("continuation-token", ""), params.get("start-after", "")
        max_keys = _max_keys(params)
        url = params.get("encoding-type") == "url"
        position = decode_continuation_token(token) if token else start_after
        page = self.backend.list_objects(bucket, prefix=prefix, delimiter=delimiter, start_after=position,
                                         max_keys=max_keys)
        return _xml_reply(list_objects_xml(
            bucket, page, owner=self.backend.account_id, url=url, v2=True, prefix=prefix, delimiter=delimiter,
            max_keys=max_keys, start_after=start_after, continuation_token=token,
            fetch_owner=params.get("fetch-owner") == "true"))

    def _put_object(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        validate_key(key)
        length_text = request.header("content-length")
        if length_text is None and not request.is_chunked:
            raise exc.MissingContentLength()
        try:
            length = int(length_text) if length_text is not None else None
        except ValueError:
            raise exc.InvalidArgument("Content-Length is not a number.", ArgumentName="Content-Length",
                                      ArgumentValue=length_text) from None
        if length is not None and length > self.backend.max_object_size:
            raise exc.EntityTooLarge(ProposedSize=length_text, MaxSizeAllowed=self.backend.max_object_size)
        user_meta = {name.lower(): value for name, value in request.headers
                     if name.lower().startswith("x-oss-meta-")}
        stored = {name: value for name in _STORED_HEADERS if (value := request.header(name)) is not None}
        info = self.backend.put_object_stream(
            bucket, key, request.body, content_type=request.header("content-type"), user_meta=user_meta,
            headers=stored, content_md5=request.header("content-md5"),
            forbid_overwrite=(request.header("x-oss-forbid-overwrite") or "").lower() == "true",
            request_id=request_id, source_ip=request.client_host)
        return Reply(200, [("ETag", info.quoted_etag), ("x-oss-hash-crc64ecma", info.crc64),
                           ("Content-MD5", info.content_md5)])

    def _get_object(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        info, body = self.backend.open_object(bucket, key)
        try:
            standard = (request.header("x-oss-range-behavior") or "").lower() == "standard"
            selected = resolve_range(request.header("range"), info.size, standard=standard)
        except exc.OssError:
            body.close()
            raise
        overrides = [(header, value) for name, value in request.params.items()
                     if (header := _RESPONSE_OVERRIDES.get(name)) is not None]
        headers = _override(object_headers(info, whole=selected is None), overrides)
        if selected is None:
            return Reply(200, headers, stream=body, length=info.size)
        first, last = selected
        body.seek(first)
        headers.append(("Content-Range", f"bytes {first}-{last}/{info.size}"))
        return Reply(206, headers, stream=body, length=last - first + 1)

    def _head_object(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        info = self.backend.head_object(bucket, key)
        return Reply(200, object_headers(info), length=info.size, send_body=False)

    def _get_object_meta(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        info = self.backend.head_object(bucket, key)
        headers = [("ETag", info.quoted_etag), ("Last-Modified", http_date(info.last_modified)),
                   ("x-oss-hash-crc64ecma", info.crc64)]
        return Reply(200, headers, length=info.size, send_body=False)

    def _delete_object(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        validate_key(key)
        self.backend.delete_object(bucket, key)
        return Reply(204)

    def _delete_multiple_objects(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        """DeleteMultipleObjects, https://www.alibabacloud.com/help/doc-detail/31983.htm : ``POST /?delete``
        with ``<Delete><Quiet/><Object><Key/></Object>...</Delete>``, Content-MD5 and Content-Length
        required, at most 1,000 objects; verbose mode lists every key as ``<Deleted>``, quiet mode lists
        none; ``encoding-type=url`` URL-encodes the keys of the reply.

        ASSUMPTIONS (the page names no codes for these): a missing Content-MD5 is 400 InvalidDigest; a body
        that is not that XML, or more than 1,000 objects, is 400 MalformedXML; a key that does not exist is
        listed as deleted (DeleteObject answers 204 for it too).
        """
        expected = decode_content_md5(request.header("content-md5"))
        if expected is None:
            raise exc.InvalidDigest("DeleteMultipleObjects requires the Content-MD5 header.")
        body = request.body.read(_MAX_DELETE_BODY + 1)
        if len(body) > _MAX_DELETE_BODY or hashlib.md5(body).digest() != expected:
            raise exc.InvalidDigest("The Content-MD5 you specified did not match what was received."
                                    ).with_detail("Content-MD5", request.header("content-md5"))
        keys, quiet = _parse_delete_request(body)
        for name in keys:
            validate_key(name)
        for name in keys:
            self.backend.delete_object(bucket, name)
        url = request.params.get("encoding-type") == "url"
        out = [XML_DECLARATION, "<DeleteResult>"]
        if url:
            out.append(_element("EncodingType", "url"))
        if not quiet:
            out += [f"<Deleted>{_element('Key', _listed(name, url))}</Deleted>" for name in keys]
        out.append("</DeleteResult>\n")
        return _xml_reply("".join(out).encode("utf-8"))


_MAX_DELETE_BODY = 4 * 1024 * 1024  # 1,000 keys of at most 1,023 bytes, escaped, fit well within this


def _parse_delete_request(body: bytes) -> tuple[list[str], bool]:
    """(keys, quiet) of a DeleteMultipleObjects body; MalformedXML when it is not one."""
    def malformed(why: str) -> exc.OssError:
        return exc.OssError(f"The XML you provided was not well-formed or did not validate: {why}.",
                            code="MalformedXML", http_status=400)

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as error:
        raise malformed(str(error)) from None
    if root.tag != "Delete":
        raise malformed(f"the root element is <{root.tag}>, not <Delete>")
    keys = [(node.findtext("Key") or "") for node in root.findall("Object")]
    if not keys or len(keys) > MAX_LIST_KEYS:
        raise malformed(f"{len(keys)} objects; give 1 to {MAX_LIST_KEYS}")
    return keys, (root.findtext("Quiet") or "false").strip().lower() == "true"


def _unsupported(operation: str, request: HttpRequest, key: str | None) -> exc.OssError:
    if operation == "MethodNotAllowed":
        return exc.MethodNotAllowed(Method=request.method, ResourceType="Object" if key else "Bucket")
    return exc.NotImplementedByEmulator(
        f"The local OSS does not implement {operation} (it serves PutObject, GetObject, HeadObject, "
        "GetObjectMeta, DeleteObject, ListObjects(V2), PutBucket, DeleteBucket and ListBuckets).")


def _max_keys(params: dict[str, str]) -> int:
    raw = params.get("max-keys", "")
    if raw == "":
        return 100
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_LIST_KEYS:
        raise exc.InvalidArgument(f"Argument max-keys must be an integer between 0 and {MAX_LIST_KEYS}.",
                                  ArgumentName="max-keys", ArgumentValue=raw)
    return value


def _override(headers: list[tuple[str, str]], overrides: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not overrides:
        return headers
    replaced = {name.lower() for name, _ in overrides}
    return [(n, v) for n, v in headers if n.lower() not in replaced] + overrides


def _xml_reply(body: bytes) -> Reply:
    return Reply(200, [("Content-Type", "application/xml")], body)


class AdminResponse:
    """Unsigned test endpoints under ``/_localoss/``, answered to loopback clients only.

    GET  /_localoss/requests          every recorded request (JSON list of RecordedRequest fields)
    GET  /_localoss/events            every emitted event (JSON list of FC3 OSS events)
    GET  /_localoss/buckets           bucket names
    GET  /_localoss/objects?bucket=B  the keys of bucket B
    POST /_localoss/config            JSON object: fail_next ({"n", "code", "status", "message"} or n),
                                      slow_next ({"n", "seconds"}), max_clock_skew, max_object_size
    POST /_localoss/reset             forget requests, events and faults; delete every object
    """

    def __init__(self, backend: OssBackend) -> None:
        self.backend = backend

    def dispatch(self, request: HttpRequest) -> Reply:
        if not is_loopback(request.client_host):
            return _json(403, {"Code": "Forbidden", "Message": "Admin endpoints answer loopback only."})
        route = (request.method, request.path)
        if route == ("GET", ADMIN_PREFIX + "requests"):
            return _json(200, self.backend.snapshot_requests())
        if route == ("GET", ADMIN_PREFIX + "events"):
            return _json(200, self.backend.snapshot_events())
        if route == ("GET", ADMIN_PREFIX + "buckets"):
            return _json(200, [info.name for info in self.backend.list_buckets()])
        if route == ("GET", ADMIN_PREFIX + "objects"):
            return _json(200, self.backend.keys(request.params.get("bucket", "")))
        if route == ("POST", ADMIN_PREFIX + "reset"):
            self.backend.reset()
            return _json(200, {"ok": True})
        if route == ("POST", ADMIN_PREFIX + "config"):
            try:
                self.backend.configure(**json_object(request.body.read(1024 * 1024)))
            except (ValueError, TypeError) as error:
                return _json(400, {"Code": "InvalidConfig", "Message": str(error)})
            return _json(200, {"ok": True})
        return _json(404, {"Code": "NotFound",
                           "Message": f"No admin endpoint {request.method} {request.path}."})


def _json(status: int, body: Any) -> Reply:
    return Reply(status, [("Content-Type", "application/json")], json.dumps(body).encode("utf-8"))

