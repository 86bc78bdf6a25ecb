"""The intake's fast path in front of :mod:`chatapp_mass.core.phones`: the same answers, fewer steps per number.

:func:`normalize` answers exactly as :func:`chatapp_mass.core.phones.normalize_number` (which stays the
judge, and what the rest of the product calls); ``tests/unit/test_phone_fast.py`` compares the two, and
both with the public ``phonenumbers`` API, over a large generated sample of numbers as people write them.

Where the time goes for an international number (``+CC...``, ``00CC...``, digits alone without a default
country), and what this module does instead, per calling code prepared once (:class:`_Code`):

- the calling code: ``phonenumbers`` tries ``int(digits[:n])`` for n = 1..3 against its table; here the
  same first match is a lookup of the first 1, 2, 3 characters in a table of the codes as text (a code
  never starts with '0', so text and number agree), remembered by the number's first three digits (all
  that decides it);
- the region's metadata, found once per code instead of per number;
- national-prefix stripping (``0`` in GB, ``8`` in RU ...): only when the code's
  ``national_prefix_for_parsing`` matches the start of the number can anything be stripped (otherwise the
  library returns the number as it is), so a number it does not match skips the step; one it matches goes
  the whole way through :func:`phones._international`;
- validity: the code's compiled type check from :mod:`phones` (general pattern and possible lengths, then
  one alternation of the number types for the length), for a code of one region as one pattern per length
  (``_TypeCheck.whole``: the general pattern a lookahead before the types), one regex call per number.

National numbers (a default country and no ``+``/``00``) go to ``phonenumbers.parse`` as before: reading
them involves the region's international and national prefixes and its own country code, all of which
``parse`` decides.

Loading this module loads ``phonenumbers`` (through :mod:`phones`): only the intake imports it.
"""

from __future__ import annotations

import re

from chatapp_mass.core import phones

__all__ = ["normalize", "international"]


class _Code:
    """What one calling code needs for the fast path; ``whole`` is None when the number goes the long way
    for its validity (a code shared by several regions: :func:`phones._valid` picks the region)."""

    __slots__ = ("code", "prefix", "metadata", "national_prefix", "whole")

    def __init__(self, code: int) -> None:
        self.code = str(code)
        region = phones._region_for_code(code)
        self.metadata = phones._metadata_for(code, region)
        pattern = self.metadata.national_prefix_for_parsing if self.metadata is not None else None
        self.national_prefix = re.compile(pattern) if pattern else None
        plan = phones._code_plan(code)
        # by length of the national number: the one pattern of the type check (None: never valid), made on
        # first use; None for a code of several regions
        self.whole: dict[int, re.Pattern[str] | None] | None = None
        if len(plan) == 1:
            self.whole = {}

    def pattern_for(self, length: int) -> re.Pattern[str] | None:
        """The type check's one pattern for national numbers of ``length`` (a code of one region)."""
        assert self.whole is not None
        validate = phones._code_plan(int(self.code))[0][2]
        pattern = self.whole[length] = (
            phones._type_check(validate).whole(length) if validate is not None else None
        )
        return pattern


_CODES: dict[str, _Code] = {}
_FAST = phones._fast_international is not None  # the library internals phones relies on are there
_CALLING_CODES = {str(code): code for code in phones._REGIONS_OF_CODE} if _FAST else {}
_MIN_NSN = getattr(phones, "_MIN_NSN", 2)
_MAX_NSN = getattr(phones, "_MAX_NSN", 17)
_MAX_DIGITS = phones._MAX_DIGITS
_slow = phones._international


_BY_FIRST_THREE: dict[str, _Code | None] = {}  # _code_of by the number's first three digits


def _code_of(digits: str) -> _Code | None:
    """The calling code ``digits`` starts with, as ``phonenumbers._extract_country_code`` finds it. Looked
    up by the first three digits (what decides it: a code has 1 to 3 digits), once found."""
    first = digits[:3]
    try:
        return _BY_FIRST_THREE[first]
    except KeyError:
        pass
    found = _find_code(digits)
    if len(first) == 3:
        _BY_FIRST_THREE[first] = found
    return found


def _find_code(digits: str) -> _Code | None:
    for length in (1, 2, 3):
        code = _CALLING_CODES.get(digits[:length])
        if code is not None:
            found = _CODES.get(digits[:length])
            if found is None:
                found = _CODES[digits[:length]] = _Code(code)
            return found
    return None


def international(digits: str) -> str | None:
    """:func:`phones._international` (E.164 digits of ``"+" + digits``, or None), faster."""
    if len(digits) <= _MIN_NSN or len(digits) > _MAX_DIGITS or digits[0] == "0":
        return None  # parse: too short / never valid / no calling code starts with 0
    code = _code_of(digits)
    if code is None or code.metadata is None:
        return None  # INVALID_COUNTRY_CODE
    national = digits[len(code.code) :]
    if len(national) < _MIN_NSN:
        return None
    if code.national_prefix is not None and code.national_prefix.match(national) is not None:
        return _slow(digits)  # a national prefix may be stripped: the library's steps decide
    if len(national) > _MAX_NSN:
        return None
    whole = code.whole
    if whole is None:
        valid = phones._valid(int(code.code), national)
    else:
        length = len(national)
        pattern = whole[length] if length in whole else code.pattern_for(length)
        valid = pattern is not None and pattern.fullmatch(national) is not None
    return code.code + national if valid else None


def normalize(raw: str, region: str | None) -> str | None:
    """:func:`phones._normalize` with this module's reading of international numbers: E.164 digits without
    '+' or None; ``region`` upper-case and known."""
    return phones._normalize(raw, region, _international)


# Without the library's internals (another phonenumbers version) phones uses the public API: so do we.
_international = international if _FAST else phones._international
