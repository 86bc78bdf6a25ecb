"""Instances of a function: worker subprocesses (see :mod:`.worker`) and the warm pool that bounds them.

An :class:`Instance` is one ``python worker.py`` process serving one invocation at a time. An
:class:`InstancePool` keeps a function's instances: at most ``max_instances`` busy at once (more callers
wait for a slot), idle ones reused (warm), a new one started (cold) only when none is idle, and one that
crashed, timed out or failed to import thrown away. So the number of live instances never exceeds
``max_instances`` either.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from .worker import read_frame, write_frame

log = logging.getLogger(__name__)

WORKER_SCRIPT = str(Path(__file__).with_name("worker.py"))
DEFAULT_INIT_TIMEOUT = 30.0  # seconds an instance may take to start and import its handler
OutcomeStatus = Literal["ok", "error", "crash", "timeout"]


@dataclass(frozen=True)
class InstanceConfig:
    """Everything needed to start an instance of one function (the environment is complete but for
    ``FC_INSTANCE_ID``, which each instance gets its own)."""

    function: str
    handler: str
    runtime: str
    memory_size: int
    timeout: int
    code_dir: Path
    paths: tuple[str, ...]
    environment: dict[str, str]
    region: str
    account_id: str
    log_path: Path | None = None
    python: str = sys.executable

    def init_frame(self) -> dict[str, Any]:
        return {
            "op": "init",
            "paths": list(self.paths),
            "handler": self.handler,
            "runtime": self.runtime,
            "region": self.region,
            "account_id": self.account_id,
            "function": {
                "name": self.function,
                "handler": self.handler,
                "memory": self.memory_size,
                "timeout": self.timeout,
            },
        }


@dataclass
class Outcome:
    """What one invocation on an instance came to."""

    status: OutcomeStatus
    body: bytes = b""
    error: dict[str, Any] | None = None
    log: str = ""
    started: float = 0.0
    ended: float = 0.0
    instance_id: str | None = None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)


@dataclass(frozen=True)
class ColdStart:
    """One instance start: ``seconds`` from spawn to ready (interpreter start + handler import),
    ``import_seconds`` the handler import alone."""

    function: str
    seconds: float
    instance_id: str
    import_seconds: float | None = None
    ok: bool = True


class InstanceStartError(Exception):
    """The function's code failed to start (import error, crash, init timeout): a function error."""

    def __init__(self, outcome: Outcome, cold_start: ColdStart) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome
        self.cold_start = cold_start


class InstanceSpawnError(Exception):
    """The platform could not create an instance at all (the process could not be spawned): a system error,
    not the function's (FcBackend turns it into InternalServerError)."""


_EOF = object()


class Instance:
    """One worker subprocess. Not thread-safe: the pool hands it to one caller at a time."""

    def __init__(self, config: InstanceConfig, instance_id: str) -> None:
        self.config = config
        self.id = instance_id
        self.invocations = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._frames: queue.Queue[Any] = queue.Queue()
        self._log: IO[bytes] | None = None
        self.request_id: str | None = None  # the invocation it runs now (test hook: FcBackend.running)
        self.invoke_started = 0.0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, init_timeout: float = DEFAULT_INIT_TIMEOUT) -> ColdStart:
        """Spawn and wait for the handler import; InstanceStartError (instance dead) when it fails."""
        config = self.config
        if not config.code_dir.is_dir():
            now = time.time()
            outcome = Outcome(
                "error",
                error={
                    "errorMessage": f"the code directory {config.code_dir} does not exist",
                    "errorType": "CodeNotFound",
                },
                started=now,
                ended=now,
            )
            raise InstanceStartError(outcome, ColdStart(config.function, 0.0, self.id, None, ok=False))
        environment = dict(config.environment, FC_INSTANCE_ID=self.id)
        if config.log_path is not None:
            config.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(config.log_path, "ab")  # noqa: SIM115 - closed in stop()
        began = time.perf_counter()
        try:
            self._process = subprocess.Popen(
                [config.python, "-u", WORKER_SCRIPT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                cwd=config.code_dir,
                env=environment,
                close_fds=True,
            )
        except OSError as error:
            if self._log is not None:
                self._log.close()
                self._log = None
            raise InstanceSpawnError(f"could not start an instance of {config.function}: {error}") from error
        threading.Thread(target=self._read, name=f"local-fc-{self.id}", daemon=True).start()
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):  # it died at once; the reader reports the end
            write_frame(self._process.stdin, config.init_frame())
        ready = self._next_frame(init_timeout)
        seconds = time.perf_counter() - began
        if ready is None or ready is _EOF or "error" in ready[0]:
            outcome = self._failed_start(ready, init_timeout)
            self.stop()
            raise InstanceStartError(outcome, ColdStart(config.function, seconds, self.id, None, ok=False))
        return ColdStart(config.function, seconds, self.id, ready[0].get("import_seconds"))

    def _failed_start(self, ready: Any, init_timeout: float) -> Outcome:
        now = time.time()
        if ready is None:
            return Outcome(
                "timeout",
                error={
                    "errorMessage": f"Function instance initialization timed out "
                    f"after {init_timeout:g} seconds"
                },
                started=now,
                ended=now,
            )
        if ready is _EOF:
            return Outcome(
                "crash", error=self._exit_error("while importing the handler"), started=now, ended=now
            )
        return Outcome("error", error=ready[0]["error"], started=now, ended=now)

    def invoke(self, header: dict[str, Any], payload: bytes, timeout: float) -> Outcome:
        """Run one invocation; a crash or a timeout leaves the instance dead (the pool replaces it)."""
        assert self._process is not None and self._process.stdin is not None
        self.invocations += 1
        started = time.time()
        self.request_id, self.invoke_started = str(header.get("request_id") or ""), started
        try:
            with contextlib.suppress(
                OSError
            ):  # the instance is gone; the reader has (or will have) reported the end
                write_frame(self._process.stdin, {"op": "invoke", **header}, payload)
            frame = self._next_frame(timeout)
        finally:
            self.request_id = None
        ended = time.time()
        if frame is None:
            self.kill()
            return Outcome(
                "timeout",
                error={"errorMessage": f"Function timed out after {timeout:g} seconds"},
                started=started,
                ended=ended,
                instance_id=self.id,
            )
        if frame is _EOF:
            return Outcome(
                "crash",
                error=self._exit_error("before completing request"),
                started=started,
                ended=ended,
                instance_id=self.id,
            )
        reply, body = frame
        if reply.get("ok"):
            return Outcome("ok", body, None, reply.get("log", ""), started, ended, self.id)
        return Outcome("error", b"", reply.get("error"), reply.get("log", ""), started, ended, self.id)

    def _exit_error(self, when: str) -> dict[str, Any]:
        code = self._process.wait(5) if self._process is not None else None
        return {
            "errorMessage": f"Process exited unexpectedly {when} (exit code {code})",
            "errorType": "InstanceCrashed",
        }

    def _next_frame(self, timeout: float) -> Any:
        try:
            return self._frames.get(timeout=timeout)
        except queue.Empty:
            return None

    def _read(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None
        try:
            while True:
                frame = read_frame(process.stdout)
                if frame is None:
                    break
                self._frames.put(frame)
        except (EOFError, OSError, ValueError):
            pass
        self._frames.put(_EOF)

    def kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)

    def stop(self, grace: float = 2.0) -> None:
        """Close its input (the worker exits at end of input); kill it if it lingers."""
        process = self._process
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class PoolStats:
    busy: int = 0
    peak_busy: int = 0
    idle: list[Instance] = field(default_factory=list)
    live: set[Instance] = field(default_factory=set)


class InstancePool:
    """A function's instances: at most ``max_instances`` busy at once; idle ones reused."""

    def __init__(
        self,
        config: InstanceConfig,
        max_instances: int,
        *,
        new_id: Callable[[], str],
        on_cold_start: Callable[[ColdStart], None],
        init_timeout: float = DEFAULT_INIT_TIMEOUT,
    ) -> None:
        if max_instances < 1:
            raise ValueError(f"max_instances of {config.function} must be at least 1")
        self.config = config
        self.max_instances = max_instances
        self._slots = threading.BoundedSemaphore(max_instances)
        self._lock = threading.Lock()
        self._stats = PoolStats()
        self._new_id = new_id
        self._on_cold_start = on_cold_start
        self._init_timeout = init_timeout
        self._closed = False

    @property
    def busy(self) -> int:
        return self._stats.busy

    @property
    def peak_busy(self) -> int:
        return self._stats.peak_busy

    @property
    def idle(self) -> int:
        with self._lock:
            return len(self._stats.idle)

    def run(self, header: dict[str, Any], payload: bytes) -> Outcome:
        """Wait for a slot, run on a warm instance (or a new one), give the slot back."""
        self._slots.acquire()
        try:
            self._enter()
            try:
                instance = self._take_instance()
            except InstanceStartError as failed:
                return failed.outcome
            outcome = instance.invoke(header, payload, float(self.config.timeout))
            self._give_back(instance, healthy=outcome.status in ("ok", "error"))
            return outcome
        finally:
            self._leave()
            self._slots.release()

    def running(self) -> list[tuple[str, int | None, str, float]]:
        """(instance id, worker pid, request id, started) of each invocation running now, oldest first."""
        with self._lock:
            busy = [i for i in self._stats.live if i not in self._stats.idle]
        return sorted(
            ((i.id, i.pid, request_id, i.invoke_started) for i in busy if (request_id := i.request_id)),
            key=lambda item: item[3],
        )

    def _enter(self) -> None:
        with self._lock:
            self._stats.busy += 1
            self._stats.peak_busy = max(self._stats.peak_busy, self._stats.busy)

    def _leave(self) -> None:
        with self._lock:
            self._stats.busy -= 1

    def _take_instance(self) -> Instance:
        with self._lock:
            while self._stats.idle:
                instance = self._stats.idle.pop()
                if instance.alive:
                    return instance
                self._stats.live.discard(instance)
                instance.stop(grace=0)
        instance = Instance(self.config, self._new_id())
        try:
            cold_start = instance.start(self._init_timeout)
        except InstanceStartError as failed:
            self._on_cold_start(failed.cold_start)
            raise
        self._on_cold_start(cold_start)
        with self._lock:
            self._stats.live.add(instance)
        return instance

    def _give_back(self, instance: Instance, healthy: bool) -> None:
        with self._lock:
            if healthy and instance.alive and not self._closed:
                self._stats.idle.append(instance)
                return
            self._stats.live.discard(instance)
        instance.stop(grace=0.5)

    def stop_idle(self) -> None:
        with self._lock:
            idle, self._stats.idle = self._stats.idle, []
            self._stats.live.difference_update(idle)
        for instance in idle:
            instance.stop()

    def close(self) -> None:
        """Stop the idle instances and kill the busy ones (their invocations end as crashes)."""
        with self._lock:
            self._closed = True
            busy = list(self._stats.live.difference(self._stats.idle))
        self.stop_idle()
        for instance in busy:
            instance.kill()
