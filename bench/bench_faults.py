"""Figures for the fault suite: each scenario of tests/faults/scenarios.py on the local cloud, and what came of
it — recipients, duplicates (must be 0), lost (must be 0), uncertain, failed, and the time to finish relative
to the fault-free run measured in the same run (its files differ in size: see the rows column). Scenarios
with the operator's recovery (reconcile, then resend) also show how many uncertain recipients there were
before it, how many ListChatappMessage found, and how many were resent; ``uncertain`` is then what is left
after it. Figures, not assertions (tests/faults asserts the invariants).

    python bench/bench_faults.py                 # every scenario
    python bench/bench_faults.py crashes         # some
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "shared", ROOT / "tests", ROOT / "tests" / "faults"):
    sys.path.insert(0, str(path))

from scenarios import SCENARIOS, run  # noqa: E402


def main() -> None:
    names = sys.argv[1:] or list(SCENARIOS)
    if "no-faults" not in names:
        names.insert(0, "no-faults")
    print("Fault scenarios on the local cloud (CAMS 50 ms, batches of 100, the real functions from s.yaml)")
    print(
        f"  {'scenario':28s} {'rows':>7s} {'recipients':>10s} {'dupl.':>6s} {'lost':>5s} "
        f"{'uncertain':>9s} {'failed':>6s} "
        f"{'seconds':>8s} {'x no-faults':>11s} {'busiest s':>9s}  recovery (uncertain -> found + resent)"
    )
    baseline = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            outcome = run(SCENARIOS[name], Path(tmp))
            baseline = baseline or outcome.seconds
            print(
                f"  {name:28s} {SCENARIOS[name].rows:>7,} {outcome.recipients:>10,} "
                f"{outcome.duplicates:>6} {outcome.lost:>5} "
                f"{outcome.uncertain:>9,} {outcome.failed:>6,} {outcome.seconds:>8.1f} "
                f"{outcome.seconds / baseline:>10.1f}x {outcome.calls_in_busiest_window:>9}  "
                + (
                    f"{outcome.uncertain_before_recovery:,} -> {outcome.found_by_reconcile:,} + {outcome.resent:,}"
                    if SCENARIOS[name].recover
                    else ""
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
