"""The canary's rules (core.canary) and the planner's cut after its recipients."""

from __future__ import annotations

from collections import Counter

import pytest

from chatapp_mass.core.canary import (
    CanaryOptions,
    CanaryState,
    CanaryTally,
    canary_from_flags,
    canary_recipients,
    verdict,
)
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.planning import BatchPlanner
from chatapp_mass.services.canary import canary_batches, override
from chatapp_mass.store.interface import BatchRecord, BatchStatus, part_seq

OPTIONS = CanaryOptions(recipients=50, max_failure_rate=0.05, timeout=600)


def tally(delivered: int, failed: int, refused: int = 0, recipients: int = 50) -> CanaryTally:
    return CanaryTally(recipients, refused, delivered, failed, Counter({"131026": failed}))


def test_waits_until_every_recipient_has_an_outcome_or_the_timeout() -> None:
    assert verdict(tally(40, 2), OPTIONS, waited=10) == (
        False,
        False,
        "canary: 42 of 50 recipients have an outcome",
    )
    decided = verdict(tally(40, 2), OPTIONS, waited=600)
    assert decided.decided and decided.passed and "2 of 42" in decided.reason


def test_fails_over_the_rate_naming_the_rate_and_the_commonest_code() -> None:
    found = verdict(tally(45, 5), OPTIONS, waited=0)
    assert found.decided and not found.passed
    assert "5 of 50 recipients failed (10.0%; allowed 5.0%)" in found.reason and "131026 x5" in found.reason


def test_at_the_rate_it_passes() -> None:
    assert verdict(tally(48, 2), CanaryOptions(recipients=50, max_failure_rate=0.04), waited=0).passed
    assert not verdict(tally(47, 3), CanaryOptions(recipients=50, max_failure_rate=0.04), waited=0).passed


def test_refused_batches_count_as_failed() -> None:
    found = verdict(tally(0, 0, refused=50), OPTIONS, waited=0)
    assert found.decided and not found.passed


def test_too_few_receipts_at_the_timeout_fail_and_say_to_check_the_receipt_url() -> None:
    found = verdict(tally(20, 0), OPTIONS, waited=601)
    assert found.decided and not found.passed and "POST /receipts" in found.reason
    assert verdict(tally(25, 0), OPTIONS, waited=601).passed  # half is enough


def test_flags_name_themselves_when_out_of_range() -> None:
    assert canary_from_flags(0, 0.05, 900) is None
    assert canary_from_flags(50, 0.1, 60) == CanaryOptions(recipients=50, max_failure_rate=0.1, timeout=60)
    with pytest.raises(OptionsError, match="--canary-max-failure"):
        canary_from_flags(50, 1.5, 900)
    with pytest.raises(OptionsError, match="--canary-timeout"):
        canary_from_flags(50, 0.1, 1)


@pytest.mark.parametrize(
    ("canary", "batch_size", "sizes"),
    [(50, 1000, [50, 1000, 1000, 450]), (2200, 1000, [1000, 1000, 200, 300])],
)
def test_the_planner_cuts_the_first_batches_at_the_canary(
    canary: int, batch_size: int, sizes: list[int]
) -> None:
    planner = BatchPlanner(batch_size, 10_000_000, cut_after=canary)
    for line in range(2, 2502):
        planner.assign(10, line)
    assert planner.sizes == sizes
    batches = [BatchRecord("j", seq, size) for seq, size in enumerate(planner.sizes)]
    chosen = canary_batches(batches, canary)
    assert sum(b.size for b in chosen) == canary


def test_a_canary_batch_s_parts_belong_to_the_canary() -> None:
    batches = [
        BatchRecord("j", 0, 50, status=BatchStatus.split),
        BatchRecord("j", 1, 1000),
        BatchRecord("j", part_seq(2, 1), 25, root=0),
        BatchRecord("j", part_seq(27, 1), 25, root=0),
    ]
    assert sorted(b.seq for b in canary_batches(batches, 50)) == sorted([0, part_seq(2, 1), part_seq(27, 1)])


def test_an_operator_s_resume_overrides_a_failed_canary_only() -> None:
    failed = CanaryState(options=OPTIONS, verdict="failed", reason="x").model_dump_json()
    assert CanaryState.model_validate_json(override(failed)).verdict == "overridden"
    assert not CanaryState.model_validate_json(override(failed)).holds
    undecided = CanaryState(options=OPTIONS).model_dump_json()
    assert CanaryState.model_validate_json(override(undecided)).holds
    assert canary_recipients(undecided) == 50 and canary_recipients("") == 0
