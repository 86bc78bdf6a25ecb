"""The Function Compute entry points' bodies: decode the event at the edge, call the core, log the outcome.

``functions/<key>/index.py`` are one-line adapters onto these. Services are built once per instance (on the
first invocation, not at import: a bad setting fails the invocation with its message instead of the import).
Importing this module loads the logs and nothing else of the package (no SDK, no pydantic): each handler
imports its own service when first called, so the ingest never loads the HTTP API, the sender neither the
ingest nor the API, and an SDK is loaded by the first call that needs it (``bench/bench_coldstart.py``,
``tests/unit/test_coldstart.py``). Each runs inside
:func:`chatapp_mass.runtime.logs.invocation`, so every log line of the invocation carries FC's request id and the
function name.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from chatapp_mass.runtime import env, logs

if TYPE_CHECKING:
    from chatapp_mass.entry.bootstrap import FunctionServices
    from chatapp_mass.entry.http_api import ApiSettings
    from chatapp_mass.services.receipts import ReceiptService

log = logging.getLogger(__name__)

# Stop taking new batches this long before the function's timeout: the calls in flight (read timeout 30 s)
# and the bookkeeping after them must finish inside the invocation.
DEADLINE_MARGIN = 45.0

_services: FunctionServices | None = None


def services() -> FunctionServices:
    global _services
    if _services is None:
        from chatapp_mass.entry.bootstrap import function_services

        logs.configure(os.environ.get(env.CHATAPP_LOG_LEVEL, "INFO"))
        _services = function_services()
    return _services


def _deadline(context: Any, started: float) -> float:
    timeout = float(getattr(getattr(context, "function", None), "timeout", 0) or 600)
    return started + max(timeout - DEADLINE_MARGIN, min(timeout * 0.5, 10.0))


def ingest(event: bytes, context: Any) -> str:
    with logs.invocation(context):
        return _ingest(event, context)


def sender(event: bytes, context: Any) -> str:
    with logs.invocation(context):
        return _sender(event, context)


def api(event: bytes, context: Any) -> Any:
    """HTTP trigger requests (-> an FC3 HTTP response dict) and timer events (-> a JSON summary)."""
    with logs.invocation(context):
        return _api(event, context)


def _ingest(event: bytes, context: Any) -> str:
    from chatapp_mass.services.ingest import Ingest

    s = services()
    results = Ingest(s.store, s.oss, s.invoker, s.settings).handle(event)
    return json.dumps([r.__dict__ for r in results])


def _sender(event: bytes, context: Any) -> str:
    from chatapp_mass.services.sender import Sender

    started = time.time()
    s = services()
    result = Sender(s.store, s.cams, s.oss, s.invoker, s.settings).handle(
        event, deadline=_deadline(context, started)
    )
    return json.dumps(result)


def _api(event: bytes, context: Any) -> Any:
    from chatapp_mass.entry.http_api import ApiError, HttpEvent, JobsApi, error_reply, is_http_event
    from chatapp_mass.services.timer import Timer, is_timer_event

    s = services()
    try:
        decoded = json.loads(event)
    except (ValueError, RecursionError):  # RecursionError: JSON nested past the parser's limit
        decoded = None
    if is_timer_event(decoded):
        # not from ApiSettings: a mistake in the API's token settings must not stop the timer
        ingest_function = os.environ.get(env.CHATAPP_INGEST_FUNCTION, "chatapp-mass-ingest")
        timer = Timer(s.store, s.oss, s.invoker, s.settings, ingest_function=ingest_function)
        result = timer.handle(event)
        log.info("timer done", extra={k: v for k, v in result.items() if v})
        return json.dumps(result)
    if not is_http_event(decoded):
        return error_reply(ApiError(400, "invalid_event", "not an FC3 HTTP trigger or timer event"))
    from chatapp_mass.core.errors import OptionsError
    from chatapp_mass.entry.console import serve

    try:
        settings = _api_settings()
    except OptionsError as error:  # e.g. a token under 32 characters: every request refused, saying why
        log.error("the API is misconfigured", extra={"error": str(error)})
        return error_reply(ApiError(503, "misconfigured", str(error)))
    request = HttpEvent.model_validate(decoded)
    api = JobsApi(s.store, s.oss, s.invoker, s.settings, settings, cams=s.cams, receipts=_receipt_service(s))
    return serve(api, request)


_receipt_service_cached: ReceiptService | None = None


def _receipt_service(s: FunctionServices) -> ReceiptService | None:
    """One receipt service per instance: it caches the TaskIds' registrations across requests (receipts of
    one batch come in many pushes). Built on the first request; None: the store has no receipt backend."""
    global _receipt_service_cached
    if _receipt_service_cached is None:
        from chatapp_mass.services.receipts import ReceiptService, receipts_of

        found = receipts_of(s.store)
        if found is None:
            return None
        from chatapp_mass.services.suppress import opt_out_hook

        _receipt_service_cached = ReceiptService(found, on_opt_out=opt_out_hook(s.store), store=s.store)
    return _receipt_service_cached


_api_settings_cached: ApiSettings | None = None


def _api_settings() -> ApiSettings:
    global _api_settings_cached
    if _api_settings_cached is None:
        from chatapp_mass.entry.http_api import ApiSettings

        _api_settings_cached = ApiSettings.from_env()
    return _api_settings_cached
