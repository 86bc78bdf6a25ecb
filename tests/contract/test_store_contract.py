"""One contract, every store: the same tests run against SQLite and against Tablestore (through the local
Tablestore emulator and the real SDK), proving the same behaviour: create-once, claim-once, conditional
transitions, counters, listing order, resume (a re-plan never resets a batch), report order, rate window."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stores import tablestore_on

from chatapp_mass.services.ratelimit import SlidingWindowLimiter
from chatapp_mass.store.interface import (
    BatchRecord,
    BatchStatus,
    JobKey,
    JobRecord,
    JobStatus,
    RowRecord,
    RowStatus,
    Store,
)
from chatapp_mass.store.sqlite import SqliteStore


@pytest.fixture(scope="module")
def local_tablestore() -> Iterator[Any]:
    from alibaba_localcloud.tablestore import LocalTablestore

    # ten tables per test (the feature stores' too): above the 64 of one instance. Realistic (new tables not
    # ready at once), with a shorter not-ready window than the default 2 s: every test makes its own tables.
    # The table-operation quota (10/s) is raised: with ten tables each test's init-tables waited ~1 s for it
    # (half the time of the Tablestore half); the quota is test_tablestore_conformance.py's to prove.
    with LocalTablestore(
        max_tables=1024, table_not_ready_seconds=0.5, table_operations_per_second=100
    ) as server:
        yield server


@pytest.fixture(params=["sqlite", "tablestore"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens another handle on the same store each time it is called."""
    if request.param == "sqlite":
        return lambda: SqliteStore(str(tmp_path / "state.db"))
    server = request.getfixturevalue("local_tablestore")
    prefix = f"t{secrets.token_hex(4)}_"
    return lambda: tablestore_on(server, prefix)


@pytest.fixture
def store(backend: Callable[[], Store]) -> Iterator[Store]:
    handle = backend()
    yield handle
    handle.close()


@pytest.fixture
def second_handle(backend: Callable[[], Store]) -> Callable[[], Store]:
    return backend


def job(job_id: str = "job1") -> JobRecord:
    return JobRecord(
        job_id=job_id, source="f.csv", options={"ChannelType": "whatsapp"}, intake={}, content_sha256="x"
    )


def test_create_once(store: Store) -> None:
    assert store.create_job(job()) is True
    assert store.create_job(job()) is False
    loaded = store.get_job("job1")
    assert (
        loaded is not None
        and loaded.status is JobStatus.planning
        and loaded.options == {"ChannelType": "whatsapp"}
    )
    assert store.find_jobs("jo") == ["job1"]
    assert store.get_job("nope") is None


def test_update_job_conditional(store: Store) -> None:
    store.create_job(job())
    assert store.update_job("job1", expect=[JobStatus.ready], status=JobStatus.running) is False
    assert store.update_job("job1", expect=[JobStatus.planning], status=JobStatus.ready, valid=3) is True
    loaded = store.get_job("job1")
    assert loaded is not None and (loaded.status, loaded.valid) == (JobStatus.ready, 3)


def plan(store: Store) -> None:
    store.create_job(job())
    rows = [
        RowRecord("job1", 2, "111", RowStatus.valid, batch_seq=0, recipient={"To": "111"}),
        RowRecord("job1", 4, "bad", RowStatus.invalid, "InvalidNumber", "nope"),
        RowRecord(
            "job1",
            3,
            "222",
            RowStatus.valid,
            batch_seq=1,
            recipient={"To": "222", "TemplateParams": {"a": "ü"}},
        ),
        RowRecord("job1", 5, "111", RowStatus.duplicate, "Duplicate", "same recipient as line 2"),
    ]
    # batch 0 knows its line range (how the planner writes it); batch 1 does not (an older plan)
    batches = [BatchRecord("job1", 0, 1, first_line=2, last_line=2), BatchRecord("job1", 1, 1)]
    store.put_plan(rows, batches)


def test_plan_is_idempotent_and_never_resets_a_batch(store: Store) -> None:
    plan(store)
    assert store.transition_batch("job1", 0, expect=[BatchStatus.pending], to=BatchStatus.sent)
    plan(store)  # the same plan written again
    assert [b.status for b in store.list_batches("job1")] == [BatchStatus.sent, BatchStatus.pending]
    assert store.batch_recipients("job1", 1) == [{"To": "222", "TemplateParams": {"a": "ü"}}]
    assert len(list(store.report_rows("job1"))) == 4


def test_list_batches_by_status_in_seq_order_and_the_first_few_only(store: Store) -> None:
    store.create_job(job())
    store.put_plan([], [BatchRecord("job1", seq, 1) for seq in range(12)])
    for seq in (0, 1, 2, 5, 9):
        assert store.transition_batch("job1", seq, expect=[BatchStatus.pending], to=BatchStatus.sent)
    assert store.transition_batch("job1", 7, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner="w")
    pending = [3, 4, 6, 8, 10, 11]
    assert [b.seq for b in store.list_batches("job1", [BatchStatus.pending])] == pending
    assert [b.seq for b in store.list_batches("job1", [BatchStatus.pending], limit=4)] == pending[:4]
    assert [
        b.seq for b in store.list_batches("job1", [BatchStatus.pending, BatchStatus.claimed], limit=5)
    ] == [
        3,
        4,
        6,
        7,
        8,
    ]
    assert [b.seq for b in store.list_batches("job1", limit=3)] == [0, 1, 2]
    assert store.list_batches("job1", [BatchStatus.pending], limit=0) == []
    assert store.list_batches("job1", [BatchStatus.failed], limit=2) == []
    assert store.list_batches("job1", []) == []


def test_claim_once_across_threads(store: Store) -> None:
    plan(store)
    wins: list[int] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        if store.transition_batch(
            "job1", 0, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner=f"w{i}"
        ):
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.list_batches("job1", [BatchStatus.claimed])[0].owner == f"w{wins[0]}"


def test_attempts_increment_and_totals(store: Store) -> None:
    plan(store)
    store.transition_batch("job1", 0, expect=[BatchStatus.pending], to=BatchStatus.sending, attempts=1)
    store.transition_batch("job1", 0, expect=[BatchStatus.sending], to=BatchStatus.claimed)
    store.transition_batch("job1", 0, expect=[BatchStatus.claimed], to=BatchStatus.sending, attempts=1)
    assert store.list_batches("job1")[0].attempts == 2
    store.transition_batch(
        "job1", 0, expect=[BatchStatus.sending], to=BatchStatus.sent, group_message_id="g1"
    )
    assert store.batch_totals("job1") == {BatchStatus.sent: (1, 1), BatchStatus.pending: (1, 1)}


def test_report_rows_in_line_order_with_batch_outcome(store: Store) -> None:
    plan(store)
    store.transition_batch(
        "job1", 0, expect=[BatchStatus.pending], to=BatchStatus.sent, group_message_id="g1", code="OK"
    )
    rows = list(store.report_rows("job1"))
    assert [r.line for r in rows] == [2, 3, 4, 5]
    assert [r.status for r in rows] == ["sent", "pending", "invalid", "duplicate"]
    assert rows[0].group_message_id == "g1"
    assert rows[3].message == "same recipient as line 2"


def test_delete_and_clear(store: Store) -> None:
    plan(store)
    store.clear_plan("job1")
    assert store.list_batches("job1") == [] and list(store.report_rows("job1")) == []
    store.delete_job("job1")
    assert store.get_job("job1") is None


def test_rate_window_grants_at_most_limit(store: Store) -> None:
    granted = [store.rate_acquire("k", 3, 1.0, lambda i=i: 100.0 + i * 0.01) for i in range(5)]
    assert granted[:3] == [0.0, 0.0, 0.0]
    assert granted[3] == pytest.approx(100.0 + 1.0 - 100.03, abs=1e-6)
    assert store.rate_acquire("k", 3, 1.0, lambda: 101.001) == 0.0  # the first left the window
    assert store.rate_acquire("other", 3, 1.0, lambda: 100.0) == 0.0  # keys are separate budgets


def test_rate_window_peek_records_nothing_and_force_records_over_the_limit(store: Store) -> None:
    assert store.rate_acquire("k", 2, 1.0, lambda: 100.0, peek=True) == 0.0
    assert store.rate_acquire("k", 2, 1.0, lambda: 100.0) == 0.0
    assert store.rate_acquire("k", 2, 1.0, lambda: 100.2, peek=True) == 0.0  # the peek took no slot
    assert store.rate_acquire("k", 2, 1.0, lambda: 100.2) == 0.0
    assert store.rate_acquire("k", 2, 1.0, lambda: 100.3, peek=True) == pytest.approx(0.7)
    # a late arrival counted again, over the limit: the next slot waits for the newest two to age out
    assert store.rate_acquire("k", 2, 1.0, lambda: 100.5, force=True) == 0.0
    assert store.rate_acquire("k", 2, 1.0, lambda: 100.6) == pytest.approx(0.6)  # 100.2 leaves at 101.2
    assert store.rate_acquire("k", 2, 1.0, lambda: 101.25) == 0.0
    assert store.rate_acquire("k", 2, 1.0, lambda: 101.3) == pytest.approx(0.2)  # 100.5 still counts


def test_rate_reserve_holds_a_slot_until_its_departure_is_recorded(store: Store) -> None:
    at = [100.0]
    clock = lambda: at[0]
    assert store.rate_reserve("k", 2, 1.0, clock, token="a", lead=0.1) == (True, 100.0)
    assert store.rate_reserve("k", 2, 1.0, clock, token="b", lead=0.1) == (True, 100.0)
    at[0] = 100.5
    refused = store.rate_reserve("k", 2, 1.0, clock, token="c", lead=0.1)
    assert not refused.granted  # both holds count as departing no earlier than now
    store.rate_depart("k", "a", 100.2, clock)
    store.rate_depart("k", "b", 100.3, clock)
    assert store.rate_reserve("k", 2, 1.0, clock, token="c", lead=0.1) == pytest.approx((False, 0.6))
    at[0] = 101.12  # within the lead of the slot that "a"'s departure frees at 101.2
    granted = store.rate_reserve("k", 2, 1.0, clock, token="c", lead=0.1)
    assert granted.granted and granted.at == pytest.approx(101.2)
    assert store.rate_acquire("k", 2, 1.0, clock, peek=True) > 0  # the old pacer sees the hold too
    store.rate_depart("k", "c", 101.0, clock)  # never earlier than its slot: counted at 101.2
    at[0] = 102.1
    assert store.rate_acquire("k", 1, 1.0, clock, peek=True) == pytest.approx(0.1)


def test_limiter_runs_before_just_ahead_of_the_slot_and_not_when_stopped(store: Store) -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(
        store,
        limit=1,
        window=1.0,
        margin=0.0,
        lead=0.05,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    assert limiter.acquire() == 1000.0
    marked: list[float] = []
    stamped = limiter.acquire(before=lambda: marked.append(now[0]) or True)
    assert marked and 1000.95 - 1e-9 <= marked[0] < 1001.0 and stamped == pytest.approx(1001.0)
    refused = limiter.acquire(before=lambda: False)
    assert refused is None
    stop = threading.Event()
    stop.set()
    assert limiter.acquire(stop, before=lambda: pytest.fail("marked although stopped")) is None


def test_limiter_never_exceeds_limit_with_fake_clock(store: Store) -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(
        store,
        limit=10,
        window=1.0,
        margin=0.0,
        clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s),
    )
    stamps = []
    for _ in range(55):
        assert limiter.acquire()
        stamps.append(now[0])
    for i in range(len(stamps) - 10):
        assert stamps[i + 10] - stamps[i] >= 1.0
    assert stamps[-1] - stamps[0] == pytest.approx(5.0)  # and it never idles: slot 51 opens at +5 s


def test_two_store_handles_share_one_budget(store: Store, second_handle: Callable[[], Store]) -> None:
    a, b = store, second_handle()
    at_five = lambda: 5.0
    results = [
        a.rate_acquire("k", 2, 1.0, at_five),
        b.rate_acquire("k", 2, 1.0, at_five),
        a.rate_acquire("k", 2, 1.0, at_five),
    ]
    assert results[:2] == [0.0, 0.0] and results[2] > 0
    b.close()


def test_two_store_handles_share_holds_and_departures(
    store: Store, second_handle: Callable[[], Store]
) -> None:
    a, b = store, second_handle()
    at = [5.0]
    clock = lambda: at[0]
    assert a.rate_reserve("k", 2, 1.0, clock, token="a1", lead=0.1).granted
    assert b.rate_reserve("k", 2, 1.0, clock, token="b1", lead=0.1).granted
    at[0] = 5.5
    assert not a.rate_reserve("k", 2, 1.0, clock, token="a2", lead=0.1).granted  # b's hold counts here
    b.rate_depart("k", "b1", 5.2, clock)
    a.rate_depart("k", "a1", 5.1, clock)
    at[0] = 6.05
    grant = b.rate_reserve("k", 2, 1.0, clock, token="b2", lead=0.1)
    assert grant.granted and grant.at == pytest.approx(6.1)  # a's departure at 5.1 leaves at 6.1
    b.close()


def test_list_jobs_newest_first_and_find_by_prefix(store: Store) -> None:
    for i, created in enumerate([100.0, 300.0, 200.0]):
        store.create_job(
            JobRecord(
                job_id=f"ab{i}", source="f.csv", options={}, intake={}, content_sha256="x", created_at=created
            )
        )
    assert [j.job_id for j in store.list_jobs()] == ["ab1", "ab2", "ab0"]
    assert [j.job_id for j in store.list_jobs(limit=2)] == ["ab1", "ab2"]
    assert sorted(store.find_jobs("ab")) == ["ab0", "ab1", "ab2"] and store.find_jobs("abc") == []


def test_many_rows_round_trip_in_line_order(store: Store) -> None:
    """More rows than one BatchWriteRow (200) or one GetRange page holds, in several put_plan calls."""
    store.create_job(job("big"))
    rows = [
        RowRecord(
            "big",
            line,
            f"86138{line:08d}",
            RowStatus.valid,
            batch_seq=(line - 2) // 1000,
            recipient={"To": f"86138{line:08d}", "TemplateParams": {"name": f"n{line}"}},
        )
        for line in range(2, 2502)
    ]
    for start in range(0, len(rows), 700):
        store.put_plan(rows[start : start + 700], [])
    batches = [
        BatchRecord(
            "big",
            seq,
            1000 if seq < 2 else 500,
            first_line=2 + seq * 1000,
            last_line=min(2 + seq * 1000 + 999, 2501),
        )
        for seq in range(3)
    ]
    store.put_plan([], batches)
    assert [r.line for r in store.report_rows("big")] == list(range(2, 2502))
    recipients = store.batch_recipients("big", 1)
    assert len(recipients) == 1000 and recipients[0] == {
        "To": "86138" + f"{1002:08d}",
        "TemplateParams": {"name": "n1002"},
    }
    assert store.batch_totals("big") == {BatchStatus.pending: (3, 2500)}


def test_split_batch_parts_hold_their_lines_and_report_their_own_outcome(store: Store) -> None:
    """A batch split twice (halves, then a half of a half): each part reads only its root's rows in its own
    range, the report takes each row's outcome from the deepest part holding it, totals count parts only,
    and finishing a split again (a sweeper after a dead splitter) writes nothing new and resets nothing."""
    from chatapp_mass.services.parts import finish_split, halves, split_batch

    store.create_job(job())
    lines = list(range(2, 12))  # batch 0: ten recipients on lines 2..11; line 12 is invalid; batch 1: 13
    rows = [
        RowRecord("job1", n, f"10{n}", RowStatus.valid, batch_seq=0, recipient={"To": f"10{n}"})
        for n in lines
    ]
    rows += [
        RowRecord("job1", 12, "x", RowStatus.invalid, "InvalidNumber", "no"),
        RowRecord("job1", 13, "913", RowStatus.valid, batch_seq=1, recipient={"To": "913"}),
    ]
    store.put_plan(
        rows,
        [
            BatchRecord("job1", 0, 10, first_line=2, last_line=11),
            BatchRecord("job1", 1, 1, first_line=13, last_line=13),
        ],
    )
    store.transition_batch("job1", 0, expect=[BatchStatus.pending], to=BatchStatus.sending)
    [planned, _] = store.list_batches("job1")
    assert split_batch(
        store, planned, halves(lines), expect=[BatchStatus.sending], code="InvalidParameter.PhoneNumberError"
    )
    assert not split_batch(store, planned, halves(lines), expect=[BatchStatus.sending])  # one split ever
    parts = store.list_batches("job1", [BatchStatus.pending])[1:]
    assert [(p.first_line, p.last_line, p.size, p.root) for p in parts] == [(2, 6, 5, 0), (7, 11, 5, 0)]
    assert store.get_batch("job1", parts[1].seq) == parts[1] and store.get_batch("job1", 99) is None
    assert [line for line, _ in store.batch_rows("job1", parts[1].seq)] == [7, 8, 9, 10, 11]
    assert store.batch_recipients("job1", parts[0].seq) == [{"To": f"10{n}"} for n in range(2, 7)]
    # the second half is sent; the first is refused again and halved again
    store.transition_batch(
        "job1", parts[1].seq, expect=[BatchStatus.pending], to=BatchStatus.sent, group_message_id="g2"
    )
    store.transition_batch("job1", parts[0].seq, expect=[BatchStatus.pending], to=BatchStatus.sending)
    first = [b for b in store.list_batches("job1") if b.seq == parts[0].seq][0]
    assert split_batch(store, first, halves([2, 3, 4, 5, 6]), expect=[BatchStatus.sending])
    deeper = [b for b in store.list_batches("job1") if b.first_line in (2, 4) and b.root == 0 and b.size < 5]
    assert [(b.first_line, b.last_line, b.size) for b in deeper] == [(2, 3, 2), (4, 6, 3)]
    assert [line for line, _ in store.batch_rows("job1", deeper[1].seq)] == [4, 5, 6]
    store.transition_batch(
        "job1", deeper[0].seq, expect=[BatchStatus.pending], to=BatchStatus.failed, code="Bad"
    )
    finish_split(store, [b for b in store.list_batches("job1") if b.seq == first.seq][0])  # a late sweeper
    assert [b.status for b in store.list_batches("job1") if b.seq == deeper[0].seq] == [BatchStatus.failed]
    report = {r.line: r for r in store.report_rows("job1")}
    assert [report[n].status for n in range(2, 14)] == ["failed"] * 2 + ["pending"] * 3 + ["sent"] * 5 + [
        "invalid",
        "pending",
    ]
    assert report[8].group_message_id == "g2" and report[3].code == "Bad"
    assert store.batch_totals("job1") == {
        BatchStatus.failed: (1, 2),
        BatchStatus.pending: (2, 4),
        BatchStatus.sent: (1, 5),
    }


# --- jobs by status (the timer at any scale), per-job counters: issue 11 ----------------------------------
def test_jobs_in_lists_by_status_not_by_age(store: Store) -> None:
    statuses = [
        JobStatus.running,
        JobStatus.completed,
        JobStatus.scheduled,
        JobStatus.failed,
        JobStatus.running,
        JobStatus.cancelled,
        JobStatus.planning,
        JobStatus.ready,
        JobStatus.stopped,
        JobStatus.paused,
    ]
    for i, status in enumerate(statuses):
        store.create_job(
            JobRecord(
                job_id=f"j{i}",
                source="f.csv",
                options={},
                intake={},
                content_sha256="x",
                status=status,
                created_at=1000.0 + i,
            )
        )
    ids = lambda jobs: [j.job_id for j in jobs]
    assert ids(store.jobs_in([JobStatus.running])) == ["j0", "j4"]
    assert ids(store.jobs_in([JobStatus.scheduled, JobStatus.running])) == [
        "j2",
        "j0",
        "j4",
    ]  # grouped, in order
    assert ids(store.jobs_in([JobStatus.scheduled, JobStatus.running], limit=2)) == ["j2", "j0"]
    assert ids(
        store.jobs_in([JobStatus.planning, JobStatus.ready, JobStatus.paused, JobStatus.cancelled])
    ) == ["j6", "j7", "j9", "j5"]
    assert store.jobs_in([]) == []
    listed = store.jobs_in([JobStatus.running])[0]
    assert listed == store.get_job("j0")  # the whole record
    for finished in (
        JobStatus.completed,
        JobStatus.failed,
        JobStatus.stopped,
        JobStatus.interrupted,
        JobStatus.stalled,
    ):
        with pytest.raises(ValueError, match="finished"):
            store.jobs_in([JobStatus.running, finished])
    # a status change moves a job between lists; a failed conditional change moves nothing
    assert store.update_job("j0", expect=[JobStatus.running], status=JobStatus.completed, valid=2) is True
    assert store.update_job("j2", expect=[JobStatus.ready], status=JobStatus.running) is False
    assert store.update_job("j2", status=JobStatus.running) is True  # no expect: whatever it was
    assert store.update_job("j4", expect=[JobStatus.running], reason="still running") is True  # not a status
    assert (
        store.update_job("j4", expect=[JobStatus.running], status=JobStatus.running) is True
    )  # the same one
    assert ids(store.jobs_in([JobStatus.scheduled, JobStatus.running])) == ["j2", "j4"]
    assert (
        store.update_job("j1", expect=[JobStatus.completed], status=JobStatus.ready) is True
    )  # a resend reopens
    assert ids(store.jobs_in([JobStatus.ready])) == ["j1", "j7"]
    store.delete_job("j7")
    assert ids(store.jobs_in([JobStatus.ready])) == ["j1"]


def test_jobs_in_never_hides_a_job_whose_status_keeps_changing(
    store: Store, second_handle: Callable[[], Store]
) -> None:
    for i in range(6):
        store.create_job(job(f"k{i}"))
    cycle = [
        JobStatus.ready,
        JobStatus.scheduled,
        JobStatus.running,
        JobStatus.paused,
        JobStatus.running,
        JobStatus.cancelled,
        JobStatus.completed,
        JobStatus.ready,
    ]
    handles = [second_handle() for _ in range(3)]

    def churn(handle: Store) -> None:
        for _ in range(2):
            for i in range(6):
                current = handle.get_job(f"k{i}")
                assert current is not None
                following = (
                    cycle[(cycle.index(current.status) + 1) % len(cycle)]
                    if current.status in cycle
                    else JobStatus.ready
                )
                handle.update_job(f"k{i}", expect=[current.status], status=following)

    threads = [threading.Thread(target=churn, args=(handle,)) for handle in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    swept = [
        JobStatus.planning,
        JobStatus.ready,
        JobStatus.scheduled,
        JobStatus.running,
        JobStatus.paused,
        JobStatus.cancelled,
    ]
    for handle in [store, *handles]:
        listed = {j.job_id: j.status for j in handle.jobs_in(swept)}
        actual = {f"k{i}": handle.get_job(f"k{i}").status for i in range(6)}  # type: ignore[union-attr]
        assert listed == {k: s for k, s in actual.items() if s in swept}
        handle.close()


def test_settle_job_leaves_it_out_until_its_status_changes(
    store: Store, second_handle: Callable[[], Store]
) -> None:
    store.create_job(job("c1"))
    store.create_job(job("c2"))
    for job_id in ("c1", "c2"):
        store.update_job(job_id, status=JobStatus.cancelled)
    assert store.settle_job("c1", JobStatus.running) is False  # not its status: nothing changes
    assert store.settle_job("nope", JobStatus.cancelled) is False
    assert [j.job_id for j in store.jobs_in([JobStatus.cancelled])] == ["c1", "c2"]
    assert store.settle_job("c1", JobStatus.cancelled) is True
    other = second_handle()
    assert [j.job_id for j in other.jobs_in([JobStatus.cancelled])] == ["c2"]
    assert store.update_job("c1", expect=[JobStatus.cancelled], reason="why") is True  # not a status change
    assert store.update_job("c1", status=JobStatus.cancelled) is True  # nor is this
    assert [j.job_id for j in store.jobs_in([JobStatus.cancelled])] == ["c2"]
    assert store.get_job("c1").status is JobStatus.cancelled  # type: ignore[union-attr]
    assert (
        store.update_job("c1", expect=[JobStatus.cancelled], status=JobStatus.running) is True
    )  # changes: back
    assert [j.job_id for j in other.jobs_in([JobStatus.running])] == ["c1"]
    assert store.update_job("c1", status=JobStatus.cancelled) is True
    assert [j.job_id for j in other.jobs_in([JobStatus.cancelled])] == ["c1", "c2"]
    other.close()


def test_add_job_counts_adds_atomically_and_returns_the_totals(
    store: Store, second_handle: Callable[[], Store]
) -> None:
    store.create_job(job())
    assert store.add_job_counts("job1") == {"tried": 0, "failed": 0}
    assert store.add_job_counts("job1", tried=5) == {"tried": 5, "failed": 0}
    assert store.add_job_counts("job1", tried=3, failed=2) == {"tried": 8, "failed": 2}
    assert store.add_job_counts("job1", failed=-1) == {"tried": 8, "failed": 1}
    with pytest.raises(ValueError, match="sent"):
        store.add_job_counts("job1", sent=1)
    with pytest.raises(KeyError):
        store.add_job_counts("nope", tried=1)
    assert store.get_job("nope") is None  # and no row was made for it
    # counters are not job fields: a job update leaves them, and they leave the job as it was
    store.update_job("job1", status=JobStatus.running, valid=7)
    loaded = store.get_job("job1")
    assert loaded is not None and (loaded.status, loaded.valid) == (JobStatus.running, 7)
    assert store.add_job_counts("job1") == {"tried": 8, "failed": 1}

    returned: list[dict[str, int]] = []
    lock = threading.Lock()

    def add(handle: Store) -> None:
        for _ in range(10):
            totals = handle.add_job_counts("job1", tried=1, failed=1)
            with lock:
                returned.append(totals)

    handles = [second_handle() for _ in range(4)]
    threads = [threading.Thread(target=add, args=(handles[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.add_job_counts("job1") == {"tried": 88, "failed": 81}
    # each addition saw its own total, right after it: no two callers see the same one
    assert sorted(t["tried"] for t in returned) == list(range(9, 89))
    assert all(t["failed"] == t["tried"] - 7 for t in returned)
    for handle in handles:
        handle.close()


# --- one owner at a time, fenced (lease.py) ------------------------------------------------------------------
def test_plan_lease_fences_job_writes(store: Store) -> None:
    from dataclasses import replace

    store.create_job(
        replace(job(), plan_owner="A", plan_expires=100.0, batch_size=500, max_request_bytes=9000)
    )
    loaded = store.get_job("job1")
    assert loaded is not None and (loaded.plan_owner, loaded.plan_expires) == ("A", 100.0)
    assert (loaded.batch_size, loaded.max_request_bytes) == (500, 9000)
    # a take-over of exactly the lease seen: refused if the owner renewed it meanwhile
    assert store.update_job("job1", expect=[JobStatus.planning], expect_plan_owner="A", plan_expires=160.0)
    assert not store.update_job(
        "job1",
        expect=[JobStatus.planning],
        expect_plan_owner="A",
        expect_plan_expires=100.0,
        plan_owner="B",
        plan_expires=200.0,
    )
    assert store.update_job(
        "job1",
        expect=[JobStatus.planning],
        expect_plan_owner="A",
        expect_plan_expires=160.0,
        plan_owner="B",
        plan_expires=200.0,
    )
    # the old owner's end of the plan is refused, the new owner's lands
    assert not store.update_job(
        "job1", expect=[JobStatus.planning], expect_plan_owner="A", status=JobStatus.ready
    )
    assert not store.delete_job("job1", plan_owner="A")
    assert store.update_job(
        "job1",
        expect=[JobStatus.planning],
        expect_plan_owner="B",
        status=JobStatus.ready,
        plan_owner="",
        plan_expires=0.0,
    )
    loaded = store.get_job("job1")
    assert loaded is not None and (loaded.status, loaded.plan_owner) == (JobStatus.ready, "")


def test_delete_job_only_by_the_plan_owner(store: Store) -> None:
    from dataclasses import replace

    store.create_job(replace(job(), plan_owner="A", plan_expires=100.0))
    store.put_plan(
        [RowRecord("job1", 2, "111", RowStatus.valid, batch_seq=0, recipient={"To": "111"})],
        [BatchRecord("job1", 0, 1, first_line=2, last_line=2)],
    )
    assert store.delete_job("job1", plan_owner="B") is False
    assert store.get_job("job1") is not None and store.batch_rows("job1", 0)
    assert store.delete_job("job1", plan_owner="A") is True
    assert (
        store.get_job("job1") is None
        and store.list_batches("job1") == []
        and store.batch_rows("job1", 0) == []
    )


def test_batch_writes_are_fenced_by_the_claim(store: Store) -> None:
    plan(store)
    assert store.transition_batch(
        "job1", 0, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner="A", claim_expires=10.0
    )
    # the heartbeat: only the owner, only while claimed or sending; status unchanged
    assert store.renew_claim("job1", 0, owner="A", until=20.0)
    assert not store.renew_claim("job1", 0, owner="B", until=99.0)
    batch = store.get_batch("job1", 0)
    assert batch is not None and (batch.status, batch.claim_expires) == (BatchStatus.claimed, 20.0)
    # a sweeper releasing the claim it saw expire: refused once the owner renewed it
    assert not store.transition_batch(
        "job1",
        0,
        expect=[BatchStatus.claimed],
        to=BatchStatus.pending,
        expect_owner="A",
        expect_expires=10.0,
        owner="",
    )
    assert store.transition_batch(
        "job1",
        0,
        expect=[BatchStatus.claimed],
        to=BatchStatus.pending,
        expect_owner="A",
        expect_expires=20.0,
        owner="",
        claim_expires=0.0,
    )
    assert store.transition_batch(
        "job1", 0, expect=[BatchStatus.pending], to=BatchStatus.claimed, owner="B", claim_expires=30.0
    )
    # the stale claimant's sending mark, outcome and renewal are all refused
    assert not store.transition_batch(
        "job1", 0, expect=[BatchStatus.claimed], to=BatchStatus.sending, expect_owner="A"
    )
    assert not store.transition_batch(
        "job1", 0, expect=[BatchStatus.claimed, BatchStatus.sending], to=BatchStatus.sent, expect_owner="A"
    )
    assert not store.renew_claim("job1", 0, owner="A", until=99.0)
    assert store.transition_batch(
        "job1", 0, expect=[BatchStatus.claimed], to=BatchStatus.sending, expect_owner="B"
    )
    assert store.transition_batch(
        "job1", 0, expect=[BatchStatus.sending], to=BatchStatus.sent, expect_owner="B"
    )
    assert not store.renew_claim("job1", 0, owner="B", until=99.0)  # resolved: nothing to renew
    batch = store.get_batch("job1", 0)
    assert batch is not None and (batch.status, batch.owner) == (BatchStatus.sent, "B")


# --- the HTTP API's listing pages and repeat check (issue 16) ------------------------------------------------
def test_list_jobs_pages_after_a_key_newest_first_each_job_once(store: Store) -> None:
    """Pages through jobs with equal and distinct creation times: every job once, in listing order."""
    created = [100.0, 300.0, 200.0, 300.0, 300.0, 150.5, 150.5, 400.25, 100.0, 250.0, 300.0]
    for i, at in enumerate(created):
        store.create_job(
            JobRecord(
                job_id=f"p{i:02d}", source="f.csv", options={}, intake={}, content_sha256="x", created_at=at
            )
        )
    whole = store.list_jobs(100)
    assert [j.created_at for j in whole] == sorted(created, reverse=True)
    for size in (1, 2, 3, 5, 11, 12):
        seen: list[str] = []
        after: JobKey | None = None
        while True:
            page = store.list_jobs(size, after=after)
            seen += [j.job_id for j in page]
            if len(page) < size:
                break
            after = JobKey.of(page[-1])
        assert seen == [j.job_id for j in whole], size
    assert store.list_jobs(5, after=JobKey(0.0, "zz")) == []
    newest = JobKey.of(whole[0])
    assert [j.job_id for j in store.list_jobs(100, after=newest)] == [j.job_id for j in whole[1:]]
    store.create_job(
        JobRecord(job_id="p99", source="f.csv", options={}, intake={}, content_sha256="x", created_at=999.0)
    )
    assert store.list_jobs(2, after=newest)[0].job_id == whole[1].job_id, "a newer job shifts no later page"


def test_claim_request_once_until_it_expires(store: Store) -> None:
    assert store.claim_request("d1", "job-a", at=1000.0, window=600.0) is None
    held = store.claim_request("d1", "job-b", at=1100.0, window=600.0)
    assert held is not None and held.job_id == "job-a" and held.at == pytest.approx(1000.0)
    assert store.claim_request("d2", "job-c", at=1100.0, window=600.0) is None, "another digest is its own"
    assert store.claim_request("d1", "job-d", at=1700.0, window=600.0) is None, "expired: taken over"
    held = store.claim_request("d1", "job-e", at=1701.0, window=600.0)
    assert held is not None and held.job_id == "job-d"
    assert store.claim_request("d1", "job-f", at=1702.0, window=600.0, force=True) is None
    held = store.claim_request("d1", "job-g", at=1703.0, window=600.0)
    assert held is not None and held.job_id == "job-f"
    store.release_request("d1", "job-other")  # not the holder: nothing changes
    assert store.claim_request("d1", "job-h", at=1704.0, window=600.0) is not None
    store.release_request("d1", "job-f")
    assert store.claim_request("d1", "job-i", at=1705.0, window=600.0) is None


def _race(handles: list[Store], claim: Callable[[Store, int], Any], count: int = 8) -> list[Any]:
    """``claim(handle, i)`` in ``count`` threads let go at once, over the handles in turn; their results."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        results[i] = claim(handles[i % len(handles)], i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_claim_request_has_one_winner_across_handles(
    store: Store, second_handle: Callable[[], Store]
) -> None:
    """Identical requests on several handles (processes, function instances) at once: exactly one wins; of
    those racing to take over an expired digest, exactly one too."""
    handles = [store] + [second_handle() for _ in range(3)]
    results = _race(
        handles, lambda handle, i: handle.claim_request("race", f"job-{i}", at=1000.0, window=600.0)
    )
    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1 and {r.job_id for r in results if r is not None} == {f"job-{winners[0]}"}
    results = _race(
        handles, lambda handle, i: handle.claim_request("race", f"new-{i}", at=5000.0, window=600.0)
    )
    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1 and {r.job_id for r in results if r is not None} == {f"new-{winners[0]}"}
    for handle in handles[1:]:
        handle.close()


def test_a_job_keeps_its_summary_and_retention_times(store: Store) -> None:
    """Retention (issue 17): the summary (a dict, stored as JSON), ``finished_at`` and ``purged_at`` round-trip,
    set alone or with a status change, and a job of an older release reads as having none."""
    assert store.create_job(job("keeper"))
    fresh = store.get_job("keeper")
    assert fresh is not None and (fresh.summary, fresh.finished_at, fresh.purged_at) == ({}, 0.0, 0.0)
    summary = {"sent": 10, "failed": 2, "finished_at": "2026-12-07T00:00:00Z", "delivery": {"read": 3}}
    assert store.update_job("keeper", status=JobStatus.completed, summary=summary, finished_at=1234.5)
    assert store.update_job("keeper", purged_at=2345.5)
    kept = store.get_job("keeper")
    assert kept is not None and kept.summary == summary
    assert (kept.finished_at, kept.purged_at, kept.status) == (1234.5, 2345.5, JobStatus.completed)
    assert [j.summary for j in store.list_jobs() if j.job_id == "keeper"] == [summary]
