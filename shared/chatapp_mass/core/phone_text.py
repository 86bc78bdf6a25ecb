"""Phone numbers as text: masking for logs and spotting a number as people write it (the report's guard
against formula injection). String rules only, no ``phonenumbers``: the logs and the report run on every
function's path, the library only where numbers are read (intake); importing it costs a cold start ~40 ms
and ~10 MiB (``bench/bench_coldstart.py``).
"""

from __future__ import annotations

import re

__all__ = ["mask_number", "looks_like_phone_as_written"]


def mask_number(value: str) -> str:
    """A number or user id with its middle masked, for logs: ``8613866661234`` -> ``+86138****1234``.

    Digit strings of 7 to 15 digits (optionally with '+') are phone numbers: country code and first
    digits kept, last 4 kept. Anything else (page-scoped ids, names) keeps at most its first 3 and
    last 4 characters, and at least half of it is masked.
    """
    text = str(value).strip()
    digits = text[1:] if text[:1] == "+" else text
    length = len(digits)
    if digits.isascii() and digits.isdigit() and 7 <= length <= 15:
        head = max(1, min(5, length - 8))
        return "+" + digits[:head] + "*" * (length - head - 4) + digits[-4:]
    length = len(text)
    head = min(3, length // 4)
    tail = min(4, length // 4)
    return text[:head] + "*" * (length - head - tail) + text[length - tail :]


_AS_WRITTEN = re.compile(r"\+?[0-9(][0-9 ().\-]*[0-9]")


def looks_like_phone_as_written(value: str) -> bool:
    """Whether a cell is a phone number as people write it: ``+44 20 7946 0958``, ``+1 (415) 555-2671``.

    An optional leading '+', then digits with spaces, dashes, dots and parentheses, 7 to 15 digits,
    ending with a digit. A cell starting with '-' (or holding anything else) is not.
    """
    if _AS_WRITTEN.fullmatch(value) is None:
        return False
    return 7 <= sum(c.isdigit() for c in value) <= 15
