"""``LocalFc``: the local Function Compute 3.0 as a threaded HTTP/1.1 server on loopback, port 0 by default.

    with LocalFc(s_yaml=tmp / "s.yaml") as fc:
        client = fc20230330.Client(Config(endpoint=fc.host_port, protocol="HTTP", region_id=fc.region_id,
                                          access_key_id=..., access_key_secret=..., security_token=...))
        client.invoke_function_with_options("echo", InvokeFunctionRequest(body=b"hi"),
                                            InvokeFunctionHeaders(), RuntimeOptions())
        fc.backend.wait_idle()
        assert fc.backend.invocations[-1].status == "ok"

The functions, handlers, environment, async config and triggers come from s.yaml (see
:mod:`alibaba_localcloud.syaml`); handlers run in worker subprocesses (:mod:`.instances`).

A function with an HTTP trigger is also served the way its function URL would be: on a loopback port of
its own (started and stopped with the FC), each request turned into the FC3 HTTP trigger event and the
handler's result into the reply (:mod:`.http_trigger`)::

    with LocalFc(s_yaml=tmp / "s.yaml") as fc:
        requests.post(fc.http_endpoint("api") + "/jobs?dry=1", json={...})
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from alibaba_localcloud import syaml
from alibaba_localcloud.syaml import FunctionSpec

from .._accounts import DEFAULT_REGION, Account, generate_credentials, resolve_credentials
from .._http import AnyMethodHandler, HttpRequest, LocalService, LoopbackServer
from ..oss.server import IncompleteBody, RequestBody
from ..ram import Policy
from . import exceptions as exc
from .http_trigger import HttpReply, HttpTrigger, HttpTriggerResponse, http_triggers
from .http_trigger import error_reply as http_error_reply
from .models import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_MAX_INSTANCES,
    SYNC_PAYLOAD_LIMIT,
    FcBackend,
    new_request_id,
    role_name,
)
from .responses import ADMIN_PREFIX, AdminResponse, InvokeResponse, Reply, error_reply

log = logging.getLogger(__name__)

_BODY_LIMIT = SYNC_PAYLOAD_LIMIT + 1024 * 1024  # read at most this much of a body; more is refused
_CHUNK = 1024 * 1024
#: read at most this much more of a refused HTTP trigger body so the client gets the 413 (not a reset)
_HTTP_DRAIN_LIMIT = 64 * 1024 * 1024


class _Handler(AnyMethodHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _BODY_LIMIT:
            self._drain(length)
            self.close_connection = True
            self._send(error_reply(exc.EntityTooLarge(SYNC_PAYLOAD_LIMIT), ""))
            return
        body = self.rfile.read(length) if length > 0 else b""
        request = HttpRequest(
            self.command, self.path, list(self.headers.items()), body, client_host=self.client_address[0]
        )
        if request.path.startswith(ADMIN_PREFIX):
            reply = self.server.admin.dispatch(request)
        else:
            reply = self.server.api.dispatch(request)
        self._send(reply)

    def _drain(self, length: int) -> None:
        left = length
        while left > 0:
            chunk = self.rfile.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.http_status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()


class _Server(LoopbackServer):
    thread_name = "local-fc"
    label = "local FC"
    logger = log

    def __init__(self, address: tuple[str, int], backend: FcBackend) -> None:
        self.backend = backend
        self.api = InvokeResponse(backend)
        self.admin = AdminResponse(backend)
        super().__init__(address, _Handler)


# --- HTTP triggers ----------------------------------------------------------------------------------------------
class _HttpTriggerHandler(AnyMethodHandler):
    """A function URL: every method FC's HTTP triggers know (the trigger decides which it allows), the body
    read up to the backend's ``http_body_limit`` (``Content-Length`` or chunked), keep-alive."""

    server: _HttpTriggerServer

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve()

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        received_at = time.time()
        response = self.server.response
        limit = response.backend.http_body_limit
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        try:
            length = None if chunked else int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True  # where this body ends is unknown
            self._send(
                http_error_reply(400, "InvalidArgument", "Content-Length is not a number", new_request_id())
            )
            return
        stream = RequestBody(self.rfile, length, chunked)
        try:
            body = self._read_body(stream, length, limit)
            if body is None:
                if not stream.drain(_HTTP_DRAIN_LIMIT):
                    self.close_connection = True
                self._send(response.too_large())
                return
        except IncompleteBody:
            self.close_connection = True  # the client went away mid-body: nobody to answer
            return
        request = HttpRequest(
            self.command,
            self.path,
            list(self.headers.items()),
            body,
            client_host=self.client_address[0],
            arrived_at=received_at,
        )
        self._send(response.dispatch(request, received_at=received_at, protocol=self.request_version))

    @staticmethod
    def _read_body(stream: RequestBody, length: int | None, limit: int) -> bytes | None:
        """The whole body, or None when it is over ``limit`` (the rest is left for draining)."""
        if length is not None and length > limit:
            return None
        parts: list[bytes] = []
        size = 0
        while chunk := stream.read(_CHUNK):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                return None
        return b"".join(parts)

    def _send(self, reply: HttpReply) -> None:
        """HEAD gets the length of the body it does not get; 1xx, 204 and 304 have no body at all."""
        bodiless = reply.status < 200 or reply.status in (204, 304)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if not bodiless:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD" and not bodiless:
            self.wfile.write(reply.body)
        self.wfile.flush()


class _HttpTriggerServer(LoopbackServer):
    label = "local FC HTTP trigger"
    logger = log

    def __init__(self, address: tuple[str, int], response: HttpTriggerResponse) -> None:
        self.response = response
        self.thread_name = f"local-fc-http-{response.trigger.function}"
        super().__init__(address, _HttpTriggerHandler)


class _HttpTriggerService(LocalService):
    """One function's HTTP trigger on its own port (its ``endpoint`` is the function URL's stand-in)."""

    def __init__(self, host: str, port: int, response: HttpTriggerResponse) -> None:
        self.response = response
        super().__init__(host, port)

    def _new_server(self) -> _HttpTriggerServer:
        return _HttpTriggerServer(self._address, self.response)


class LocalFc(LocalService):
    """The local FC endpoint; a context manager (start on enter, stop on exit; stop ends every instance).

    ``s_yaml``: the Serverless Devs file whose fc3 resources are the functions (``${env()}`` resolved
    from ``environ``, default ``os.environ``; ``${config('AccountID')}`` is ``account_id``); or pass
    ``functions`` (FunctionSpecs) with ``s_yaml=None``. ``project_root`` (default: the s.yaml's directory)
    is where ``source_layout`` looks for ``functions/<resource key>/`` and ``shared/``.

    One account is registered with ``credentials`` — generated (STS-style when ``sts``) unless
    ``access_key_id``/``access_key_secret`` (and ``security_token``) are given. Clients sign with them, and
    functions with a ``role`` get them as their role's STS credentials.

    ``environment_overrides`` are merged over every function's s.yaml environment (LocalCloud puts its
    endpoints there). ``oss_backend``: an OSS emulator backend whose events fire the OSS triggers.
    ``max_instances``, ``data_dir`` and ``backend_options`` (retry_base_delay, retry_max_delay,
    max_clock_skew, init_timeout, http_body_limit, python, clock): see :class:`~.models.FcBackend`.

    Each function's HTTP trigger listens on ``http_host`` (loopback: a function URL here is for this machine),
    port ``http_ports[function]`` or any free one; see :attr:`http_endpoints`. A function with two HTTP
    triggers, or a ``triggerConfig.methods`` FC would refuse, is a ValueError here.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        s_yaml: str | os.PathLike[str] | None = "s.yaml",
        functions: Iterable[FunctionSpec] | None = None,
        project_root: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region_id: str = DEFAULT_REGION,
        sts: bool = True,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        security_token: str | None = None,
        environment_overrides: Mapping[str, str] | None = None,
        source_layout: bool = True,
        max_instances: int | Mapping[str, int] = DEFAULT_MAX_INSTANCES,
        oss_backend: Any = None,
        data_dir: str | os.PathLike[str] | None = None,
        http_host: str = "127.0.0.1",
        http_ports: Mapping[str, int] | None = None,
        role_policies: Mapping[str, Policy] | None = None,
        **backend_options: Any,
    ) -> None:
        specs, root = _functions(s_yaml, functions, project_root, environ, account_id)
        triggers = http_triggers(specs, account_id=account_id, region_id=region_id)  # refused before any work
        self.s_yaml = Path(s_yaml).resolve() if s_yaml is not None else None
        self.credentials = resolve_credentials(
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            security_token=security_token,
            region_id=region_id,
            sts=sts,
        )
        role = Account(
            self.credentials.access_key_id,
            self.credentials.access_key_secret,
            self.credentials.security_token,
        )
        self.backend = FcBackend(
            specs,
            project_root=root,
            account_id=account_id,
            region_id=region_id,
            role_credentials=role,
            environment_overrides=environment_overrides,
            source_layout=source_layout,
            max_instances=max_instances,
            data_dir=data_dir,
            **backend_options,
        )
        self.backend.add_account(role.access_key_id, role.access_key_secret, role.security_token)
        #: role name -> the STS credentials its functions get, carrying the role's policy (``role_policies``)
        self.role_accounts = self._role_accounts(specs, role_policies)
        for account in self.role_accounts.values():
            self.backend.add(account)
        self.backend.role_accounts.update(self.role_accounts)
        self._oss_backend = oss_backend
        ports = dict(http_ports or {})
        unknown = sorted(set(ports) - set(triggers))
        if unknown:
            raise ValueError(f"http_ports names functions without an HTTP trigger: {', '.join(unknown)}")
        self._http: dict[str, _HttpTriggerService] = {
            name: _HttpTriggerService(
                http_host, ports.get(name, 0), HttpTriggerResponse(self.backend, trigger)
            )
            for name, trigger in triggers.items()
        }
        super().__init__(host, port)

    def _role_accounts(
        self, specs: Iterable[FunctionSpec], policies: Mapping[str, Policy] | None
    ) -> dict[str, Account]:
        """With ``role_policies`` (role name -> its RAM policy) each role of s.yaml gets STS credentials of its
        own, and every request made with them is authorized against the policy, by this FC (InvokeFunction,
        destinations) and by the services a LocalCloud registers them with. Without: the functions of every
        role share this FC's own credentials, unrestricted (the emulator's behaviour before RAM)."""
        if policies is None:
            return {}
        by_name = {name.lower(): policy for name, policy in policies.items()}
        accounts: dict[str, Account] = {}
        for spec in specs:
            if not spec.role:
                continue
            name = role_name(spec.role)
            if name not in by_name:
                raise ValueError(
                    f"function {spec.name}: its role {spec.role!r} has no policy in role_policies "
                    f"(known: {', '.join(sorted(by_name)) or 'none'}); give every role of s.yaml its policy"
                )
            if name not in accounts:
                keys = generate_credentials(sts=True, region_id=self.credentials.region_id)
                accounts[name] = Account(
                    keys.access_key_id,
                    keys.access_key_secret,
                    keys.security_token,
                    by_name[name],
                    name,
                    self.credentials.access_key_id,
                )
        return accounts

    @property
    def region_id(self) -> str:
        return self.backend.region_id

    @property
    def account_id(self) -> str:
        return self.backend.account_id

    def _new_server(self) -> _Server:
        return _Server(self._address, self.backend)

    def _before_start(self) -> None:
        if self._oss_backend is not None:
            self.backend.attach_oss(self._oss_backend)
            self._oss_backend = None

    def start(self) -> LocalFc:
        """The API endpoint, then every HTTP trigger's; if one cannot listen, everything is stopped again."""
        if self._server is not None:
            return self
        super().start()
        try:
            for service in self._http.values():
                service.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in self._http.values():
            service.stop()
        self._stop_server()
        self.backend.close()

    # --- HTTP triggers ----------------------------------------------------------------------------------
    @property
    def http_triggers(self) -> dict[str, HttpTrigger]:
        """Each function's HTTP trigger (name, methods, auth type, the fake ids its events carry)."""
        return {name: service.response.trigger for name, service in self._http.items()}

    @property
    def http_endpoints(self) -> dict[str, str]:
        """``{function: "http://127.0.0.1:PORT"}`` for every function with an HTTP trigger, in s.yaml order:
        what stands in for its function URL (``https://<id>.<region>.fcapp.run``). Once started."""
        return {name: service.endpoint for name, service in self._http.items()}

    def http_endpoint(self, function: str) -> str:
        """The function URL stand-in of ``function``; KeyError when it has no HTTP trigger."""
        service = self._http.get(function)
        if service is None:
            with_trigger = ", ".join(self._http) or "none"
            raise KeyError(f"function {function!r} has no HTTP trigger (functions with one: {with_trigger})")
        return service.endpoint

    def fc_client(self, **config: Any) -> Any:
        """An ``alibabacloud_fc20230330`` Client on this endpoint with these credentials (imported on use)."""
        from alibabacloud_fc20230330.client import Client
        from alibabacloud_tea_openapi import models as open_api_models

        c = self.credentials
        return Client(
            open_api_models.Config(
                access_key_id=c.access_key_id,
                access_key_secret=c.access_key_secret,
                security_token=c.security_token,
                endpoint=self.host_port,
                protocol="HTTP",
                region_id=self.region_id,
                **config,
            )
        )

    def describe(self) -> dict[str, Any]:
        """The JSON line the CLI prints: service, endpoint, region, account, credentials, functions, and
        ``http``: each HTTP-triggered function's endpoint."""
        c = self.credentials
        return {
            "service": "fc",
            "endpoint": self.endpoint,
            "region_id": self.region_id,
            "account_id": self.account_id,
            "access_key_id": c.access_key_id,
            "access_key_secret": c.access_key_secret,
            "security_token": c.security_token,
            "s_yaml": str(self.s_yaml) if self.s_yaml else None,
            "functions": self.backend.function_names,
            "http": self.http_endpoints,
        }


def _functions(
    s_yaml: str | os.PathLike[str] | None,
    functions: Iterable[FunctionSpec] | None,
    project_root: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None,
    account_id: str,
) -> tuple[list[FunctionSpec], Path]:
    if functions is not None:
        root = (
            Path(project_root)
            if project_root is not None
            else (Path(s_yaml).resolve().parent if s_yaml is not None else Path.cwd())
        )
        return list(functions), root
    if s_yaml is None:
        raise TypeError("pass s_yaml or functions")
    path = Path(s_yaml).resolve()
    doc = syaml.load(path, environ=environ, account_id=account_id)
    root = Path(project_root).resolve() if project_root is not None else path.parent
    return syaml.functions(doc, path.parent), root
