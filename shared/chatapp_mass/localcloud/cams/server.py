"""``LocalCams``: the local CAMS as a threaded HTTP/1.1 server on loopback, port 0 by default.

    with LocalCams(latency=0.0) as cams:
        client = Client(Config(credential=..., endpoint=cams.host_port, protocol="HTTP",
                               region_id=cams.credentials.region_id))
        ...
        assert cams.backend.received_count_by_number() == {...}

Keep-alive is on (the SDK pools connections) and idle connections are never closed by the server, so a
pooled client never sees a spurious reset. The request line may be as long as the backend's
``max_request_line`` (http.server stops at 65,536 bytes; a 1,000-recipient call is ~93 KB); longer lines
are drained and answered 414 ``RequestURITooLong``.
"""

from __future__ import annotations

import http.client
import logging
import secrets
import socket
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .models import CamsBackend, Reply
from .responses import ADMIN_PREFIX, AdminResponse, CamsResponse, HttpRequest

log = logging.getLogger(__name__)

DEFAULT_REGION = "ap-southeast-1"
_DRAIN_LIMIT = 64 * 1024 * 1024  # never read more than this of an over-long request
_CHUNK = 65536


@dataclass(frozen=True)
class CamsCredentials:
    access_key_id: str
    access_key_secret: str
    security_token: str | None
    region_id: str = DEFAULT_REGION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate_credentials(*, sts: bool = True, region_id: str = DEFAULT_REGION) -> CamsCredentials:
    """Throw-away credentials shaped like the real ones (STS ids start with ``STS.``)."""
    if sts:
        return CamsCredentials("STS.local" + secrets.token_hex(10), secrets.token_urlsafe(30),
                               "CAIS.local." + secrets.token_urlsafe(96), region_id)
    return CamsCredentials("LTAI.local" + secrets.token_hex(8), secrets.token_urlsafe(30), None, region_id)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def handle_one_request(self) -> None:
        limit = self.server.backend.max_request_line
        try:
            self.raw_requestline = self.rfile.readline(limit + 3)  # + CRLF + one byte too many
            if len(self.raw_requestline.rstrip(b"\r\n")) > limit:
                self._answer_too_long()
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():  # it has answered already
                return
            self._serve()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True
        except (ConnectionError, OSError):  # the client went away
            self.close_connection = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = HttpRequest(self.command, self.path, list(self.headers.items()), body,
                              client_host=self.client_address[0])
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
        try:
            headers = http.client.parse_headers(self.rfile)
            length = int(headers.get("Content-Length") or 0)
            if 0 < length <= _DRAIN_LIMIT:
                self.rfile.read(length)
        except (http.client.HTTPException, ValueError):
            pass
        self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
        self._send(self.server.cams.too_long())

    def _send(self, reply: Reply) -> None:
        if reply.latency > 0:
            # after the attempt is recorded; stop() cuts it short
            self.server.stopping.wait(reply.latency)
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

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("local CAMS %s: " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops SYNs under a burst of new connections (1 s retries)

    def __init__(self, address: tuple[str, int], backend: CamsBackend) -> None:
        self.backend = backend
        self.cams = CamsResponse(backend)
        self.admin = AdminResponse(backend)
        self.stopping = threading.Event()
        self._live_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(target=self._work, args=(request, client_address),
                                  name=f"local-cams-{client_address[1]}", daemon=True)
        with self._live_lock:
            self._connections.add(request)
            self._workers.add(worker)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._live_lock:
                self._connections.discard(request)
                self._workers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("local CAMS: error while serving %s", client_address)

    def close_connections(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        with self._live_lock:
            connections, workers = list(self._connections), list(self._workers)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for worker in workers:
            worker.join(timeout)


class LocalCams:
    """The local CAMS endpoint; a context manager (start on enter, stop on exit).

    ``backend`` is shared if given; otherwise one is built from ``backend_options`` (see
    :class:`~.models.CamsBackend`: latency, latency_jitter, qps_limit, max_request_line, templates,
    throttle_probability, max_recipients, max_clock_skew, clock, seed). One account is registered with
    ``credentials`` — generated (STS-style when ``sts``) unless ``access_key_id``/``access_key_secret``
    (and ``security_token``) are given.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, sts: bool = True,
                 access_key_id: str | None = None, access_key_secret: str | None = None,
                 security_token: str | None = None, region_id: str = DEFAULT_REGION,
                 backend: CamsBackend | None = None, **backend_options: Any) -> None:
        if backend is not None and backend_options:
            raise TypeError("pass either backend or backend options, not both")
        self.backend = backend if backend is not None else CamsBackend(**backend_options)
        if access_key_id or access_key_secret:
            if not (access_key_id and access_key_secret):
                raise ValueError("access_key_id and access_key_secret go together")
            self.credentials = CamsCredentials(access_key_id, access_key_secret, security_token, region_id)
        else:
            self.credentials = generate_credentials(sts=sts, region_id=region_id)
        self.backend.add_account(self.credentials.access_key_id, self.credentials.access_key_secret,
                                 self.credentials.security_token)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> LocalCams:
        if self._server is not None:
            return self
        self._server = _Server(self._address, self.backend)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="local-cams", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(5.0)
        self._server = self._thread = None

    def __enter__(self) -> LocalCams:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- where it is ------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self._bound()[0]

    @property
    def port(self) -> int:
        return self._bound()[1]

    @property
    def host_port(self) -> str:
        """``127.0.0.1:PORT`` — what the SDK's ``Config(endpoint=..., protocol="HTTP")`` takes."""
        host, port = self._bound()
        return f"{host}:{port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host_port}"

    def describe(self) -> dict[str, Any]:
        """The JSON line the CLI prints: service, endpoint, region and credentials."""
        return {"service": "cams", "endpoint": self.endpoint, "region_id": self.credentials.region_id,
                "access_key_id": self.credentials.access_key_id,
                "access_key_secret": self.credentials.access_key_secret,
                "security_token": self.credentials.security_token}

    def _bound(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("LocalCams is not started; use start() or a with block")
        host, port = self._server.server_address[:2]
        if host in ("0.0.0.0", "::", ""):  # listening everywhere: clients on this machine use loopback
            host = "127.0.0.1"
        return str(host), int(port)
