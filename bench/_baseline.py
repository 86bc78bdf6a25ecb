"""What the A/B benches share (bench_send, bench_intake, bench_report): a baseline revision checked out beside
this one, and the load the machine was under (these machines are shared: compare within one run)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Baseline:
    """``git worktree add --detach`` of ``rev`` in a temporary directory, removed on exit."""

    def __init__(self, rev: str) -> None:
        self.rev = rev
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-baseline-")
        self.path = Path(self._tmp.name) / "checkout"

    def __enter__(self) -> Baseline:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(self.path), self.rev],
            check=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(self.path)], check=False)
        self._tmp.cleanup()


@contextmanager
def trees(rev: str) -> Iterator[list[tuple[str, str]]]:
    """(label, checkout root) to measure: this checkout, then ``rev``'s unless it is ``none``."""
    if rev == "none":
        yield [("this checkout", str(ROOT))]
        return
    with Baseline(rev) as baseline:
        yield [("this checkout", str(ROOT)), (f"baseline {rev}", str(baseline.path))]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} CPUs"
