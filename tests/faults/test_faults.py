"""The fault suite: ARCHITECTURE.md's invariants under repeats, crashes and faults, on the local cloud with the
real SDKs and the real functions (scenarios: tests/faults/scenarios.py; figures: bench/bench_faults.py).

For every scenario, from the local CAMS's own record and the reports the functions wrote:
no number received twice within a job; every input row in exactly one final status; the job's summary
counts equal its report; nothing lost (every valid recipient sent, or reported failed or uncertain); never
more than 10 attempts in any sliding second, retries included; no call with an empty recipient list.
Files are 40,000 rows and repeats overlap the first delivery (see scenarios.py's docstring)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from scenarios import FINAL_ROW, SCENARIOS, Outcome, run


def check_invariants(outcome: Outcome) -> None:
    assert (outcome.duplicates, outcome.lost, outcome.empty_calls) == (0, 0, 0), (
        f"{outcome.duplicates} numbers received twice, {outcome.lost} valid recipients neither sent (and "
        f"received) nor reported uncertain or failed, {outcome.empty_calls} calls with no recipient, of "
        f"{outcome.recipients} recipients; {outcome.frozen}"
    )
    assert outcome.calls_in_busiest_window <= 10, f"{outcome.calls_in_busiest_window} attempts in one second"
    for report in outcome.reports:
        rows, summary = report["rows"], report["summary"]
        assert [int(r["line"]) for r in rows] == list(range(2, report["input_rows"] + 2)), (
            "a row missing or twice"
        )
        assert {r["status"] for r in rows} <= FINAL_ROW, "a row without a final status"
        counts = Counter(r["status"] for r in rows)
        assert summary["status"] == "completed"
        assert summary["report_rows"] == dict(counts)
        for status in ("sent", "failed", "uncertain", "invalid", "duplicate"):
            assert summary[status] == counts.get(status, 0), status
        assert summary["pending"] == 0


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_never_twice_never_lost(name: str, tmp_path: Path) -> None:
    outcome = run(SCENARIOS[name], tmp_path)
    check_invariants(outcome)
    if name in (
        "no-faults",
        "duplicate-deliveries",
        "fc-retries",
        "fc-system-errors",
        "jobs-at-once-racing-senders",
        "http-repeats",
        "frozen-replanner",
    ):
        assert outcome.uncertain == 0 and outcome.failed == 0  # nothing here can make a call ambiguous
        assert outcome.received == outcome.recipients
    if name == "crashes":
        assert outcome.uncertain > 0  # a crash after a call returned: reported, never resent
    if (
        name == "tablestore-trouble"
    ):  # a sender whose store keeps failing gives up; what it had on the wire is
        assert outcome.failed == 0  # uncertain (visible), the rest is sent by the next sender
    if name == "cams-chaos":
        assert outcome.uncertain > 0 and outcome.failed > 0
    if name == "crashes-then-reconcile":  # the operator's recovery: CAMS had some, the rest was resent once
        assert outcome.uncertain == 0 and outcome.failed == 0 and outcome.received == outcome.recipients
        assert outcome.uncertain_before_recovery > 0
        assert outcome.found_by_reconcile + outcome.resent == outcome.uncertain_before_recovery
    if name == "refused-numbers":  # split until each refused number is alone: only those three fail
        assert outcome.failed == 3 and outcome.uncertain == 0 and outcome.received == outcome.recipients - 3
    if name == "http-repeats":  # one job per Idempotency-Key, one for the keyless original; repeats refused
        keyed, keyless = outcome.http_statuses[:3], outcome.http_statuses[3:]
        assert set(keyed) <= {200, 202} and keyless == [202, 409, 409], outcome.http_statuses
        assert len(outcome.reports) == 3 and outcome.uncertain == 0 and outcome.received == outcome.recipients
