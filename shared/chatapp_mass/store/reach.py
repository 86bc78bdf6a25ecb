"""The messaging limit's window: how many recipients each From number reached in the last 24 h, account-wide.

WhatsApp caps the unique users a business number may message per rolling 24 hours (its tier:
``core.messaging``). Every sender of every job on one From shares one window, kept in the store like the rate
window (``ratewindow``): **one row per From** holding its recent entries ``[at, size, token]`` and a version,
read and written atomically (SQLite: one ``BEGIN IMMEDIATE`` transaction; Tablestore: a write conditional on
the version read, re-read on a lost race). A sender **reserves** a batch's recipients before its call
(:meth:`ReachStore.reserve`): granted only if the window, with them, stays within the limit -- never over the
cap, whatever the concurrency. Then:

- the call may have reached CAMS (sent, uncertain): the entry stays, and :meth:`ReachStore.settle` moves its
  time to when the call ended (later only: WhatsApp counts from when it sent, never before our call);
- nothing was sent for certain (never called, refused by CAMS as a whole): :meth:`ReachStore.release`.

An entry counts while ``at > now - window``; it drops out at ``at + window``.

STRICT ASSUMPTION (Meta's counting rule is not documented by CAMS): every recipient sent counts as a new unique
user -- a number messaged twice in 24 h is counted twice. Overcounting can only keep us under the cap.

The row is bounded: past :data:`MAX_ENTRIES` entries the oldest two are merged into one (count summed, the
later time kept: it counts as long as its later part would -- never shorter). A merged entry's tokens can no
longer be released (it stays counted: strict).

Pure rules here (:func:`reserve_entries`, :func:`release_entries`, :func:`settle_entries`, :func:`free_at`);
backends ``reach_sqlite.SqliteReach`` and ``reach_tablestore.TablestoreReach`` apply them; one contract suite
(tests/contract/test_reach_contract.py) runs on both. ``store.features.open_reach`` picks one.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

DAY = 86_400.0
MAX_ENTRIES = 2_000  # ~80 KB of JSON in the row: far under Tablestore's 2 MB per value
NEVER = math.inf


class Entry(NamedTuple):
    at: float  # when the recipients counted from (reservation; moved to the call's end by settle)
    size: int
    token: str  # the reservation's (empty once merged: nothing can release it)


class Grant(NamedTuple):
    """A reservation's answer. ``used``: recipients counted in the window now (with this reservation if
    granted); ``available``: what is left of the limit now (None: unlimited); ``next_free_at``: ``now`` when
    granted, else when ``count`` fits (:data:`NEVER` if ``count`` is over the limit itself)."""

    granted: bool
    used: int
    available: int | None
    next_free_at: float


class Usage(NamedTuple):
    used: int
    entries: int
    oldest_at: float | None  # the oldest counted entry's time: it frees at oldest_at + window


# --- the pure rules ---------------------------------------------------------------------------------------
def live(entries: Iterable[Entry], now: float, window: float) -> list[Entry]:
    """The entries still counted at ``now``, oldest first."""
    return sorted((e for e in entries if e.at > now - window), key=lambda e: e.at)


def free_at(counted: Sequence[Entry], count: int, limit: int | None, window: float, now: float) -> float:
    """The earliest time, not before ``now``, at which ``count`` more fit under ``limit`` given the counted
    entries (oldest first): entries leave the window oldest first, each at ``at + window``."""
    if limit is None:
        return now
    if count > limit:
        return NEVER
    used = sum(e.size for e in counted)
    if used + count <= limit:
        return now
    for entry in counted:
        used -= entry.size
        if used + count <= limit:
            return max(now, entry.at + window)
    return NEVER  # not reached: with every entry gone, count <= limit fits


def compact(entries: list[Entry]) -> list[Entry]:
    """At most :data:`MAX_ENTRIES`: the oldest two merged (later time, summed count) until it fits."""
    entries = sorted(entries, key=lambda e: e.at)
    while len(entries) > MAX_ENTRIES:
        first, second = entries[0], entries[1]
        entries[:2] = [Entry(max(first.at, second.at), first.size + second.size, "")]
    return entries


def reserve_entries(
    entries: Sequence[Entry], count: int, limit: int | None, window: float, now: float, token: str
) -> tuple[Grant, list[Entry] | None]:
    """Decide a reservation: its :class:`Grant`, and the entries to write (None: nothing to write). A token
    already in the window is granted again without a write (a retried reservation is idempotent)."""
    counted = live(entries, now, window)
    used = sum(e.size for e in counted)
    if token and any(e.token == token for e in counted):
        return Grant(True, used, None if limit is None else max(limit - used, 0), now), None
    at = free_at(counted, count, limit, window, now)
    if at > now:
        return Grant(False, used, max(limit - used, 0) if limit is not None else None, at), None
    written = compact([*counted, Entry(now, count, token)])
    used += count
    return Grant(True, used, None if limit is None else limit - used, now), written


def release_entries(entries: Sequence[Entry], token: str, now: float, window: float) -> list[Entry] | None:
    """The entries without ``token``'s reservation (None: it is not there, nothing to write)."""
    if not token or not any(e.token == token for e in entries):
        return None
    return [e for e in live(entries, now, window) if e.token != token]


def settle_entries(
    entries: Sequence[Entry], token: str, at: float, now: float, window: float
) -> list[Entry] | None:
    """``token``'s entry counted from ``at`` if that is later (None: nothing to change). An entry out of the
    window already stays out (a call longer than the window: never revived over what was granted since)."""
    counted = live(entries, now, window)
    if not token or not any(e.token == token and e.at < at for e in counted):
        return None
    return [Entry(at, e.size, e.token) if e.token == token and e.at < at else e for e in counted]


def usage_of(entries: Sequence[Entry], now: float, window: float) -> Usage:
    counted = live(entries, now, window)
    return Usage(sum(e.size for e in counted), len(counted), counted[0].at if counted else None)


def encode(entries: Sequence[Entry]) -> str:
    return json.dumps([[e.at, e.size, e.token] for e in entries], separators=(",", ":"))


def decode(text: str | None) -> list[Entry]:
    return [Entry(float(at), int(count), str(token)) for at, count, token in json.loads(text or "[]")]


# --- the interface ----------------------------------------------------------------------------------------
class ReachStore(abc.ABC):
    """Per From number, the recipients reached in the rolling window. Every method takes ``now`` (None: the
    store's clock, read inside the atomic step) and ``window`` (seconds, default 24 h)."""

    @abc.abstractmethod
    def reserve(
        self,
        from_number: str,
        count: int,
        limit: int | None,
        *,
        token: str,
        window: float = DAY,
        now: float | None = None,
    ) -> Grant:
        """Atomically: count ``count`` recipients now under ``token`` if the window stays within ``limit``
        (None: always), else change nothing and say when they would fit (:func:`reserve_entries`)."""

    @abc.abstractmethod
    def release(self, from_number: str, token: str, *, window: float = DAY, now: float | None = None) -> bool:
        """Drop ``token``'s reservation (its call was never made, or refused as a whole by CAMS). True if
        it was there. Only for a call that cannot have sent anything: one that may have stays counted."""

    @abc.abstractmethod
    def settle(
        self, from_number: str, token: str, at: float, *, window: float = DAY, now: float | None = None
    ) -> bool:
        """``token``'s call ended at ``at``: its entry counts from then (moved later only)."""

    @abc.abstractmethod
    def usage(self, from_number: str, *, window: float = DAY, now: float | None = None) -> Usage:
        """What the window of ``from_number`` counts now."""
