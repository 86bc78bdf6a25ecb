"""services.suppress on a real SQLite store: the planner looks the list up per chunk of rows (not per row),
the sender leaves out numbers suppressed since the plan and marks them (a marked line stays out even once its
number is taken off the list), the report and the summary say ``suppressed``, the CLI's file reader."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from chatapp_mass.entry.suppression import read_numbers_file
from chatapp_mass.services.report import job_summary
from chatapp_mass.services.suppress import (
    drop_suppressed,
    normalize_numbers,
    report_rows,
    without_suppressed,
)
from chatapp_mass.store.features import open_suppression
from chatapp_mass.store.interface import BatchRecord, BatchStatus, JobRecord, RowRecord, RowStatus
from chatapp_mass.store.sqlite import SqliteStore
from chatapp_mass.store.suppression import SuppressionStore


class Row(NamedTuple):  # the intake's Row, the fields the planner's check reads and replaces
    line: int
    to: str
    status: str
    code: str = ""
    message: str = ""
    template_params: dict[str, str] | None = None
    extra: dict[str, Any] | None = None


class Counting(SuppressionStore):
    """The real store, counting the lookups."""

    def __init__(self, inner: SuppressionStore) -> None:
        self.inner, self.lookups, self.looked_up = inner, 0, 0

    def add(self, space: str, numbers: Sequence[str], *, reason: str, source: str = "") -> int:
        return self.inner.add(space, numbers, reason=reason, source=source)

    def remove(self, space: str, numbers: Sequence[str]) -> int:
        return self.inner.remove(space, numbers)

    def list(self, space: str, *, after: str = "", limit: int = 100) -> Any:
        return self.inner.list(space, after=after, limit=limit)

    def suppressed(self, space: str, numbers: Sequence[str]) -> set[str]:
        self.lookups += 1
        self.looked_up += len(numbers)
        return self.inner.suppressed(space, numbers)

    def mark_rows(self, rows: Any) -> None:
        self.inner.mark_rows(rows)

    def marked_rows(self, job_id: str, first_line: int = 0, last_line: int | None = None) -> Any:
        return self.inner.marked_rows(job_id, first_line, last_line)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    handle = SqliteStore(str(tmp_path / "state.db"))
    yield handle
    handle.close()


def test_the_planner_looks_up_once_per_chunk_and_only_valid_rows(store: SqliteStore) -> None:
    sup = Counting(open_suppression(store))
    sup.add("space-a", ["447400100007", "447400102500"], reason="operator")
    rows = [Row(n + 2, f"4474001{n:05d}", "valid", template_params={"a": "b"}) for n in range(2500)]
    rows[10] = Row(12, "bad", "invalid", "InvalidNumber")
    judged = list(without_suppressed(iter(rows), sup, "space-a", chunk=1000))
    assert sup.lookups == 3 and sup.looked_up == 2499  # 3 chunks of rows; the invalid one not looked up
    suppressed = [r for r in judged if r.status == "suppressed"]
    assert [(r.line, r.to, r.code, r.template_params) for r in suppressed] == [
        (9, "447400100007", "Suppressed", None)
    ]
    assert [r.line for r in judged] == [r.line for r in rows] and judged[10].status == "invalid"
    # another space's list does not apply; an empty list costs no lookup
    assert all(r.status != "suppressed" for r in without_suppressed(iter(rows), sup, "default", chunk=1000))
    assert sup.lookups == 3


def _planned(store: SqliteStore, numbers: list[str]) -> BatchRecord:
    store.create_job(
        JobRecord(
            job_id="job1", source="f.csv", options={"CustSpaceId": "cs1"}, intake={}, content_sha256="x"
        )
    )
    rows = [
        RowRecord("job1", n + 2, number, RowStatus.valid, batch_seq=0, recipient={"To": number})
        for n, number in enumerate(numbers)
    ]
    batch = BatchRecord("job1", 0, len(rows), first_line=2, last_line=len(rows) + 1)
    store.put_plan(rows, [batch])
    return batch


def test_the_sender_leaves_out_and_marks_and_a_marked_line_stays_out(store: SqliteStore) -> None:
    numbers = [f"4474001{n:05d}" for n in range(6)]
    batch = _planned(store, numbers)
    sup = open_suppression(store)
    rows = store.batch_rows("job1", 0)
    assert drop_suppressed(sup, "job1", "cs1", batch, rows) == (rows, [])
    sup.add("cs1", [numbers[1], numbers[4]], reason="unsubscribe")
    sup.add("default", [numbers[2]], reason="operator")  # another space: not this job's
    kept, dropped = drop_suppressed(sup, "job1", "cs1", batch, rows, clock=lambda: 5.0)
    assert dropped == [3, 6] and [r["To"] for _, r in kept] == [numbers[i] for i in (0, 2, 3, 5)]
    assert [(m.line, m.to, m.batch_seq, m.at) for m in sup.marked_rows("job1")] == [
        (3, numbers[1], 0, 5.0),
        (6, numbers[4], 0, 5.0),
    ]
    # taken off the list after the sender left it out: the job still never sends it (the report says so)
    sup.remove("cs1", [numbers[1]])
    kept_again, dropped_again = drop_suppressed(sup, "job1", "cs1", batch, rows)
    assert dropped_again == [3, 6] and kept_again == kept

    store.transition_batch("job1", 0, expect=[BatchStatus.pending], to=BatchStatus.sent)
    statuses = {r.line: r.status for r in report_rows(store, "job1")}
    assert statuses == {2: "sent", 3: "suppressed", 4: "sent", 5: "sent", 6: "suppressed", 7: "sent"}
    job = store.get_job("job1")
    assert job is not None
    summary = job_summary(store, job)
    assert (summary["sent"], summary["suppressed"], summary["failed"]) == (4, 2, 0)


def test_numbers_are_read_as_recipients_and_files_by_column(tmp_path: Path) -> None:
    good, bad = normalize_numbers(["+44 7400 100001", "00447400100001", "07400 100002", "x", " "], "GB")
    assert good == ["447400100001", "447400100002"] and bad == ["x"]
    csv_file = tmp_path / "optouts.csv"
    csv_file.write_text("name,Phone\nA,+447400100001\nB,+447400100002\n\n", encoding="utf-8")
    assert read_numbers_file(csv_file) == ["+447400100001", "+447400100002"]
    plain = tmp_path / "optouts.txt"
    plain.write_text("\ufeff+447400100001\n447400100002\n", encoding="utf-8")
    assert read_numbers_file(plain) == ["+447400100001", "447400100002"]


def test_http_refusals_name_the_field_and_change_nothing(store: SqliteStore) -> None:
    import json
    from typing import cast

    from fakes import Invocations, Objects

    from chatapp_mass.entry.http_api import ApiSettings, HttpEvent, JobsApi
    from chatapp_mass.services.jobs import FunctionSettings

    token = "t" * 40
    api = JobsApi(
        store,
        cast(Any, Objects()),
        cast(Any, Invocations()),
        FunctionSettings(bucket="b"),
        ApiSettings(token=token),
    )

    def call(method: str, body: Any = None, **query: str) -> tuple[int, Any]:
        event = {
            "rawPath": "/suppressions",
            "body": "" if body is None else json.dumps(body),
            "headers": {"Authorization": f"Bearer {token}"},
            "queryParameters": query,
            "requestContext": {"http": {"method": method, "path": "/suppressions"}},
        }
        response = api.handle(HttpEvent.model_validate(event))
        return response["statusCode"], json.loads(response["body"])

    status, body = call("POST", {"numbers": ["+447400100001", "12", "abc"]})
    assert (status, body["error"]["field"]) == (400, "numbers[1]") and "nothing changed" in body["error"][
        "message"
    ]
    assert call("POST", {"numbers": ["+447400100001"], "reason": "because"})[1]["error"]["field"] == "reason"
    assert call("POST", {"numbers": ["+447400100001"], "colour": "red"})[1]["error"]["field"] == "colour"
    assert call("POST", {"numbers": []})[0] == 400
    assert call("DELETE")[1]["error"]["field"] == "number"
    assert call("GET", cursor="not-ours")[1]["error"]["field"] == "cursor"
    assert call("GET", limit="0")[1]["error"]["field"] == "limit"
    assert call("GET") == (200, {"space": "default", "numbers": [], "next_cursor": None})
    assert call("POST", {"numbers": ["+447400100001"], "space": "cs1", "source": "ticket 7"}) == (
        200,
        {"space": "cs1", "requested": 1, "added": 1},
    )
    status, page = call("GET", space="cs1")
    assert [(n["number"], n["reason"], n["source"]) for n in page["numbers"]] == [
        ("447400100001", "operator", "ticket 7")
    ]
    assert call("DELETE", {"numbers": ["447400100001"], "space": "cs1"})[1]["removed"] == 1
    assert call("PUT")[0] == 405
