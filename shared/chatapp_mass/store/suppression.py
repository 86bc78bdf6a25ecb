"""The suppression list: numbers never to message again, per space (the job's ``CustSpaceId``, or ``default``).

A number gets here by an operator (``chatapp-mass suppress add``, ``POST /suppressions``), an import, a Viber
``unsubscribe`` receipt or an inbound STOP keyword (the receipts helper calls :meth:`SuppressionStore.add`).
It is checked twice for every job, so that a suppressed number is never in a SenderList sent after it was
suppressed:

- at plan time (``services.plan``): a row whose number is on the list gets the row status ``suppressed``, and
  is in no batch;
- by the sender just before its call (``services.dispatch``): a number suppressed since the plan is left out
  of the SenderList, and the row is *marked* (:meth:`SuppressionStore.mark_rows`, per (job_id, line)) so that
  the report says ``suppressed`` for it. A marked line is never sent by that job afterwards, even if the
  number is taken off the list meanwhile (the report and the wire always agree).

``suppressed`` is the sender's hot path (a batch of 1,000 per call): one round trip per :data:`LOOKUP_CHUNK`
numbers (Tablestore BatchGetRow takes at most 100 rows), one query per chunk in SQLite.

Backends: ``suppression_sqlite.SqliteSuppression`` and ``suppression_tablestore.TablestoreSuppression``; one
contract suite (tests/contract/test_suppression_contract.py) runs on both; ``store.features.open_suppression``
picks one for a main store.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

DEFAULT_SPACE = "default"
# Why a number is on the list (the receipts helper uses unsubscribe and stop-keyword).
REASONS = ("operator", "unsubscribe", "stop-keyword", "import")
LOOKUP_CHUNK = 100  # numbers per round trip: Tablestore's BatchGetRow limit (100 rows per request)
PAGE_MAX = 1000  # the most a list page returns
MAX_SPACE = 64  # characters of a space name (a CustSpaceId is far shorter)


class Suppression(NamedTuple):
    """One number on the list of a space (``number`` in the wire form: E.164 digits, no '+')."""

    space: str
    number: str
    reason: str
    at: float  # epoch seconds it was added
    source: str = ""  # who or what added it (a user, a file name, a receipt's MessageId)


class MarkedRow(NamedTuple):
    """A job's row the sender left out of its call: the number was suppressed after the plan."""

    job_id: str
    line: int
    to: str
    batch_seq: int  # the row's planned batch (``RowRecord.batch_seq``)
    at: float


def space_of(options: Mapping[str, Any]) -> str:
    """The space a job's numbers are checked in: its ``CustSpaceId`` option (``JobOptions.to_api()``)."""
    return str(options.get("CustSpaceId") or DEFAULT_SPACE)


def check_space(space: str) -> str:
    """The space, or ValueError naming what is wrong with it."""
    if not isinstance(space, str) or not space.strip():
        raise ValueError("space: give a space name (the job's CustSpaceId), or 'default'")
    if len(space) > MAX_SPACE:
        raise ValueError(f"space: at most {MAX_SPACE} characters, got {len(space)}")
    return space.strip()


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise ValueError(f"reason: one of {', '.join(REASONS)}; got {reason!r}")
    return reason


def check_numbers(numbers: Sequence[str]) -> list[str]:
    """The numbers without repeats, in order; ValueError for one that is not in the wire form (digits only)."""
    if isinstance(numbers, str):
        raise ValueError("numbers: give a list of numbers, not one string")
    bad = [n for n in numbers if not (isinstance(n, str) and n.isascii() and n.isdigit() and len(n) <= 20)]
    if bad:
        raise ValueError(
            f"numbers: {bad[:3]!r} not in the wire form (E.164 digits without '+'); normalize them first"
        )
    return list(dict.fromkeys(numbers))


def chunks(items: Sequence[str], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_limit(limit: int) -> int:
    if not 1 <= limit <= PAGE_MAX:
        raise ValueError(f"limit: between 1 and {PAGE_MAX}, got {limit}")
    return limit


class SuppressionStore(abc.ABC):
    @abc.abstractmethod
    def add(self, space: str, numbers: Sequence[str], *, reason: str, source: str = "") -> int:
        """Put ``numbers`` (wire form) on the list of ``space``; returns how many were not on it already.
        Idempotent: a number already listed keeps its first reason, time and source."""

    @abc.abstractmethod
    def remove(self, space: str, numbers: Sequence[str]) -> int:
        """Take ``numbers`` off the list of ``space``; returns how many were on it."""

    @abc.abstractmethod
    def list(self, space: str, *, after: str = "", limit: int = 100) -> list[Suppression]:
        """The numbers of ``space`` in number order, those after ``after`` only (the next page: pass the
        last number of the page before), at most ``limit`` (1..PAGE_MAX)."""

    @abc.abstractmethod
    def suppressed(self, space: str, numbers: Sequence[str]) -> set[str]:
        """Which of ``numbers`` are on the list of ``space``: one round trip per LOOKUP_CHUNK numbers."""

    @abc.abstractmethod
    def mark_rows(self, rows: Sequence[MarkedRow]) -> None:
        """Record rows the sender left out of its call (idempotent: a row marked again keeps its first mark)."""

    @abc.abstractmethod
    def marked_rows(
        self, job_id: str, first_line: int = 0, last_line: int | None = None
    ) -> builtins.list[MarkedRow]:
        """The job's marked rows between ``first_line`` and ``last_line`` (inclusive; None: to the end), by
        line: one read for a batch's range."""
