"""Leases: one owner at a time for work that can be done twice at the same time, fenced.

Function Compute delivers async events at least once, OSS may repeat an event, the timer fires again, an
operator reruns a command: two deliveries of the same work overlapping is the normal case. Every piece of
such work therefore has one owner, named by a token (:func:`owner_id`):

- **a job's plan**: ``JobRecord.plan_owner`` / ``plan_expires`` (``plan.plan_job``);
- **a batch**: ``BatchRecord.owner`` / ``claim_expires`` (``dispatch.JobRunner``).

Every write of that work carries the token as a condition (``Store.update_job(expect_plan_owner=...)``,
``Store.transition_batch(expect_owner=...)``), so the write of an owner that lost its lease is refused by the
store itself, however late it arrives. A live owner renews its lease (:class:`Heartbeat`), so only a silent
one (dead, or paused longer than the lease) loses it; someone else may then take it over — only an expired
one, by a conditional write from the expired state.

What a lease cannot fence is a write outside the store: the CAMS call. So nobody calls CAMS without knowing,
just before, that its claim is still valid by its own clock (``Heartbeat.valid``); what remains is a pause
between that check and the request leaving (see README "What is guaranteed").
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable

from chatapp_mass.runtime import logs

log = logging.getLogger(__name__)

PLAN_LEASE = 60.0  # seconds a planning lease lasts unless renewed (renewed every third of it)
# A lease is trusted for a call only while more than this is left of it by the owner's clock: room for clock
# differences between the owner and whoever may take the work over once it expires.
CLOCK_SKEW = 2.0


def owner_id() -> str:
    """A token naming one owner: host, process and a random part (one process runs several owners)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str) -> bool:
    """Only an owner of a process on this host that no longer exists is known dead before its lease ends."""
    try:
        host, pid, _ = owner.rsplit(":", 2)
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False


class Heartbeat:
    """Renews leases every ``interval`` seconds, in a daemon thread once :meth:`start` ed.

    ``renew`` does one round (conditional writes) and returns False when the lease it renews is gone; ``lost``
    is then set for good. A simulation drives :meth:`tick` itself instead of starting the thread.
    """

    def __init__(self, renew: Callable[[], bool], interval: float, *, name: str = "heartbeat") -> None:
        self._renew = renew
        self.interval = interval
        self.name = name
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=logs.carried(self._run), name=self.name, daemon=True)
        self._thread.start()
        return self

    def tick(self) -> bool:
        """One round of renewals; False once the lease is lost."""
        if self.lost.is_set():
            return False
        try:
            alive = self._renew()
        except Exception as error:  # a store failure: the lease may still be ours; the next round retries
            log.warning("lease not renewed this round", extra={"lease": self.name, "error": str(error)})
            return True
        if not alive:
            self.lost.set()
            log.warning("lease lost: another owner has it now", extra={"lease": self.name})
        return alive

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.tick():
                return


def remaining(expires: float, now: float) -> float:
    """How long a lease that ends at ``expires`` can still be trusted at ``now`` (negative: not at all)."""
    return expires - now - CLOCK_SKEW
