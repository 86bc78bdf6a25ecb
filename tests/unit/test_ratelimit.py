"""The limiter counts departures (issue 14): a fake clock throughout; no test depends on an idle CPU."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace

import pytest

from chatapp_mass.adapters.transport import Departure
from chatapp_mass.core.outcomes import OutcomeKind, SendOutcome
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner
from chatapp_mass.services.plan import REAL
from chatapp_mass.services.ratelimit import SlidingWindowLimiter
from chatapp_mass.services.ratemargin import LearnedMargin
from chatapp_mass.store import ratewindow
from chatapp_mass.store.sqlite import SqliteStore


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.naps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


@pytest.fixture
def store() -> Iterator[SqliteStore]:
    with tempfile.TemporaryDirectory() as directory:
        handle = SqliteStore(os.path.join(directory, "rate.db"))
        yield handle
        handle.close()


def limiter(
    store: SqliteStore, clock: FakeClock, *, limit: int = 1, floor: float = 0.0
) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(
        store,
        limit=limit,
        window=1.0,
        lead=0.15,
        clock=clock,
        sleep=clock.sleep,
        learned=LearnedMargin(floor),
    )


def test_a_slow_first_byte_delays_the_next_grant(store: SqliteStore) -> None:
    clock = FakeClock()
    rate = limiter(store, clock)
    first = rate.reserve()
    assert first is not None and first.not_before == 1000.0
    clock.now = 1000.3  # the first byte left 0.3 s after the slot (a busy host)
    first.depart(clock.now)
    second = rate.reserve()
    assert second is not None
    # counted from the departure, not from the grant: a grant-time window would have said 1001.0
    assert second.not_before == pytest.approx(1001.3)
    assert clock.now >= second.not_before - 0.15 - 1e-9  # granted within the lead, not earlier


def test_a_granted_call_not_yet_departed_counts_as_leaving_now(store: SqliteStore) -> None:
    clock = FakeClock()
    rate = limiter(store, clock)
    assert rate.reserve() is not None  # granted, never departed yet
    clock.now = 1004.0
    grant = store.rate_reserve(rate.key, 1, rate.window, clock, token="b", lead=0.15)
    assert not grant.granted  # the hold counts as departing no earlier than now: nothing overtakes it
    # until it is so old that its process must be gone: then it counts at not_before + HOLD_MAX and ages out
    clock.now = 1000.0 + ratewindow.HOLD_MAX + 1.0 + 0.001
    assert store.rate_reserve(rate.key, 1, rate.window, clock, token="c", lead=0.15).granted


def test_every_attempt_counts_even_one_that_never_left(store: SqliteStore) -> None:
    clock = FakeClock()
    rate = limiter(store, clock, limit=2)
    for _ in range(2):
        slot = rate.reserve()
        assert slot is not None
        slot.depart(clock.now)  # e.g. connection refused: counted when the call returned
    assert store.rate_acquire(rate.key, 2, rate.window, clock, peek=True) > 0
    assert store.rate_acquire(rate.key, 3, rate.window, clock, peek=True) == 0.0
    # a departure recorded for a hold already gone (expired) is counted all the same
    store.rate_depart(rate.key, "gone", clock.now, clock)
    assert store.rate_acquire(rate.key, 3, rate.window, clock, peek=True) > 0


def test_waits_nap_at_least_a_millisecond(store: SqliteStore) -> None:
    """A remainder below the clock's resolution must not spin (it hung an earlier attempt's test)."""

    class Ticking(FakeClock):
        """Advances in whole milliseconds, as a scheduler's clock does: a shorter sleep passes no time."""

        def sleep(self, seconds: float) -> None:
            if len(self.naps) > 1000:
                raise AssertionError("spinning on a sub-resolution remainder")
            self.naps.append(seconds)
            self.now += int(seconds * 1000 + 1e-9) / 1000

    clock = Ticking()
    gate = Departure(clock.now + 0.0004, clock=clock, sleep=clock.sleep)
    gate.before_first_send()
    assert clock.naps == [0.001] and gate.first_byte == clock.now
    rate = SlidingWindowLimiter(store, clock=clock, sleep=clock.sleep)
    assert rate._pause(0.0004, None) is False and clock.naps[-1] == 0.001


def test_the_margin_widens_a_little_on_a_refusal_and_narrows_slowly() -> None:
    margin = LearnedMargin(0.01, step=0.02, decay=0.9, ceiling=0.1, cooldown=1.0)
    margin.refused(100.0)
    assert margin.value == pytest.approx(0.03)
    margin.refused(100.5)  # same burst: the same lesson
    assert margin.value == pytest.approx(0.03) and margin.widened == 1
    margin.refused(101.5)
    assert margin.value == pytest.approx(0.05)
    margin.accepted()
    assert margin.value == pytest.approx(0.01 + 0.04 * 0.9)  # multiplicative, toward the floor
    for _ in range(200):
        margin.accepted()
    assert margin.value == pytest.approx(0.01)  # never below the floor
    for i in range(20):
        margin.refused(200.0 + 2 * i)
    assert margin.value == pytest.approx(0.1)  # never above the ceiling


def test_the_limiter_spaces_calls_by_the_learned_margin(store: SqliteStore) -> None:
    clock = FakeClock()
    rate = limiter(store, clock)
    first = rate.reserve()
    assert first is not None
    first.depart(1000.0)
    rate.refused()
    assert rate.window == pytest.approx(1.0 + 0.02)
    second = rate.reserve()
    assert second is not None and second.not_before == pytest.approx(1001.02)


class _Call:
    """A prepared call without HTTP (the engine waits for its slot itself) that answers ``kind``."""

    gated = False

    def __init__(self, clock: FakeClock, kind: OutcomeKind) -> None:
        self.clock, self.kind, self.called_at = clock, kind, -1.0

    def __call__(self) -> SendOutcome:
        self.called_at = self.clock.now
        self.clock.now += 0.25  # the reply's latency
        return SendOutcome(
            self.kind, code="System.LimitControl" if self.kind is OutcomeKind.throttled else "OK"
        )


def test_the_engine_calls_in_its_slot_records_the_departure_and_learns(store: SqliteStore) -> None:
    clock = FakeClock()
    rate = limiter(store, clock, floor=0.01)
    runner = JobRunner(
        store,
        None,  # type: ignore[arg-type] # the call is given, the client is never used
        DispatchSettings(),
        limiter=rate,
        runtime=replace(REAL, clock=clock, sleep=clock.sleep),
    )
    first = rate.reserve()
    assert first is not None
    throttled = _Call(clock, OutcomeKind.throttled)
    outcome = runner._call_in_slot(throttled, first)  # type: ignore[arg-type] # a duck-typed call
    assert outcome.kind is OutcomeKind.throttled
    assert throttled.called_at >= first.not_before  # never before its slot
    assert first.departed_at is not None and first.departed_at >= throttled.called_at
    assert rate.margin.value == pytest.approx(0.03)  # the refusal widened the margin
    second = rate.reserve()
    assert second is not None
    assert second.not_before == pytest.approx(first.departed_at + 1.03)  # a refused attempt counts too
    runner._call_in_slot(_Call(clock, OutcomeKind.sent), second)  # type: ignore[arg-type]
    assert 0.01 < rate.margin.value < 0.03  # an accepted call narrows it
