"""Retention (issue 17), the service side: the setting, the summary written when a job finishes, the purge
(``chatapp-mass purge``, and the timer once a day), and telling a reader that a job's rows are gone.
The stores' part and the rules: ``store.retention``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chatapp_mass.core.errors import ChatAppMassError
from chatapp_mass.runtime import env
from chatapp_mass.services.report import job_summary
from chatapp_mass.store.features import open_retention
from chatapp_mass.store.interface import JobRecord, Store
from chatapp_mass.store.retention import (
    DAY,
    PurgeResult,
    finished_statuses,
    summary_of,
    utc,
)
from chatapp_mass.store.sqlite import SqliteStore

log = logging.getLogger(__name__)


def record_summary(
    store: Store, job: JobRecord, *, now: float, extra: Mapping[str, Any] | None = None
) -> None:
    """The job just finished: its summary (and ``finished_at``) on its record, while its rows are here.
    Written again by a later finalize (a reconciliation found batches): the latest figures win, until the
    rows are purged."""
    current = store.get_job(job.job_id) or job
    if current.purged_at:  # the rows are gone: the summary written while they were here stays
        return
    summary = summary_of(current, store.batch_totals(job.job_id), finished_at=now)
    summary.update(extra or {})
    store.update_job(job.job_id, summary=summary, finished_at=now)


def purge(store: Store, days: int, *, now: float, dry_run: bool = False) -> PurgeResult:
    """Purge the jobs finished more than ``days`` ago (``days`` 0: nothing, ever)."""
    before = now - days * DAY
    if days <= 0:
        return PurgeResult(
            before=before, dry_run=dry_run, note=f"{env.CHATAPP_RETENTION_DAYS}=0: kept forever"
        )
    result = open_retention(store).purge_finished(before, dry_run=dry_run, now=now)
    if result.jobs and not dry_run:
        log.info("purged", extra={"jobs": len(result.jobs), "deleted": result.deleted})
    return result


def daily_purge(store: Store, days: int, *, now: float) -> PurgeResult | None:
    """The timer's purge: at most once a day per store (a marker row), never for 0 days; None if not run."""
    if days <= 0 or not isinstance(store, SqliteStore):
        return None  # Tablestore: the tables' TTL does it
    retention = open_retention(store)
    if not retention.claim_daily(now):
        return None
    return retention.purge_finished(now - days * DAY, now=now)


def rows_gone_at(job: JobRecord, store: Store, days: int, *, now: float) -> float | None:
    """When a job's rows went (or began to expire), or None if they are there: SQLite marks ``purged_at``;
    on Tablestore, rows expire ``days`` after they were written, the earliest at the job's creation (its
    plan) plus the time to live. ASSUMPTION (cell TTL is per written version, the "Data versions and TTL"
    page): a finished job's report is refused from then on, rather than answered with rows missing."""
    if job.purged_at:
        return job.purged_at
    if isinstance(store, SqliteStore) or days <= 0 or job.status not in finished_statuses():
        return None
    expires = job.created_at + days * DAY
    return expires if expires <= now else None


def gone_message(job: JobRecord, at: float) -> str:
    return (
        f"job {job.job_id}: its rows were purged on {utc(at)} ({env.CHATAPP_RETENTION_DAYS}); "
        "only its summary is kept"
    )


class RowsPurged(ChatAppMassError):
    """A job's rows are gone (retention): its report cannot be made; its summary is kept."""

    def __init__(self, job: JobRecord, at: float) -> None:
        self.job, self.at = job, at
        counts = ", ".join(
            f"{job.summary[key]:,} {key}" for key in _COUNTED if isinstance(job.summary.get(key), int)
        )
        super().__init__(
            f"{gone_message(job, at)}" + (f": {counts}" if counts else "") + " (see `chatapp-mass status`)"
        )


_COUNTED = ("sent", "failed", "uncertain", "pending", "invalid", "duplicate", "cancelled", "suppressed")


def check_rows_kept(store: Store, job: JobRecord, *, days: int, now: float) -> None:
    """RowsPurged if the job's rows are gone: a report is refused, never answered empty."""
    at = rows_gone_at(job, store, days, now=now)
    if at is not None:
        raise RowsPurged(job, at)


def status_view(store: Store, job: JobRecord, *, days: int, now: float) -> dict[str, Any]:
    """``job_summary`` (what `chatapp-mass status` and GET /jobs/{id} show); once the rows are gone, the
    counts are those the job's kept summary holds, with when they went (``rows_purged_at``)."""
    counts = job_summary(store, job)
    at = rows_gone_at(job, store, days, now=now)
    if at is not None:
        for key in (*_COUNTED, "batches", "finished_at"):
            if key in job.summary:
                counts[key] = job.summary[key]
        counts["rows_purged_at"] = utc(at)
        counts["retention"] = f"rows purged on {utc(at)}; the counts are the job's kept summary"
    elif job.finished_at:
        counts["finished_at"] = utc(job.finished_at)
    return counts
