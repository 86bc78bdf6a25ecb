"""In-memory stand-ins for the two adapters the job services call outward, for unit tests that drive the
services directly (no local cloud): what was invoked, and what was written to OSS."""

from __future__ import annotations

from typing import IO, Any

from chatapp_mass.adapters.oss import OssLocation


class Invocations:
    """The FC client: records each asynchronous invocation (function, payload)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def invoke_async(self, function: str, payload: dict[str, Any], *, delay: int = 0) -> None:
        self.calls.append((function, payload))


class Objects:
    """The OSS the finalizer writes its report and summary to: objects by key."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(
        self,
        location: OssLocation,
        data: bytes | IO[bytes],
        *,
        metadata: dict[str, str] | None = None,
        content_type: str = "text/csv",
    ) -> str:
        self.objects[location.key] = data if isinstance(data, bytes) else data.read()
        return "etag"
