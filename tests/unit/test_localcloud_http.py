"""What the three emulators share: the loopback server, the Local* lifecycle, credentials, errors by code."""

from __future__ import annotations

import http.client
import logging
import threading
from typing import Any

import pytest

from alibaba_localcloud._accounts import Account, AccountRegistry, resolve_credentials
from alibaba_localcloud._errors import ServiceError, error_for_code
from alibaba_localcloud._http import (
    LocalService,
    LoopbackHandler,
    LoopbackServer,
    is_loopback,
    json_object,
)

log = logging.getLogger("test-loopback")


class _Echo(LoopbackHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/boom":
            raise RuntimeError("boom")
        self.server.seen_threads.append(threading.current_thread().name)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(LoopbackServer):
    thread_name = "local-echo"
    label = "local Echo"
    logger = log

    def __init__(self, address: tuple[str, int]) -> None:
        self.seen_threads: list[str] = []
        super().__init__(address, _Echo)


class LocalEcho(LocalService):
    def __init__(self) -> None:
        super().__init__("127.0.0.1", 0)
        self.prepared = 0

    def _before_start(self) -> None:
        self.prepared += 1

    def _new_server(self) -> _Server:
        return _Server(self._address)


def _get(echo: LocalEcho, path: str = "/") -> tuple[http.client.HTTPConnection, int]:
    connection = http.client.HTTPConnection(echo.host, echo.port, timeout=5)
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return connection, response.status


# --- lifecycle ----------------------------------------------------------------------------------------------
def test_a_service_is_not_anywhere_until_started() -> None:
    echo = LocalEcho()
    with pytest.raises(RuntimeError, match="LocalEcho is not started; use start"):
        echo.port  # noqa: B018 - the property is the call under test
    echo.stop()  # stopping what never started is harmless
    assert echo.prepared == 0


def test_start_is_idempotent_and_the_with_block_stops_it() -> None:
    with LocalEcho() as echo:
        assert echo.start() is echo
        assert echo.prepared == 1
        assert echo.host == "127.0.0.1" and echo.port > 0
        assert echo.endpoint == f"http://127.0.0.1:{echo.port}" == "http://" + echo.host_port
        assert any(t.name == "local-echo" for t in threading.enumerate())
    with pytest.raises(RuntimeError):
        echo.port  # noqa: B018
    assert not any(t.name == "local-echo" for t in threading.enumerate())


def test_each_connection_has_its_own_named_worker_and_stop_cuts_idle_keep_alive() -> None:
    echo = LocalEcho().start()
    connection, status = _get(echo)
    assert status == 200
    port = connection.sock.getsockname()[1]
    assert echo._server is not None
    server = echo._server
    assert isinstance(server, _Server) and server.seen_threads == [f"local-echo-{port}"]
    echo.stop()  # the kept-alive connection would otherwise hold its worker forever
    assert server.stopping.is_set()
    assert not any(t.name == f"local-echo-{port}" for t in threading.enumerate())
    connection.close()


def test_a_handler_error_is_logged_with_the_service_label(caplog: pytest.LogCaptureFixture) -> None:
    with (
        LocalEcho() as echo,
        caplog.at_level(logging.ERROR, logger="test-loopback"),
        pytest.raises((http.client.HTTPException, ConnectionError)),
    ):
        _get(echo, "/boom")
    assert any(
        r.getMessage().startswith("local Echo: error while serving ('127.0.0.1', ") for r in caplog.records
    )


# --- admin guards -------------------------------------------------------------------------------------------
def test_admin_guards() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")
    assert json_object(b"") == {} and json_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="JSON object"):
        json_object(b"[1]")


# --- credentials and accounts -------------------------------------------------------------------------------
def test_credentials_are_given_together_or_generated() -> None:
    given = resolve_credentials(
        access_key_id="id", access_key_secret="secret", security_token=None, region_id="cn-hangzhou", sts=True
    )
    assert (given.access_key_id, given.access_key_secret, given.security_token, given.region_id) == (
        "id",
        "secret",
        None,
        "cn-hangzhou",
    )
    with pytest.raises(ValueError, match="go together"):
        resolve_credentials(
            access_key_id="id", access_key_secret=None, security_token=None, region_id="r", sts=True
        )
    none: dict[str, Any] = {"access_key_id": None, "access_key_secret": None, "security_token": None}
    sts = resolve_credentials(**none, region_id="r", sts=True)
    assert sts.access_key_id.startswith("STS.") and sts.security_token
    plain = resolve_credentials(**none, region_id="r", sts=False)
    assert plain.access_key_id.startswith("LTAI.") and plain.security_token is None


def test_account_registry() -> None:
    class Backend(AccountRegistry):
        def __init__(self) -> None:
            self._lock = threading.RLock()
            self._accounts = {}

    backend = Backend()
    backend.add_account("a", "s", "token-a")
    backend.add_account("b", "s", "")
    assert backend.account("a") == Account("a", "s", "token-a")
    assert backend.account("b") == Account("b", "s", None)  # an empty token is no token
    assert backend.account("c") is None
    assert backend.token_belongs_to_another_account("token-a", "b")
    assert not backend.token_belongs_to_another_account("token-a", "a")


# --- errors by code -----------------------------------------------------------------------------------------
class _Root(ServiceError):
    http_status, code, message = 400, "Root", "root"


class _Known(_Root):
    http_status, code, message = 409, "Known", "known."


class _Parameterised(_Root):
    code = "Parameterised"

    def __init__(self, parameter: str) -> None:
        super().__init__(f"{parameter} is wrong")


def test_errors_by_code() -> None:
    known: dict[str, Any] = {"Known": _Known, "Parameterised": _Parameterised}
    error = error_for_code(_Root, known, 503, "Known")
    assert type(error) is _Known and (error.http_status, error.message) == (409, "known.")
    assert str(error) == "409 Known: known."
    error = error_for_code(_Root, known, 503, "Known", "other", 429)
    assert (error.http_status, error.message) == (429, "other")
    error = error_for_code(_Root, known, 503, "Unheard")
    assert type(error) is _Root
    assert (error.http_status, error.code, error.message) == (503, "Unheard", "Unheard")
    error = error_for_code(_Root, known, 503, "Parameterised")
    assert type(error) is _Root and error.code == "Parameterised"
