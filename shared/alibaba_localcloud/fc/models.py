"""State and rules of the local FC: functions from s.yaml, instances, sync and async invocation, triggers,
fault injection and what it saw. No HTTP here (``responses.py`` parses and signs; this decides).

Longer than 500 lines: the FC backend, moto-style: the functions, invocation (sync, async with retries and
destinations), triggers and crash points, each citing FC's docs.

Async semantics (reference/ALIBABA-FACTS.md §3), kept fast for tests:

Which failures FC retries (FC3 "Configure a retry mechanism",
https://www.alibabacloud.com/help/en/functioncompute/fc/error-handling-1-2; ALIBABA-FACTS "Added 2026-12-04"):
HandledInvocationError / UnhandledInvocationError are retried ``maxAsyncRetryAttempts`` times; "concurrency
limit exceeded" is retried with exponential backoff for up to 5 hours; an internal error and insufficient
FC resources are **not retried**. Here:

- An accepted event is queued (``x-fc-async-delay`` postpones its first attempt) and delivered
  at least once. A failed attempt — the handler raised, the instance crashed, or it timed out: the
  function's failure, ``UnhandledInvocationError`` — is retried up to ``maxAsyncRetryAttempts`` times (so at
  most 1 + that many attempts), after ``retry_base_delay · 2^(n-1)`` seconds capped at ``retry_max_delay``
  (FC's real backoff is longer; the doubling is FC's). A crashed handler process (a crash point, an import
  that kills the interpreter) is such a function failure: FC reports it as UnhandledInvocationError.
- A system error never reached the function: the platform failed (injected with
  :meth:`FcBackend.fail_next`, or real: an instance process that could not be spawned, InternalServerError).
  ``ResourceExhausted`` (429, concurrency limit exceeded) is retried with the same backoff without using up
  the function's retries (FC: for up to 5 hours; here the event age bounds it). Any other system error
  (``InternalServerError`` 500, ``ResourceThrottled`` 503 — "insufficient resources" — or another code) is not
  retried: the event goes to the ``onFailure`` destination at once, condition ``SystemError``.
- An event older than ``maxAsyncEventAgeInSeconds`` when its next attempt is due is dropped.
- When an attempt succeeds the ``onSuccess`` destination gets a record; when retries are exhausted, a system
  error is not retried, or the event is dropped, the ``onFailure`` one does. A destination
  ``acs:fc:<region>:<account or empty>:functions/<name>`` is invoked asynchronously here; any other
  destination (MNS, EventBridge, RocketMQ) is
  only recorded in :attr:`FcBackend.destinations`.

Destination record (ASSUMED shape; the FC result-callback page does not publish one — modelled on the
fields FC's async task and AWS Lambda's destination records carry)::

    {"timestamp": "2024-01-01T00:00:00.000Z",
     "requestContext": {"requestId": ..., "functionArn": "acs:fc:<region>:<account>:functions/<name>",
                        "condition": "Success" | "RetriesExhausted" | "EventAgeExceeded" | "SystemError",
                        "approximateInvokeCount": <attempts that reached the function>},
     "requestPayload": <the event, decoded as UTF-8 (undecodable bytes replaced)>,
     "responseContext": {"statusCode": 200, "functionError": None | "UnhandledInvocationError"}
                        or, for a system error, {"statusCode": 500 | 503 | ..., "errorCode": <FC code>},
     "responsePayload": <the handler's result, or its error JSON, as a string; None if it never ran>}

ASSUMPTION: the ``SystemError`` condition and the system error's ``responseContext`` (no source names what
FC sends for a system error it does not retry).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from alibaba_localcloud.syaml import FunctionSpec, TriggerSpec

from .._accounts import DEFAULT_REGION, Account, AccountRegistry
from . import exceptions as exc
from .instances import (
    DEFAULT_INIT_TIMEOUT,
    ColdStart,
    InstanceConfig,
    InstancePool,
    InstanceSpawnError,
    Outcome,
)

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "1234567890123456"
DEFAULT_MAX_INSTANCES = 20
ASYNC_PAYLOAD_LIMIT = 128 * 1024  # 131072 bytes (raisable to 256 KB by ticket; not here)
SYNC_PAYLOAD_LIMIT = 32 * 1024 * 1024
MAX_ASYNC_DELAY = 3600
DEFAULT_MAX_CLOCK_SKEW = 15 * 60.0
#: what the instances inherit from the emulator's environment; everything else comes from s.yaml and FC
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT")
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)
UNHANDLED = "UnhandledInvocationError"

InvocationKind = Literal["sync", "async"]
TriggerKind = Literal["api", "oss", "timer", "destination", "http"]
Status = Literal["ok", "error", "crash", "timeout", "dropped", "system_error"]
Condition = Literal["Success", "RetriesExhausted", "EventAgeExceeded", "SystemError"]

_FC_DESTINATION = re.compile(
    r"^acs:fc:(?P<region>[^:]*):(?P<account>[^:]*):functions/(?P<name>[^/]+)(?:/.*)?$"
)


# --- records --------------------------------------------------------------------------------------------------
@dataclass
class InvocationRecord:
    """One attempt (sync call, async attempt, or a dropped event). ``duration`` is the handler's run on its
    instance (cold start and queueing excluded); ``attempt`` counts the function's attempts of that event
    from 1 (system errors do not count)."""

    request_id: str
    function: str
    kind: InvocationKind
    trigger: TriggerKind
    attempt: int
    started: float
    ended: float
    duration: float
    memory_size: int
    status: Status
    error: str | None
    payload_size: int
    instance_id: str | None = None
    duplicate: bool = False
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def role_name(role: str) -> str:
    """``acs:ram::ACCOUNT:role/NAME`` (or a bare name) -> ``name``: RAM role names are case-insensitive."""
    return role.rsplit("/", 1)[-1].lower()


@dataclass
class DestinationRecord:
    """One destination delivery: to a local function (``target_function``) or only recorded."""

    request_id: str
    function: str
    condition: Condition
    destination: str
    payload: dict[str, Any]
    target_function: str | None
    #: why it was not delivered: the function's role may not send there (its RAM policy), else None
    refused: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunningInvocation:
    """An invocation in progress (:meth:`FcBackend.running`): its worker process is ``pid``."""

    function: str
    request_id: str
    instance_id: str
    pid: int
    started: float


@dataclass
class SyncResult:
    request_id: str
    outcome: Outcome


@dataclass
class _AsyncEvent:
    request_id: str
    function: str
    payload: bytes
    trigger: TriggerKind
    accepted_at: float
    qualifier: str | None = None
    task_id: str | None = None
    duplicate: bool = False
    delayed: bool = False  # postponed by x-fc-async-delay and not yet due
    attempts: int = 0  # attempts that reached the function
    system_failures: int = 0
    last: Outcome | None = None
    system_error: exc.FcError | None = None  # the system error that ended it (not retried)


@dataclass
class _Function:
    spec: FunctionSpec
    pool: InstancePool
    config: InstanceConfig


@dataclass
class _Faults:
    # function -> (point, token file): armed in every instance until one of them reaches the point and
    # removes the file (see crash_module)
    crash_points: dict[str, list[tuple[str, Path]]] = field(default_factory=lambda: defaultdict(list))
    system_errors: dict[str, deque[tuple[str, str | None]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def new_request_id() -> str:
    """Shaped like FC3's ``1-64e70cf1-5cbef92ea8fc8c42899cf5d1``."""
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def iso8601(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}Z"


# --- the backend ----------------------------------------------------------------------------------------------
class FcBackend(AccountRegistry):
    """The local FC account: functions (from s.yaml specs), their instances, the async queue, records.

    ``role_credentials``: the STS credentials handed to functions that have a ``role`` (as env variables
    and, on python3.9/3.10, ``context.credentials``); FC sets none for a function without a role.
    ``environment_overrides`` are merged over each function's s.yaml environment. ``source_layout``: run
    a function from ``<project_root>/functions/<resource key>/`` with ``<project_root>/shared`` on
    ``sys.path``; otherwise from its s.yaml ``code`` directory alone (a built package). ``max_instances``:
    per function, an int for all or a mapping of function name to int (others get 20). ``data_dir``: the
    instances' output goes to ``<data_dir>/logs/<function>.log`` and every record is appended to
    ``<data_dir>/invocations.jsonl``; without it the instances write to the emulator's stderr.
    ``http_body_limit``: the largest request body an HTTP trigger accepts (FC's 32 MB sync limit; a test
    lowers it rather than send 32 MB); a larger one is answered 413 (see :mod:`.http_trigger`).
    ``crash_module``: the dotted name of a module the functions' code imports, with ``arm(*points,
    tokens=[(point, token_path)])``, ``disarm()`` and checkpoints that exit the process when armed; the
    instances arm its points for :meth:`crash_next`, which needs it (the emulator ships no such module: the
    checkpoints live in the code under test).
    """

    def __init__(
        self,
        functions: Iterable[FunctionSpec] = (),
        *,
        project_root: str | os.PathLike[str] = ".",
        account_id: str = DEFAULT_ACCOUNT_ID,
        region_id: str = DEFAULT_REGION,
        role_credentials: Account | None = None,
        environment_overrides: Mapping[str, str] | None = None,
        source_layout: bool = True,
        max_instances: int | Mapping[str, int] = DEFAULT_MAX_INSTANCES,
        data_dir: str | os.PathLike[str] | None = None,
        retry_base_delay: float = 0.2,
        retry_max_delay: float = 2.0,
        max_clock_skew: float | None = DEFAULT_MAX_CLOCK_SKEW,
        init_timeout: float = DEFAULT_INIT_TIMEOUT,
        http_body_limit: int = SYNC_PAYLOAD_LIMIT,
        python: str = sys.executable,
        clock: Callable[[], float] = time.time,
        crash_module: str | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.crash_module = crash_module
        self._accounts: dict[str, Account] = {}
        self.project_root = Path(project_root).resolve()
        self.account_id = account_id
        self.region_id = region_id
        self.role_credentials = role_credentials
        #: role name (lower case) -> its own STS credentials and policy (LocalFc ``role_policies``)
        self.role_accounts: dict[str, Account] = {}
        #: InvokeFunction calls a role's policy refused: (role, action, resource, NoPermissionType)
        self.denials: list[tuple[str, str, str, str]] = []
        self.environment_overrides = dict(environment_overrides or {})
        self.source_layout = source_layout
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.max_clock_skew = max_clock_skew
        self.http_body_limit = http_body_limit
        self.python = python  # the interpreter instances run (one that cannot be spawned: a system error)
        self.clock = clock
        self.invocations: list[InvocationRecord] = []
        self.cold_starts: list[ColdStart] = []
        self.destinations: list[DestinationRecord] = []
        self._faults = _Faults()
        self._fault_tokens: str | None = None  # the directory of crash tokens, made on first use
        self._nonces: dict[str, float] = {}
        self._functions: dict[str, _Function] = {}
        for spec in functions:
            self._add_function(spec, max_instances, init_timeout)
        self._queue: list[tuple[float, int, _AsyncEvent]] = []
        self._sequence = itertools.count()
        self._pending = 0  # async events accepted and not yet finished (queued, delayed or running)
        self._delayed = 0  # of those, the ones whose x-fc-async-delay has not run out yet
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._unsubscribe: list[Callable[[], None]] = []
        self._dispatcher: threading.Thread | None = None  # started with the first async event

    # --- functions ----------------------------------------------------------------------------------------
    def _add_function(
        self, spec: FunctionSpec, max_instances: int | Mapping[str, int], init_timeout: float
    ) -> None:
        if spec.name in self._functions:
            raise ValueError(f"two s.yaml resources name the function {spec.name!r}")
        limit = (
            max_instances.get(spec.name, DEFAULT_MAX_INSTANCES)
            if isinstance(max_instances, Mapping)
            else max_instances
        )
        config = self._instance_config(spec)
        pool = InstancePool(
            config,
            int(limit),
            new_id=_new_instance_id,
            on_cold_start=self._cold_started,
            init_timeout=init_timeout,
        )
        self._functions[spec.name] = _Function(spec, pool, config)

    def _instance_config(self, spec: FunctionSpec) -> InstanceConfig:
        if self.source_layout:
            code_dir = self.project_root / "functions" / spec.resource
            paths: tuple[str, ...] = (str(code_dir), str(self.project_root / "shared"))
        else:
            code_dir = spec.code
            paths = (str(code_dir),)
        log_path = self.data_dir / "logs" / f"{spec.name}.log" if self.data_dir is not None else None
        return InstanceConfig(
            spec.name,
            spec.handler,
            spec.runtime,
            spec.memory_size,
            spec.timeout,
            code_dir,
            paths,
            self.function_environment(spec, code_dir),
            self.region_id,
            self.account_id,
            log_path,
            python=self.python,
        )

    def function_environment(self, spec: FunctionSpec, code_dir: Path) -> dict[str, str]:
        """The environment FC gives an instance (FC_INSTANCE_ID aside): a few system variables, the s.yaml
        environment, the overrides, then FC's own variables and the role's credentials; no proxies."""
        environment = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
        environment.update(spec.environment)
        environment.update(self.environment_overrides)
        environment.update(
            {
                "FC_ACCOUNT_ID": self.account_id,
                "FC_FUNCTION_HANDLER": spec.handler,
                "FC_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                "FC_FUNCTION_NAME": spec.name,
                "FC_REGION": self.region_id,
                "FC_FUNC_CODE_PATH": str(code_dir),
                "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
            }
        )
        for name in (
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
            "ALIBABA_CLOUD_SECURITY_TOKEN",
            *PROXY_VARIABLES,
        ):
            environment.pop(name, None)
        credentials = self._credentials_for(spec)
        if credentials is not None:
            environment["ALIBABA_CLOUD_ACCESS_KEY_ID"] = credentials.access_key_id
            environment["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = credentials.access_key_secret
            if credentials.security_token:
                environment["ALIBABA_CLOUD_SECURITY_TOKEN"] = credentials.security_token
        return environment

    def update_environment(self, environment_overrides: Mapping[str, str]) -> None:
        """Replace the overrides (e.g. once endpoints on port 0 are known). Idle instances are stopped so
        the next invocations start with the new environment; busy ones finish with the old one."""
        with self._lock:
            self.environment_overrides = dict(environment_overrides)
            for state in self._functions.values():
                state.config = self._instance_config(state.spec)
                state.pool.config = state.config
        for state in self._functions.values():
            state.pool.stop_idle()

    def _credentials_for(self, spec: FunctionSpec) -> Account | None:
        if not spec.role:
            return None
        return self.role_accounts.get(role_name(spec.role), self.role_credentials)

    @property
    def function_names(self) -> list[str]:
        return list(self._functions)

    def spec(self, function: str) -> FunctionSpec:
        return self._function(function).spec

    def _function(self, name: str) -> _Function:
        function = self._functions.get(name)
        if function is None:
            raise exc.FunctionNotFound(name)
        return function

    @staticmethod
    def check_qualifier(function: str, qualifier: str | None) -> None:
        """Only LATEST exists here (no versions or aliases are published locally)."""
        if qualifier in (None, "", "LATEST"):
            return
        if qualifier.isdigit():
            raise exc.VersionNotFound(qualifier, function)
        raise exc.AliasNotFound(qualifier, function)

    # --- signatures (the local CAMS's checks call these) ---------------------------------------------------
    def use_nonce(self, nonce: str) -> bool:
        """False when ``nonce`` was seen within the clock-skew window (a replay)."""
        with self._lock:
            now = time.time()
            horizon = now - (self.max_clock_skew or DEFAULT_MAX_CLOCK_SKEW)
            for seen, at in list(self._nonces.items()):
                if at >= horizon:
                    break
                del self._nonces[seen]
            if nonce in self._nonces:
                return False
            self._nonces[nonce] = now
            return True

    # --- faults ---------------------------------------------------------------------------------------------
    def crash_next(self, function: str, point: str, n: int = 1) -> None:
        """The next ``n`` instances of ``function`` to reach the crash point ``point`` (a checkpoint of the
        module ``crash_module`` names) die there, as a crash would: every invocation (sync call or async attempt)
        runs with the point armed until it has killed ``n``. Invocations that never reach it (a duplicate
        that found the work taken, say) do not use it up, and of two that reach it at once only one dies."""
        self._function(function)
        if not self.crash_module:
            raise ValueError(
                "crash_next needs crash_module: the module, importable by the function's code, whose "
                "arm(*points, tokens=[(point, token_path)]) and disarm() the instances call"
            )
        tokens = []
        for _ in range(n):
            handle, name = tempfile.mkstemp(prefix=f"crash-{function}-", dir=self._fault_dir())
            os.close(handle)
            tokens.append((point, Path(name)))
        with self._lock:
            self._faults.crash_points[function].extend(tokens)

    def _fault_dir(self) -> str:
        with self._lock:
            if self._fault_tokens is None:
                self._fault_tokens = tempfile.mkdtemp(prefix="localfc-faults-")
            return self._fault_tokens

    def fail_next(
        self, function: str, n: int = 1, code: str = "InternalServerError", message: str | None = None
    ) -> None:
        """The next ``n`` invocations of ``function`` fail with a system error before reaching an instance:
        a sync call gets the error reply; an async attempt with ``ResourceExhausted`` is retried (without
        using up the retries), with any other code it goes to the ``onFailure`` destination, not retried."""
        self._function(function)
        exc.system_error(code)  # a bad code fails here, not later
        with self._lock:
            self._faults.system_errors[function].extend([(code, message)] * n)

    def duplicate_next(self, function: str, n: int = 1) -> None:
        """The next ``n`` async events of ``function`` are delivered twice (same request id and payload)."""
        self._function(function)
        with self._lock:
            self._faults.duplicates[function] += n

    def _take_system_error(self, function: str) -> exc.FcError | None:
        with self._lock:
            queued = self._faults.system_errors.get(function)
            if not queued:
                return None
            code, message = queued.popleft()
        return exc.system_error(code, message)

    def _armed_points(self, function: str) -> list[list[str]]:
        """The crash tokens of ``function`` not yet used up, as the worker takes them: ``[point, path]``."""
        with self._lock:
            armed = self._faults.crash_points.get(function)
            if not armed:
                return []
            armed[:] = [(point, token) for point, token in armed if token.exists()]
            return [[point, str(token)] for point, token in armed]

    def _take_duplicate(self, function: str) -> bool:
        with self._lock:
            if self._faults.duplicates.get(function, 0) > 0:
                self._faults.duplicates[function] -= 1
                return True
            return False

    # --- sync -----------------------------------------------------------------------------------------------
    def invoke_sync(
        self,
        function: str,
        payload: bytes,
        *,
        qualifier: str | None = None,
        trigger: TriggerKind = "api",
        request_id: str | None = None,
    ) -> SyncResult:
        """Run the handler now (waiting for a free instance if all are busy). FcError for a refused call
        (unknown function, payload too large, injected system error).

        ``request_id``: the id to run under, when the caller already put it into the event (an HTTP trigger's
        ``requestContext.requestId``); a new one otherwise. An HTTP trigger's size limit applies to the
        request body (checked by the trigger, :attr:`http_body_limit`), not to the event it became: a 32 MB
        binary body is a 43 MB base64 event (ASSUMED: FC's 32 MB limit is on the request it received)."""
        state = self._function(function)
        self.check_qualifier(function, qualifier)
        if trigger != "http" and len(payload) > SYNC_PAYLOAD_LIMIT:
            raise exc.EntityTooLarge(SYNC_PAYLOAD_LIMIT)
        request_id = request_id or new_request_id()
        try:
            system = self._take_system_error(function)
            if system is not None:
                raise system
            outcome = self._execute(state, request_id, payload, qualifier)
        except exc.FcError as system:
            self._record_system_error(state, request_id, "sync", trigger, 1, payload, system)
            raise
        self._record(state, request_id, "sync", trigger, 1, payload, outcome)
        return SyncResult(request_id, outcome)

    def _execute(self, state: _Function, request_id: str, payload: bytes, qualifier: str | None) -> Outcome:
        """Run on an instance. A function failure is an Outcome; the platform's own failure (no instance
        could be spawned) raises InternalServerError, a system error."""
        credentials = self._credentials_for(state.spec)
        header = {
            "request_id": request_id,
            "qualifier": qualifier or "LATEST",
            "arm": self._armed_points(state.spec.name),
            "arm_module": self.crash_module,
            "credentials": (
                {
                    "access_key_id": credentials.access_key_id,
                    "access_key_secret": credentials.access_key_secret,
                    "security_token": credentials.security_token,
                }
                if credentials
                else {}
            ),
        }
        try:
            return state.pool.run(header, payload)
        except InstanceSpawnError as failed:
            raise exc.InternalServerError(f"an internal error has occurred: {failed}") from failed

    # --- async ----------------------------------------------------------------------------------------------
    def invoke_async(
        self,
        function: str,
        payload: bytes,
        *,
        delay: float = 0,
        qualifier: str | None = None,
        task_id: str | None = None,
        trigger: TriggerKind = "api",
    ) -> str:
        """Queue an event (202 Accepted); returns its request id. FcError when refused."""
        self._function(function)
        self.check_qualifier(function, qualifier)
        if len(payload) > ASYNC_PAYLOAD_LIMIT:
            raise exc.EntityTooLarge(ASYNC_PAYLOAD_LIMIT)
        if not 0 <= delay <= MAX_ASYNC_DELAY:
            raise exc.InvalidArgument(f"x-fc-async-delay must be between 0 and {MAX_ASYNC_DELAY} seconds")
        request_id = new_request_id()
        now = self.clock()
        copies = 2 if self._take_duplicate(function) else 1
        with self._lock:
            if self._closed:
                raise exc.InternalServerError("the local FC is stopped")
            for copy in range(copies):
                event = _AsyncEvent(
                    request_id,
                    function,
                    payload,
                    trigger,
                    now,
                    qualifier,
                    task_id,
                    duplicate=copy > 0,
                    delayed=delay > 0,
                )
                self._pending += 1
                self._delayed += event.delayed
                self._schedule(event, now + delay)
        return request_id

    def _schedule(self, event: _AsyncEvent, due: float) -> None:
        with self._lock:
            heapq.heappush(self._queue, (due, next(self._sequence), event))
            self._changed.notify_all()
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch, name="local-fc-dispatcher", daemon=True
                )
                self._dispatcher.start()

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (not self._queue or self._queue[0][0] > self.clock()):
                    wait = self._queue[0][0] - self.clock() if self._queue else None
                    self._changed.wait(None if wait is None else min(max(wait, 0.001), 0.5))
                if self._closed:
                    return
                _, _, event = heapq.heappop(self._queue)
                if event.delayed:
                    event.delayed = False
                    self._delayed -= 1
            threading.Thread(
                target=self._attempt, args=(event,), name=f"local-fc-{event.function}", daemon=True
            ).start()

    def _attempt(self, event: _AsyncEvent) -> None:
        try:
            self._try_once(event)
        except Exception:  # never leave wait_idle() hanging on a bug
            log.exception("local FC: async attempt of %s failed unexpectedly", event.function)
            self._finished()

    def _try_once(self, event: _AsyncEvent) -> None:
        state = self._function(event.function)
        config = state.spec.async_config
        if self.clock() - event.accepted_at > config.max_async_event_age_in_seconds:
            self._record_dropped(state, event)
            self._deliver_destination(state, event, "EventAgeExceeded", config.on_failure)
            self._finished()
            return
        try:
            system = self._take_system_error(event.function)
            if system is not None:
                raise system
            outcome = self._execute(state, event.request_id, event.payload, event.qualifier)
        except exc.FcError as system:
            self._record_system_error(
                state,
                event.request_id,
                "async",
                event.trigger,
                event.attempts + 1,
                event.payload,
                system,
                event.duplicate,
            )
            if exc.is_retried_system_error(system):  # concurrency limit exceeded: backoff, retries kept
                event.system_failures += 1
                self._schedule(event, self.clock() + self._backoff(event.system_failures))
                return
            event.system_error = system  # internal error, insufficient resources: never retried
            self._deliver_destination(state, event, "SystemError", config.on_failure)
            self._finished()
            return
        event.attempts += 1
        event.last = outcome
        self._record(
            state,
            event.request_id,
            "async",
            event.trigger,
            event.attempts,
            event.payload,
            outcome,
            event.duplicate,
        )
        if outcome.status == "ok":
            self._deliver_destination(state, event, "Success", config.on_success)
        elif event.attempts <= config.max_async_retry_attempts:
            self._schedule(event, self.clock() + self._backoff(event.attempts))
            return
        else:
            self._deliver_destination(state, event, "RetriesExhausted", config.on_failure)
        self._finished()

    def _backoff(self, failures: int) -> float:
        return min(self.retry_base_delay * 2.0 ** (failures - 1), self.retry_max_delay)

    def _finished(self) -> None:
        with self._lock:
            self._pending -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float = 10.0, *, include_delayed: bool = False) -> bool:
        """Block until no async event is queued, running or waiting for a retry; False on timeout.

        Events whose first attempt ``x-fc-async-delay`` postponed (up to an hour: work scheduled for later,
        like a sweeper's follow-up) are only waited for with ``include_delayed``; see :meth:`scheduled`."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending - (0 if include_delayed else self._delayed) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
            return True

    @property
    def pending(self) -> int:
        """Async events accepted and not finished (queued, delayed, waiting for a retry, or running)."""
        with self._lock:
            return self._pending

    def scheduled(self) -> list[tuple[float, str, str]]:
        """The queued events as (due time, function, request id), soonest first."""
        with self._lock:
            return [(due, event.function, event.request_id) for due, _, event in sorted(self._queue)]

    # --- destinations ---------------------------------------------------------------------------------------
    def _deliver_destination(
        self, state: _Function, event: _AsyncEvent, condition: Condition, destination: str | None
    ) -> None:
        if not destination:
            return
        payload = self.destination_payload(state.spec.name, event, condition)
        target = self._destination_function(destination)
        refused = self._destination_refused(state.spec, destination, target)
        with self._lock:
            self.destinations.append(
                DestinationRecord(
                    event.request_id, state.spec.name, condition, destination, payload, target, refused
                )
            )
        if target is not None and refused is None:
            self.invoke_async(
                target, json.dumps(payload, ensure_ascii=False).encode("utf-8"), trigger="destination"
            )

    def _destination_refused(self, spec: FunctionSpec, destination: str, target: str | None) -> str | None:
        """FC delivers to a destination with the function's role ("Configure a destination for asynchronous
        invocations": the role needs ``mns:SendMessage`` on an MNS queue, ``fc:InvokeFunction`` on a function).
        Its policy decides; the refusal is recorded, the event not delivered. ASSUMPTION: the action for
        other destination kinds is ``<service>:<PutEvents|SendMessage>``-like: only MNS and FC are checked."""
        account = self._credentials_for(spec)
        if account is None or account.policy is None:
            return None
        if target is not None:
            action, resource = (
                "fc:InvokeFunction",
                f"acs:fc:{self.region_id}:{self.account_id}:functions/{target}",
            )
        elif destination.startswith("acs:mns:"):
            action, resource = "mns:SendMessage", destination
        else:
            return None
        decision = account.authorize(action, resource)
        if decision.allowed:
            return None
        return f"{decision.value}: role {account.role} may not {action} on {resource}"

    def _destination_function(self, destination: str) -> str | None:
        """The local function an ``acs:fc`` destination names (same region, our account or none)."""
        match = _FC_DESTINATION.match(destination)
        if not match or match["region"] != self.region_id or match["account"] not in ("", self.account_id):
            return None
        return match["name"] if match["name"] in self._functions else None

    def destination_payload(self, function: str, event: _AsyncEvent, condition: Condition) -> dict[str, Any]:
        last = event.last
        response: dict[str, Any] = {}
        response_payload: str | None = None
        if event.system_error is not None:
            response = {"statusCode": event.system_error.http_status, "errorCode": event.system_error.code}
            response_payload = json.dumps({"errorMessage": event.system_error.message})
        elif last is not None:
            failed = last.status != "ok"
            response = {"statusCode": 200, "functionError": UNHANDLED if failed else None}
            response_payload = (
                json.dumps(last.error) if failed else last.body.decode("utf-8", errors="replace")
            )
        return {
            "timestamp": iso8601(self.clock()),
            "requestContext": {
                "requestId": event.request_id,
                "functionArn": self.function_arn(function),
                "condition": condition,
                "approximateInvokeCount": event.attempts,
            },
            "requestPayload": event.payload.decode("utf-8", errors="replace"),
            "responseContext": response,
            "responsePayload": response_payload,
        }

    def function_arn(self, function: str) -> str:
        return f"acs:fc:{self.region_id}:{self.account_id}:functions/{function}"

    # --- triggers -------------------------------------------------------------------------------------------
    def attach_oss(self, oss_backend: Any) -> None:
        """Subscribe to an OSS emulator backend's events; each matching OSS trigger invokes async."""
        with self._lock:
            self._unsubscribe.append(oss_backend.subscribe(self.on_oss_event))

    def on_oss_event(self, event: dict[str, Any]) -> list[str]:
        """Deliver one FC3 OSS event to every function whose OSS trigger matches; their request ids."""
        record = (event.get("events") or [{}])[0]
        delivered = []
        for name, state in self._functions.items():
            for trigger in state.spec.triggers:
                if trigger.type == "oss" and oss_trigger_matches(trigger, record):
                    body = json.dumps(event, ensure_ascii=False).encode("utf-8")
                    delivered.append(
                        self.invoke_async(name, body, qualifier=trigger.qualifier, trigger="oss")
                    )
        return delivered

    def fire_timer(self, function: str, trigger_name: str, *, at: float | None = None) -> str:
        """Deliver the FC3 timer event of ``trigger_name`` now (async); nothing is scheduled by cron here.
        A disabled timer (``enable: false``) never fires in the cloud: ValueError."""
        state = self._function(function)
        trigger = next((t for t in state.spec.triggers if t.name == trigger_name and t.type == "timer"), None)
        if trigger is None:
            raise ValueError(f"{function} has no timer trigger named {trigger_name!r}")
        if trigger.config.get("enable") is False:
            raise ValueError(f"timer trigger {trigger_name!r} of {function} is disabled (enable: false)")
        fired = self.clock() if at is None else at
        event = {
            "triggerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(fired)),
            "triggerName": trigger_name,
            "payload": trigger.config.get("payload", ""),
        }
        return self.invoke_async(
            function, json.dumps(event).encode("utf-8"), qualifier=trigger.qualifier, trigger="timer"
        )

    # --- records --------------------------------------------------------------------------------------------
    def _cold_started(self, cold_start: ColdStart) -> None:
        with self._lock:
            self.cold_starts.append(cold_start)

    def _record(
        self,
        state: _Function,
        request_id: str,
        kind: InvocationKind,
        trigger: TriggerKind,
        attempt: int,
        payload: bytes,
        outcome: Outcome,
        duplicate: bool = False,
    ) -> None:
        error = (
            None
            if outcome.error is None
            else (f"{outcome.error.get('errorType', 'Error')}: {outcome.error.get('errorMessage', '')}")
        )
        self._append(
            InvocationRecord(
                request_id,
                state.spec.name,
                kind,
                trigger,
                attempt,
                outcome.started,
                outcome.ended,
                outcome.duration,
                state.spec.memory_size,
                outcome.status,
                error,
                len(payload),
                outcome.instance_id,
                duplicate,
                outcome.log,
            )
        )

    def _record_system_error(
        self,
        state: _Function,
        request_id: str,
        kind: InvocationKind,
        trigger: TriggerKind,
        attempt: int,
        payload: bytes,
        error: exc.FcError,
        duplicate: bool = False,
    ) -> None:
        now = time.time()
        self._append(
            InvocationRecord(
                request_id,
                state.spec.name,
                kind,
                trigger,
                attempt,
                now,
                now,
                0.0,
                state.spec.memory_size,
                "system_error",
                f"{error.code}: {error.message}",
                len(payload),
                None,
                duplicate,
            )
        )

    def _record_dropped(self, state: _Function, event: _AsyncEvent) -> None:
        now = time.time()
        age = self.clock() - event.accepted_at
        self._append(
            InvocationRecord(
                event.request_id,
                state.spec.name,
                "async",
                event.trigger,
                event.attempts + 1,
                now,
                now,
                0.0,
                state.spec.memory_size,
                "dropped",
                f"EventAgeExceeded: older than {state.spec.async_config.max_async_event_age_in_seconds} s "
                f"({age:.1f} s)",
                len(event.payload),
                None,
                event.duplicate,
            )
        )

    def _append(self, record: InvocationRecord) -> None:
        with self._lock:
            self.invocations.append(record)
            if self.data_dir is not None:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                with open(self.data_dir / "invocations.jsonl", "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({k: v for k, v in record.to_dict().items() if k != "log"}) + "\n")

    def records(self, function: str | None = None, *, status: str | None = None) -> list[InvocationRecord]:
        with self._lock:
            return [
                r
                for r in self.invocations
                if (function is None or r.function == function) and (status is None or r.status == status)
            ]

    def running(self, function: str) -> list[RunningInvocation]:
        """Test hook: the invocations of ``function`` running now, oldest first, each with the worker
        process that runs it, so that a test can freeze one mid-invocation (SIGSTOP, then SIGCONT) as a
        busy host's scheduler would. (Two copies of a duplicated event share a request id; their workers
        differ.) What FC's console shows as an instance's running requests."""
        return [
            RunningInvocation(function, request_id, instance_id, pid, started)
            for instance_id, pid, request_id, started in self._function(function).pool.running()
            if pid is not None
        ]

    def gb_seconds(self, function: str | None = None) -> float:
        """Sum of duration × memory (GB) over the attempts that ran: what FC bills as resource usage."""
        return sum(r.duration * r.memory_size / 1024 for r in self.records(function))

    def peak_busy(self, function: str) -> int:
        """The most instances of ``function`` ever busy at once (never above its max_instances)."""
        return self._function(function).pool.peak_busy

    def stats(self) -> dict[str, Any]:
        with self._lock:
            records = list(self.invocations)
            per_function = {
                name: {
                    "invocations": sum(1 for r in records if r.function == name),
                    "statuses": _count(r.status for r in records if r.function == name),
                    "cold_starts": sum(1 for c in self.cold_starts if c.function == name),
                    "peak_busy": state.pool.peak_busy,
                    "max_instances": state.pool.max_instances,
                    "gb_seconds": sum(
                        r.duration * r.memory_size / 1024 for r in records if r.function == name
                    ),
                }
                for name, state in self._functions.items()
            }
            return {
                "functions": per_function,
                "pending": self._pending,
                "destinations": len(self.destinations),
                "gb_seconds": self.gb_seconds(),
            }

    # --- life -----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget records, cold starts, destinations, nonces, pending faults and queued events; stop idle
        instances (the next invocations start cold). Running attempts finish; functions are kept."""
        with self._lock:
            self.invocations = []
            self.cold_starts = []
            self.destinations = []
            self._nonces.clear()
            for tokens in self._faults.crash_points.values():
                for _, token in tokens:
                    token.unlink(missing_ok=True)
            self._faults = _Faults()
            self._pending -= len(self._queue)
            self._delayed = 0
            self._queue.clear()
            self._changed.notify_all()
        for state in self._functions.values():
            state.pool.stop_idle()

    def close(self) -> None:
        """Stop the dispatcher, unsubscribe from OSS, stop every instance. Queued events are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending -= len(self._queue)
            self._delayed = 0
            self._queue.clear()
            unsubscribe, self._unsubscribe = self._unsubscribe, []
            self._changed.notify_all()
        for cancel in unsubscribe:
            cancel()
        for state in self._functions.values():
            state.pool.close()
        if self._dispatcher is not None:
            self._dispatcher.join(2.0)
        if self._fault_tokens is not None:
            shutil.rmtree(self._fault_tokens, ignore_errors=True)


def oss_trigger_matches(trigger: TriggerSpec, record: Mapping[str, Any]) -> bool:
    """Whether one OSS event record (``events[0]``) fires an OSS trigger: the bucket of ``sourceArn``
    (``acs:oss:<region>:<uid>:<bucket>``), one of ``triggerConfig.events`` (``oss:ObjectCreated:*`` style;
    the record's ``eventName`` has no ``oss:`` prefix) and ``filter.key`` prefix and suffix."""
    oss = record.get("oss") or {}
    bucket = (oss.get("bucket") or {}).get("name")
    key = str((oss.get("object") or {}).get("key") or "")
    if not trigger.source_arn or trigger.source_arn.split(":")[-1] != bucket:
        return False
    name = "oss:" + str(record.get("eventName", ""))
    if not any(_event_matches(name, str(pattern)) for pattern in trigger.config.get("events") or []):
        return False
    key_filter = (trigger.config.get("filter") or {}).get("key") or {}
    return key.startswith(key_filter.get("prefix") or "") and key.endswith(key_filter.get("suffix") or "")


def _event_matches(name: str, pattern: str) -> bool:
    if pattern.endswith(":*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _new_instance_id() -> str:
    return f"c-{int(time.time()):08x}-{secrets.token_hex(8)}"
