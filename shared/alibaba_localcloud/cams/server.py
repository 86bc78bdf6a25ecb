"""``LocalCams``: the local CAMS as a threaded HTTP/1.1 server on loopback, port 0 by default.

    with LocalCams(latency=0.0) as cams:
        client = Client(Config(credential=..., endpoint=cams.host_port, protocol="HTTP",
                               region_id=cams.credentials.region_id))
        ...
        assert cams.backend.received_count_by_number() == {...}

Keep-alive is on (the SDK pools connections) and idle connections are never closed by the server, so a
pooled client never sees a spurious reset.

**Limits, as the gateway's.** The request line may be as long as the backend's ``max_request_line`` (16 KiB
by default); a longer one is drained and answered 414 with the gateway's HTML page. The body may be as large
as ``max_body`` (1 MiB); a larger one is drained and answered 413 with its HTML page (sources and
assumptions: ``models.py`` and ``exceptions.py``). The request line is read here, in
:meth:`_Handler.handle_one_request`, which replaces http.server's own (that one stops at 65,536 bytes with
its own 414), so the backend's limit is the only one. Every API request's line length is recorded
(``CamsBackend.longest_request_line``).

**Arrival time.** The service counts a call when it arrives, and the rate oracle
(``CamsBackend.max_calls_in_any_window``) uses that time. On Linux the server asks the kernel to timestamp
every received segment (``SO_TIMESTAMPNS``) and takes a request's arrival from the segment that carried its
request line, so a handler thread that wakes late (the GIL, a garbage collection in a busy test process)
does not shift or bunch arrivals. Elsewhere, or with an injected backend clock, it is the clock when the
request line has been read.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import socket
import struct
import sys
import time
from typing import Any

# CamsCredentials and generate_credentials were first defined here; callers still import them from here
from .._accounts import DEFAULT_REGION, resolve_credentials
from .._http import HttpRequest, LocalService, LoopbackHandler, LoopbackServer
from .models import CamsBackend, Reply
from .responses import ADMIN_PREFIX, AdminResponse, CamsResponse

log = logging.getLogger(__name__)

_DRAIN_LIMIT = 64 * 1024 * 1024  # never read more than this of an over-long request
_CHUNK = 65536


_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
_TIMESPEC = struct.Struct("qq")


class _StampedSocketIO(io.RawIOBase):
    """The handler's raw input: reads with ``recvmsg_into`` and keeps the kernel's receive timestamp of the
    first read since :meth:`mark` (None if nothing was read from the socket: the bytes were buffered)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
        self.first_stamp: float | None = None
        self._marked = False

    def mark(self) -> None:
        self.first_stamp, self._marked = None, True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size, ancillary, _, _ = self._sock.recvmsg_into([buffer], self._ancillary)
        if self._marked:
            self._marked = False
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
                    self.first_stamp = seconds + nanoseconds / 1e9
        return size


class _Handler(LoopbackHandler):
    server: _Server
    _stamped: _StampedSocketIO | None = None

    def setup(self) -> None:
        super().setup()
        if _SO_TIMESTAMPNS is not None and self.server.backend.clock is time.time:
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            except OSError:
                return
            self._stamped = _StampedSocketIO(self.connection)
            self.rfile = io.BufferedReader(self._stamped, io.DEFAULT_BUFFER_SIZE)

    def handle_one_request(self) -> None:
        limit = self.server.backend.max_request_line
        try:
            if self._stamped is not None:
                self._stamped.mark()
            self.raw_requestline = self.rfile.readline(limit + 3)  # + CRLF + one byte too many
            kernel = self._stamped.first_stamp if self._stamped is not None else None
            self._arrived_at = kernel if kernel is not None else self.server.backend.clock()
            if len(self.raw_requestline.rstrip(b"\r\n")) > limit:
                self._answer_too_long()
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():  # it has answered already
                return
            if not self.path.startswith(ADMIN_PREFIX):
                self.server.backend.note_request_line(len(self.raw_requestline.rstrip(b"\r\n")))
            self._serve()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
        except (ConnectionError, OSError):  # the client went away
            self.close_connection = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.backend.max_body and not self.path.startswith(ADMIN_PREFIX):
            self._answer_too_large(length)
            return
        body = self.rfile.read(length) if length > 0 else b""
        request = HttpRequest(
            self.command,
            self.path,
            list(self.headers.items()),
            body,
            client_host=self.client_address[0],
            arrived_at=self._arrived_at,
        )
        if request.path.startswith(ADMIN_PREFIX):
            reply = self.server.admin.dispatch(request)
        else:
            reply = self.server.cams.dispatch(request)
        self._send(reply)

    def _answer_too_long(self) -> None:
        """Read the rest of the request first, so closing does not reset the client before it reads."""
        self.close_connection = True
        line, drained = self.raw_requestline, len(self.raw_requestline)
        while not line.endswith(b"\n") and drained < _DRAIN_LIMIT:
            line = self.rfile.readline(_CHUNK)
            if not line:
                break
            drained += len(line)
        ending = 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
        self.server.backend.note_request_line(drained - ending)
        try:
            headers = http.client.parse_headers(self.rfile)
            length = int(headers.get("Content-Length") or 0)
            if 0 < length <= _DRAIN_LIMIT:
                self.rfile.read(length)
        except (http.client.HTTPException, ValueError):
            pass
        self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
        self._send(self.server.cams.too_long())

    def _answer_too_large(self, length: int) -> None:
        """Read (and drop) the body first, as for a long line, unless it is beyond reason: then close."""
        self.close_connection = True
        left = length if length <= _DRAIN_LIMIT else 0
        while left > 0:
            chunk = self.rfile.read(min(left, _CHUNK))
            if not chunk:
                break
            left -= len(chunk)
        self._send(self.server.cams.too_large(length))

    def _send(self, reply: Reply) -> None:
        if reply.latency > 0:
            # after the attempt is recorded; stop() cuts it short
            self.server.stopping.wait(reply.latency)
        if reply.drop:
            self.drop_connection()
            return
        payload = reply.payload()
        self.send_response(reply.http_status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        if reply.request_id:
            self.send_header("x-acs-request-id", reply.request_id)
        if reply.close_connection:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


class _Server(LoopbackServer):
    thread_name = "local-cams"
    label = "local CAMS"
    logger = log

    def __init__(self, address: tuple[str, int], backend: CamsBackend) -> None:
        self.backend = backend
        self.cams = CamsResponse(backend)
        self.admin = AdminResponse(backend)
        super().__init__(address, _Handler)
        if _SO_TIMESTAMPNS is not None and backend.clock is time.time:
            # On the listening socket, not only in the handler: an accepted socket inherits it, so the first
            # request of a new connection, which can reach the kernel before the handler thread runs, is
            # stamped when it arrived. Set only in the handler, the kernel stamps segments that were queued
            # before it with the time they are read (a late, bunched arrival in the oracle under load: seen
            # as 11 calls in one second that left 1.01 s apart). The listener also keeps the kernel's
            # receive timestamps on for as long as the server runs.
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)


class LocalCams(LocalService):
    """The local CAMS endpoint; a context manager (start on enter, stop on exit).

    ``backend`` is shared if given; otherwise one is built from ``backend_options`` (see
    :class:`~.models.CamsBackend`: latency, latency_jitter, qps_limit, max_request_line, max_body, templates,
    throttle_probability, max_recipients, max_clock_skew, clock, seed, receipt_options). One account is registered with
    ``credentials`` — generated (STS-style when ``sts``) unless ``access_key_id``/``access_key_secret``
    (and ``security_token``) are given.
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
        backend: CamsBackend | None = None,
        **backend_options: Any,
    ) -> None:
        if backend is not None and backend_options:
            raise TypeError("pass either backend or backend options, not both")
        self.backend = backend if backend is not None else CamsBackend(**backend_options)
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
        super().__init__(host, port)

    def _new_server(self) -> _Server:
        return _Server(self._address, self.backend)

    def _before_start(self) -> None:
        self.backend.receipts.open()  # the receipt pusher runs while the emulator does (receipts.py)

    def stop(self) -> None:
        """Stop the receipt pusher (joining its threads: none is left behind), then the server."""
        self.backend.close()
        super().stop()

    # --- where it is ------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The JSON line the CLI prints: service, endpoint, region and credentials."""
        return {
            "service": "cams",
            "endpoint": self.endpoint,
            "region_id": self.credentials.region_id,
            "access_key_id": self.credentials.access_key_id,
            "access_key_secret": self.credentials.access_key_secret,
            "security_token": self.credentials.security_token,
        }
