"""``LocalOss``: the local OSS as a threaded HTTP/1.1 server on loopback, port 0 by default.

    with LocalOss() as oss:
        c = oss.credentials
        provider = oss2.credentials.StaticCredentialsProvider(c.access_key_id, c.access_key_secret,
                                                              c.security_token)
        bucket = oss2.Bucket(oss2.ProviderAuthV4(provider), oss.endpoint, "chatapp-mass", region=c.region_id)
        bucket.put_object("lists/march.csv", b"to\\n8613800000000\\n")
        assert oss.backend.events[0]["events"][0]["oss"]["object"]["key"] == "lists/march.csv"

Bodies stream both ways: an upload (``Content-Length`` or ``Transfer-Encoding: chunked``) is handed to the
backend as a stream it copies to disk in chunks; a download is sent from the open file with
``socket.sendfile``. Keep-alive is on (``requests`` pools connections); a request whose body was not read
(refused before the upload was consumed) is drained, up to :data:`DRAIN_LIMIT` bytes, so the client reads
the error instead of a reset; past that the connection is closed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .._accounts import DEFAULT_REGION, resolve_credentials
from .._http import LocalService, LoopbackHandler, LoopbackServer
from .exceptions import OssError
from .models import OssBackend, validate_bucket_name
from .responses import ADMIN_PREFIX, AdminResponse, HttpRequest, OssResponse, Reply

log = logging.getLogger(__name__)

DEFAULT_BUCKETS = ("chatapp-mass",)
DRAIN_LIMIT = 256 * 1024 * 1024  # read at most this much of an unread upload before answering
MAX_REQUEST_LINE = 65536
_CHUNK = 256 * 1024


class IncompleteBody(ConnectionError):
    """The client closed the connection before sending the whole body."""


class RequestBody:
    """The request body as a read-once stream: ``Content-Length`` bytes, or the chunked coding decoded."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool = False) -> None:
        self._rfile = rfile
        self._remaining = 0 if chunked else (length or 0)
        self._chunked = chunked
        self._chunk_left = 0
        self._done = not chunked and not length

    def read(self, size: int = -1, /) -> bytes:
        if self._done:
            return b""
        if size is None or size < 0:
            parts = []
            while part := self.read(_CHUNK):
                parts.append(part)
            return b"".join(parts)
        return self._read_chunked(size) if self._chunked else self._read_plain(size)

    def drain(self, limit: int) -> bool:
        """Discard what is left; False when more than ``limit`` bytes remain (then close the connection)."""
        if self._done:
            return True
        if not self._chunked and self._remaining > limit:
            return False
        drained = 0
        while chunk := self.read(_CHUNK):
            drained += len(chunk)
            if drained > limit:
                return False
        return True

    def _read_plain(self, size: int) -> bytes:
        data: bytes = self._rfile.read(min(size, self._remaining))
        if not data:
            raise IncompleteBody(f"the client sent the body short by {self._remaining} bytes")
        self._remaining -= len(data)
        self._done = self._remaining == 0
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            if not line:
                raise IncompleteBody("the client closed the connection inside a chunked body")
            try:
                self._chunk_left = int(line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                raise IncompleteBody(f"bad chunk size line {line[:40]!r}") from None
            if self._chunk_left == 0:
                while self._rfile.readline(65536) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self._done = True
                return b""
        data: bytes = self._rfile.read(min(size, self._chunk_left))
        if not data:
            raise IncompleteBody("the client closed the connection inside a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(8)  # the CRLF after the chunk data
        return data


class _Handler(LoopbackHandler):
    server: _Server

    def version_string(self) -> str:
        return "AliyunOSS"

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
                self.send_error(414)
                self.close_connection = True
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():  # it has answered already
                return
            self._serve()
            self.wfile.flush()
        except (TimeoutError, ConnectionError, OSError):  # the client went away or cut its body short
            self.close_connection = True

    def _serve(self) -> None:
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header is not None and not chunked else None
            if length is not None and length < 0:
                raise ValueError(length_header)
        except ValueError:
            self.send_error(400, "Bad Content-Length")
            self.close_connection = True
            return
        body = RequestBody(self.rfile, length, chunked)
        request = HttpRequest(
            self.command, self.path, list(self.headers.items()), body, client_host=self.client_address[0]
        )
        if request.path.startswith(ADMIN_PREFIX):
            reply = self.server.admin.dispatch(request)
        else:
            reply = self.server.oss.dispatch(request)
        try:
            if not body.drain(DRAIN_LIMIT):
                reply.close_connection = True
            self._send(reply)
        finally:
            reply.close()

    def _send(self, reply: Reply) -> None:
        if reply.latency > 0:
            self.server.stopping.wait(reply.latency)  # after the work is done; stop() cuts it short
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(reply.content_length))
        if reply.close_connection:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if not reply.send_body or self.command == "HEAD":
            return
        if reply.stream is None:
            self.wfile.write(reply.body)
            return
        if reply.content_length == 0:  # an empty object: socket.sendfile with count 0 would send to EOF
            return
        self.wfile.flush()
        sent = self.connection.sendfile(reply.stream, reply.stream.tell(), reply.content_length)
        if sent != reply.content_length:  # the file shrank under us: the client must not wait for more
            self.close_connection = True


class _Server(LoopbackServer):
    thread_name = "local-oss"
    label = "local OSS"
    logger = log

    def __init__(self, address: tuple[str, int], backend: OssBackend, allow_v1_signatures: bool) -> None:
        self.backend = backend
        self.oss = OssResponse(backend, allow_v1_signatures=allow_v1_signatures)
        self.admin = AdminResponse(backend)
        super().__init__(address, _Handler)


class LocalOss(LocalService):
    """The local OSS endpoint; a context manager (start on enter, stop on exit).

    ``backend`` is shared if given (the caller closes it); otherwise one is built from ``data_dir`` and
    ``backend_options`` (see :class:`~.models.OssBackend`: account_id, max_clock_skew, max_object_size,
    event_delivery, url_encode_event_keys, min_part_size, clock, seed) and closed by :meth:`stop` — which removes its
    temporary directory unless ``data_dir`` was given. ``buckets`` are created on start (an existing one
    is kept as it is). One account is registered with ``credentials`` — generated (STS-style, with a
    security token, when ``sts``) unless ``access_key_id``/``access_key_secret`` (and ``security_token``)
    are given.

    Requests must be signed with V4 (region-scoped, as ``oss2.ProviderAuthV4`` with ``Bucket(...,
    region=credentials.region_id)``): V1 is refused (403 AccessDenied, EC 0002-00000080) as by a bucket
    created since 2025-09-01, unless ``allow_v1_signatures`` (an older bucket); see :mod:`.auth`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sts: bool = True,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        security_token: str | None = None,
        region_id: str = DEFAULT_REGION,
        backend: OssBackend | None = None,
        data_dir: str | None = None,
        buckets: Iterable[str] = DEFAULT_BUCKETS,
        allow_v1_signatures: bool = False,
        **backend_options: Any,
    ) -> None:
        if backend is not None and (backend_options or data_dir is not None):
            raise TypeError("pass either backend or data_dir/backend options, not both")
        self._owns_backend = backend is None
        self.allow_v1_signatures = allow_v1_signatures
        self.backend = (
            backend
            if backend is not None
            else OssBackend(data_dir=data_dir, region_id=region_id, **backend_options)
        )
        self.credentials = resolve_credentials(
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            security_token=security_token,
            region_id=region_id,
            sts=sts,
        )
        self.backend.add_account(
            self.credentials.access_key_id,
            self.credentials.access_key_secret,
            self.credentials.security_token,
        )
        self.buckets = tuple(buckets)
        for name in self.buckets:
            try:
                validate_bucket_name(name)
            except OssError:
                raise ValueError(
                    f"{name!r} is not a valid bucket name (3-63 characters: a-z, 0-9 and '-', "
                    "starting and ending with a letter or digit)"
                ) from None
        super().__init__(host, port)

    def _new_server(self) -> _Server:
        return _Server(self._address, self.backend, self.allow_v1_signatures)

    # --- lifecycle --------------------------------------------------------------------------------------
    def _before_start(self) -> None:
        for name in self.buckets:
            self.backend.create_bucket(name)

    def stop(self) -> None:
        if self._stop_server() and self._owns_backend:
            self.backend.close()

    # --- where it is ------------------------------------------------------------------------------------
    @property
    def bucket_name(self) -> str | None:
        return self.buckets[0] if self.buckets else None

    def describe(self) -> dict[str, Any]:
        """The JSON line the CLI prints: service, endpoint, buckets, region and credentials."""
        return {
            "service": "oss",
            "endpoint": self.endpoint,
            "bucket": self.bucket_name,
            "buckets": list(self.buckets),
            "region_id": self.credentials.region_id,
            "access_key_id": self.credentials.access_key_id,
            "access_key_secret": self.credentials.access_key_secret,
            "security_token": self.credentials.security_token,
            "data_dir": self.backend.data_dir,
        }

    def oss2_auth(self) -> Any:
        """``oss2.ProviderAuthV4`` over these credentials (the token included): what a new bucket accepts."""
        import oss2

        c = self.credentials
        provider = oss2.credentials.StaticCredentialsProvider(
            c.access_key_id, c.access_key_secret, c.security_token or ""
        )
        return oss2.ProviderAuthV4(provider)

    def oss2_bucket(self, name: str | None = None, **bucket_options: Any) -> Any:
        """An ``oss2.Bucket`` on this endpoint with these credentials, signing V4 for this region (``oss2``
        imported on first use)."""
        import oss2

        bucket = name or self.bucket_name
        if not bucket:
            raise ValueError("name a bucket: this LocalOss was started without buckets")
        bucket_options.setdefault("region", self.credentials.region_id)
        return oss2.Bucket(self.oss2_auth(), self.endpoint, bucket, **bucket_options)
