"""Retention (issue 17): input rows, batches and receipts carry phone numbers; they go once a job has been
finished for ``CHATAPP_RETENTION_DAYS`` (default 30; 0 = keep forever), and the job's summary outlives them.

- **The summary** (``JobRecord.summary``, with ``finished_at``) is written when a job finishes (``finalize``,
  the CLI's run), and by the purge itself, before anything goes, for a job that has none (a job finished by
  an older release). It holds the counts by report status (sent, failed, uncertain, pending, invalid,
  duplicate, cancelled, ...), the batches, and when it finished: see :func:`summary_of`.
- **SQLite** has no TTL: :meth:`RetentionStore.purge_finished` deletes the rows, batches and every feature
  table registered in :data:`PURGE_TABLES` of the jobs finished before a time, a few thousand rows per
  transaction (a 1M-row job never holds the write lock for long), and marks the job ``purged_at`` first, so a
  report asked for meanwhile answers "purged" rather than a partial report. ``chatapp-mass purge`` and the
  timer (at most once a day per store: :meth:`RetentionStore.claim_daily`) run it.
- **Tablestore** expires rows by the tables' time to live (``init-tables`` sets it on the tables of
  :data:`TTL_TABLES`: see ``TablestoreStore.init_tables``); jobs and the other tables keep -1 (forever), so the
  job row and its summary stay. Its ``purge_finished`` deletes nothing.

A feature module that keeps per-recipient data adds its table here, once, at import:
``PURGE_TABLES.append(("receipts", "job_id"))`` (SQLite: the table and the column naming the job) and
``TTL_TABLES.append("receipts")`` (Tablestore: the table's name without the prefix).

Which jobs are finished (:func:`finished_statuses`): every status the timer no longer acts on (completed,
failed, stopped, stalled, interrupted: ``SWEPT_STATUSES`` are the others) and ``cancelled``.
ASSUMPTION (the strict choice for privacy, the issue's "receipts and rows carry phone numbers"): a stopped,
stalled or interrupted job left that long is finished too, though it could have been resumed: after
``CHATAPP_RETENTION_DAYS`` untouched, its numbers go; its summary says what it came to.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.runtime import env
from chatapp_mass.store.interface import SWEPT_STATUSES, BatchStatus, JobRecord, JobStatus

DEFAULT_RETENTION_DAYS = 30
DAY = 86400.0
# SQLite: (table, the column naming the job) of per-recipient data deleted with a job's rows. Feature modules
# append theirs (see the module docs); a table that does not exist (yet) in a store file is passed over.
PURGE_TABLES: list[tuple[str, str]] = [
    ("rows", "job_id"),
    ("batches", "job_id"),
    ("suppressed_rows", "job_id"),  # store.suppression: the lines a sender left out (with their numbers)
]
# Tablestore: the tables (names without the prefix) whose rows expire by the table's time to live.
TTL_TABLES: list[str] = ["rows", "batches", "suppressed_rows"]
# Rows deleted per transaction: at ~100 bytes a row, a few milliseconds of write lock each.
PURGE_CHUNK = 5000


MAX_RETENTION_DAYS = 36500  # a hundred years: larger is "forever", which is 0


def retention_days(environ: Mapping[str, str] = os.environ) -> int:
    """``CHATAPP_RETENTION_DAYS``: whole days, default 30, 0 = keep forever; OptionsError naming it."""
    name = env.CHATAPP_RETENTION_DAYS
    text = environ.get(name, "").strip()
    if not text:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(text)
    except ValueError:
        raise OptionsError(
            f"{name}={text!r}: write the days a finished job's rows are kept as a whole number, e.g. "
            f"{name}=30 (0 = keep forever)"
        ) from None
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise OptionsError(
            f"{name}={days}: write a whole number of days from 0 (keep forever) to {MAX_RETENTION_DAYS}"
        )
    return days


def finished_statuses() -> tuple[JobStatus, ...]:
    """The statuses of a job whose rows may go once it is old enough (see the module docs)."""
    return tuple(s for s in JobStatus if s not in SWEPT_STATUSES) + (JobStatus.cancelled,)


def ttl_seconds(days: int) -> int:
    """A table's time_to_live for a retention of ``days``: -1 (forever) for 0, else days in seconds (at
    least the service's minimum, 86,400 s: one day, the TableOptions page)."""
    return -1 if days <= 0 else days * int(DAY)


def utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def summary_of(
    job: JobRecord, totals: dict[BatchStatus, tuple[int, int]], *, finished_at: float
) -> dict[str, Any]:
    """What a job came to, in recipients by report status, from its batch totals (``Store.batch_totals``)
    and its row counts: the figures its report would count, kept when the report no longer can be made.
    Feature stores may add their own keys (delivery counts) to the dict before it is stored."""

    def recipients(*statuses: BatchStatus) -> int:
        return sum(totals.get(s, (0, 0))[1] for s in statuses)

    return {
        "status": job.status.value,
        "rows": job.total_rows,
        "valid": job.valid,
        "sent": recipients(BatchStatus.sent),
        "failed": recipients(BatchStatus.failed),
        "uncertain": recipients(BatchStatus.uncertain),
        "cancelled": recipients(BatchStatus.cancelled),
        "pending": recipients(
            BatchStatus.pending, BatchStatus.claimed, BatchStatus.sending, BatchStatus.splitting
        ),
        "invalid": job.invalid,
        "duplicate": job.duplicate,
        "batches": sum(count for count, _ in totals.values()),
        "finished_at": utc(finished_at),
    }


@dataclass
class PurgeResult:
    """What a purge did (or, ``dry_run``, would do): the jobs, and rows deleted per table."""

    before: float
    dry_run: bool = False
    jobs: list[str] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": utc(self.before),
            "dry_run": self.dry_run,
            "jobs": self.jobs,
            "deleted": self.deleted,
            **({"note": self.note} if self.note else {}),
        }


class RetentionStore(abc.ABC):
    @abc.abstractmethod
    def purge_finished(
        self, before: float, *, dry_run: bool = False, now: float | None = None, chunk: int = PURGE_CHUNK
    ) -> PurgeResult:
        """Delete the rows, batches and registered feature rows of every job finished before ``before`` (by
        its ``finished_at``; a job of an older release without one: its ``updated_at``), ``chunk`` rows per
        transaction. Each job gets its summary first if it has none, then ``purged_at = now``, then its rows
        go. Never a job in another status (``finished_statuses``). Idempotent: a purge interrupted half-way
        is finished by the next; a purged job is not counted again. ``dry_run``: say what would go."""

    @abc.abstractmethod
    def claim_daily(self, now: float) -> bool:
        """The timer's marker: True (and recorded) if no purge was claimed in the 24 h before ``now``, so
        that of the timer's firings one a day purges. A cheap single-row conditional write."""
