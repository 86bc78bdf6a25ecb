"""Reconciling uncertain batches against the local CAMS's ListChatappMessage, through the real SDK: a batch
CAMS has in part is split into runs (found -> sent, the rest still uncertain); a resend sends only what CAMS
does not have; Messenger/Instagram and a job without CustSpaceId are refused with the reason. Only a message
inside the batch's own call interval counts: another call's message to the same number (another job, a
later run) does not make a recipient found; one inside the interval does, whatever its TaskId (the residual
ambiguity: ListChatappMessage does not show TaskId)."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest

from alibaba_localcloud.cams import LocalCams
from chatapp_mass.adapters.cams import CamsClient, CamsSettings, batch_task_id
from chatapp_mass.core.options import IntakeOptions, parse_job_options
from chatapp_mass.entry.bootstrap import cams_client_for
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner
from chatapp_mass.services.parts import Part, runs
from chatapp_mass.services.plan import plan_job
from chatapp_mass.services.reconcile import (
    CLOCK_SKEW,
    ReconcileError,
    Reconciler,
    call_interval,
    resend_uncertain,
    unreconcilable,
)
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord
from chatapp_mass.store.sqlite import SqliteStore

OPTIONS = {
    "ChannelType": "whatsapp",
    "TemplateCode": "T1",
    "Language": "en",
    "From": "8613800000000",
    "CustSpaceId": "cs-1",
}


def client(cams: LocalCams) -> CamsClient:
    return cams_client_for(cams.endpoint, cams.credentials)


def csv_bytes(count: int) -> bytes:
    return ("to,name\n" + "".join(f"+86139{i:08d},N{i}\n" for i in range(count))).encode()


def test_runs_alternate_found_and_missing_lines() -> None:
    hit, miss = (
        Part(0, 0, 0, BatchStatus.sent, "Reconciled"),
        Part(0, 0, 0, BatchStatus.uncertain, "NotFound"),
    )
    parts = runs([2, 3, 5, 6, 7, 9], {3, 5, 9}, hit=hit, miss=miss)
    assert [(p.first_line, p.last_line, p.size, p.status) for p in parts] == [
        (2, 2, 1, BatchStatus.uncertain),
        (3, 5, 2, BatchStatus.sent),
        (6, 7, 2, BatchStatus.uncertain),
        (9, 9, 1, BatchStatus.sent),
    ]
    assert runs([4, 5], {4, 5}, hit=hit, miss=miss)[0].code == "Reconciled"


def test_a_batch_cams_has_in_part_is_split_and_only_the_rest_is_resent(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    cams = client(local_cams)
    data = csv_bytes(60)
    job, _ = plan_job(
        store,
        source="list.csv",
        open_stream=lambda: io.BytesIO(data),
        options=parse_job_options(OPTIONS),
        intake=IntakeOptions(),
    )
    JobRunner(store, cams, DispatchSettings()).run(job)
    assert len(local_cams.backend.received) == 60
    # Pretend the call was ambiguous and CAMS kept only some of it: the batch is uncertain, 20 numbers gone
    store.transition_batch(
        job.job_id,
        0,
        expect=[BatchStatus.sent],
        to=BatchStatus.uncertain,
        group_message_id="",
        code="ReadTimeout",
    )
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
    assert "WhatsApp and Viber only" in unreconcilable(
        parse_job_options({**OPTIONS, "ChannelType": "messenger"})
    )
    no_space = parse_job_options({k: v for k, v in OPTIONS.items() if k != "CustSpaceId"})
    assert "CustSpaceId" in unreconcilable(no_space) and unreconcilable(no_space, "cs-2") == ""
    store = SqliteStore(str(tmp_path / "state.db"))
    local_cams.backend.reply_non_json_next(1, accept=True)
    job, _ = plan_job(
        store,
        source="l.csv",
        open_stream=lambda: io.BytesIO(csv_bytes(5)),
        options=no_space,
        intake=IntakeOptions(),
    )
    JobRunner(store, client(local_cams), DispatchSettings()).run(job)
    job = store.get_job(job.job_id)
    with pytest.raises(ReconcileError, match="needs CustSpaceId"):
        resend_uncertain(store, Reconciler(store, client(local_cams)), job)
    assert store.batch_totals(job.job_id) == {BatchStatus.uncertain: (1, 5)}  # refused: nothing reopened
    store.close()


def test_list_failures_leave_batches_as_they_were_and_refuse_the_resend(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    store = SqliteStore(str(tmp_path / "state.db"))
    local_cams.backend.reply_non_json_next(1, accept=True)
    job, _ = plan_job(
        store,
        source="l.csv",
        open_stream=lambda: io.BytesIO(csv_bytes(8)),
        options=parse_job_options(OPTIONS),
        intake=IntakeOptions(),
    )
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
    job, _ = plan_job(
        store,
        source="l.csv",
        open_stream=lambda: io.BytesIO(csv_bytes(6)),
        options=parse_job_options(OPTIONS),
        intake=IntakeOptions(),
    )
    JobRunner(store, client(local_cams), DispatchSettings()).run(job)
    spec = json.dumps(
        [[2, 4, 3, "sent", "Reconciled", "found", ""], [5, 7, 3, "uncertain", "NotFound", "not", ""]]
    )
    assert store.transition_batch(
        job.job_id, 0, expect=[BatchStatus.uncertain], to=BatchStatus.splitting, parts=spec
    )
    assert [r.status for r in store.report_rows(job.job_id)] == ["pending"] * 6
    result = Reconciler(store, client(local_cams)).reconcile(store.get_job(job.job_id))
    assert [r.status for r in store.report_rows(job.job_id)] == [
        "sent"
    ] * 6  # the part, then looked up: found
    assert (result.batches, result.found) == (1, 3)
    assert store.batch_totals(job.job_id) == {BatchStatus.sent: (2, 6)}
    store.close()


# --- the call interval, TaskId ------------------------------------------------------------------------------
def uncertain_job(store: SqliteStore, count: int, sending_at: float) -> JobRecord:
    """A planned job of one batch whose one call started at ``sending_at`` and ended ambiguous."""
    job, _ = plan_job(
        store,
        source="l.csv",
        open_stream=lambda: io.BytesIO(csv_bytes(count)),
        options=parse_job_options(OPTIONS),
        intake=IntakeOptions(),
    )
    assert store.transition_batch(
        job.job_id,
        0,
        expect=[BatchStatus.pending],
        to=BatchStatus.uncertain,
        sending_at=sending_at,
        code="ReadTimeout",
    )
    return job


def cams_sent(
    local_cams: LocalCams, cams: CamsClient, numbers: list[str], *, at: float, task_id: str
) -> None:
    """A call to ``numbers`` that CAMS accepted and files at ``at`` (its arrival moved there)."""
    recipients = [{"To": number, "TemplateParams": {"name": "X"}} for number in numbers]
    before = len(local_cams.backend.received)
    assert cams.send(parse_job_options(OPTIONS), recipients, task_id=task_id).code == "OK"
    for message in local_cams.backend.received[before:]:
        message.arrived_at = message.send_time = at


def test_call_interval_runs_from_the_last_call_until_it_gave_up() -> None:
    batch = BatchRecord(job_id="j", seq=0, size=1, sending_at=1_000.0, updated_at=5_000.0)
    assert call_interval(batch, 35.0) == (1_000.0 - CLOCK_SKEW, 1_035.0 + CLOCK_SKEW)
    legacy = BatchRecord(job_id="j", seq=0, size=1, sending_at=0.0, updated_at=5_000.0)
    assert call_interval(legacy, 35.0) == (5_000.0 - 35.0 - CLOCK_SKEW, 5_000.0 + CLOCK_SKEW)
    assert CamsClient(CamsSettings(connect_timeout_ms=5_000, read_timeout_ms=30_000)).call_timeout == 35.0


def test_only_a_message_inside_the_batch_s_call_interval_makes_its_recipient_found(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    """The issue's case: CAMS has messages to this job's numbers, same From and template, from other calls
    (last run's, a later run's): before, any of them from 120 s before the call until the lookup made the
    recipient ``sent``. Now only a message within the call's interval does."""
    store, cams = SqliteStore(str(tmp_path / "state.db")), client(local_cams)
    sending_at = 1_000_000.0  # this batch's last call; the lookup runs an hour later
    job = uncertain_job(store, 5, sending_at)
    numbers = [r["To"] for r in store.batch_recipients(job.job_id, 0)]
    other, own = batch_task_id("another-job", 0), batch_task_id(job.job_id, 0)
    end = sending_at + cams.call_timeout
    cams_sent(local_cams, cams, [numbers[0]], at=sending_at - CLOCK_SKEW - 60, task_id=other)  # just before
    cams_sent(local_cams, cams, [numbers[1]], at=end + CLOCK_SKEW + 1, task_id=other)  # just after
    cams_sent(local_cams, cams, [numbers[2]], at=sending_at + 600, task_id=other)  # a later run, pre-lookup
    cams_sent(local_cams, cams, [numbers[3]], at=sending_at + 2, task_id=own)  # this call's, inside
    cams_sent(local_cams, cams, [numbers[4]], at=end, task_id=own)  # this call's, accepted as it gave up

    result = Reconciler(store, cams, clock=lambda: sending_at + 3_600).reconcile(job)

    assert (result.found, result.not_found, result.queries) == (2, 3, 5)
    assert [(r.status, r.code) for r in store.report_rows(job.job_id)] == [("uncertain", "NotFound")] * 3 + [
        ("sent", "Reconciled")
    ] * 2  # in line order, as numbers
    store.close()


def test_another_task_s_message_inside_the_interval_is_found_the_residual_ambiguity(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    """ListChatappMessage neither filters by TaskId nor returns it (SDK models): a message of another call to
    the same number inside this call's interval cannot be told from this call's. Pinned here so that the
    day the API shows TaskId, this test is the one to turn around (and README's caveat with it)."""
    store, cams = SqliteStore(str(tmp_path / "state.db")), client(local_cams)
    sending_at = 1_000_000.0
    job = uncertain_job(store, 1, sending_at)
    [number] = [r["To"] for r in store.batch_recipients(job.job_id, 0)]
    cams_sent(local_cams, cams, [number], at=sending_at + 5, task_id=batch_task_id("another-job", 3))
    page = cams.list_messages(
        {
            "ChannelType": "whatsapp",
            "BusinessNumber": OPTIONS["From"],
            "CustSpaceId": "cs-1",
            "UserNumber": number,
            "Page": {"Index": 1, "Size": 10},
        }
    )
    assert page.ok and len(page.items) == 1 and not any("task" in key.lower() for key in page.items[0])
    result = Reconciler(store, cams, clock=lambda: sending_at + 60).reconcile(job)
    assert (result.found, result.not_found) == (1, 0)  # taken for this call's: ambiguous, documented
    store.close()


def test_a_message_filed_after_the_interval_leaves_the_recipient_uncertain(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    """The other side of the narrow interval: if CAMS files a message of this very call later than the
    interval (a dispatch queue: ``send_time_lag``), it is not found. It stays uncertain, never sent."""
    store, cams = SqliteStore(str(tmp_path / "state.db")), client(local_cams)
    local_cams.backend.configure(send_time_lag=cams.call_timeout + 2 * CLOCK_SKEW + 1)
    data = csv_bytes(3)
    job, _ = plan_job(
        store,
        source="l.csv",
        open_stream=lambda: io.BytesIO(data),
        options=parse_job_options(OPTIONS),
        intake=IntakeOptions(),
    )
    JobRunner(store, cams, DispatchSettings()).run(job)
    store.transition_batch(
        job.job_id,
        0,
        expect=[BatchStatus.sent],
        to=BatchStatus.uncertain,
        group_message_id="",
        code="ReadTimeout",
    )
    result = Reconciler(store, cams).reconcile(store.get_job(job.job_id))
    assert (result.found, result.not_found) == (0, 3)
    assert store.batch_totals(job.job_id) == {BatchStatus.uncertain: (1, 3)}
    store.close()


def test_a_reconciliation_s_part_is_looked_up_again_in_its_batch_s_call_interval(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    """An uncertain part was sent by its batch's call: it inherits that call's ``sending_at``. Looked up again
    an hour later, once CAMS lists the messages it had not listed yet, they are found (a part stamped with
    its own creation time would be looked up around the first lookup instead, and never find them)."""
    store, cams = SqliteStore(str(tmp_path / "state.db")), client(local_cams)
    sending_at = 1_000_000.0
    job = uncertain_job(store, 4, sending_at)
    numbers = [r["To"] for r in store.batch_recipients(job.job_id, 0)]
    own = batch_task_id(job.job_id, 0)
    cams_sent(local_cams, cams, numbers[:2], at=sending_at + 1, task_id=own)
    first = Reconciler(store, cams, clock=lambda: sending_at + 600).reconcile(job)
    assert (first.found, first.not_found) == (2, 2)
    [part] = store.list_batches(job.job_id, [BatchStatus.uncertain])
    cams_sent(local_cams, cams, numbers[2:], at=sending_at + 1, task_id=own)  # listed late
    again = Reconciler(store, cams, clock=lambda: sending_at + 3_600).reconcile(job)
    assert (again.found, again.not_found) == (2, 0)
    assert part.seq != 0 and part.sending_at == sending_at
    assert [r.status for r in store.report_rows(job.job_id)] == ["sent"] * 4
    store.close()


def test_batch_task_id_is_per_batch_deterministic_and_digits(local_cams: LocalCams) -> None:
    ids = {batch_task_id(job, seq) for job in ("a" * 24, "b" * 24) for seq in (0, 1, 1 << 40 | 65)}
    assert len(ids) == 6 and all(i.isdigit() and len(i) == 18 for i in ids)
    assert batch_task_id("a" * 24, 1) == batch_task_id("a" * 24, 1)
    cams, recipients = client(local_cams), [{"To": "8613900000001"}]
    cams.prepare(parse_job_options(OPTIONS), recipients)()  # the engine's call today: no TaskId
    cams.prepare(parse_job_options(OPTIONS), recipients, task_id=batch_task_id("j", 7))()
    mine = parse_job_options({**OPTIONS, "TaskId": "mine"})  # the job's own TaskId wins
    cams.prepare(mine, recipients, task_id=batch_task_id("j", 8))()
    assert [m.task_id for m in local_cams.backend.received] == [None, batch_task_id("j", 7), "mine"]
