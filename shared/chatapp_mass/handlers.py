"""The Function Compute entry points' bodies: decode the event at the edge, call the core, log the outcome.

``functions/ingest/index.py`` and ``functions/sender/index.py`` are one-line adapters onto these. Services
are built once per instance (on the first invocation, not at import: a cold start stays short and a bad
setting fails the invocation with its message instead of the import).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Optional

from chatapp_mass import logs
from chatapp_mass.bootstrap import FunctionServices, function_services

log = logging.getLogger("chatapp_mass.handlers")

# Stop taking new batches this long before the function's timeout: the calls in flight (read timeout 30 s)
# and the bookkeeping after them must finish inside the invocation.
DEADLINE_MARGIN = 45.0

_services: Optional[FunctionServices] = None


def services() -> FunctionServices:
    global _services
    if _services is None:
        logs.configure(os.environ.get("CHATAPP_LOG_LEVEL", "INFO"))
        _services = function_services()
    return _services


def _deadline(context: Any, started: float) -> float:
    timeout = float(getattr(getattr(context, "function", None), "timeout", 0) or 600)
    return started + max(timeout - DEADLINE_MARGIN, min(timeout * 0.5, 10.0))


def ingest(event: bytes, context: Any) -> str:
    from chatapp_mass.oss_jobs import Ingest

    s = services()
    results = Ingest(s.store, s.oss, s.invoker, s.settings).handle(event)
    return json.dumps([r.__dict__ for r in results])


def sender(event: bytes, context: Any) -> str:
    from chatapp_mass.oss_jobs import Sender

    started = time.time()
    s = services()
    result = Sender(s.store, s.cams, s.oss, s.invoker, s.settings).handle(event, deadline=_deadline(context, started))
    return json.dumps(result)
