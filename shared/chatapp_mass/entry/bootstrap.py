"""The composition root: the one place real adapters are built. Tests and the demo pass their own.

Each adapter (and so its SDK) is imported by the function that builds it, not with this module: a function's
handler imports this module, and a cold start should pay only for what its invocations build
(``bench/bench_coldstart.py``; ``tests/unit/test_coldstart.py`` guards it). The types are for the checker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.runtime import env
from chatapp_mass.store.retention import retention_days

if TYPE_CHECKING:
    from chatapp_mass.adapters.cams import CamsClient
    from chatapp_mass.adapters.fc import Invoker
    from chatapp_mass.adapters.oss import OssClient
    from chatapp_mass.services.jobs import FunctionSettings
    from chatapp_mass.store.interface import Store


@dataclass
class Services:
    store: Store
    cams: CamsClient
    oss: OssClient | None = None  # built from the environment on first use (only oss:// sources need it)

    def oss_client(self) -> OssClient:
        if self.oss is None:
            from chatapp_mass.adapters.oss import OssClient

            self.oss = OssClient.from_env()
        return self.oss

    def close(self) -> None:
        self.store.close()


class _Keys(TypedDict, total=False):
    """The keyword arguments of a store or client that name its keys."""

    access_key_id: str
    access_key_secret: str
    security_token: str


def _keys_in(environ: Mapping[str, str]) -> _Keys:
    """Keys in the ``ALIBABA_CLOUD_*`` variables of ``environ``, read now; none: the default chain decides.

    ``alibabacloud-credentials`` reads those variables once, when it is imported, so an environment handed in
    (or changed since) would be ignored by the chain: read here, it is the one that counts. In FC the role's
    STS credentials are in these variables either way."""
    key_id = environ.get(env.ALIBABA_CLOUD_ACCESS_KEY_ID, "")
    secret = environ.get(env.ALIBABA_CLOUD_ACCESS_KEY_SECRET, "")
    if not (key_id and secret):
        return {}
    return {
        "access_key_id": key_id,
        "access_key_secret": secret,
        "security_token": environ.get(env.ALIBABA_CLOUD_SECURITY_TOKEN, ""),
    }


def open_store(url: str, environ: Mapping[str, str] = os.environ) -> Store:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``tablestore://INSTANCE`` (endpoint from
    ``CHATAPP_TABLESTORE_ENDPOINT`` or the region; credentials from the default chain).

    A Tablestore store is opened without any table operation (a function's cold start lists and creates
    nothing): its tables are made once by :func:`init_tables` (``chatapp-mass init-tables``); a missing one is a
    StoreError saying so."""
    if url.startswith("sqlite:///"):
        from chatapp_mass.store.sqlite import SqliteStore

        path = url[len("sqlite:///") :]
        if not path:
            raise OptionsError(f"--store {url!r}: give a file, e.g. sqlite:///chatapp-mass.db")
        return SqliteStore(path)
    if url.startswith("tablestore://"):
        from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

        return TablestoreStore(
            TablestoreSettings.from_url(url, environ), create_tables=False, **_keys_in(environ)
        )
    raise OptionsError(
        f"--store {url!r}: use sqlite:///relative.db, sqlite:////absolute/path.db (three or four slashes) "
        "or tablestore://INSTANCE"
    )


def init_tables(url: str, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The deploy step: create the store's tables if missing and wait until they are ready (idempotent).

    Tablestore: ``{"store": url, "created": [...], "existing": [...]}``; SQLite creates its schema when opened, so
    there is nothing to do but open it."""
    if url.startswith("tablestore://"):
        from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

        store = TablestoreStore(
            TablestoreSettings.from_url(url, environ), create_tables=False, **_keys_in(environ)
        )
        try:
            return {"store": url, **store.init_tables(retention_days=retention_days(environ))}
        finally:
            store.close()
    open_store(url, environ).close()
    return {"store": url, "created": [], "existing": [], "note": "SQLite creates its tables when opened"}


def static_credential(access_key_id: str, access_key_secret: str, security_token: str = "") -> Any:
    """An explicit credential (the local cloud's), instead of the default chain."""
    from alibabacloud_credentials.client import Client
    from alibabacloud_credentials.models import Config

    if security_token:
        return Client(
            Config(
                type="sts",
                access_key_id=access_key_id,
                access_key_secret=access_key_secret,
                security_token=security_token,
            )
        )
    return Client(Config(type="access_key", access_key_id=access_key_id, access_key_secret=access_key_secret))


def cams_client_for(endpoint: str, credentials: Any, **settings: Any) -> CamsClient:
    """A CAMS client for an explicit endpoint URL (``http://127.0.0.1:PORT``) and explicit credentials (an
    object with ``access_key_id``, ``access_key_secret``, ``security_token``: the local CAMS's)."""
    from chatapp_mass.adapters.cams import CamsClient, CamsSettings, parse_endpoint

    host, protocol = parse_endpoint(endpoint)
    return CamsClient(
        CamsSettings(endpoint=host, protocol=protocol, **settings),
        credential=static_credential(
            credentials.access_key_id, credentials.access_key_secret, credentials.security_token or ""
        ),
    )


def build_services(
    *,
    store_url: str | None = None,
    store: Store | None = None,
    cams: CamsClient | None = None,
    credential: Any = None,
    environ: Mapping[str, str] = os.environ,
) -> Services:
    """Builds what is not passed: the store from ``store_url`` (or ``CHATAPP_STORE``), the CAMS client from the
    environment (endpoint, region) with ``credential`` or the default credential chain."""
    from chatapp_mass.adapters.cams import CamsClient, CamsSettings

    if store is None:
        store = open_store(store_url or environ.get(env.CHATAPP_STORE) or env.DEFAULT_STORE, environ)
    if cams is None:
        cams = CamsClient(CamsSettings.from_env(environ), credential=credential)
    return Services(store=store, cams=cams)


# --- the functions' composition root ------------------------------------------------------------------------
@dataclass
class FunctionServices:
    """What one function instance builds once and reuses across invocations (warm starts)."""

    store: Store
    cams: CamsClient
    oss: OssClient
    invoker: Invoker
    settings: FunctionSettings


def function_services(environ: Mapping[str, str] = os.environ, credential: Any = None) -> FunctionServices:
    """From the function's environment (s.yaml ``environmentVariables``) and its role's credentials.

    FC puts the role's STS credentials in ``ALIBABA_CLOUD_*`` variables on every runtime (python3.12 has
    no ``context.credentials``); the default chain reads them. ``credential`` is for an explicit one (a
    handler on python3.10 may pass ``context.credentials``)."""
    from chatapp_mass.adapters.cams import CamsClient, CamsSettings
    from chatapp_mass.adapters.fc import FcInvoker, FcSettings
    from chatapp_mass.adapters.oss import OssClient
    from chatapp_mass.services.jobs import FunctionSettings

    oss_keys: dict[str, str] = {}
    if credential is not None:
        current = credential.get_credential()
        oss_keys = {
            "access_key_id": current.access_key_id,
            "access_key_secret": current.access_key_secret,
            "security_token": current.security_token or "",
        }
    return FunctionServices(
        store=open_store(environ.get(env.CHATAPP_STORE) or env.DEFAULT_STORE, environ),
        cams=CamsClient(CamsSettings.from_env(environ), credential=credential),
        oss=OssClient.from_env(environ, **oss_keys),
        invoker=FcInvoker(FcSettings.from_env(environ), credential=credential),
        settings=FunctionSettings.from_env(environ),
    )
