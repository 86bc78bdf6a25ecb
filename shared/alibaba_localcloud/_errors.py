"""What every emulator's errors have in common: ``(http_status, code, message)`` and a by-code factory.

The codes themselves, their statuses and how a reply carries them (JSON, XML, protobuf) belong to each
service's ``exceptions.py`` and ``responses.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar


class ServiceError(Exception):
    """Base of ``CamsError``, ``OssError`` and ``TablestoreError``; each sets its own defaults."""

    http_status: int = 500
    code: str = "InternalError"
    message: str = "An internal error occurred."

    def __init__(
        self, message: str | None = None, *, code: str | None = None, http_status: int | None = None
    ) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status
        super().__init__(f"{self.http_status} {self.code}: {self.message}")


E = TypeVar("E", bound=ServiceError)


def error_for_code(
    root: type[E],
    known: Mapping[str, type[E]],
    default_status: int,
    code: str,
    message: str | None = None,
    http_status: int | None = None,
) -> E:
    """An error with ``code``: a known code keeps its class, status and message unless overridden (a class
    whose constructor takes other arguments is not built by code); any other code is a ``root`` with
    ``default_status`` and the code as its message unless given."""
    known_class = known.get(code)
    if known_class is not None and known_class.__init__ is root.__init__:
        return known_class(message, http_status=http_status)
    return root(
        message if message is not None else code,
        code=code,
        http_status=http_status if http_status is not None else default_status,
    )
