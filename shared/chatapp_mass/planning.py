"""Pure batch planning: recipients in, batch numbers out. No I/O.

A batch holds at most ``max_recipients`` recipients (the API allows 1,000 per call) and at most
``max_request_bytes`` of URL-encoded ``SenderList``: the SDK serializes the list as compact JSON into one
query parameter (ALIBABA-FACTS.md §6), so the request line grows with it and gateways limit request lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

API_MAX_RECIPIENTS = 1000
# The wire form of the list's own punctuation: '[' and ']' are %5B and %5D, each ',' between items is %2C.
_LIST_OVERHEAD = len(quote_plus("[]"))
_SEPARATOR = len(quote_plus(","))


def sender_json(recipient: dict[str, Any]) -> str:
    """One SenderList item exactly as the SDK serializes it."""
    return json.dumps(recipient, ensure_ascii=False, separators=(",", ":"))


def encoded_size(recipient: dict[str, Any]) -> int:
    """Bytes this recipient adds to the URL-encoded SenderList, its separating comma included."""
    return len(quote_plus(sender_json(recipient))) + _SEPARATOR


def fits_alone(size: int, max_request_bytes: int) -> bool:
    """Whether one recipient of ``encoded_size`` can be sent at all under the byte bound."""
    return size + _LIST_OVERHEAD <= max_request_bytes


@dataclass
class BatchPlanner:
    """Assigns recipients to consecutive batch numbers (0, 1, ...) as they stream in.

    ``assign`` returns the batch a recipient belongs to; a batch is closed when the next recipient would
    break either bound. ``sizes`` holds the recipient count of every batch planned so far.
    """

    max_recipients: int = API_MAX_RECIPIENTS
    max_request_bytes: int = 120_000
    sizes: list[int] = field(default_factory=list)
    lines: list[tuple[int, int]] = field(default_factory=list)  # per batch: first and last input line
    _bytes: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.max_recipients <= API_MAX_RECIPIENTS:
            raise ValueError(f"batch size must be 1..{API_MAX_RECIPIENTS}, not {self.max_recipients}")
        if self.max_request_bytes < 256:
            raise ValueError(f"max request bytes must be at least 256, not {self.max_request_bytes}")

    def assign(self, size: int, line: int = 0) -> int:
        if not fits_alone(size, self.max_request_bytes):
            raise ValueError(f"a recipient of {size} encoded bytes can never fit in {self.max_request_bytes}")
        if (
            not self.sizes
            or self.sizes[-1] >= self.max_recipients
            or self._bytes + size + _LIST_OVERHEAD > self.max_request_bytes
        ):
            self.sizes.append(0)
            self.lines.append((line, line))
            self._bytes = 0
        self.lines[-1] = (self.lines[-1][0], line)
        self.sizes[-1] += 1
        self._bytes += size
        return len(self.sizes) - 1
