"""The suppression list's contract, on SQLite and on Tablestore (the local Tablestore, the real SDK): add is
idempotent and counts what it added, remove counts what it removed, spaces are apart, pages follow each other,
``suppressed`` answers for any number of numbers (over the 100 of one BatchGetRow), marked rows by range."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stores import tablestore_on

from chatapp_mass.store.features import open_suppression
from chatapp_mass.store.interface import Store
from chatapp_mass.store.sqlite import SqliteStore
from chatapp_mass.store.suppression import MarkedRow, SuppressionStore


@pytest.fixture(scope="module")
def local_tablestore() -> Iterator[Any]:
    from alibaba_localcloud.tablestore import LocalTablestore

    with LocalTablestore(max_tables=1024, table_not_ready_seconds=0.5) as server:
        yield server


@pytest.fixture(params=["sqlite", "tablestore"])
def sup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SuppressionStore]:
    store: Store
    if request.param == "sqlite":
        store = SqliteStore(str(tmp_path / "state.db"))
    else:
        store = tablestore_on(request.getfixturevalue("local_tablestore"))
    yield open_suppression(store)
    store.close()


def test_add_is_idempotent_and_counts_what_it_added(sup: SuppressionStore) -> None:
    assert sup.add("default", ["8613800000001", "8613800000002"], reason="operator", source="ops") == 2
    assert sup.add("default", ["8613800000002", "8613800000003", "8613800000003"], reason="import") == 1
    listed = sup.list("default")
    assert [s.number for s in listed] == ["8613800000001", "8613800000002", "8613800000003"]
    second = listed[1]
    assert (second.reason, second.source) == ("operator", "ops")  # the first add's, kept
    assert second.at > 0


def test_remove_counts_what_was_there_and_spaces_are_apart(sup: SuppressionStore) -> None:
    sup.add("default", ["111111", "222222"], reason="operator")
    sup.add("space-b", ["111111"], reason="unsubscribe")
    assert sup.suppressed("space-b", ["111111", "222222"]) == {"111111"}
    assert sup.remove("default", ["111111", "999999"]) == 1
    assert sup.suppressed("default", ["111111", "222222"]) == {"222222"}
    assert sup.suppressed("space-b", ["111111"]) == {"111111"}
    assert sup.remove("default", ["111111"]) == 0


def test_suppressed_over_many_chunks(sup: SuppressionStore) -> None:
    numbers = [f"44740000{n:04d}" for n in range(1000)]
    listed = numbers[::7]
    assert sup.add("default", listed, reason="import") == len(listed)
    assert sup.suppressed("default", numbers) == set(listed)
    assert sup.suppressed("default", []) == set()


def test_list_pages_follow_each_other(sup: SuppressionStore) -> None:
    numbers = [f"3360000{n:04d}" for n in range(25)]
    sup.add("default", numbers, reason="operator")
    pages, after = [], ""
    while True:
        page = sup.list("default", after=after, limit=10)
        if not page:
            break
        pages.append([s.number for s in page])
        after = page[-1].number
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == numbers


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.add("default", ["+8613800000001"], reason="operator"),
        lambda s: s.add("default", ["8613800000001"], reason="because"),
        lambda s: s.add("", ["8613800000001"], reason="operator"),
        lambda s: s.list("default", limit=0),
    ],
)
def test_refuses_what_it_cannot_store(sup: SuppressionStore, call: Callable[[Any], Any]) -> None:
    with pytest.raises(ValueError):
        call(sup)


def test_marked_rows_by_range_and_idempotent(sup: SuppressionStore) -> None:
    rows = [MarkedRow("job1", line, f"10{line}", 0, 1.0) for line in (2, 5, 9)]
    sup.mark_rows(rows)
    sup.mark_rows([MarkedRow("job1", 5, "105", 0, 2.0), MarkedRow("job2", 5, "205", 3, 1.0)])
    assert sup.marked_rows("job1") == rows  # the first mark kept
    assert [r.line for r in sup.marked_rows("job1", 3, 9)] == [5, 9]
    assert sup.marked_rows("job2") == [MarkedRow("job2", 5, "205", 3, 1.0)]
    assert sup.marked_rows("job3") == []
