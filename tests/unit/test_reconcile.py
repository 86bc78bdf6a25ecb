"""Reconciling uncertain batches against the local CAMS's ListChatappMessage, through the real SDK: a batch
CAMS has in part is split into runs (found -> sent, the rest still uncertain); a resend sends only what CAMS
does not have; Messenger/Instagram and a job without CustSpaceId are refused with the reason."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from chatapp_mass.bootstrap import cams_client_for
from chatapp_mass.cams import CamsClient
from chatapp_mass.engine import DispatchSettings, JobRunner, plan_job
from chatapp_mass.localcloud.cams import LocalCams
from chatapp_mass.options import IntakeOptions, parse_job_options
from chatapp_mass.parts import Part, runs
from chatapp_mass.reconcile import ReconcileError, Reconciler, resend_uncertain, unreconcilable
from chatapp_mass.store import BatchStatus
from chatapp_mass.store_sqlite import SqliteStore

OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": "8613800000000",
           "CustSpaceId": "cs-1"}


def client(cams: LocalCams) -> CamsClient:
    return cams_client_for(cams.endpoint, cams.credentials)


def csv_bytes(count: int) -> bytes:
    return ("to,name\n" + "".join(f"+86139{i:08d},N{i}\n" for i in range(count))).encode()


def test_runs_alternate_found_and_missing_lines() -> None:
    hit, miss = Part(0, 0, 0, BatchStatus.sent, "Reconciled"), Part(0, 0, 0, BatchStatus.uncertain, "NotFound")
    parts = runs([2, 3, 5, 6, 7, 9], {3, 5, 9}, hit=hit, miss=miss)
    assert [(p.first_line, p.last_line, p.size, p.status) for p in parts] == [
        (2, 2, 1, BatchStatus.uncertain), (3, 5, 2, BatchStatus.sent), (6, 7, 2, BatchStatus.uncertain),
        (9, 9, 1, BatchStatus.sent)]
    assert runs([4, 5], {4, 5}, hit=hit, miss=miss)[0].code == "Reconciled"


def test_a_batch_cams_has_in_part_is_split_and_only_the_rest_is_resent(local_cams: LocalCams, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    cams = client(local_cams)
    data = csv_bytes(60)
    job, _ = plan_job(store, source="list.csv", open_stream=lambda: io.BytesIO(data),
                      options=parse_job_options(OPTIONS), intake=IntakeOptions())
    JobRunner(store, cams, DispatchSettings()).run(job)
    assert len(local_cams.backend.received) == 60
    # Pretend the call was ambiguous and CAMS kept only some of it: the batch is uncertain, 20 numbers gone
    store.transition_batch(job.job_id, 0, expect=[BatchStatus.sent], to=BatchStatus.uncertain, group_message_id="",
                           code="ReadTimeout")
    kept = [m for i, m in enumerate(local_cams.backend.received) if not 10 <= i < 30]
    local_cams.backend.received[:] = kept
    result = Reconciler(store, cams).reconcile(job)
    assert (result.batches, result.found, result.not_found, result.queries) == (1, 40, 20, 60)
    report = list(store.report_rows(job.job_id))
    assert [r.status for r in report] == ["sent"] * 10 + ["uncertain"] * 20 + ["sent"] * 30
    assert {r.code for r in report[10:30]} == {"NotFound"} and report[0].code == "Reconciled"
    assert store.batch_totals(job.job_id) == {BatchStatus.sent: (2, 40), BatchStatus.uncertain: (1, 20)}

    again = Reconciler(store, cams).reconcile(store.get_job(job.job_id))  # nothing new: still not found
    assert (again.found, again.not_found) == (0, 20)
    resent = resend_uncertain(store, Reconciler(store, cams), store.get_job(job.job_id))
    assert (resent.batches, resent.recipients) == (1, 20)
    JobRunner(store, cams, DispatchSettings()).run(store.get_job(job.job_id))
    assert Counter(Counter(m.to for m in local_cams.backend.received).values()) == {1: 60}
    assert [r.status for r in store.report_rows(job.job_id)] == ["sent"] * 60
    store.close()


def test_reasons_it_cannot_reconcile(local_cams: LocalCams, tmp_path: Path) -> None:
    assert "WhatsApp and Viber only" in unreconcilable(parse_job_options({**OPTIONS, "ChannelType": "messenger"}))
    no_space = parse_job_options({k: v for k, v in OPTIONS.items() if k != "CustSpaceId"})
    assert "CustSpaceId" in unreconcilable(no_space) and unreconcilable(no_space, "cs-2") == ""
    store = SqliteStore(str(tmp_path / "state.db"))
    local_cams.backend.reply_non_json_next(1, accept=True)
    job, _ = plan_job(store, source="l.csv", open_stream=lambda: io.BytesIO(csv_bytes(5)), options=no_space,
                      intake=IntakeOptions())
    JobRunner(store, client(local_cams), DispatchSettings()).run(job)
    job = store.get_job(job.job_id)
    with pytest.raises(ReconcileError, match="needs CustSpaceId"):
        resend_uncertain(store, Reconciler(store, client(local_cams)), job)
    assert store.batch_totals(job.job_id) == {BatchStatus.uncertain: (1, 5)}  # refused: nothing reopened
    store.close()


def test_list_failures_leave_batches_as_they_were_and_refuse_the_resend(local_cams: LocalCams, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    local_cams.backend.reply_non_json_next(1, accept=True)
    job, _ = plan_job(store, source="l.csv", open_stream=lambda: io.BytesIO(csv_bytes(8)),
                      options=parse_job_options(OPTIONS), intake=IntakeOptions())
    JobRunner(store, client(local_cams), DispatchSettings()).run(job)
    local_cams.backend.refuse_all("Ram.PermissionDeny")  # the role lacks cams:ListChatappMessage
    job = store.get_job(job.job_id)
    result = Reconciler(store, client(local_cams)).reconcile(job)
    assert "Ram.PermissionDeny" in result.error and result.left == 1 and result.found == 0
    with pytest.raises(ReconcileError, match="not resent: ListChatappMessage failed: Ram.PermissionDeny"):
        resend_uncertain(store, Reconciler(store, client(local_cams)), job)
    assert store.batch_totals(job.job_id) == {BatchStatus.uncertain: (1, 8)}
    local_cams.backend.clear_refuse_all()
    local_cams.backend.configure(list_qps_limit=4)  # its own quota: throttled queries are retried, paced
    result = Reconciler(store, client(local_cams), qps=20).reconcile(job)
    assert (result.found, result.not_found, result.error) == (8, 0, "")
    assert result.queries > 8  # some were throttled and asked again
    store.close()


def test_a_lookup_that_died_mid_split_is_finished_by_the_next(local_cams: LocalCams, tmp_path: Path) -> None:
    """A reconciliation's split of a finished job's batch, cut between its steps (the batch ``splitting``,
    no parts yet): the job would show rows pending for good. The next lookup finishes it first."""
    import json

    store = SqliteStore(str(tmp_path / "state.db"))
    local_cams.backend.reply_non_json_next(1, accept=True)
    job, _ = plan_job(store, source="l.csv", open_stream=lambda: io.BytesIO(csv_bytes(6)),
                      options=parse_job_options(OPTIONS), intake=IntakeOptions())
    JobRunner(store, client(local_cams), DispatchSettings()).run(job)
    spec = json.dumps([[2, 4, 3, "sent", "Reconciled", "found", ""], [5, 7, 3, "uncertain", "NotFound", "not", ""]])
    assert store.transition_batch(job.job_id, 0, expect=[BatchStatus.uncertain], to=BatchStatus.splitting, parts=spec)
    assert [r.status for r in store.report_rows(job.job_id)] == ["pending"] * 6
    result = Reconciler(store, client(local_cams)).reconcile(store.get_job(job.job_id))
    assert [r.status for r in store.report_rows(job.job_id)] == ["sent"] * 6  # the part, then looked up: found
    assert (result.batches, result.found) == (1, 3)
    assert store.batch_totals(job.job_id) == {BatchStatus.sent: (2, 6)}
    store.close()
