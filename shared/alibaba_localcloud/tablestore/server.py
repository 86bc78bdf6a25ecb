"""``LocalTablestore``: the local Tablestore as a threaded HTTP/1.1 server on loopback, port 0 by default.

    with LocalTablestore(data_dir="state") as ots:
        client = tablestore.OTSClient(ots.endpoint, ots.credentials.access_key_id,
                                      ots.credentials.access_key_secret, ots.instance_name,
                                      sts_token=ots.credentials.security_token)
        ...
        assert ots.backend.requests[-1].api == "PutRow"

Keep-alive is on (the SDK pools connections through urllib3) and idle connections are never closed by the
server. A body larger than the request limit (5 MB) is drained and answered 413 ``OTSRequestBodyTooLarge``.
Injected timeouts (:meth:`~.models.TablestoreBackend.timeout_next`) hold the reply back or close the
connection without one.
"""

from __future__ import annotations

import logging
from typing import Any

from .._accounts import DEFAULT_REGION, resolve_credentials
from .._http import AnyMethodHandler, HttpRequest, LocalService, LoopbackServer
from .models import DEFAULT_INSTANCE, TablestoreBackend
from .responses import ADMIN_PREFIX, AdminResponse, Reply, TablestoreResponse

log = logging.getLogger(__name__)

_DRAIN_LIMIT = 64 * 1024 * 1024  # never read more than this of an over-long body
_CHUNK = 1024 * 1024


class _Handler(AnyMethodHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        path = self.path.split("?", 1)[0]
        if length > self.server.backend.max_request_bytes and not path.startswith(ADMIN_PREFIX):
            self._drain(length)
            self._send(self.server.api.too_large(path.lstrip("/")))
            return
        body = self.rfile.read(length) if length > 0 else b""
        request = HttpRequest(
            self.command, self.path, list(self.headers.items()), body, client_host=self.client_address[0]
        )
        if path.startswith(ADMIN_PREFIX):
            reply = self.server.admin.dispatch(request)
        else:
            reply = self.server.api.dispatch(request)
        self._send(reply)

    def _drain(self, length: int) -> None:
        left = min(length, _DRAIN_LIMIT)
        while left > 0:
            chunk = self.rfile.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)

    def _send(self, reply: Reply) -> None:
        if reply.drop:
            self.drop_connection()
            return
        if reply.delay > 0:
            self.server.stopping.wait(reply.delay)  # stop() cuts it short
        self.send_response(reply.http_status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if reply.close_connection:
            self.close_connection = True
            self.send_header("Connection", "close")
        # headers and body in one write
        self._headers_buffer.append(b"\r\n")  # type: ignore[attr-defined]  # http.server's header buffer
        self._headers_buffer.append(reply.body)  # type: ignore[attr-defined]
        self.flush_headers()


class _Server(LoopbackServer):
    thread_name = "local-tablestore"
    label = "local Tablestore"
    logger = log

    def __init__(self, address: tuple[str, int], backend: TablestoreBackend) -> None:
        self.backend = backend
        self.api = TablestoreResponse(backend)
        self.admin = AdminResponse(backend)
        super().__init__(address, _Handler)


class LocalTablestore(LocalService):
    """The local Tablestore endpoint for one instance; a context manager (start on enter, stop on exit).

    ``backend`` is shared if given; otherwise one is built from ``data_dir`` and ``backend_options`` (see
    :class:`~.models.TablestoreBackend`: max_clock_skew, max_tables, max_request_bytes, clock, seed, and the
    realistic mode: ``realistic`` (default True: a new table is not ready for ``table_not_ready_seconds``,
    table-metadata operations limited to ``table_operations_per_second`` per instance)). The
    instance ``instance_name`` and one account with ``credentials`` are registered — generated (STS-style when
    ``sts``) unless ``access_key_id``/``access_key_secret`` (and ``security_token``) are given. :meth:`stop`
    closes the database of a ``data_dir`` backend this object built (a later :meth:`start` reopens it).
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
        instance_name: str = DEFAULT_INSTANCE,
        backend: TablestoreBackend | None = None,
        data_dir: str | None = None,
        **backend_options: Any,
    ) -> None:
        if backend is not None and (backend_options or data_dir is not None):
            raise TypeError("pass either backend or data_dir/backend options, not both")
        self._owns_backend = backend is None
        self.backend = (
            backend if backend is not None else TablestoreBackend(data_dir=data_dir, **backend_options)
        )
        self.credentials = resolve_credentials(
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            security_token=security_token,
            region_id=region_id,
            sts=sts,
        )
        self.instance_name = instance_name
        self.region_id = region_id
        self.backend.add_instance(instance_name, region_id)
        self.backend.add_account(
            self.credentials.access_key_id,
            self.credentials.access_key_secret,
            self.credentials.security_token,
        )
        super().__init__(host, port)

    def _new_server(self) -> _Server:
        return _Server(self._address, self.backend)

    def stop(self) -> None:
        self._stop_server()
        if self._owns_backend and self.backend.data_dir:
            self.backend.close()  # the file is complete on disk; the next use reopens it

    # --- where it is ------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The JSON line the CLI prints: service, endpoint, instance, region and credentials."""
        return {
            "service": "tablestore",
            "endpoint": self.endpoint,
            "instance": self.instance_name,
            "region": self.region_id,
            "credentials": {
                "access_key_id": self.credentials.access_key_id,
                "access_key_secret": self.credentials.access_key_secret,
                "security_token": self.credentials.security_token,
            },
            "data_dir": self.backend.data_dir,
            "realistic": {
                "on": self.backend.realistic,
                "table_not_ready_seconds": self.backend.table_not_ready_seconds,
                "table_operations_per_second": self.backend.table_operations_per_second,
            },
        }
