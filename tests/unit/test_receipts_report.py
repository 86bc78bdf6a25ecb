"""Receipts joined into the report and the job's status (services.report): jobs sent through the local CAMS by
the real sender on SQLite, receipts for what the local CAMS received (by the TaskIds it recorded), posted out of
order with repeats. The sender registered every call's TaskId before the call; a part is its own call; a batch
split by a reconciliation keeps its receipts (sent under its own TaskId); a job's own --task-id names them all."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

from alibaba_localcloud.cams import LocalCams
from chatapp_mass.adapters.cams import batch_task_id
from chatapp_mass.core.options import IntakeOptions, parse_job_options
from chatapp_mass.entry.bootstrap import cams_client_for
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner
from chatapp_mass.services.plan import PlanSettings, plan_job
from chatapp_mass.services.receipts import ReceiptService
from chatapp_mass.services.reconcile import Reconciler
from chatapp_mass.services.report import job_summary, report_rows, write_report
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord, RowRecord, RowStatus
from chatapp_mass.store.receipts import DeliveryStatus, Receipt, TaskRef
from chatapp_mass.store.receipts_sqlite import SqliteReceipts
from chatapp_mass.store.sqlite import SqliteStore

OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T1", "Language": "en", "From": "8613800000000"}
AT = 1_765_000_000_000  # ms: 2025-12-06T05:46:40Z


def send(store: SqliteStore, cams: LocalCams, count: int, batch_size: int, **options: str) -> JobRecord:
    data = ("to,name\n" + "".join(f"+86139{i:08d},N{i}\n" for i in range(count))).encode()
    job, _ = plan_job(
        store,
        source="list.csv",
        open_stream=lambda: io.BytesIO(data),
        options=parse_job_options({**OPTIONS, **options}),
        intake=IntakeOptions(),
        settings=PlanSettings(batch_size=batch_size),
    )
    JobRunner(store, cams_client_for(cams.endpoint, cams.credentials), DispatchSettings()).run(job)
    return store.get_job(job.job_id) or job


def receipts_for(cams: LocalCams, outcome: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """The reports CAMS would push for what it received: each number's statuses in order, 1 s apart."""
    reports = []
    for message in cams.backend.received:
        for k, status in enumerate(outcome.get(message.to, ("Sent", "Delivered"))):
            failed = status == "Failed"
            reports.append(
                {
                    "MessageId": message.message_id or f"m-{message.to}",
                    "TaskId": message.task_id,
                    "From": message.from_,
                    "To": message.to,
                    "Status": status,
                    "Timestamp": AT + 1000 * k,
                    "ErrorCode": "131026" if failed else "",
                    "ErrorDescription": "Receiver is incapable of receiving this message" if failed else "",
                }
            )
    return reports


def post(service: ReceiptService, reports: list[dict[str, Any]], seed: int = 1) -> None:
    mixed = reports + reports[::3]  # repeats
    random.Random(seed).shuffle(mixed)  # out of order
    for start in range(0, len(mixed), 17):
        service.ingest(mixed[start : start + 17])


def test_delivery_columns_and_status_from_receipts_of_a_job_with_a_split_batch(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    local_cams.backend.configure(refused_numbers=frozenset({"8613900000013"}))  # batch 1 splits into parts
    job = send(store, local_cams, 30, 10)
    receipts = SqliteReceipts(store)
    batches = store.list_batches(job.job_id)
    parts = [b for b in batches if b.root >= 0]
    assert parts and {b.status for b in batches if b.seq == 1} == {BatchStatus.split}
    # every call's TaskId was registered (a part: its own seq), and is the one CAMS received
    called = {m.task_id for m in local_cams.backend.received}
    sent = [b for b in batches if b.status is BatchStatus.sent]
    assert called == {batch_task_id(job.job_id, b.seq) for b in sent}
    for batch in sent:
        assert receipts.task(batch_task_id(job.job_id, batch.seq)) == TaskRef(job.job_id, batch.seq)

    numbers = sorted(m.to for m in local_cams.backend.received)
    assert len(numbers) == 29
    outcome = {n: ("Sent", "Delivered", "Read") for n in numbers[:12]}
    outcome.update({n: ("Sent", "Failed") for n in numbers[12:15]})
    outcome.update({n: ("Sent",) for n in numbers[15:18]})  # no further news
    outcome.update({n: () for n in numbers[18:20]})  # no receipt at all
    service = ReceiptService(receipts, store=store)
    post(service, receipts_for(local_cams, outcome))
    assert service.unmatched() == []

    rows = {r.to: r for r in report_rows(store, job)}
    assert rows["8613900000013"].status == "failed" and rows["8613900000013"].delivery == ""
    expected = {n: "read" for n in numbers[:12]}
    expected |= {n: "failed" for n in numbers[12:15]} | {n: "sent" for n in numbers[15:18]}
    expected |= {n: "" for n in numbers[18:20]} | {n: "delivered" for n in numbers[20:]}
    assert {n: rows[n].delivery for n in numbers} == expected
    failed = rows[numbers[12]]
    incapable = "Receiver is incapable of receiving this message"
    assert (failed.delivery_code, failed.delivery_message) == ("131026", incapable)
    assert rows[numbers[0]].delivery_at == "2025-12-06T05:46:42Z" and rows[numbers[20]].delivery_at.endswith(
        "41Z"
    )

    out = io.StringIO()
    write_report(report_rows(store, job), out)
    assert out.getvalue().count(",read,,,2025-12-06T05:46:42Z\n") == 12

    delivery = job_summary(store, job)["delivery"]
    assert delivery == {
        "accepted": 29,
        "sent": 24,  # said at least Sent: 12 read + 9 delivered + 3 sent
        "delivered": 21,
        "read": 12,
        "failed": 3,
        "awaiting": 5,  # 3 only Sent, 2 no receipt at all
        "failed_codes": {"131026": 3},
        "delivered_rate": round(21 / 29, 4),
        "read_rate": round(12 / 29, 4),
        "failed_rate": round(3 / 29, 4),
    }


def test_a_job_s_own_task_id_names_every_call(local_cams: LocalCams, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    job = send(store, local_cams, 12, 5, TaskId="777000111")
    receipts = SqliteReceipts(store)
    assert {m.task_id for m in local_cams.backend.received} == {"777000111"}
    assert receipts.task("777000111") == TaskRef(job.job_id, -1)
    post(ReceiptService(receipts, store=store), receipts_for(local_cams, {}))
    assert {r.delivery for r in report_rows(store, job)} == {"delivered"}
    assert job_summary(store, job)["delivery"]["delivered"] == 12


def test_receipts_of_a_batch_split_by_a_reconciliation_stay_joined(
    local_cams: LocalCams, tmp_path: Path
) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    job = send(store, local_cams, 20, 20, CustSpaceId="cs-1")
    store.transition_batch(
        job.job_id, 0, expect=[BatchStatus.sent], to=BatchStatus.uncertain, code="ReadTimeout"
    )
    reports = receipts_for(local_cams, {})  # the call's own TaskId, for all 20
    local_cams.backend.received[:] = [m for i, m in enumerate(local_cams.backend.received) if not 5 <= i < 10]
    Reconciler(store, cams_client_for(local_cams.endpoint, local_cams.credentials)).reconcile(job)
    assert {b.status for b in store.list_batches(job.job_id) if b.seq == 0} == {BatchStatus.split}
    post(ReceiptService(SqliteReceipts(store), store=store), reports)
    rows = list(report_rows(store, job))
    assert [r.status for r in rows] == ["sent"] * 5 + ["uncertain"] * 5 + ["sent"] * 10
    assert {r.delivery for r in rows} == {"delivered"}  # found or not, its receipt says where it went
    assert job_summary(store, job)["delivery"]["delivered"] == 20  # counted over the split batch's TaskId


def test_batches_from_before_line_bounds_are_joined_whole(tmp_path: Path) -> None:
    """A store written before batches had line bounds (first_line = last_line = 0): every batch's states at
    once, by number."""
    store = SqliteStore(str(tmp_path / "s.db"))
    job = JobRecord("old", "old.csv", dict(OPTIONS), {}, "h")
    store.create_job(job)
    rows = [
        RowRecord("old", line, f"6581{line:06d}", RowStatus.valid, batch_seq=line // 10)
        for line in range(2, 32)
    ]
    store.put_plan(rows, [BatchRecord("old", seq, 10) for seq in range(4)])
    for seq in range(4):
        store.transition_batch("old", seq, expect=[BatchStatus.pending], to=BatchStatus.sent)
    receipts = SqliteReceipts(store)
    receipts.record(
        [
            Receipt(batch_task_id("old", line // 10), f"6581{line:06d}", "m", DeliveryStatus.read, AT)
            for line in range(2, 32, 3)
        ]
    )
    joined = {r.line: r.delivery for r in report_rows(store, job)}
    assert joined == {line: "read" if line % 3 == 2 else "" for line in range(2, 32)}
