"""One contract, every receipt store: the same tests run on SQLite and on Tablestore (the local Tablestore, over
the real SDK), proving the same behaviour: tasks registered once, delivery state forward-only whatever the
order, repeats no-ops, many recipients per call, concurrent writers, receipts set aside idempotently."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stores import tablestore_on

from chatapp_mass.store.features import open_receipts
from chatapp_mass.store.interface import Store
from chatapp_mass.store.receipts import (
    RANK,
    DeliveryState,
    DeliveryStatus,
    Receipt,
    ReceiptStore,
    advances,
)
from chatapp_mass.store.sqlite import SqliteStore

S = DeliveryStatus
ORDER = [S.sent, S.failed, S.delivered, S.read]


@pytest.fixture(scope="module")
def local_tablestore() -> Iterator[Any]:
    from alibaba_localcloud.tablestore import LocalTablestore

    # Not realistic (new tables ready at once, no table-operation quota): every test makes its own tables, and
    # those rules are the main store's contract's (test_store_contract.py) and the conformance tests'.
    with LocalTablestore(realistic=False, max_tables=4096) as server:
        yield server


@pytest.fixture(params=["sqlite", "tablestore"])
def receipts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReceiptStore]:
    main: Store
    if request.param == "sqlite":
        main = SqliteStore(str(tmp_path / "state.db"))
    else:
        main = tablestore_on(request.getfixturevalue("local_tablestore"))
    store = open_receipts(main)
    yield store
    main.close()


def receipt(to: str, status: DeliveryStatus, *, task: str = "100000000000000001", **fields: Any) -> Receipt:
    """A receipt whose message id and time follow from (task, to, status), unless given: repeats are equal."""
    values: dict[str, Any] = {
        "message_id": f"m-{task}-{to}",
        "at_ms": 1_765_000_000_000 + 1000 * RANK[status] + int(to[-3:]),
    }
    if status is S.failed:
        values.update(error_code="131026", error_description="Message undeliverable, receiver incapable")
    values.update(fields)
    return Receipt(task_id=task, to=to, status=status, **values)


def state_of(r: Receipt) -> DeliveryState:
    return DeliveryState(r.status, r.message_id, r.at_ms, r.error_code, r.error_description)


def expected_states(receipts: list[Receipt]) -> dict[str, dict[str, DeliveryState]]:
    """Applying the receipts one by one with the rule: task -> to -> state."""
    states: dict[str, dict[str, DeliveryState]] = {}
    for r in receipts:
        task = states.setdefault(r.task_id, {})
        if advances(task.get(r.to), r):
            task[r.to] = state_of(r)
    return states


def test_register_task_is_idempotent_and_the_first_stays(receipts: ReceiptStore) -> None:
    assert receipts.task("200000000000000001") is None
    receipts.register_task("200000000000000001", "jobA", 3)
    receipts.register_task("200000000000000001", "jobA", 3)
    receipts.register_task("200000000000000001", "jobB", 7)
    receipts.register_task("own-task-id", "jobC", -1)
    task = receipts.task("200000000000000001")
    assert task is not None and (task.job_id, task.seq) == ("jobA", 3)
    own = receipts.task("own-task-id")
    assert own is not None and (own.job_id, own.seq) == ("jobC", -1)
    assert receipts.task("200000000000000002") is None


def test_states_only_move_forward_in_every_order(receipts: ReceiptStore) -> None:
    """Every ordering of every subset of the four statuses, one recipient each, one receipt per call round:
    the state ends at the highest rank, each call counts exactly the receipts that moved a state forward, and
    a later lower receipt (or the same again) changes nothing."""
    sequences = [
        p for k in range(1, 5) for c in itertools.combinations(ORDER, k) for p in itertools.permutations(c)
    ]
    recipients = {f"86138000{i:05d}": seq for i, seq in enumerate(sequences)}
    applied: list[Receipt] = []
    for round_ in range(4):
        call = [receipt(to, seq[round_]) for to, seq in recipients.items() if round_ < len(seq)]
        before = expected_states(applied).get("100000000000000001", {})
        result = receipts.record(call)
        moved = sum(advances(before.get(r.to), r) for r in call)
        assert (result.changed, result.unchanged) == (moved, len(call) - moved)
        applied += call
    states = receipts.states("100000000000000001")
    assert states == expected_states(applied)["100000000000000001"]
    assert {to: states[to].status for to in recipients} == {
        to: max(seq, key=RANK.__getitem__) for to, seq in recipients.items()
    }
    late = [receipt(to, S.sent, message_id="late", at_ms=9) for to in recipients]
    assert receipts.record(late) == (0, len(late))
    delivered_again = [receipt(to, S.delivered) for to, seq in recipients.items() if S.read in seq]
    assert receipts.record(delivered_again) == (0, len(delivered_again))
    assert receipts.states("100000000000000001") == states


def test_repeats_are_no_ops(receipts: ReceiptStore) -> None:
    call = [receipt(f"86139000{i:05d}", S.sent) for i in range(50)]
    assert receipts.record(call) == (50, 0)
    assert receipts.record(call) == (0, 50)
    twice = [receipt("8613900099999", S.delivered)] * 2
    assert receipts.record(twice) == (1, 1)
    assert receipts.record([]) == (0, 0)
    states = receipts.states("100000000000000001")
    assert len(states) == 51 and states["8613900099999"] == state_of(twice[0])


def test_several_receipts_for_one_recipient_in_one_call(receipts: ReceiptStore) -> None:
    """The call ends as applying its receipts one by one would: the highest rank, of equal ranks the first."""
    to = "8613700000001"
    call = [
        receipt(to, S.sent),
        receipt(to, S.failed),
        receipt(to, S.delivered, message_id="first-delivered", at_ms=20),
        receipt(to, S.delivered, message_id="second-delivered", at_ms=10),
        receipt(to, S.failed),
    ]
    result = receipts.record(call)
    assert result.changed + result.unchanged == len(call) and result.changed >= 1
    assert receipts.states("100000000000000001") == {to: state_of(call[2])}
    read_then_sent = [receipt(to, S.read), receipt(to, S.sent), receipt(to, S.delivered)]
    result = receipts.record(read_then_sent)
    assert result.changed + result.unchanged == 3 and result.changed >= 1
    assert receipts.states("100000000000000001") == {to: state_of(read_then_sent[0])}


def test_many_recipients_in_one_call(receipts: ReceiptStore) -> None:
    tasks = ["300000000000000001", "300000000000000002", "3000000000000000010"]  # one id prefixes another
    call = [receipt(f"8615{i:09d}", ORDER[i % 4], task=tasks[i % 3]) for i in range(3000)]
    assert receipts.record(call) == (3000, 0)
    expected = expected_states(call)
    for task in tasks:
        states = receipts.states(task)
        assert len(states) == 1000 and states == expected[task]
    assert receipts.states("300000000000000003") == {}
    assert receipts.states("") == {}


def test_concurrent_writers_end_as_one_writer(receipts: ReceiptStore) -> None:
    """4 threads record overlapping shuffled samples (with repeats) in calls of 50; together they hold every
    receipt: the states are those of the receipts applied one by one, in any order."""
    rng = random.Random(17)
    every = [
        receipt(f"8618{i:09d}", status, task=f"40000000000000000{i % 2}")
        for i in range(300)
        for status in rng.sample(ORDER, rng.randint(1, 4))
    ]
    samples = [rng.sample(every, len(every) * 6 // 10) for _ in range(4)]
    samples[0] += every  # every receipt at least once
    for sample in samples:
        rng.shuffle(sample)
    errors: list[BaseException] = []
    counted = [0, 0]
    lock = threading.Lock()

    def write(sample: list[Receipt]) -> None:
        try:
            for start in range(0, len(sample), 50):
                result = receipts.record(sample[start : start + 50])
                with lock:
                    counted[0] += result.changed
                    counted[1] += result.unchanged
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(sample,)) for sample in samples]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(counted) == sum(len(sample) for sample in samples)
    expected = expected_states(every)
    for task in ("400000000000000000", "400000000000000001"):
        assert receipts.states(task) == expected[task]
    # each recipient's state was created once and moved at most three times: never more changes than that
    assert (
        len(expected["400000000000000000"]) + len(expected["400000000000000001"]) <= counted[0] <= len(every)
    )


def test_counts_by_status_over_tasks(receipts: ReceiptStore) -> None:
    tasks = ["600000000000000001", "600000000000000002"]
    call = [receipt(f"8613400{i:06d}", ORDER[i % 4], task=tasks[i % 2]) for i in range(410)]
    receipts.record(call + [receipt("8613499999999", S.sent, task="600000000000000003")])
    expected = {status: sum(1 for r in call if r.status is status) for status in ORDER}
    assert receipts.counts(tasks) == expected
    assert receipts.counts([*tasks, tasks[0], "600000000000000009"]) == expected  # repeats count once
    assert receipts.counts([]) == dict.fromkeys(ORDER, 0)


def test_set_aside_is_idempotent_and_listed_oldest_first(receipts: ReceiptStore) -> None:
    late = receipt("8613600000003", S.read, task="999", at_ms=3_000, from_="8613800000000")
    early = receipt("8613600000001", S.failed, task="999", at_ms=1_000, from_="8613800000000")
    middle = receipt("8613600000002", S.delivered, task="998", at_ms=2_000)
    assert receipts.set_aside_list() == []
    receipts.set_aside([late, early, early], "unregistered TaskId")
    receipts.set_aside([early], "another reason")  # a repeat: the first stays
    receipts.set_aside([], "nothing")
    receipts.set_aside([middle], "unregistered TaskId")
    assert receipts.set_aside_list() == [
        (early, "unregistered TaskId"),
        (middle, "unregistered TaskId"),
        (late, "unregistered TaskId"),
    ]
    assert receipts.set_aside_list(limit=2) == [
        (early, "unregistered TaskId"),
        (middle, "unregistered TaskId"),
    ]
    # the same message's other status is another receipt
    read_too = receipt("8613600000001", S.read, task="999", at_ms=4_000)
    receipts.set_aside([read_too, late], "unregistered TaskId")
    assert [r for r, _ in receipts.set_aside_list()] == [early, middle, late, read_too]
    # set aside is apart from the state: nothing recorded
    assert receipts.states("999") == {}


def test_states_of_an_unknown_task_are_empty(receipts: ReceiptStore) -> None:
    assert receipts.states("500000000000000001") == {}
    receipts.record([receipt("8613500000001", S.sent, task="500000000000000002")])
    assert receipts.states("500000000000000001") == {}
    assert set(receipts.states("500000000000000002")) == {"8613500000001"}
