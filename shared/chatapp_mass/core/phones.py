"""Phone numbers: normalization to the API's E.164-without-plus form with ``phonenumbers``. Masking for logs
and the "phone number as written" test of the report are string rules in :mod:`chatapp_mass.core.phone_text`
(so logs and reports never import the library).

Reading rules (:func:`normalize_number`):

- ``+CC...`` or ``00CC...`` is international.
- Digits alone are international too (the API's own format, ``8613866661234``) unless a default country
  is given; then they are read by ``phonenumbers`` as that country's numbers (national format, trunk
  prefix allowed). ``+``/``00`` numbers stay international either way.
- Spaces, dashes, dots and parentheses are formatting and ignored; any other character (letters above
  all: no vanity-number conversion) makes the number invalid.
- The result must pass ``phonenumbers.is_valid_number``.

``phonenumbers.parse`` spends most of its time on generic text handling that a plain digit string does
not need. For international numbers :func:`_international` repeats exactly the steps ``parse`` takes for
``"+" + digits`` (country code, national-prefix stripping, Italian leading zeros) with the library's own
helpers and then calls the public ``is_valid_number``; about half the cost. If those helpers are missing
(another phonenumbers version) the public ``parse`` is used. ``tests/unit/test_phones.py`` checks both
give the same answers. The intake reads numbers through :mod:`chatapp_mass.core.phone_fast`, which skips
further steps per calling code and is checked against this module (``tests/unit/test_phone_fast.py``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberFormat

__all__ = ["normalize_number", "describe_invalid"]

# Formatting characters a number may be written with: ASCII and Unicode spaces, dashes, dots, parentheses.
_FORMATTING = (
    " \t.()-\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
    "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
)
_DROP_FORMATTING = str.maketrans("", "", _FORMATTING)
# A number Excel showed in scientific notation and saved that way (8.6138E+12, 8,6138E+12 with a decimal
# comma, 8.61387e12): the digits past the mantissa are gone, so no reading can recover the number. Excel
# writes one digit before the point and a short exponent; a letter typed into a number ("44740e0123456")
# does not look like that and stays "contains letters".
_SCIENTIFIC = re.compile(r"\d(?:[.,]\d+)?[eE]\+?\d{1,2}")
_MAX_DIGITS = 20  # longest E.164 number is 15 digits; anything past this is not a number (and not parsed)


def _digits(raw: str) -> tuple[str | None, bool]:
    """(ASCII digits or None when a character is not allowed, whether written with a leading '+')."""
    text = raw.strip()
    plus = text[:1] == "+"
    if plus:
        text = text[1:]
    if text.isascii() and text.isdigit():
        return text, plus
    digits = text.translate(_DROP_FORMATTING)
    if not digits.isdecimal():  # letters, a second '+', '/', 'x'..., or nothing at all
        return None, plus
    if not digits.isascii():  # Arabic-Indic, full-width... digits
        digits = "".join(str(unicodedata.decimal(char)) for char in digits)
    return digits, plus


def _slow_international(digits: str) -> str | None:
    """The reference: the public API on ``"+" + digits``."""
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]


try:  # the steps phonenumbers.parse and is_valid_number take for "+<digits>", with the library's own data
    from phonenumbers import phonenumberutil as _pnu
    from phonenumbers.phonemetadata import PhoneMetadata as _PhoneMetadata

    _extract_country_code = _pnu._extract_country_code
    _strip_national_prefix = _pnu._maybe_strip_national_prefix_carrier_code
    _test_number_length = _pnu._test_number_length
    _region_for_code = _pnu.region_code_for_country_code
    _metadata_for = _PhoneMetadata.metadata_for_region_or_calling_code
    _metadata_for_region = _PhoneMetadata.metadata_for_region
    _code_for_region = _pnu.country_code_for_valid_region
    _NON_GEO = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
    _REGIONS_OF_CODE = _pnu.COUNTRY_CODE_TO_REGION_CODE
    _KEEP_UNSTRIPPED = (
        _pnu.ValidationResult.TOO_SHORT,
        _pnu.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
        _pnu.ValidationResult.INVALID_LENGTH,
    )
    _MIN_NSN = _pnu._MIN_LENGTH_FOR_NSN
    _MAX_NSN = _pnu._MAX_LENGTH_FOR_NSN
    # the number types _number_type_helper tries after the general description, in its order
    _TYPE_DESCS = (
        "premium_rate",
        "toll_free",
        "shared_cost",
        "voip",
        "personal_number",
        "pager",
        "uan",
        "voicemail",
        "fixed_line",
    )

    class _TypeCheck:
        """``_number_type_helper(nsn, metadata) != UNKNOWN`` for one metadata, with its patterns compiled
        once: the general description, then one alternation of every type description allowing the
        number's length (``_is_number_matching_desc``: length in possible_length, pattern full match)."""

        __slots__ = ("general_lengths", "general", "types", "by_length")

        def __init__(self, metadata: Any) -> None:
            general = metadata.general_desc
            pattern = general.national_number_pattern if general is not None else None
            self.general = re.compile(pattern) if pattern else None
            self.general_lengths = frozenset(general.possible_length) if general is not None else frozenset()
            names = list(_TYPE_DESCS)
            if not metadata.same_mobile_and_fixed_line_pattern:
                names.append("mobile")
            self.types = []
            for name in names:
                desc = getattr(metadata, name)
                if desc is None or not desc.national_number_pattern:
                    continue
                self.types.append((frozenset(desc.possible_length), desc.national_number_pattern))
            self.by_length: dict[int, Any] = {}

        def __call__(self, nsn: str) -> bool:
            length = len(nsn)
            if self.general is None or (self.general_lengths and length not in self.general_lengths):
                return False
            if self.general.fullmatch(nsn) is None:
                return False
            try:
                types = self.by_length[length]
            except KeyError:
                types = self._types_for(length)
            return types is not None and types.fullmatch(nsn) is not None

        def _types_for(self, length: int) -> re.Pattern[str] | None:
            """The alternation of the type descriptions allowing ``length`` (cached; None: none does)."""
            patterns = [p for lengths, p in self.types if not lengths or length in lengths]
            types = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
            self.by_length[length] = types
            return types

        def whole(self, length: int) -> re.Pattern[str] | None:
            """One pattern that fully matches a number of ``length`` digits exactly when :meth:`__call__`
            says True (None: no number of that length passes): the general description as a lookahead
            anchored at the end, then the alternation of the types. One regex call instead of two and this
            method's Python (``phone_fast``)."""
            if self.general is None or (self.general_lengths and length not in self.general_lengths):
                return None
            types = self.by_length[length] if length in self.by_length else self._types_for(length)
            if types is None:
                return None
            return re.compile(f"(?=(?:{self.general.pattern})\\Z)(?:{types.pattern})")

    _TYPE_CHECKS: dict[int, Any] = {}  # id(metadata) -> _TypeCheck (metadata objects live for the process)

    def _type_check(metadata: Any) -> Any:
        check = _TYPE_CHECKS.get(id(metadata))
        if check is None:
            check = _TYPE_CHECKS[id(metadata)] = (metadata, _TypeCheck(metadata))
        return check[1]

    _CODE_PLANS: dict[int, Any] = {}

    def _code_plan(country_code: int) -> Any:
        """Per calling code, what is_valid_number does: for each region sharing the code, the metadata
        region_code_for_number looks at, its leading-digits pattern, and the metadata
        is_valid_number_for_region then validates with (None when the region's own code differs)."""
        plan = _CODE_PLANS.get(country_code)
        if plan is None:
            plan = []
            regions = _REGIONS_OF_CODE.get(country_code, ())
            for region in regions:
                lookup = _metadata_for_region(region.upper(), None) if len(regions) > 1 else None
                leading = (
                    re.compile(lookup.leading_digits)
                    if lookup is not None and lookup.leading_digits is not None
                    else None
                )
                validate = _metadata_for(country_code, region.upper())
                if validate is not None and region != _NON_GEO and country_code != _code_for_region(region):
                    validate = None
                plan.append((lookup, leading, validate))
            _CODE_PLANS[country_code] = plan
        return plan

    def _valid(country_code: int, nsn: str) -> bool:
        """phonenumbers.is_valid_number for the number (country_code, nsn)."""
        plan = _code_plan(country_code)
        if len(plan) == 1:
            validate = plan[0][2]
            return validate is not None and _type_check(validate)(nsn)
        for lookup, leading, validate in plan:
            if lookup is None:
                continue
            if leading is not None:
                if leading.match(nsn) is None:
                    continue
            elif not _type_check(lookup)(nsn):
                continue
            elif validate is lookup:  # the region's own metadata (the usual case): its check just passed
                return True
            return validate is not None and _type_check(validate)(nsn)
        return False

    def _fast_international(digits: str) -> str | None:
        if len(digits) <= _MIN_NSN or len(digits) > _MAX_DIGITS:
            return None  # parse: TOO_SHORT_AFTER_IDD / never valid
        country_code, national = _extract_country_code(digits)
        if country_code == 0:
            return None  # parse: INVALID_COUNTRY_CODE
        metadata = _metadata_for(country_code, _region_for_code(country_code))
        if metadata is None or len(national) < _MIN_NSN:
            return None
        _, stripped, _ = _strip_national_prefix(national, metadata)
        if _test_number_length(stripped, metadata) not in _KEEP_UNSTRIPPED:
            national = stripped
        if len(national) < _MIN_NSN or len(national) > _MAX_NSN:
            return None
        # The national significant number with Italian leading zeros is ``national`` itself.
        if not _valid(country_code, national):
            return None
        return f"{country_code}{national}"

    if _fast_international("8613866661234") != "8613866661234":  # the helpers changed: use the public API
        raise ImportError("phonenumbers internals differ")
    _international = _fast_international
except Exception:  # pragma: no cover - depends on the installed phonenumbers
    _fast_international = None  # type: ignore[assignment]
    _international = _slow_international


def _national(digits: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]


def _normalize(
    raw: str, region: str | None, international: Callable[[str], str | None] | None = None
) -> str | None:
    """:func:`normalize_number` without the region check (``region`` already upper-case and known).
    ``international`` reads a number with its calling code (default :func:`_international`; the intake's
    fast path passes its own, ``phone_fast``)."""
    international = international or _international
    digits, plus = _digits(raw)
    if not digits:
        return None
    if plus:
        return international(digits)
    if digits[:2] == "00":
        return international(digits[2:])
    if region is None:
        return international(digits)
    if len(digits) > _MAX_DIGITS:
        return None
    return _national(digits, region)


def _region(default_country: str | None) -> str | None:
    if default_country is None:
        return None
    region = default_country.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{default_country!r} is not an ISO 3166 alpha-2 country code phonenumbers knows")
    return region


def normalize_number(raw: str, default_country: str | None) -> str | None:
    """E.164 digits without '+' (``8613866661234``), or None when ``raw`` is not a valid phone number.

    ``default_country`` (ISO alpha-2, e.g. ``"GB"``) makes digits without ``+``/``00`` read as that
    country's national numbers; without it they are read as international. An unknown country code
    raises ValueError.
    """
    return _normalize(raw, _region(default_country))


def describe_invalid(raw: str, default_country: str | None) -> str:
    """Why :func:`normalize_number` refused ``raw``: what was wrong and how the number was read."""
    region = _region(default_country)
    digits, plus = _digits(raw)
    text = raw.strip()
    if not text:
        return "no phone number"
    if digits is None:
        body = text[1:] if plus else text
        odd = next((c for c in body if not (c.isdecimal() or c in _FORMATTING)), "")
        if not odd:  # only formatting characters ('+', '( )', '-'): nothing to point at
            return "no digits; write the number with digits, e.g. +44 7400 123456"
        if _SCIENTIFIC.fullmatch(text):
            return (
                f"Excel turned this number into {text} (digits are lost) — format the column as text and "
                "export again"
            )
        if odd.isalpha():
            return "contains letters; write the number with digits only (letters are not converted to digits)"
        return (
            f"contains {odd!r}; only digits, spaces, dashes, dots, parentheses and a leading '+' are allowed"
        )
    if plus or digits[:2] == "00":
        how = "read as international: country code first"
    elif region is None:
        how = "read as international; use +CC or --default-country"
    else:
        how = f"read as a national number of {region}; write other countries' numbers with +CC"
    return f"not a valid phone number ({how})"
