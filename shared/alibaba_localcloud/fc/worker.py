"""One FC instance: a subprocess that imports a handler once and serves invocations one at a time.

The local FC starts it as ``python <this file>`` (a script, not ``-m``, so nothing of the emulator's package
is imported before the function's own ``sys.path`` is in place), with the function's environment, the code
directory as its working directory, and two pipes:

- fd 0 (the emulator's frames in) and fd 1 (frames out) are taken over at once; afterwards fd 0 reads
  ``/dev/null`` and fd 1 writes to fd 2, so a handler's ``print`` can never corrupt the protocol.
- A frame is ``len(header) | header (JSON) | len(body) | body``, lengths 4-byte big-endian.

Conversation::

    emulator -> {"op": "init", "paths": [...], "handler": "index.handler", "runtime": ..., "function": {...},
                 "region": ..., "account_id": ...}
    worker   -> {"op": "ready", "import_seconds": s}  or  {"op": "ready", "error": {...}} and exit
    emulator -> {"op": "invoke", "request_id": ..., "arm": [crash points or [point, token]],
                 "credentials": {...}} + event
    worker   -> {"op": "result", "ok": true, "log": "..."} + body   or  {"ok": false, "error": {...}}

The handler is called as FC's Python runtime calls it: ``handler(event: bytes, context)``. The context
follows reference/ALIBABA-FACTS.md §1: ``request_id``, ``function`` (name, handler, memory, timeout,
version_id, qualifier), ``region``, ``account_id``; python3.9/3.10 add ``credentials`` and ``service``;
python3.12 adds ``logger`` (and has no ``credentials``/``service``). The worker runs on the emulator's own
interpreter whatever the runtime says: only the context's shape follows the runtime.

The return value becomes the body: bytes as they are, ``str`` as UTF-8, ``None`` as empty, anything else
as JSON (ASSUMPTION: FC's runtime JSON-encodes dicts and lists; for other types UNVERIFIED).
An exception becomes ``{"errorMessage", "errorType", "stackTrace"}`` (the shape of FC's Python runtime
errors; ``stackTrace`` as a list of formatted frames is an ASSUMPTION).
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

_LENGTH = struct.Struct(">I")
LOG_TAIL_BYTES = 4096  # what x-fc-log-result carries (the last 4 KB, as FC documents for Tail)


# --- frames (the emulator imports these too) ----------------------------------------------------------------
def write_frame(stream: IO[bytes], header: dict[str, Any], body: bytes = b"") -> None:
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    stream.write(_LENGTH.pack(len(encoded)) + encoded + _LENGTH.pack(len(body)) + body)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at a clean end of stream; EOFError when it ends inside a frame."""
    header_length = _read_exactly(stream, _LENGTH.size, allow_eof=True)
    if header_length is None:
        return None
    header = json.loads(_read_exactly(stream, _LENGTH.unpack(header_length)[0]) or b"{}")
    body_length = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size) or b"")[0]
    return header, _read_exactly(stream, body_length) or b""


def _read_exactly(stream: IO[bytes], size: int, allow_eof: bool = False) -> bytes | None:
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            if allow_eof and left == size:
                return None
            raise EOFError("the stream ended inside a frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the context FC passes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    access_key_id: str | None
    access_key_secret: str | None
    security_token: str | None


@dataclass(frozen=True)
class FunctionMeta:
    name: str
    handler: str
    memory: int
    timeout: int
    version_id: str | None = None
    qualifier: str = "LATEST"


@dataclass(frozen=True)
class ServiceMeta:
    """python3.9/3.10 only. FC 3.0 has no services; the fields are kept for old code (values UNVERIFIED)."""

    name: str
    log_project: str | None
    log_store: str | None
    qualifier: str
    version_id: str | None


class Context:
    """What ``handler(event, context)`` gets; attributes depend on the runtime (see the module docstring)."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={value!r}" for key, value in self.__dict__.items() if key != "credentials")
        return f"Context({shown})"


def build_context(init: dict[str, Any], invoke: dict[str, Any], logger: logging.Logger) -> Context:
    meta = init["function"]
    qualifier = invoke.get("qualifier") or "LATEST"
    function = FunctionMeta(
        meta["name"], meta["handler"], int(meta["memory"]), int(meta["timeout"]), None, qualifier
    )
    attributes: dict[str, Any] = {
        "request_id": invoke["request_id"],
        "function": function,
        "region": init["region"],
        "account_id": init["account_id"],
    }
    if init["runtime"] in ("python3.9", "python3.10", "python3.6"):
        creds = invoke.get("credentials") or {}
        attributes["credentials"] = Credentials(
            creds.get("access_key_id"), creds.get("access_key_secret"), creds.get("security_token")
        )
        attributes["service"] = ServiceMeta(meta["name"], None, None, qualifier, None)
    else:
        attributes["logger"] = logger
        attributes["log_project"] = None
        attributes["log_store"] = None
    return Context(**attributes)


# --- output: the handler's prints go to stderr and are kept for x-fc-log-result ----------------------------
class _Tee(io.TextIOBase):
    """A text stream that writes through and, during an invocation, keeps a copy."""

    def __init__(self, target: IO[str], capture: list[str]) -> None:
        self._target = target
        self._capture = capture

    def write(self, text: str) -> int:
        self._capture.append(text)
        if len(self._capture) > 256:  # keep only what the tail can show
            self._capture[:] = ["".join(self._capture)[-LOG_TAIL_BYTES:]]
        self._target.write(text)
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = self.request_id
        return True


def _function_logger(request_ids: _RequestIdFilter) -> logging.Logger:
    """``context.logger`` of python3.12: lines like FC's ``time request-id [LEVEL] message`` (format ASSUMED)."""
    logger = logging.getLogger("fc.function")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(request_id)s [%(levelname)s] %(message)s"))
    handler.addFilter(request_ids)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


# --- results ------------------------------------------------------------------------------------------------
def encode_result(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (dict, list, tuple, int, float, bool)):
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    return str(value).encode("utf-8")


def error_of(exc: BaseException) -> dict[str, Any]:
    frames = traceback.format_tb(exc.__traceback__)
    return {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": frames}


# --- the loop -----------------------------------------------------------------------------------------------
def _take_pipes() -> tuple[IO[bytes], IO[bytes]]:
    frames_in = os.fdopen(os.dup(0), "rb")
    frames_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return frames_in, frames_out


def _load_handler(init: dict[str, Any]) -> Callable[[bytes, Context], Any]:
    module_name, _, attribute = str(init["handler"]).rpartition(".")
    if not module_name:
        raise ValueError(f"handler {init['handler']!r} is not MODULE.FUNCTION")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute)
    if not callable(handler):
        raise TypeError(f"{init['handler']} is not callable")
    return handler  # type: ignore[no-any-return]


def _arm(points: list[Any], module_name: str | None) -> Callable[[], None]:
    """Arm crash points in ``module_name`` as the handler's code imports it (after sys.path is the
    function's): its ``arm(*names, tokens=[(name, token_path)])`` arms a name outright, or a
    ``[name, token_path]`` pair while its token exists; its ``disarm()`` runs after the invocation."""
    if not points:
        return lambda: None
    try:
        module = importlib.import_module(module_name or "")
    except (ImportError, ValueError):
        sys.stderr.write(
            f"local FC: cannot arm {points}: crash module {module_name!r} is not importable here\n"
        )
        return lambda: None
    module.arm(
        *(p for p in points if isinstance(p, str)),
        tokens=[(p[0], p[1]) for p in points if not isinstance(p, str)],
    )
    disarm: Callable[[], None] = module.disarm
    return disarm


def main() -> int:
    frames_in, frames_out = _take_pipes()
    capture: list[str] = []
    sys.stdout = _Tee(sys.stdout, capture)
    sys.stderr = _Tee(sys.stderr, capture)
    request_ids = _RequestIdFilter()
    logger = _function_logger(request_ids)

    first = read_frame(frames_in)
    if first is None:
        return 0
    init = first[0]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [*init["paths"], *(p for p in sys.path if os.path.abspath(p or ".") != here)]
    started = time.perf_counter()
    try:
        handler = _load_handler(init)
    except Exception as exc:  # an import error fails every invocation of this instance: FC reports it
        write_frame(frames_out, {"op": "ready", "error": error_of(exc)})
        return 1
    write_frame(frames_out, {"op": "ready", "import_seconds": time.perf_counter() - started})

    while True:
        frame = read_frame(frames_in)
        if frame is None:
            return 0
        invoke, event = frame
        capture.clear()
        request_ids.request_id = invoke["request_id"]
        disarm = _arm(list(invoke.get("arm") or []), invoke.get("arm_module"))
        try:
            body = encode_result(handler(event, build_context(init, invoke, logger)))
            reply: dict[str, Any] = {"op": "result", "ok": True}
        except Exception as exc:
            body, reply = b"", {"op": "result", "ok": False, "error": error_of(exc)}
        finally:
            disarm()
        sys.stdout.flush()
        sys.stderr.flush()
        reply["log"] = "".join(capture)[-LOG_TAIL_BYTES:]
        capture.clear()
        write_frame(frames_out, reply, body)


if __name__ == "__main__":
    raise SystemExit(main())
