"""``alibaba_localcloud._collector``: a steady local cloud freezes what exists, and gives it back when the last
user stops."""

from __future__ import annotations

import gc
import time

from alibaba_localcloud import _collector


def test_freezes_while_used_and_unfreezes_after_the_last_release() -> None:
    gc.unfreeze()  # whatever an earlier test froze (a sender freezes after its first call)
    held = [[n] for n in range(1_000)]  # objects the collector would otherwise walk on every full pass
    _collector.steady(interval=0.01)
    _collector.steady(interval=0.01)  # a second user: one thread, counted
    waited = time.monotonic() + 60  # a condition, not a timing: on a busy machine the thread may start late
    while gc.get_freeze_count() <= len(held) and time.monotonic() < waited:
        time.sleep(0.01)
    assert gc.get_freeze_count() > len(held)
    _collector.release()
    assert gc.get_freeze_count() > 0 and _collector._stop is not None  # one user left: still steady
    _collector.release()
    assert gc.get_freeze_count() == 0 and _collector._stop is None  # the last one: everything handed back
    _collector.release()  # one too many: harmless
    assert gc.get_freeze_count() == 0
