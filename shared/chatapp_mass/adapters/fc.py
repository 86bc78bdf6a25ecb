"""Function Compute 3.0 ``InvokeFunction``, through the official SDK ``alibabacloud-fc20230330``, wrapped once.

Only asynchronous invocations are made (the fan-out from ingest to sender, and a sender re-invoking itself
later): the payload is a small JSON reference (never recipients; the async limit is 128 KB), and
``x-fc-async-delay`` (0–3600 s; the SDK has no field for it, so it goes in ``common_headers``) schedules a
later look at a batch another instance holds.

- Endpoint: ``CHATAPP_FC_ENDPOINT`` (``http://127.0.0.1:PORT`` for the local FC), else the SDK's own
  endpoint for the region (``fcv3.REGION.aliyuncs.com``; region from ``FC_REGION``, set by FC).
- Credentials: the default chain (the function role's STS variables), or an explicit credential client.
- The SDK does not retry (no ``retry_options``); we retry a throttled or failed invoke a few times with
  backoff, then raise :class:`InvokeError` — the caller's own async retry (FC re-delivers the event) is the
  next line of defence, and every consumer of these events is idempotent.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chatapp_mass.adapters.cams import parse_endpoint
from chatapp_mass.adapters.openapi import PerThreadClient
from chatapp_mass.core.errors import ChatAppMassError
from chatapp_mass.runtime import env

log = logging.getLogger(__name__)

ASYNC_PAYLOAD_LIMIT = 128 * 1024
MAX_ASYNC_DELAY = 3600


class InvokeError(ChatAppMassError):
    """An asynchronous invocation could not be handed to Function Compute."""


class Invoker(Protocol):
    def invoke_async(self, function: str, payload: dict[str, Any], *, delay: int = 0) -> None: ...


@dataclass(frozen=True)
class FcSettings:
    endpoint: str | None  # host[:port]; None = the SDK's endpoint for the region
    protocol: str
    region_id: str
    attempts: int = 4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> FcSettings:
        region = environ.get(env.FC_REGION) or environ.get(env.ALIBABA_CLOUD_REGION_ID) or env.DEFAULT_REGION
        endpoint, protocol = parse_endpoint(environ.get(env.CHATAPP_FC_ENDPOINT))
        return cls(endpoint=endpoint, protocol=protocol, region_id=region)


class FcInvoker:
    def __init__(self, settings: FcSettings, credential: Any = None) -> None:
        self.settings = settings

        def sdk_class() -> Any:
            from alibabacloud_fc20230330.client import Client

            return Client

        self._client = PerThreadClient(
            sdk_class,
            credential=credential,
            region_id=settings.region_id,
            protocol=settings.protocol,
            endpoint=settings.endpoint,
            connect_timeout_ms=5_000,
            read_timeout_ms=15_000,
        )

    def _sdk(self) -> Any:
        return self._client.get()

    def invoke_async(self, function: str, payload: dict[str, Any], *, delay: int = 0) -> None:
        from alibabacloud_fc20230330 import models
        from darabonba.runtime import RuntimeOptions

        body = json.dumps(payload, separators=(",", ":")).encode()
        if len(body) > ASYNC_PAYLOAD_LIMIT:
            raise InvokeError(f"async payload of {len(body)} bytes is over FC's {ASYNC_PAYLOAD_LIMIT}")
        common = {"x-fc-async-delay": str(max(0, min(int(delay), MAX_ASYNC_DELAY)))} if delay > 0 else None
        headers = models.InvokeFunctionHeaders(x_fc_invocation_type="Async", common_headers=common)
        request = models.InvokeFunctionRequest(body=body)
        last: BaseException | None = None
        runtime = RuntimeOptions(autoretry=False, max_attempts=0)
        for attempt in range(1, self.settings.attempts + 1):
            try:
                self._sdk().invoke_function_with_options(function, request, headers, runtime)
                log.info("invoked", extra={"target": function, "bytes": len(body), "delay": delay})
                return
            except Exception as error:  # the SDK raises Tea exceptions of several kinds; all are retried
                last = error
                code = getattr(error, "code", "") or type(error).__name__
                if code in (
                    "FunctionNotFound",
                    "InvalidArgument",
                    "AccessDenied",
                    "InvalidAccessKeyId",
                    "SignatureNotMatch",
                ):
                    break
                if attempt < self.settings.attempts:
                    time.sleep(min(0.2 * 2**attempt, 3.0) * random.uniform(0.5, 1.0))
        raise InvokeError(
            f"InvokeFunction {function} (async) failed: {getattr(last, 'code', '')} "
            f"{getattr(last, 'message', last)}"
        )
