"""Alibaba Cloud OpenAPI SDK clients (CAMS, FC), built the same way: lazily, one per thread, with an explicit
credential client or the default chain, the endpoint override, and no SDK retries of their own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class PerThreadClient:
    """``get()`` returns this thread's SDK client, built on first use (nothing at import or construction).

    ``factory`` is the SDK's ``Client`` class, imported by the caller lazily: ``lambda: Client``.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        *,
        credential: Any,
        region_id: str,
        protocol: str,
        endpoint: str | None,
        connect_timeout_ms: int,
        read_timeout_ms: int,
    ) -> None:
        self._factory = factory
        self._credential = credential
        self._options = dict(
            region_id=region_id,
            protocol=protocol,
            connect_timeout=connect_timeout_ms,
            read_timeout=read_timeout_ms,
        )
        self._endpoint = endpoint
        self._local = threading.local()

    def get(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from alibabacloud_tea_openapi.utils_models import Config

            credential = self._credential
            if credential is None:
                from alibabacloud_credentials.client import Client as CredentialClient

                credential = CredentialClient()  # the default chain (env, profile, RAM role)
            config = Config(credential=credential, **self._options)
            if self._endpoint:
                config.endpoint = self._endpoint
            client = self._local.client = self._factory()(config)
        return client
