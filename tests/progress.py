"""One line per test file as it finishes, for a suite run by several pytest-xdist workers (``make test``).

pytest's own progress names each file as it starts, which says nothing when workers share the files: its dots
under xdist are one long anonymous row. This plugin, registered on xdist's controller only (tests/conftest.py),
counts each file's tests from the workers' collection and prints a line when the last of them is reported:
the elapsed time, the file, and its outcomes. A passed test prints no dot; a failure still prints its ``F``
at once, and pytest's summary at the end is unchanged.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import pytest


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class FileProgress:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self.expected: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.done: Counter[str] = Counter()
        self.files_done = 0
        self.letters = False  # a failure's or a skip's letter printed since the last line

    @pytest.hookimpl
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not self.expected:  # every worker collects the same tests: the first one's list is the count
            self.expected.update(_file_of(nodeid) for nodeid in ids)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        if report.when == "call" and report.passed:
            return "passed", "", "PASSED"  # no dot: the file's line says it
        return None

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = _file_of(report.nodeid)
        if not report.passed:  # pytest prints its letter (F, E, s, x)
            self.letters = True
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
            self.outcomes[path]["error" if report.when == "setup" and report.failed else outcome] += 1
        if report.when != "teardown":
            return
        if report.failed:
            self.outcomes[path]["error"] += 1
        self.done[path] += 1
        if self.done[path] == self.expected.get(path, -1):
            self.files_done += 1
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is None:
                return
            minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
            counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.outcomes[path].items()))
            if self.letters:  # pytest's own letters have no newline of their own here
                reporter.write("\n")
                self.letters = False
            reporter.write_line(
                f"{minutes:3d}:{seconds:02d}  [{self.files_done}/{len(self.expected)} files]  "
                f"{path}: {counts or 'nothing run'}"
            )


def register(config: pytest.Config) -> None:
    """On xdist's controller (not on a worker, and not in a run without ``-n``)."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return
    if not getattr(config.option, "numprocesses", None) or getattr(config.option, "collectonly", False):
        return
    config.pluginmanager.register(FileProgress(config), "chatapp-file-progress")
