"""Named crash points, for fault tests only.

Production code calls :func:`checkpoint` at the steps where a crash would matter (``"ingest.planned"``,
``"sender.claimed"``, ``"sender.after_call"``, ...). Nothing happens unless a test harness armed that point in
this process with :func:`arm` — the local FC emulator does, per invocation, to kill the instance there the
way a real crash (out of memory, timeout, host failure) would: no cleanup, no reply, no ``finally``.
"""

from __future__ import annotations

import os
import sys
import threading

CRASH_EXIT_CODE = 86

_armed: set[str] = set()
_lock = threading.Lock()


def arm(*points: str) -> None:
    with _lock:
        _armed.update(points)


def disarm() -> None:
    with _lock:
        _armed.clear()


def checkpoint(name: str) -> None:
    """Die here, at once, if a test armed ``name``; otherwise nothing."""
    if _armed and name in _armed:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
