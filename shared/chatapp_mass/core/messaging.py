"""WhatsApp's messaging limit as a setting: how many unique users a From number may message per rolling 24 h.

Meta gives each business number a tier (250, 1K -- now 2K --, 10K, 100K, unlimited). The operator writes it
per number in ``CHATAPP_MESSAGING_LIMITS`` (``8613800000000=10000,8613900000000=2K,default=unlimited``), a job
may state its own (``--messaging-limit``, the job option ``MessagingLimit``). Pure parsing here; the window
that enforces it is ``store.reach``, the sender's use of it ``services.dispatch``.

A limit is a whole number of recipients, or ``None`` for unlimited. Values: digits (``10000``, ``10,000``,
``10_000``), a tier name (``250``, ``1K``, ``2K``, ``10K``, ``100K``: any whole number followed by ``K`` is
thousands), or ``unlimited``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from chatapp_mass.core.errors import OptionsError

TIERS = ("250", "1K", "2K", "10K", "100K", "unlimited")
UNLIMITED = ("unlimited", "none", "off")
_VALUE = re.compile(r"([0-9][0-9,_]*)\s*([kK]?)")
_HOW = "a whole number of recipients per 24 h (e.g. 10000), a tier name (250, 1K, 2K, 10K, 100K) or unlimited"


def limit_value(text: object) -> int | None:
    """One limit (None: unlimited); ValueError saying what was wrong and what to write."""
    if text is None:
        return None
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ValueError(f"{text!r}: {_HOW}")
    if isinstance(text, int):
        if text < 1:
            raise ValueError(f"{text}: at least 1 ({_HOW})")
        return text
    value = text.strip()
    if value.lower() in UNLIMITED:
        return None
    match = _VALUE.fullmatch(value)
    digits = match.group(1).replace(",", "").replace("_", "") if match else ""
    if not match or not digits.isdigit():
        raise ValueError(f"{value!r}: {_HOW}")
    limit = int(digits) * (1000 if match.group(2) else 1)
    if limit < 1:
        raise ValueError(f"{value!r}: at least 1 ({_HOW})")
    return limit


def parse_limit(text: object, *, where: str) -> int | None:
    """:func:`limit_value`, its error an OptionsError naming ``where`` (the variable or option)."""
    try:
        return limit_value(text)
    except ValueError as error:
        raise OptionsError(f"{where}={error}") from None


@dataclass(frozen=True)
class MessagingLimits:
    """Per From number (wire form: digits, no '+'), and a default for the others (None: unlimited)."""

    by_number: dict[str, int | None] = field(default_factory=dict)
    default: int | None = None

    def for_number(self, from_number: str) -> int | None:
        key = from_number.strip().lstrip("+")
        return self.by_number.get(key, self.default)


def parse_limits(text: str, *, where: str) -> MessagingLimits:
    """``NUMBER=LIMIT,...,default=LIMIT`` (``;`` or newlines separate entries too). Empty: all unlimited."""
    by_number: dict[str, int | None] = {}
    default: int | None = None
    for raw in re.split(r"[;\n]|,(?=\s*[^,=\s]+\s*=)", text):
        entry = raw.strip()
        if not entry:
            continue
        name, equals, value = entry.partition("=")
        name = name.strip().lstrip("+").replace(" ", "")
        if not equals or not name:
            raise OptionsError(
                f"{where}: {entry!r} is not NUMBER=LIMIT: write e.g. "
                "8613800000000=10000,8613900000000=2K,default=unlimited"
            )
        limit = parse_limit(value, where=f"{where} ({name})")
        if name.lower() == "default":
            default = limit
        elif name.isdigit() and 6 <= len(name) <= 15:
            by_number[name] = limit
        else:
            raise OptionsError(
                f"{where}: {name!r} is not a From number (digits with country code, e.g. 8613800000000) "
                "or default"
            )
    return MessagingLimits(by_number, default)


def effective_limit(setting: int | None, option: int | None) -> int | None:
    """The limit a job sends under: the smaller of the account's setting and the job's own option. A job may
    lower its number's limit, never raise it: the setting is the operator's word on the tier (strict)."""
    limits = [limit for limit in (setting, option) if limit is not None]
    return min(limits) if limits else None
