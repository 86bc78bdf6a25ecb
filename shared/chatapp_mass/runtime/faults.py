"""Named crash points, for fault tests only.

Production code calls :func:`checkpoint` at the steps where a crash would matter (``"ingest.planned"``,
``"sender.claimed"``, ``"sender.after_call"``, ...). Nothing happens unless a test harness armed that point in
this process with :func:`arm` — the local FC emulator does, per invocation, to kill the instance there the
way a real crash (out of memory, timeout, host failure) would: no cleanup, no reply, no ``finally``.

A point can be armed with *tokens*: files shared by every instance of a function. Reaching the point
removes one token; only the instance whose removal succeeded dies, the others go on. That makes "the next
``n`` instances to reach this point die" exact even when many instances run at once and the one that will
reach it cannot be known in advance (which of two duplicated events plans, which sender claims the batch).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable

CRASH_EXIT_CODE = 86

_armed: dict[str, list[str | None]] = {}
_lock = threading.Lock()


def arm(*points: str, tokens: Iterable[tuple[str, str]] = ()) -> None:
    """Arm ``points`` unconditionally, and each ``(point, token_path)`` of ``tokens`` for as long as its
    token file exists (whoever removes it dies)."""
    with _lock:
        for point in points:
            _armed.setdefault(point, []).append(None)
        for point, token in tokens:
            _armed.setdefault(point, []).append(token)


def disarm() -> None:
    with _lock:
        _armed.clear()


def checkpoint(name: str) -> None:
    """Die here, at once, if a test armed ``name`` (and, for a token, this instance took it); otherwise
    nothing."""
    if not _armed or name not in _armed:
        return
    with _lock:
        tokens = list(_armed.get(name, ()))
    for token in tokens:
        if token is None or _take(token):
            _die()


def _take(token: str) -> bool:
    try:
        os.unlink(token)  # atomic: of the instances that reach the point at once, one removes the file
    except FileNotFoundError:
        return False
    return True


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)
