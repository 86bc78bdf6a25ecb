"""The HTTP plumbing every emulator shares: a threaded server that can cut its live connections, the
start/stop/``with`` life of a ``Local*`` service, the parsed request, and the admin endpoints' guards.

What differs between services (request-line limits, body streaming, how a reply is written, the JSON a
service describes itself with) stays in each service's ``server.py``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar


@dataclass
class RequestHead:
    """The request line and headers; a subclass adds ``body`` and ``client_host``, in that order."""

    method: str
    target: str  # the request-target as sent: path and query
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0] or "/"

    @property
    def query_string(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]


@dataclass
class HttpRequest(RequestHead):
    """A parsed HTTP request with its whole body, independent of the server framework (CAMS, Tablestore)."""

    body: bytes = b""
    client_host: str = "127.0.0.1"
    arrived_at: float | None = None  # when its request line was read (the service counts calls on arrival)


# --- admin endpoints ----------------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """Whether a client address is this machine (the admin endpoints answer nobody else)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def json_object(raw: bytes) -> dict[str, Any]:
    """An admin request's JSON body (empty: ``{}``); ValueError unless it is a JSON object."""
    options = json.loads(raw or b"{}")
    if not isinstance(options, dict):
        raise ValueError("the body must be a JSON object")
    return options


# --- the server -------------------------------------------------------------------------------------------
class LoopbackHandler(BaseHTTPRequestHandler):
    """Keep-alive, and http.server's access log as debug lines of the service's logger."""

    protocol_version = "HTTP/1.1"  # keep-alive
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        self.server.logger.debug(f"{self.server.label} %s: " + format, self.address_string(), *args)

    def drop_connection(self) -> None:
        """An injected dropped connection: close without a word, so the client sees the connection end
        before any reply."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class AnyMethodHandler(LoopbackHandler):
    """Every method goes to ``_serve()``; a client that goes away just closes the connection; no Nagle
    (with delayed ACKs on the client, Nagle costs ~40 ms per reply). Tablestore and FC."""

    disable_nagle_algorithm = True

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, OSError):  # the client went away
            self.close_connection = True

    def _serve(self) -> None:
        raise NotImplementedError

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()


class LoopbackServer(ThreadingHTTPServer):
    """One daemon worker thread per connection, each tracked, so :meth:`close_connections` can cut idle
    keep-alive connections and end their workers (``shutdown()`` alone stops only accepting).

    A subclass names itself: ``thread_name`` (the serving thread; a connection's worker is
    ``{thread_name}-{client port}``), ``label`` (how log lines name it) and ``logger``.
    """

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops SYNs under a burst of new connections (1 s retries)
    thread_name: str
    label: str
    logger: logging.Logger

    def __init__(self, address: tuple[str, int], handler: type[LoopbackHandler]) -> None:
        self.stopping = threading.Event()  # set by close_connections; replies waiting on it go at once
        self._live_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._work,
            args=(request, client_address),
            name=f"{self.thread_name}-{client_address[1]}",
            daemon=True,
        )
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
        self.logger.exception(f"{self.label}: error while serving %s", client_address)

    def close_connections(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        with self._live_lock:
            connections, workers = list(self._connections), list(self._workers)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for worker in workers:
            worker.join(timeout)


# --- a Local* service's life ----------------------------------------------------------------------------
S = TypeVar("S", bound="LocalService")


class LocalService:
    """Start on enter, stop on exit; where it listens once started.

    A subclass builds its server in :meth:`_new_server`; it may prepare in :meth:`_before_start` (OSS
    creates its buckets) and add to :meth:`stop` (close a backend it built).
    """

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    def _new_server(self) -> LoopbackServer:
        raise NotImplementedError

    def _before_start(self) -> None:
        """Called by :meth:`start` when it is about to build the server."""

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self: S) -> S:
        if self._server is not None:
            return self
        self._before_start()
        self._server = self._new_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=self._server.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop_server()

    def _stop_server(self) -> bool:
        """Stop accepting, cut the live connections, close the socket; False when it was not running."""
        server, thread = self._server, self._thread
        if server is None:
            return False
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(5.0)
        self._server = self._thread = None
        return True

    def __enter__(self: S) -> S:
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
        """``127.0.0.1:PORT`` — what the CAMS SDK's ``Config(endpoint=..., protocol="HTTP")`` takes."""
        host, port = self._bound()
        return f"{host}:{port}"

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` — what ``oss2.Bucket(auth, endpoint, name)`` (path style) and
        ``tablestore.OTSClient`` (as ``end_point``) take."""
        return f"http://{self.host_port}"

    def _bound(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started; use start() or a with block")
        host, port = self._server.server_address[:2]
        if host in ("0.0.0.0", "::", ""):  # listening everywhere: clients on this machine use loopback
            host = "127.0.0.1"
        return str(host), int(port)


# --- `python -m alibaba_localcloud.<service>` and `chatapp-mass local-cloud` --------------------------
class Describable(Protocol):
    def start(self) -> Any: ...

    def stop(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def serve_until_signalled(build: Callable[[], Describable]) -> int:
    """Build a service, start it, print its ``describe()`` as ONE JSON line, and stop it on SIGINT/SIGTERM."""
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    service = build()
    try:
        service.start()
        sys.stdout.write(json.dumps(service.describe()) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
