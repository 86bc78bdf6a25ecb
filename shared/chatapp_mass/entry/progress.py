"""The send's progress on stderr: a redrawn bar on a terminal, a plain line every few seconds elsewhere."""

from __future__ import annotations

import time
from typing import IO

from chatapp_mass.services.dispatch import Snapshot


class ProgressBar:
    """One redrawn line on a terminal: bar, sent / failed / remaining, rate."""

    def __init__(self, stream: IO[str], width: int = 28) -> None:
        self.stream = stream
        self.width = width

    def update(self, snap: Snapshot) -> None:
        done = snap.sent + snap.failed + snap.uncertain
        share = done / snap.valid if snap.valid else 1.0
        filled = int(self.width * share)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"\r[{bar}] {share:6.1%}  sent {snap.sent:,}  failed {snap.failed + snap.uncertain:,}  "
            f"remaining {snap.remaining:,}  {snap.rate(time.time()):,.0f}/s  calls {snap.calls:,}"
        )
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class ProgressLines(ProgressBar):
    """Not a terminal (a log, CI, a pipe): one plain line every ``every`` seconds instead of a redrawn bar."""

    def __init__(self, stream: IO[str], every: float = 10.0) -> None:
        super().__init__(stream)
        self.every = every
        self._last = time.time()

    def update(self, snap: Snapshot) -> None:
        now = time.time()
        if now - self._last < self.every:
            return
        self._last = now
        done = snap.sent + snap.failed + snap.uncertain
        share = done / snap.valid if snap.valid else 1.0
        self.stream.write(
            f"progress: {share:.1%}  sent {snap.sent:,}  failed {snap.failed + snap.uncertain:,}  "
            f"remaining {snap.remaining:,}  {snap.rate(now):,.0f}/s  calls {snap.calls:,}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        pass
