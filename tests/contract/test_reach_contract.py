"""One contract, both stores: the messaging limit's window (``store.reach``) on SQLite and on Tablestore (the
local Tablestore through the real SDK). Reserve within the limit only, release, settle, the rolling window on
an injected clock, and never over the limit under concurrent reservers (threads, separate store handles)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stores import tablestore_on

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.messaging import effective_limit, parse_limit, parse_limits
from chatapp_mass.store import reach
from chatapp_mass.store.features import open_reach
from chatapp_mass.store.interface import Store
from chatapp_mass.store.reach import DAY, NEVER, ReachStore
from chatapp_mass.store.sqlite import SqliteStore

FROM = "8613800000000"
T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def local_tablestore() -> Iterator[Any]:
    from alibaba_localcloud.tablestore import LocalTablestore

    with LocalTablestore(max_tables=1024, table_not_ready_seconds=0.5) as server:
        yield server


@pytest.fixture(params=["sqlite", "tablestore"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Opens another handle on the same store each time it is called."""
    if request.param == "sqlite":
        return lambda: SqliteStore(str(tmp_path / "state.db"))
    server = request.getfixturevalue("local_tablestore")
    prefix = f"r{secrets.token_hex(4)}_"
    return lambda: tablestore_on(server, prefix)


@pytest.fixture
def window(backend: Callable[[], Store]) -> Iterator[ReachStore]:
    store = backend()
    yield open_reach(store)
    store.close()


def test_reserve_within_the_limit_only_and_say_when_it_frees(window: ReachStore) -> None:
    for i in range(10):
        grant = window.reserve(FROM, 1000, 10_000, token=f"b{i}", now=T0 + i)
        assert grant.granted and grant.used == 1000 * (i + 1) and grant.available == 10_000 - 1000 * (i + 1)
    refused = window.reserve(FROM, 1000, 10_000, token="b10", now=T0 + 100)
    assert refused == reach.Grant(False, 10_000, 0, T0 + DAY)  # the oldest thousand leaves then
    bigger = window.reserve(FROM, 3000, 10_000, token="b10", now=T0 + 100)
    assert bigger.next_free_at == T0 + 2 + DAY  # three entries must leave
    assert window.usage(FROM, now=T0 + 100) == reach.Usage(10_000, 10, T0)
    # another From has its own window
    assert window.reserve("8613900000000", 1000, 10_000, token="x", now=T0 + 100).granted
    # the window rolls: at T0 + DAY the first entry is out (an entry counts while at > now - window)
    assert not window.reserve(FROM, 1000, 10_000, token="b10", now=T0 + DAY - 0.001).granted
    late = window.reserve(FROM, 1000, 10_000, token="b10", now=T0 + DAY)
    assert late.granted and late.used == 10_000
    assert window.usage(FROM, now=T0 + 2 * DAY + 20) == reach.Usage(0, 0, None)


def test_a_batch_over_the_limit_never_fits_and_unlimited_always_does(window: ReachStore) -> None:
    assert window.reserve(FROM, 251, 250, token="a", now=T0).next_free_at == NEVER
    assert window.usage(FROM, now=T0).used == 0  # a refusal writes nothing
    unlimited = window.reserve(FROM, 1_000_000, None, token="u", now=T0)
    assert unlimited.granted and unlimited.available is None and window.usage(FROM, now=T0).used == 1_000_000


def test_a_retried_reservation_is_granted_once(window: ReachStore) -> None:
    assert window.reserve(FROM, 600, 1000, token="same", now=T0).granted
    again = window.reserve(FROM, 600, 1000, token="same", now=T0 + 1)
    assert again.granted and again.used == 600  # not counted twice
    assert not window.reserve(FROM, 600, 1000, token="other", now=T0 + 1).granted


def test_release_gives_the_allowance_back_and_settle_moves_an_entry_later(window: ReachStore) -> None:
    assert window.reserve(FROM, 1000, 1000, token="a", now=T0).granted
    assert not window.reserve(FROM, 1, 1000, token="b", now=T0 + 5).granted
    assert window.release(FROM, "a", now=T0 + 5) is True
    assert window.release(FROM, "a", now=T0 + 5) is False  # gone already
    assert window.reserve(FROM, 1000, 1000, token="b", now=T0 + 6).granted
    # b's call ended 30 s later: it counts from then, never from earlier
    assert window.settle(FROM, "b", T0 + 36, now=T0 + 36) is True
    assert window.settle(FROM, "b", T0 + 10, now=T0 + 40) is False
    assert window.reserve(FROM, 1, 1000, token="c", now=T0 + 40).next_free_at == T0 + 36 + DAY
    assert window.usage(FROM, now=T0 + 40).oldest_at == T0 + 36


def test_reserve_under_four_threads_never_passes_the_limit(backend: Callable[[], Store]) -> None:
    """Four threads, each with its own store handle (as separate senders), reserve 50 each against a limit
    of 2,000 at once: exactly 40 are granted, and the window holds 2,000."""
    handles = [backend() for _ in range(4)]
    windows = [open_reach(h) for h in handles]
    granted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def work(index: int) -> None:
        start.wait()
        for i in range(15):
            grant = windows[index].reserve(FROM, 50, 2000, token=f"{index}-{i}", now=T0)
            with lock:
                granted.append(grant.granted)
            assert grant.used <= 2000

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 40 and len(granted) == 60
    assert windows[0].usage(FROM, now=T0) == reach.Usage(2000, 40, T0)
    for handle in handles:
        handle.close()


# --- the pure rules and the setting (no store) -----------------------------------------------------------
def test_compaction_keeps_the_count_and_never_shortens_an_entry() -> None:
    entries = [reach.Entry(T0 + i, 1, f"t{i}") for i in range(reach.MAX_ENTRIES + 5)]
    compacted = reach.compact(entries)
    assert len(compacted) == reach.MAX_ENTRIES
    assert sum(e.size for e in compacted) == len(entries)
    assert compacted[0] == reach.Entry(T0 + 5, 6, "")  # the six oldest, counted as long as the sixth


def test_the_limits_setting_and_option_parse_tiers_and_refuse_nonsense() -> None:
    limits = parse_limits("8613800000000=10000, +8613900000000=2K;default=unlimited", where="X")
    assert limits.for_number(FROM) == 10_000 and limits.for_number("8613900000000") == 2000
    assert limits.for_number("4915100000000") is None
    assert parse_limits("8613800000000=10,000,default=250", where="X").by_number[FROM] == 10_000
    assert [parse_limit(t, where="X") for t in ("250", "1K", "2k", "10K", "100K", "unlimited", 7)] == [
        250,
        1000,
        2000,
        10_000,
        100_000,
        None,
        7,
    ]
    for bad, said in (
        ("8613800000000=lots", "X (8613800000000)='lots': a whole number"),
        ("8613800000000", "is not NUMBER=LIMIT"),
        ("abc=10K", "is not a From number"),
        ("default=0", "at least 1"),
    ):
        with pytest.raises(OptionsError, match=said.replace("(", r"\(").replace(")", r"\)")):
            parse_limits(bad, where="X")
    assert effective_limit(10_000, None) == 10_000 and effective_limit(None, 250) == 250
    assert effective_limit(10_000, 100_000) == 10_000 and effective_limit(None, None) is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reserve", "release", "settle"]), st.integers(1, 400), st.floats(0, 30_000)
        ),
        max_size=60,
    )
)
def test_the_pure_rules_never_count_more_than_the_limit_in_any_window(steps: list[Any]) -> None:
    """Reserve, release and settle in any order, time only moving on: the entries inside any window never
    sum above the limit, and a refusal's next_free_at is a time the same reservation is granted."""
    limit, window, now = 1000, 3600.0, T0
    entries: list[reach.Entry] = []
    tokens: list[str] = []
    for index, (action, size, step) in enumerate(steps):
        now += step
        if action == "reserve":
            grant, written = reach.reserve_entries(entries, size, limit, window, now, f"t{index}")
            if written is not None:
                entries, _ = written, tokens.append(f"t{index}")
            elif not grant.granted:
                later, _ = reach.reserve_entries(entries, size, limit, window, grant.next_free_at, "x")
                assert later.granted and grant.next_free_at > now
        elif tokens and action == "release":
            entries = reach.release_entries(entries, tokens.pop(0), now, window) or entries
        elif tokens:
            entries = reach.settle_entries(entries, tokens[-1], now, now, window) or entries
        assert reach.usage_of(entries, now, window).used <= limit
