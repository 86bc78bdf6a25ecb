"""HTTP in, reply out: parse a path-style OSS request, check its signature, call the backend, shape the reply.

Longer than 500 lines: one parser and reply shaper per OSS operation the SDK calls, with the XML bodies OSS
returns.

Addressing: ``oss2`` uses path style for an IP or ``localhost`` endpoint, so ``/`` is the service
(ListBuckets), ``/<bucket>/`` (or ``/<bucket>``) a bucket and ``/<bucket>/<percent-encoded key>`` an object.

Authentication (V4 signatures; V1 refused unless allowed) lives in :mod:`.auth`, called once per request.

Operations: buckets (Put/Delete/Head, ListObjects V1/V2, ListMultipartUploads, DeleteMultipleObjects) and
objects (Put/Get/Head/GetObjectMeta/Delete, CopyObject, InitiateMultipartUpload, UploadPart,
CompleteMultipartUpload, AbortMultipartUpload, ListParts); any other sub-resource is 501 NotImplemented
(UploadPartCopy, PostObject, ACL, tagging, ...).

No business rules here: those live in :mod:`.models`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from alibaba_localcloud import ram
from alibaba_localcloud._accounts import Account
from alibaba_localcloud._http import RequestHead, is_loopback, json_object

from . import exceptions as exc
from .auth import SUBRESOURCES, OssAuthenticator, http_date, query_params
from .models import (
    MAX_LIST_KEYS,
    MAX_LIST_PARTS,
    MAX_LIST_UPLOADS,
    MAX_PART_NUMBER,
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
    validate_part_number,
)

ADMIN_PREFIX = "/_localoss/"
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
MAX_COMPLETE_BODY = 4 * 1024 * 1024  # 10,000 parts of ~100 bytes each, with room

_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
# sub-resources the emulator serves; any other one is 501 NotImplemented
_BUCKET_SUBRESOURCES = frozenset({"continuation-token", "security-token", "delete", "uploads"})
_OBJECT_SUBRESOURCES = frozenset(
    {"objectMeta", "security-token", "uploads", "uploadId", "partNumber", *_RESPONSE_OVERRIDES}
)
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
def ram_requests(
    operation: str, request: HttpRequest, bucket: str | None, key: str | None, region: str, owner: str
) -> list[tuple[str, str]]:
    """The RAM ``(action, resource)`` pairs an OSS operation is authorized as, per OSS's "RAM Policy"
    page (alibabacloud.com/help/en/oss/user-guide/how-oss-works-with-ram, its action table): HeadObject and
    GetObjectMeta are ``oss:GetObject``; ListObjects(V2) ``oss:ListObjects`` on the bucket; the multipart
    upload steps ``oss:PutObject``; CopyObject ``oss:GetObject`` on the source and ``oss:PutObject`` on the
    target. ASSUMPTIONS (strict): HeadBucket is ``oss:GetBucketInfo``; DeleteMultipleObjects is
    ``oss:DeleteObject`` on ``BUCKET/*`` (a policy narrower than the whole bucket refuses it); an operation
    the emulator does not serve is authorized as ``oss:<Operation>`` on the bucket or object."""
    obj = ram.oss_resource(region, owner, bucket, key)
    on_bucket = ram.oss_resource(region, owner, bucket)
    table: dict[str, list[tuple[str, str]]] = {
        "ListBuckets": [("oss:ListBuckets", ram.oss_resource(region, owner))],
        "PutBucket": [("oss:PutBucket", on_bucket)],
        "DeleteBucket": [("oss:DeleteBucket", on_bucket)],
        "HeadBucket": [("oss:GetBucketInfo", on_bucket)],
        "ListObjects": [("oss:ListObjects", on_bucket)],
        "ListObjectsV2": [("oss:ListObjects", on_bucket)],
        "ListMultipartUploads": [("oss:ListMultipartUploads", on_bucket)],
        "DeleteMultipleObjects": [("oss:DeleteObject", ram.oss_resource(region, owner, bucket, "*"))],
        "GetObject": [("oss:GetObject", obj)],
        "HeadObject": [("oss:GetObject", obj)],
        "GetObjectMeta": [("oss:GetObject", obj)],
        "PutObject": [("oss:PutObject", obj)],
        "InitiateMultipartUpload": [("oss:PutObject", obj)],
        "UploadPart": [("oss:PutObject", obj)],
        "CompleteMultipartUpload": [("oss:PutObject", obj)],
        "AbortMultipartUpload": [("oss:AbortMultipartUpload", obj)],
        "ListParts": [("oss:ListParts", obj)],
        "DeleteObject": [("oss:DeleteObject", obj)],
    }
    if operation == "CopyObject":
        source_bucket, source_key = parse_copy_source(request.header("x-oss-copy-source") or "")
        return [
            ("oss:GetObject", ram.oss_resource(region, owner, source_bucket, source_key)),
            ("oss:PutObject", obj),
        ]
    known = table.get(operation)
    if known is not None:
        return known
    name = operation if operation.isalnum() else "UnknownOperation"
    return [(f"oss:{name}", obj if key is not None else on_bucket)]


def error_xml(error: exc.OssError, request_id: str, host_id: str) -> bytes:
    parts = [
        f"<Code>{escape(error.code)}</Code>",
        f"<Message>{escape(error.message)}</Message>",
        f"<RequestId>{request_id}</RequestId>",
        f"<HostId>{escape(host_id)}</HostId>",
    ]
    parts += [f"<{name}>{escape(value)}</{name}>" for name, value in error.details.items()]
    parts += [xml for xml in (error.detail_xml,) if xml]
    return (XML_DECLARATION + "<Error>\n  " + "\n  ".join(parts) + "\n</Error>\n").encode("utf-8")


def object_headers(info: ObjectInfo, *, whole: bool = True) -> list[tuple[str, str]]:
    headers = [
        ("Content-Type", info.content_type),
        ("ETag", info.quoted_etag),
        ("Last-Modified", http_date(info.last_modified)),
        ("Accept-Ranges", "bytes"),
        ("x-oss-object-type", info.object_type),
        ("x-oss-storage-class", info.storage_class),
        ("x-oss-hash-crc64ecma", info.crc64),
    ]
    if whole and info.content_md5:  # a multipart object has none (aliyun-oss-php-sdk issue #32)
        headers.append(("Content-MD5", info.content_md5))
    headers += [(name, value) for name, value in info.headers.items()]
    headers += [(name, value) for name, value in sorted(info.user_meta.items())]
    return headers


def _element(name: str, value: Any) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _listed(value: str, url: bool) -> str:
    return quote(value, safe="/") if url else value


def list_objects_xml(
    bucket: str,
    page: ListPage,
    *,
    owner: str,
    url: bool,
    v2: bool,
    prefix: str,
    delimiter: str,
    max_keys: int,
    marker: str = "",
    start_after: str = "",
    continuation_token: str = "",
    fetch_owner: bool = True,
) -> bytes:
    out = [
        XML_DECLARATION,
        "<ListBucketResult>",
        _element("Name", bucket),
        _element("Prefix", _listed(prefix, url)),
    ]
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
        out += [
            "<Contents>",
            _element("Key", _listed(info.key, url)),
            _element("LastModified", iso8601(info.last_modified)),
            _element("ETag", info.quoted_etag),
            _element("Type", info.object_type),
            _element("Size", info.size),
            _element("StorageClass", info.storage_class),
        ]
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


def parse_copy_source(header: str) -> tuple[str, str]:
    """``/<bucket>/<url-encoded key>`` (``oss2/api.py::copy_object``) -> (bucket, key)."""
    if not header.startswith("/"):
        raise exc.InvalidArgument(
            "x-oss-copy-source must be /<bucket>/<url-encoded key>.",
            ArgumentName="x-oss-copy-source",
            ArgumentValue=header,
        )
    path, _, query = header.partition("?")
    if query:
        raise exc.NotImplementedByEmulator(
            "The local OSS has no versioning: x-oss-copy-source takes no versionId."
        )
    bucket, sep, raw_key = path[1:].partition("/")
    if not sep or not bucket or not raw_key:
        raise exc.InvalidArgument(
            "x-oss-copy-source must be /<bucket>/<url-encoded key>.",
            ArgumentName="x-oss-copy-source",
            ArgumentValue=header,
        )
    try:
        return unquote(bucket), unquote(raw_key, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise exc.InvalidObjectName("The object name must be valid UTF-8.", Key=raw_key) from None


def parse_complete_body(body: bytes) -> list[tuple[int, str]]:
    """The (PartNumber, ETag) pairs of a CompleteMultipartUpload body, in the order given; MalformedXML
    when it is not that document."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise exc.MalformedXML() from None
    if root.tag != "CompleteMultipartUpload":
        raise exc.MalformedXML()
    parts: list[tuple[int, str]] = []
    for node in root.findall("Part"):
        number_text, etag = node.findtext("PartNumber"), node.findtext("ETag")
        if number_text is None or etag is None:
            raise exc.MalformedXML("Each Part needs a PartNumber and an ETag.")
        try:
            number = int(number_text.strip())
        except ValueError:
            raise exc.MalformedXML(f"PartNumber {number_text!r} is not a number.") from None
        validate_part_number(number)
        parts.append((number, etag))
    return parts


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
            if account.policy is not None:
                self._authorize(account, operation, request, bucket, key)
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
        backend.record_request(
            method=request.method,
            bucket=bucket,
            key=key,
            operation=operation,
            status=reply.status,
            code=reply.code,
            request_id=request_id,
            access_key_id=access_key_id,
            client_host=request.client_host,
            arrived_at=arrived_at,
        )
        return reply

    def error_reply(self, error: exc.OssError, request: HttpRequest, request_id: str) -> Reply:
        host_id = request.header("host") or f"oss-{self.backend.region_id}.aliyuncs.com"
        body = error_xml(error, request_id, host_id)
        reply = Reply(error.http_status, [("Content-Type", "application/xml")], body, code=error.code)
        if request.method == "HEAD":
            reply.headers.append(("x-oss-err", base64.b64encode(body).decode("ascii")))
            reply.body, reply.length = b"", 0
        return reply

    # --- RAM ------------------------------------------------------------------------------------------
    def _authorize(
        self, account: Account, operation: str, request: HttpRequest, bucket: str | None, key: str | None
    ) -> None:
        """A role's request, refused unless its policy allows every action it takes (:func:`ram_requests`)."""
        region, owner = self.backend.region_id, self.backend.account_id
        for action, resource in ram_requests(operation, request, bucket, key, region, owner):
            decision = account.authorize(action, resource)
            if not decision.allowed:
                raise exc.ram_denied(action, decision.value, owner, account.role or account.access_key_id)

    # --- routing ----------------------------------------------------------------------------------------
    def _route(self, request: HttpRequest, bucket: str | None, key: str | None) -> tuple[str, Handler | None]:
        """The operation's name and handler (``None``: known but not served -> 405/501 after auth)."""
        method, params = request.method, request.params
        if bucket is None:
            return ("ListBuckets", self._list_buckets) if method == "GET" else ("MethodNotAllowed", None)
        if key is None:
            extra = sorted(
                name for name in params if name in SUBRESOURCES and name not in _BUCKET_SUBRESOURCES
            )
            if extra:
                return f"{method} ?{extra[0]}", None
            if method == "PUT":
                return "PutBucket", self._put_bucket
            if method == "GET" and "uploads" in params:
                return "ListMultipartUploads", self._list_multipart_uploads
            if "uploads" in params:
                return "MethodNotAllowed", None
            if method == "GET":
                if params.get("list-type") == "2":
                    return "ListObjectsV2", self._list_objects_v2
                return "ListObjects", self._list_objects
            if method == "DELETE":
                return "DeleteBucket", self._delete_bucket
            if method == "HEAD":
                return "HeadBucket", self._head_bucket
            if method == "POST":
                return (
                    ("DeleteMultipleObjects", self._delete_multiple_objects)
                    if "delete" in params
                    else ("PostObject", None)
                )
            return "MethodNotAllowed", None
        extra = sorted(name for name in params if name in SUBRESOURCES and name not in _OBJECT_SUBRESOURCES)
        if extra:
            return f"{method} ?{extra[0]}", None
        if "uploads" in params:
            return (
                ("InitiateMultipartUpload", self._initiate_multipart_upload)
                if method == "POST"
                else ("MethodNotAllowed", None)
            )
        if "uploadId" in params:
            if method == "PUT":
                if "partNumber" not in params:
                    return "UploadPart", _missing_part_number
                return (
                    ("UploadPartCopy", None)
                    if request.header("x-oss-copy-source")
                    else ("UploadPart", self._upload_part)
                )
            if method == "POST":
                return "CompleteMultipartUpload", self._complete_multipart_upload
            if method == "DELETE":
                return "AbortMultipartUpload", self._abort_multipart_upload
            if method == "GET":
                return "ListParts", self._list_parts
            return "MethodNotAllowed", None
        if "partNumber" in params and method == "PUT":
            return "UploadPart", _missing_upload_id
        if method == "PUT":
            if request.header("x-oss-copy-source"):
                return "CopyObject", self._copy_object
            return "PutObject", self._put_object
        if method == "GET" and "objectMeta" not in params:
            return "GetObject", self._get_object
        if method == "HEAD":
            return (
                ("GetObjectMeta", self._get_object_meta)
                if "objectMeta" in params
                else ("HeadObject", self._head_object)
            )
        if method == "DELETE":
            return "DeleteObject", self._delete_object
        return "MethodNotAllowed", None

    # --- operations -------------------------------------------------------------------------------------
    def _list_buckets(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        owner = self.backend.account_id
        out = [
            XML_DECLARATION,
            "<ListAllMyBucketsResult>",
            "<Owner>",
            _element("ID", owner),
            _element("DisplayName", owner),
            "</Owner>",
            "<Buckets>",
        ]
        for info in self.backend.list_buckets():
            out += [
                "<Bucket>",
                _element("CreationDate", iso8601(info.created)),
                _element("ExtranetEndpoint", f"oss-{info.region}.aliyuncs.com"),
                _element("IntranetEndpoint", f"oss-{info.region}-internal.aliyuncs.com"),
                _element("Location", f"oss-{info.region}"),
                _element("Name", info.name),
                _element("Region", info.region),
                _element("StorageClass", info.storage_class),
                "</Bucket>",
            ]
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
        page = self.backend.list_objects(
            bucket, prefix=prefix, delimiter=delimiter, start_after=marker, max_keys=max_keys
        )
        return _xml_reply(
            list_objects_xml(
                bucket,
                page,
                owner=self.backend.account_id,
                url=url,
                v2=False,
                prefix=prefix,
                delimiter=delimiter,
                max_keys=max_keys,
                marker=marker,
            )
        )

    def _list_objects_v2(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        params = request.params
        prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
        token, start_after = params.get("continuation-token", ""), params.get("start-after", "")
        max_keys = _max_keys(params)
        url = params.get("encoding-type") == "url"
        position = decode_continuation_token(token) if token else start_after
        page = self.backend.list_objects(
            bucket, prefix=prefix, delimiter=delimiter, start_after=position, max_keys=max_keys
        )
        return _xml_reply(
            list_objects_xml(
                bucket,
                page,
                owner=self.backend.account_id,
                url=url,
                v2=True,
                prefix=prefix,
                delimiter=delimiter,
                max_keys=max_keys,
                start_after=start_after,
                continuation_token=token,
                fetch_owner=params.get("fetch-owner") == "true",
            )
        )

    def _put_object(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        validate_key(key)
        _check_length(request, self.backend.max_object_size)
        info = self.backend.put_object_stream(
            bucket,
            key,
            request.body,
            content_type=request.header("content-type"),
            user_meta=_user_meta(request),
            headers=_stored_headers(request),
            content_md5=request.header("content-md5"),
            forbid_overwrite=(request.header("x-oss-forbid-overwrite") or "").lower() == "true",
            request_id=request_id,
            source_ip=request.client_host,
        )
        return Reply(
            200,
            [
                ("ETag", info.quoted_etag),
                ("x-oss-hash-crc64ecma", info.crc64),
                ("Content-MD5", info.content_md5),
            ],
        )

    def _get_object(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        info, body = self.backend.open_object(bucket, key)
        try:
            standard = (request.header("x-oss-range-behavior") or "").lower() == "standard"
            selected = resolve_range(request.header("range"), info.size, standard=standard)
        except exc.OssError:
            body.close()
            raise
        overrides = [
            (header, value)
            for name, value in request.params.items()
            if (header := _RESPONSE_OVERRIDES.get(name)) is not None
        ]
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
        headers = [
            ("ETag", info.quoted_etag),
            ("Last-Modified", http_date(info.last_modified)),
            ("x-oss-hash-crc64ecma", info.crc64),
        ]
        return Reply(200, headers, length=info.size, send_body=False)

    def _delete_object(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        validate_key(key)
        self.backend.delete_object(bucket, key)
        return Reply(204)

    # --- CopyObject -------------------------------------------------------------------------------------
    def _copy_object(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        """CopyObject (https://help.aliyun.com/document_detail/31979.html). ``x-oss-copy-source`` is
        ``/<bucket>/<url-encoded key>`` (``oss2/api.py::copy_object`` quotes the key with no safe
        characters); the reply is ``<CopyObjectResult><ETag/><LastModified/></CopyObjectResult>``.
        ASSUMPTIONS: the ETag and CRC-64 also travel as headers (``oss2`` builds its result from the
        headers); ``versionId`` in the source and the ``x-oss-copy-source-if-*`` conditions are refused
        501 (no versioning here, conditions not emulated) rather than ignored."""
        validate_key(key)
        source_bucket, source_key = parse_copy_source(request.header("x-oss-copy-source") or "")
        if any(name.lower().startswith("x-oss-copy-source-if-") for name, _ in request.headers):
            raise exc.NotImplementedByEmulator(
                "The local OSS does not emulate x-oss-copy-source-if-* conditions."
            )
        directive = (request.header("x-oss-metadata-directive") or "COPY").upper()
        if directive not in ("COPY", "REPLACE"):
            raise exc.InvalidArgument(
                "x-oss-metadata-directive must be COPY or REPLACE.",
                ArgumentName="x-oss-metadata-directive",
                ArgumentValue=directive,
            )
        info = self.backend.copy_object(
            source_bucket,
            source_key,
            bucket,
            key,
            replace_metadata=directive == "REPLACE",
            content_type=request.header("content-type"),
            user_meta=_user_meta(request),
            headers=_stored_headers(request),
            forbid_overwrite=(request.header("x-oss-forbid-overwrite") or "").lower() == "true",
            request_id=request_id,
            source_ip=request.client_host,
        )
        body = (
            XML_DECLARATION
            + "<CopyObjectResult>"
            + _element("ETag", info.quoted_etag)
            + _element("LastModified", iso8601(info.last_modified))
            + "</CopyObjectResult>\n"
        )
        reply = _xml_reply(body.encode("utf-8"))
        reply.headers += [("ETag", info.quoted_etag), ("x-oss-hash-crc64ecma", info.crc64)]
        return reply

    # --- multipart upload -------------------------------------------------------------------------------
    def _initiate_multipart_upload(
        self, request: HttpRequest, bucket: str, key: str, request_id: str
    ) -> Reply:
        """``POST /<key>?uploads`` -> ``<InitiateMultipartUploadResult><Bucket/><Key/><UploadId/>``
        (help.aliyun.com/en/oss/developer-reference/initiatemultipartupload; ``oss2``'s
        ``parse_init_multipart_upload`` reads UploadId)."""
        validate_key(key)
        upload = self.backend.initiate_multipart_upload(
            bucket,
            key,
            content_type=request.header("content-type"),
            user_meta=_user_meta(request),
            headers=_stored_headers(request),
        )
        url = request.params.get("encoding-type") == "url"
        body = (
            XML_DECLARATION
            + "<InitiateMultipartUploadResult>"
            + _element("Bucket", bucket)
            + _element("Key", _listed(key, url))
            + _element("UploadId", upload.upload_id)
            + (_element("EncodingType", "url") if url else "")
            + "</InitiateMultipartUploadResult>\n"
        )
        return _xml_reply(body.encode("utf-8"))

    def _upload_part(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        """``PUT /<key>?partNumber=N&uploadId=U``: the part's ETag (quoted), CRC-64 and Content-MD5 as
        headers, like PutObject (``oss2``'s ``upload_part`` compares the CRC)."""
        params = request.params
        raw_number = params.get("partNumber", "")
        try:
            number = int(raw_number)
        except ValueError:
            raise exc.InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive.",
                ArgumentName="partNumber",
                ArgumentValue=raw_number,
            ) from None
        _check_length(request, self.backend.max_object_size)
        part = self.backend.upload_part_stream(
            bucket,
            key,
            params.get("uploadId", ""),
            number,
            request.body,
            content_md5=request.header("content-md5"),
        )
        return Reply(
            200,
            [
                ("ETag", part.quoted_etag),
                ("x-oss-hash-crc64ecma", part.crc64),
                ("Content-MD5", part.content_md5),
            ],
        )

    def _complete_multipart_upload(
        self, request: HttpRequest, bucket: str, key: str, request_id: str
    ) -> Reply:
        """``POST /<key>?uploadId=U`` with ``<CompleteMultipartUpload><Part><PartNumber/><ETag/></Part>...``
        (``oss2``'s ``to_complete_upload_request``), or no body with ``x-oss-complete-all: yes``. The reply:
        ``<CompleteMultipartUploadResult><Location/><Bucket/><Key/><ETag/>`` plus the ETag and CRC-64
        headers ``oss2``'s ``PutObjectResult`` reads (it checks the CRC against the parts' combined CRC)."""
        body = request.body.read(MAX_COMPLETE_BODY + 1)
        if len(body) > MAX_COMPLETE_BODY:
            raise exc.MalformedXML("The CompleteMultipartUpload body is too large.")
        complete_all = (request.header("x-oss-complete-all") or "").lower() == "yes"
        if complete_all and body.strip():
            # help.aliyun.com/document_detail/480267.html; ASSUMPTION: the code is InvalidArgument
            raise exc.InvalidArgument(
                "With x-oss-complete-all: yes the request must have no body.",
                ArgumentName="x-oss-complete-all",
                ArgumentValue="yes",
            )
        parts = None if complete_all else parse_complete_body(body)
        info = self.backend.complete_multipart_upload(
            bucket,
            key,
            request.params.get("uploadId", ""),
            parts,
            forbid_overwrite=(request.header("x-oss-forbid-overwrite") or "").lower() == "true",
            request_id=request_id,
            source_ip=request.client_host,
        )
        url = request.params.get("encoding-type") == "url"
        host = request.header("host") or f"oss-{self.backend.region_id}.aliyuncs.com"
        out = (
            XML_DECLARATION
            + "<CompleteMultipartUploadResult>"
            + (_element("EncodingType", "url") if url else "")
            + _element("Location", f"http://{host}/{bucket}/{quote(key, safe='/')}")
            + _element("Bucket", bucket)
            + _element("Key", _listed(key, url))
            + _element("ETag", info.quoted_etag)
            + "</CompleteMultipartUploadResult>\n"
        )
        reply = _xml_reply(out.encode("utf-8"))
        reply.headers += [("ETag", info.quoted_etag), ("x-oss-hash-crc64ecma", info.crc64)]
        return reply

    def _abort_multipart_upload(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        """``DELETE /<key>?uploadId=U`` -> 204 (help.aliyun.com AbortMultipartUpload)."""
        self.backend.abort_multipart_upload(bucket, key, request.params.get("uploadId", ""))
        return Reply(204)

    def _list_parts(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        """``GET /<key>?uploadId=U`` -> ``ListPartsResult`` (alibabacloud.com/help/en/oss/developer-reference/
        listparts: Bucket, Key, UploadId, PartNumberMarker, NextPartNumberMarker, MaxParts, IsTruncated,
        Part{PartNumber, LastModified, ETag, Size}); max-parts 1-1000, default 1000."""
        params = request.params
        marker = _int_param(params, "part-number-marker", 0, 0, MAX_PART_NUMBER)
        max_parts = _int_param(params, "max-parts", MAX_LIST_PARTS, 1, MAX_LIST_PARTS)
        page = self.backend.list_parts(
            bucket, key, params.get("uploadId", ""), marker=marker, max_parts=max_parts
        )
        url = params.get("encoding-type") == "url"
        out = [
            XML_DECLARATION,
            "<ListPartsResult>",
            _element("Bucket", bucket),
            _element("Key", _listed(key, url)),
            _element("UploadId", page.upload.upload_id),
        ]
        if url:
            out.append(_element("EncodingType", "url"))
        out += [
            _element("PartNumberMarker", marker),
            _element("NextPartNumberMarker", page.next_marker if page.next_marker is not None else ""),
            _element("MaxParts", max_parts),
            _element("IsTruncated", "true" if page.is_truncated else "false"),
        ]
        for part in page.parts:
            out += [
                "<Part>",
                _element("PartNumber", part.part_number),
                _element("LastModified", iso8601(part.last_modified)),
                _element("ETag", part.quoted_etag),
                _element("HashCrc64ecma", part.crc64),
                _element("Size", part.size),
                "</Part>",
            ]
        out.append("</ListPartsResult>\n")
        return _xml_reply("".join(out).encode("utf-8"))

    def _list_multipart_uploads(self, request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
        """``GET /?uploads`` -> ``ListMultipartUploadsResult`` (``oss2``'s ``parse_list_multipart_uploads``:
        IsTruncated, NextKeyMarker, NextUploadIdMarker, Upload{Key, UploadId, Initiated}). ASSUMPTION: a
        delimiter is refused 501 (not emulated)."""
        params = request.params
        if params.get("delimiter"):
            raise exc.NotImplementedByEmulator(
                "The local OSS lists multipart uploads without a delimiter only."
            )
        prefix = params.get("prefix", "")
        key_marker, upload_id_marker = params.get("key-marker", ""), params.get("upload-id-marker", "")
        max_uploads = _int_param(params, "max-uploads", MAX_LIST_UPLOADS, 1, MAX_LIST_UPLOADS)
        page = self.backend.list_multipart_uploads(
            bucket,
            prefix=prefix,
            key_marker=key_marker,
            upload_id_marker=upload_id_marker,
            max_uploads=max_uploads,
        )
        url = params.get("encoding-type") == "url"
        last = page.uploads[-1] if page.is_truncated and page.uploads else None
        out = [XML_DECLARATION, "<ListMultipartUploadsResult>", _element("Bucket", bucket)]
        if url:
            out.append(_element("EncodingType", "url"))
        out += [
            _element("KeyMarker", _listed(key_marker, url)),
            _element("UploadIdMarker", upload_id_marker),
            _element("NextKeyMarker", _listed(last.key, url) if last else ""),
            _element("NextUploadIdMarker", last.upload_id if last else ""),
            _element("Delimiter", ""),
            _element("Prefix", _listed(prefix, url)),
            _element("MaxUploads", max_uploads),
            _element("IsTruncated", "true" if page.is_truncated else "false"),
        ]
        for upload in page.uploads:
            out += [
                "<Upload>",
                _element("Key", _listed(upload.key, url)),
                _element("UploadId", upload.upload_id),
                _element("Initiated", iso8601(upload.initiated)),
                "</Upload>",
            ]
        out.append("</ListMultipartUploadsResult>\n")
        return _xml_reply("".join(out).encode("utf-8"))

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
            raise exc.InvalidDigest(
                "The Content-MD5 you specified did not match what was received."
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


def _missing_part_number(request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
    """UploadPart without ``partNumber``: the documented answer (help.aliyun.com/en/oss/user-guide/0017-00000219)."""
    raise exc.InvalidArgument(
        "Unexpected query string parameter", ArgumentName="ResourceType", ArgumentValue="partNumber"
    )


def _missing_upload_id(request: HttpRequest, bucket: str, key: str, request_id: str) -> Reply:
    """ASSUMPTION: ``partNumber`` without ``uploadId`` is refused like a missing upload (0017-00000244)."""
    raise exc.NoSuchUpload("A part needs the uploadId that InitiateMultipartUpload returned.", UploadId="")


_MAX_DELETE_BODY = 4 * 1024 * 1024  # 1,000 keys of at most 1,023 bytes, escaped, fit well within this


def _parse_delete_request(body: bytes) -> tuple[list[str], bool]:
    """(keys, quiet) of a DeleteMultipleObjects body; MalformedXML when it is not one."""

    def malformed(why: str) -> exc.OssError:
        return exc.OssError(
            f"The XML you provided was not well-formed or did not validate: {why}.",
            code="MalformedXML",
            http_status=400,
        )

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
        f"The local OSS does not implement {operation} (it serves PutObject, CopyObject, GetObject, HeadObject, "
        "GetObjectMeta, DeleteObject, the multipart upload operations, ListObjects(V2), PutBucket, "
        "DeleteBucket and ListBuckets)."
    )


def _check_length(request: HttpRequest, limit: int) -> None:
    """MissingContentLength without a length or chunked coding; EntityTooLarge past ``limit``."""
    length_text = request.header("content-length")
    if length_text is None and not request.is_chunked:
        raise exc.MissingContentLength()
    try:
        length = int(length_text) if length_text is not None else None
    except ValueError:
        raise exc.InvalidArgument(
            "Content-Length is not a number.", ArgumentName="Content-Length", ArgumentValue=length_text
        ) from None
    if length is not None and length > limit:
        raise exc.EntityTooLarge(ProposedSize=length_text, MaxSizeAllowed=limit)


def _user_meta(request: HttpRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers if name.lower().startswith("x-oss-meta-")}


def _stored_headers(request: HttpRequest) -> dict[str, str]:
    return {name: value for name in _STORED_HEADERS if (value := request.header(name)) is not None}


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise exc.InvalidArgument(
            f"Argument {name} must be an integer between {low} and {high}.",
            ArgumentName=name,
            ArgumentValue=raw,
        )
    return value


def _max_keys(params: dict[str, str]) -> int:
    raw = params.get("max-keys", "")
    if raw == "":
        return 100
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_LIST_KEYS:
        raise exc.InvalidArgument(
            f"Argument max-keys must be an integer between 0 and {MAX_LIST_KEYS}.",
            ArgumentName="max-keys",
            ArgumentValue=raw,
        )
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
        return _json(
            404, {"Code": "NotFound", "Message": f"No admin endpoint {request.method} {request.path}."}
        )


def _json(status: int, body: Any) -> Reply:
    return Reply(status, [("Content-Type", "application/json")], json.dumps(body).encode("utf-8"))
