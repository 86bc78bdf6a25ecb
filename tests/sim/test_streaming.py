"""Plan and send at once (``services.streaming``): the orderings it adds, replayed step for step by the
scripted scheduler (harness.Sim ``script``) against SQLite and checked with the simulation's invariants
(harness.check: nothing received twice, every line once in the report with a final status, no report
written while the plan was unfinished, the rate).

- a sender sends the plan's first batch while the planner is still writing the rest, then waits for more;
- the planner crashes after the job started sending: the drainer gives up once the lease expired, without
  finalizing, and the timer hands the plan to a new ingest, which finishes it and fans out again;
- two planners at once: the second waits for the first's lease, takes the plan over when the first pauses
  past it, and the first, back, writes the same bytes once and stops at its next write.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from chatapp_mass.services import dispatch
from chatapp_mass.store.interface import JobStatus, Store
from chatapp_mass.store.sqlite import SqliteStore

from harness import PLAN_LEASE, Sim, World, check, csv_bytes, small_plan_chunks


@pytest.fixture
def open_store() -> Callable[[Callable[[], float]], Store]:
    path = os.path.join(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None), "s.db")
    return lambda clock: SqliteStore(path, clock=clock)


def _world(script: list[Any], open_store: Callable[[Callable[[], float]], Store]) -> World:
    sim = Sim(11, script=script)
    rng = random.Random(5)
    while True:  # a file of several batches without the number CAMS refuses (no split in these orderings)
        data, valid = csv_bytes(rng)
        if len(valid) >= 9 and b"4915100000099" not in data:
            break
    dispatch._first_call_done.set()
    return World(sim, open_store, data, valid)


def _play(
    world: World, open_store: Callable[[Callable[[], float]], Store]
) -> tuple[JobStatus, dict[str, int]]:
    """Run the script (and whatever follows it); the job's status before any recovery, then the checks."""
    with small_plan_chunks():
        world.sim.run()
        store = open_store(lambda: world.sim.now)
        job = store.get_job(world.job_id)
        store.close()
        assert job is not None
        world.recover()
    store = open_store(lambda: world.sim.now)
    try:
        return job.status, check(world, store)
    finally:
        store.close()


def test_sender_sends_the_first_batch_while_the_plan_is_written(open_store: Any) -> None:
    script = [
        ("I", {"store.update_job"}),  # the first batch is written; about to start the job (running)
        ("I", {"store.put_plan"}),  # started and fanned out (drainer fc1); about to write the next chunk
        ("fc1", {"cams.call"}),  # the drainer sent batch 0: the plan is not finished
        ("fc1", {"sleep"}),  # nothing else open yet, the plan's lease alive: it waits for more
        ("I", None),  # the planner writes the rest and the totals
        ("fc1", None),  # the drainer sends the rest, then finalizes
    ]
    world = _world(script, open_store)
    world.sim.add("I", world.stream_ingest)
    status, figures = _play(world, open_store)
    assert status is JobStatus.completed, world.sim.tail()
    assert figures["received"] == len(world.valid)
    assert figures["calls_while_planning"] >= 1 and world.streamed


def test_planner_crash_after_the_start_is_resumed_by_the_timer(open_store: Any) -> None:
    script = [
        ("I", {"store.update_job"}),
        ("I", {"store.put_plan"}),  # running, drainer fc2 invoked; the rest of the plan unwritten
        ("fc2", {"cams.call"}),  # batch 0 sent
        ("@crash", "I"),  # the ingest instance dies mid-plan; its lease will expire
        ("fc2", None),  # sends nothing more, gives up once the lease expired: no finalize, no report
    ]
    world = _world(script, open_store)
    world.sim.add("I", world.stream_ingest)
    world.sim.add("T", world.timer)  # sleeps first: it fires after the script
    status, figures = _play(world, open_store)
    assert status is JobStatus.completed, world.sim.tail()  # finished by the resumed plan, not the recovery
    assert figures["received"] == len(world.valid)
    ingests = [a.name for a in world.sim.actors if a.body == world.stream_ingest]
    assert len(ingests) >= 2, ingests  # the timer handed the abandoned plan to a new ingest


def test_two_planners_at_once_one_takes_over_while_a_sender_runs(open_store: Any) -> None:
    script = [
        ("I", {"store.update_job"}),  # I holds the lease, its first batch written
        ("J", {"sleep"}),  # the same event delivered again: J finds I's lease alive and waits
        ("I", {"store.put_plan"}),  # I started the job (drainer fc2) and is about to write its next chunk
        ("fc2", {"cams.call"}),  # batch 0 sent while planned
        ("@pause", "I", PLAN_LEASE + 10),  # I freezes past its lease (its heartbeat too)
        ("J", {"store.put_plan"}),  # J took the expired lease over and is writing the plan again
        ("I", {"sleep"}),  # I, back: its pending write lands (the same bytes), then it finds the lease
        # lost (PlanLost at its next write) and waits for J's plan
        ("J", None),
    ]
    world = _world(script, open_store)
    world.sim.add("I", world.stream_ingest)
    world.sim.add("J", world.stream_ingest)
    status, figures = _play(world, open_store)
    assert status is JobStatus.completed, world.sim.tail()
    assert figures["received"] == len(world.valid)
    assert figures["calls_while_planning"] >= 1
