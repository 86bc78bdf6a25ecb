"""Structured JSON logs with a fixed key order; phone numbers masked; never credentials or template params.

Every line logged during a Function Compute invocation carries FC's ``request_id`` and the ``function``
name, as Powertools' logger does (SLS queries by them): each handler enters :func:`invocation` with FC's
context, which sets a :mod:`contextvars` variable the formatter reads. Threads do not inherit context
variables, so code that hands work to threads during an invocation wraps it with :func:`carried`.
The context's fields are FC3's (reference/ALIBABA-FACTS.md §1: ``context.request_id``,
``context.function.name``; the name also from ``FC_FUNCTION_NAME``, set by FC, when the context lacks it).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from chatapp_mass.core.phone_text import mask_number

T = TypeVar("T")

_NO_INVOCATION: Mapping[str, str] = MappingProxyType({})
_INVOCATION: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "chatapp_mass_invocation", default=_NO_INVOCATION
)


def invocation_fields(context: Any) -> dict[str, str]:
    """``request_id`` and ``function`` of an FC context (FC3 Python: ``request_id``, ``function.name``)."""
    fields: dict[str, str] = {}
    request_id = getattr(context, "request_id", None)
    if request_id:
        fields["request_id"] = str(request_id)
    name = getattr(getattr(context, "function", None), "name", None) or os.environ.get("FC_FUNCTION_NAME")
    if name:
        fields["function"] = str(name)
    return fields


@contextlib.contextmanager
def invocation(context: Any) -> Iterator[Mapping[str, str]]:
    """Within it, every log line (of this thread, and of threads given :func:`carried` work) names the invocation."""
    fields: Mapping[str, str] = MappingProxyType(invocation_fields(context))
    token = _INVOCATION.set(fields)
    try:
        yield fields
    finally:
        _INVOCATION.reset(token)


def current_invocation() -> Mapping[str, str]:
    """The fields of the invocation this code runs in (empty outside one)."""
    return _INVOCATION.get()


def carried(work: Callable[..., T]) -> Callable[..., T]:
    """``work``, to be run by another thread in the caller's context (its invocation's log fields).

    The context is captured now, in the calling thread; each call runs in a copy of it (one context cannot
    be entered by two threads at once, and a pool calls the same function concurrently).
    """
    context = contextvars.copy_context()

    @functools.wraps(work)
    def run(*args: Any, **kwargs: Any) -> T:
        return context.copy().run(work, *args, **kwargs)

    return run


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_FIRST = ("timestamp", "level", "message", "logger", "function", "request_id", "job_id", "batch")
_MASKED = {"to", "number", "recipient"}
_NEVER = {
    "template_params",
    "access_key_secret",
    "security_token",
    "TemplateParams",
    "token",
    "authorization",
    "api_token",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, function: str = "") -> None:
        super().__init__()
        self.function = function

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        if self.function:
            entry["function"] = self.function
        for key, value in vars(record).items():
            if key in _STANDARD or key in _NEVER or key.startswith("_"):
                continue
            entry[key] = mask_number(str(value)) if key in _MASKED and value else value
        # FC's request id and function name, when in an invocation: they name the invocation, so they win
        # over a record's own fields of the same name.
        entry.update(_INVOCATION.get())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        ordered = {k: entry[k] for k in _FIRST if k in entry}
        ordered.update((k, v) for k, v in entry.items() if k not in ordered)
        return json.dumps(ordered, ensure_ascii=False, default=str)


def configure(level: str = "WARNING", function: str = "", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(function))
    root = logging.getLogger("chatapp_mass")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    quiet_tablestore_import()  # the local cloud's commands import the SDK too (its protobuf modules)


# The Tablestore SDK (6.4.8 ``tablestore/encoder.py``, ``decoder.py``) logs a WARNING when it is imported without
# its optional native C++ extension: "Native C++ encoder not available, using Python implementation" (and the
# decoder's and PlainBuffer parser's). It is not a problem (the Python implementation is the documented
# fallback), but with no handler configured Python's last-resort handler prints it on stderr in every command
# that opens a store. Only those records, only from those loggers, are dropped.
_TABLESTORE_LOGGERS = ("tablestore.encoder", "tablestore.decoder")


class _NativeFallbackNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Native ")


def quiet_tablestore_import() -> None:
    """Drop the SDK's "native C++ ... not available" notices; call before ``import tablestore`` (idempotent)."""
    for name in _TABLESTORE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NativeFallbackNotice) for f in logger.filters):
            logger.addFilter(_NativeFallbackNotice())
