"""``read_ahead``: an iterator's next items produced by a thread of their own while the consumer works.

For I/O-bound producers (a store's next page on the wire while the last is written): the threads share the
GIL, so what overlaps is the producer's waiting (network, the server's time, zlib) with the consumer's CPU.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_POLL = 0.1  # s: how often a producer blocked on a full queue looks whether the consumer has gone


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced up to ``depth`` ahead by a daemon thread. The producer's exception is raised
    here, in order (after the items it produced before it). A consumer that stops early (an error, a
    ``break``, the generator closed) stops the producer at its next item, and ``items`` is closed."""
    slots: queue.Queue[tuple[int, object]] = queue.Queue(depth)
    gone = threading.Event()

    def put(kind: int, value: object) -> bool:
        while not gone.is_set():
            try:
                slots.put((kind, value), timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(_ITEM, item):
                    return
            put(_END, None)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_ERROR, error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="read-ahead", daemon=True).start()
    try:
        while True:
            kind, value = slots.get()
            if kind == _ITEM:
                yield value  # type: ignore[misc]
            elif kind == _ERROR:
                raise value  # type: ignore[misc]
            else:
                return
    finally:
        gone.set()


_ITEM, _ERROR, _END = 0, 1, 2
