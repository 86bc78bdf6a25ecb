"""Structured JSON logs with a fixed key order; phone numbers masked; never credentials or template params."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from chatapp_mass.phones import mask_number

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
