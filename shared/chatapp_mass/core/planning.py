"""Pure batch planning: recipients in, batch numbers out. No I/O.

A batch holds at most ``max_recipients`` recipients (the API allows 1,000 per call) and at most
``max_request_bytes`` of URL-encoded ``SenderList`` (compact JSON, as the SDK serializes it, ALIBABA-FACTS.md
§6). The same bytes travel in a form body (``body`` mode, the default: urlencoded exactly so, tea-openapi's
``Utils.to_form``) or in the URL (``query`` mode), so the budget depends on where (:func:`request_budget`):

- ``body``: :data:`BODY_BUDGET`, within the gateway's body limit (undocumented; the local CAMS assumes
  Tengine's default 1 MiB), leaving room for the other parameters. The 1,000-recipient rule is what bounds
  a batch in practice (~0.1-0.3 MB).
- ``query``: :data:`QUERY_BUDGET`, a URL budget that keeps the request line under a conservative 16 KiB
  with room for the other parameters (the gateway's URL limit is undocumented; it has answered long URLs
  with an HTML 414). Batches are then ~50-100 recipients: the price of a gateway that refuses bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _quoted
from typing import Any
from urllib.parse import quote_plus

API_MAX_RECIPIENTS = 1000
PARAMS_IN_BODY = "body"
PARAMS_IN_QUERY = "query"
PARAMS_IN_CHOICES = (PARAMS_IN_BODY, PARAMS_IN_QUERY)
BODY_BUDGET = 900_000  # bytes of encoded SenderList in the body: 1 MiB less ~150 KB for everything else
QUERY_BUDGET = 12_000  # bytes of encoded SenderList in the URL: 16 KiB less ~4 KB for everything else


def request_budget(params_in: str) -> int:
    """The default ``max_request_bytes`` where the parameters travel (``body`` or ``query``)."""
    if params_in not in PARAMS_IN_CHOICES:
        raise ValueError(f"parameters travel in 'body' or 'query', not {params_in!r}")
    return BODY_BUDGET if params_in == PARAMS_IN_BODY else QUERY_BUDGET


# The wire form of the list's own punctuation: '[' and ']' are %5B and %5D, each ',' between items is %2C.
_LIST_OVERHEAD = len(quote_plus("[]"))
_SEPARATOR = len(quote_plus(","))


_ENCODE = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":")
).encode  # json.dumps(..) without its set-up
# Bytes quote_plus leaves as they are (one byte each on the wire; ' ' becomes '+'); every other byte is %XX.
_AS_IS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~ "


def sender_json(recipient: dict[str, Any]) -> str:
    """One SenderList item exactly as the SDK serializes it (``json.dumps(recipient, ensure_ascii=False,
    separators=(",", ":"))``). The intake's shape, ``{"To": str, "TemplateParams": {str: str}}``, is
    written directly with the encoder's own string escaping (:func:`json.encoder.encode_basestring`);
    ``tests/unit/test_planning_options_report.py`` compares both ways."""
    if len(recipient) == 2:
        to = recipient.get("To")
        params = recipient.get("TemplateParams")
        if type(to) is str and type(params) is dict:
            items = []
            for key, value in params.items():
                if type(key) is not str or type(value) is not str:
                    return _ENCODE(recipient)
                items.append(_quoted(key) + ":" + _quoted(value))
            first = next(iter(recipient))
            if first == "To":
                return '{"To":' + _quoted(to) + ',"TemplateParams":{' + ",".join(items) + "}}"
    return _ENCODE(recipient)


def url_encoded_length(text: str) -> int:
    """``len(quote_plus(text))``, without building the quoted text (UTF-8, strict, as quote_plus)."""
    data = text.encode("utf-8")
    return len(data) + 2 * len(data.translate(None, _AS_IS))


def encoded_size(recipient: dict[str, Any]) -> int:
    """Bytes this recipient adds to the URL-encoded SenderList, its separating comma included."""
    return url_encoded_length(sender_json(recipient)) + _SEPARATOR


def sized_sender_json(recipient: dict[str, Any]) -> tuple[str, int]:
    """``(sender_json(recipient), encoded_size(recipient))`` with one encoding: the planner keeps the JSON
    for the store, which writes exactly these bytes."""
    text = sender_json(recipient)
    return text, url_encoded_length(text) + _SEPARATOR


def intake_sender_json(keys: tuple[str, ...]) -> Callable[[str, dict[str, str] | None], tuple[str, int]]:
    """:func:`sized_sender_json` of ``{"To": to, "TemplateParams": params}`` (``{"To": to}`` without
    parameters) for the rows of one CSV file, whose ``params`` always hold exactly ``keys``, in that order
    (the reader's header; ``RecipientReader`` builds each row's dict from it).

    Why: the general encoder looks at the recipient's shape and at every key's and value's type for every
    row; here the keys' JSON is written once per file into a ``%`` template, and a row costs one escaping
    per value (about half the time of :func:`sized_sender_json`, a tenth of a plan's Python per row). The
    same bytes: ``tests/unit/test_planning_options_report.py`` compares both ways.
    """
    if not keys:

        def encode_bare(to: str, params: dict[str, str] | None) -> tuple[str, int]:
            text = '{"To":' + _quoted(to) + "}"
            return text, url_encoded_length(text) + _SEPARATOR

        return encode_bare
    template = (
        '{"To":%s,"TemplateParams":{'
        + ",".join(_quoted(key).replace("%", "%%") + ":%s" for key in keys)
        + "}}"
    )
    quoted = _quoted

    def encode(to: str, params: dict[str, str] | None) -> tuple[str, int]:
        assert params is not None  # a file with parameter columns gives every valid row its values
        text = template % (quoted(to), *map(quoted, params.values()))
        data = text.encode("utf-8")  # url_encoded_length(text), written out: one call fewer per row
        return text, len(data) + 2 * len(data.translate(None, _AS_IS)) + _SEPARATOR

    return encode


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
    max_request_bytes: int = BODY_BUDGET
    sizes: list[int] = field(default_factory=list)
    lines: list[tuple[int, int]] = field(default_factory=list)  # per batch: first and last input line
    # A canary (core.canary): a batch also closes once this many recipients are planned, so the first
    # batches hold exactly the canary's recipients and the batches after them none (0: no canary).
    cut_after: int = 0
    _bytes: int = 0
    _assigned: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.max_recipients <= API_MAX_RECIPIENTS:
            raise ValueError(f"batch size must be 1..{API_MAX_RECIPIENTS}, not {self.max_recipients}")
        if self.max_request_bytes < 256:
            raise ValueError(f"max request bytes must be at least 256, not {self.max_request_bytes}")

    def assign(self, size: int, line: int = 0) -> int:
        # fits_alone and the two bounds written out, the lists held locally: one call per valid row
        limit = self.max_request_bytes - _LIST_OVERHEAD
        if size > limit:
            raise ValueError(f"a recipient of {size} encoded bytes can never fit in {self.max_request_bytes}")
        sizes, lines = self.sizes, self.lines
        cut = self._assigned == self.cut_after and self._assigned > 0
        self._assigned += 1
        if not sizes or sizes[-1] >= self.max_recipients or self._bytes + size > limit or cut:
            sizes.append(1)
            lines.append((line, line))
            self._bytes = size
        else:
            sizes[-1] += 1
            lines[-1] = (lines[-1][0], line)
            self._bytes += size
        return len(sizes) - 1
