"""Phone numbers: the reading rules of normalize_number, its fast international path against the public
phonenumbers API, describe_invalid, mask_number and looks_like_phone_as_written."""

from __future__ import annotations

import string
import time

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from chatapp_mass.core import phones
from chatapp_mass.core.phone_text import looks_like_phone_as_written, mask_number
from chatapp_mass.core.phones import describe_invalid, normalize_number

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(digits: str) -> str | None:
    """What the public API says about ``"+" + digits``: E.164 without '+' when valid, else None."""
    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:]


def _examples() -> list[str]:
    """Example numbers of every region and number type, and of the non-geographic codes (E.164, no '+')."""
    types = (
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.VOIP,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.PERSONAL_NUMBER,
        PhoneNumberType.PAGER,
        PhoneNumberType.UAN,
        PhoneNumberType.VOICEMAIL,
    )
    found = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in types:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.add(phonenumbers.format_number(example, PhoneNumberFormat.E164)[1:])
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            found.add(phonenumbers.format_number(example, PhoneNumberFormat.E164)[1:])
    return sorted(found)


EXAMPLES = _examples()
CALLING_CODES = sorted(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)

# (as written, default country, expected)
VALID = [
    # '+' and '00' are international, with or without a default country
    ("+8613866661234", None, "8613866661234"),
    ("+86 138 6666 1234", None, "8613866661234"),
    ("008613866661234", None, "8613866661234"),
    ("0086 138 6666 1234", None, "8613866661234"),
    ("+8613866661234", "GB", "8613866661234"),
    ("0086 138 6666 1234", "GB", "8613866661234"),
    ("+1 (415) 555-2671", "DE", "14155552671"),
    ("+44 7400 123456", "US", "447400123456"),
    # digits alone are international without a default country (the API's own format)
    ("8613866661234", None, "8613866661234"),
    ("447400123456", None, "447400123456"),
    ("14155552671", None, "14155552671"),
    # ... and national numbers of the default country with one (trunk prefix allowed)
    ("07400 123456", "GB", "447400123456"),
    ("07400123456", "gb", "447400123456"),
    (" 07400 123456 ", " GB ", "447400123456"),
    ("(415) 555-2671", "US", "14155552671"),
    ("4155552671", "US", "14155552671"),
    ("138 6666 1234", "CN", "8613866661234"),
    ("06 1234 5678", "IT", "390612345678"),  # Italian leading zero kept
    # formatting: spaces, dashes, dots, parentheses (ASCII and Unicode) are ignored
    ("+44 (0) 7400 123456", None, "447400123456"),
    ("+44-7400-123-456", None, "447400123456"),
    ("+44.7400.123.456", None, "447400123456"),
    ("+44\t7400\u00a0123\u2013456", None, "447400123456"),
    ("+86\u3000138\u20146666\u22121234", None, "8613866661234"),
    ("07400\u2009123\u2011456", "GB", "447400123456"),
    # decimal digits of other scripts are digits
    (
        "+\uff18\uff16\uff11\uff13\uff18\uff16\uff16\uff16\uff16\uff11\uff12\uff13\uff14",
        None,
        "8613866661234",
    ),  # full-width
    ("\u0660\u0667\u0664\u0660\u0660\u0661\u0662\u0663\u0664\u0665\u0666", "GB", "447400123456"),
]


@pytest.mark.parametrize(("raw", "country", "expected"), VALID)
def test_valid_numbers_are_normalized_to_e164_digits(raw: str, country: str | None, expected: str) -> None:
    assert normalize_number(raw, country) == expected


INVALID = [
    # digits alone without a default country are international: a national number is not valid
    ("07400 123456", None),
    ("4155552671", None),
    # with a default country, digits alone are that country's: a foreign number without +/00 is not
    ("8613866661234", "GB"),
    ("13866661234", "GB"),
    # letters are not converted (no vanity numbers), and anything else but formatting is refused
    ("1-800-FLOWERS", "US"),
    ("+1 800 FLOWERS", None),
    ("+44 7400 123456 x1", None),
    ("+44 7400 123456 ext 1", None),
    ("+44 7400 12345O", None),  # a letter O for a zero
    ("+44 7400 123456/7", None),
    ("+44 7400 123456#", None),
    ("+44*7400123456", None),
    ("++447400123456", None),
    ("+44+7400123456", None),
    ("44+7400123456", None),
    ("+44_7400_123456", None),
    ("+44,7400,123456", None),
    ("\u00b2447400123456", None),  # superscript two is a digit but not a decimal digit
    # not valid for phonenumbers
    ("+86 138 6666 123", None),  # too short
    ("+86 138 6666 12345", None),  # too long for CN
    ("+999 1234 5678", None),  # no such country code
    ("+0 123 4567 890", None),
    ("+1 555 0100", None),
    ("12345", None),
    ("0000", None),
    ("+44 20", None),
    ("0086", None),
    ("00", None),
    ("+", None),
    ("( )", None),
    ("", None),
    ("   ", None),
    ("", "GB"),
    # too long: never a number (and not handed to phonenumbers)
    ("+86138666612340000000000", None),
    ("86138666612340000000000", None),
    ("0086138666612340000000000", None),
    ("074001234560000000000000", "GB"),
]


@pytest.mark.parametrize(("raw", "country"), INVALID)
def test_invalid_numbers_are_refused(raw: str, country: str | None) -> None:
    assert normalize_number(raw, country) is None


def test_unknown_default_country_raises_value_error() -> None:
    with pytest.raises(ValueError, match="ISO 3166"):
        normalize_number("07400 123456", "UK")
    with pytest.raises(ValueError, match="ISO 3166"):
        describe_invalid("07400 123456", "XX")
    assert normalize_number("07400 123456", "gb") == "447400123456"  # case and spaces do not matter


def test_too_long_input_is_refused_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("phonenumbers.parse called for an over-long number")

    monkeypatch.setattr(phonenumbers, "parse", no_parse)
    digits = "8613866661234" + "5" * 10_000
    start = time.perf_counter()
    assert normalize_number(digits, "GB") is None
    assert normalize_number("+" + digits, None) is None
    assert normalize_number("00" + digits, None) is None
    assert normalize_number(digits, None) is None
    assert normalize_number("1" * 21, "US") is None
    assert time.perf_counter() - start < 1.0


def test_twenty_digits_is_the_longest_input_read() -> None:
    # 20 digits are still read (and refused only because no country has such numbers) ...
    assert phones._MAX_DIGITS == 20
    # ... and a valid number padded past 20 digits is refused by length, not by luck
    assert normalize_number("+" + "4915123456789", None) == "4915123456789"
    assert normalize_number("+" + "4915123456789" + "0" * 8, None) is None


# -- formatting and letters, as properties ------------------------------------------------------------

_FORMAT_CHARS = st.sampled_from(list(" .-()") + ["\u00a0", "\u2013", "\u2011", "\u3000", "\u202f", "\u2212"])
_KNOWN = [
    "8613866661234",
    "447400123456",
    "14155552671",
    "4915123456789",
    "33612345678",
    "919876543210",
    "390612345678",
    "5511912345678",
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_KNOWN), st.sampled_from(["+", "00"]), st.data())
def test_formatting_characters_anywhere_after_the_plus_are_ignored(
    digits: str, prefix: str, data: st.DataObject
) -> None:
    written = prefix + digits
    start = 1 if prefix == "+" else 0
    chars = list(written)
    inserts = data.draw(st.lists(st.tuples(st.integers(start, len(chars)), _FORMAT_CHARS), max_size=8))
    for position, char in sorted(inserts, reverse=True):
        chars.insert(position, char)
    before = data.draw(st.sampled_from(["", " ", "\t"]))
    text = before + "".join(chars) + data.draw(st.sampled_from(["", " "]))
    assert normalize_number(text, None) == digits
    assert normalize_number(text, "GB") == digits  # +/00 stay international with a default country


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(_KNOWN),
    st.sampled_from(["+", "00", ""]),
    st.integers(0, 20),
    st.sampled_from(list(string.ascii_letters) + ["\u00e9", "\u0416", "\u4e00"]),
)
def test_a_letter_anywhere_makes_the_number_invalid(
    digits: str, prefix: str, where: int, letter: str
) -> None:
    written = prefix + digits
    position = min(where, len(written))
    text = written[:position] + letter + written[position:]
    assert normalize_number(text, None) is None
    assert normalize_number(text, "US") is None
    assert describe_invalid(text, None).startswith("contains letters")


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 9),
    st.text("0123456789", max_size=14),
    st.sampled_from([".", ","]),
    st.sampled_from(["E+", "e+", "E", "e"]),
    st.integers(0, 14),
)
def test_excel_scientific_notation_is_never_a_number_and_says_so(
    lead: int, rest: str, point: str, mark: str, power: int
) -> None:
    text = f"{lead}{point + rest if rest else ''}{mark}{power}"
    assert normalize_number(text, None) is None and normalize_number(text, "GB") is None
    assert describe_invalid(text, None).startswith(f"Excel turned this number into {text} (digits are lost)")


# -- the fast international path against the public API ------------------------------------------------


def test_fast_path_is_in_use_with_the_installed_phonenumbers() -> None:
    # otherwise the comparisons below would compare the reference with itself
    assert phones._fast_international is not None
    assert phones._international is phones._fast_international


def test_fast_path_agrees_with_the_public_api_on_every_example_number() -> None:
    assert len(EXAMPLES) > 500
    valid = 0
    for digits in EXAMPLES:
        expected = reference(digits)
        valid += expected is not None
        assert phones._fast_international(digits) == expected, digits
        assert normalize_number("+" + digits, None) == expected, digits
        assert normalize_number("00" + digits, None) == expected, digits
        assert normalize_number(digits, None) == expected, digits
    assert valid > 0.95 * len(EXAMPLES)  # the comparison is mostly about valid numbers


def test_fast_path_strips_the_national_prefix_like_the_public_api() -> None:
    for digits in (
        "4407400123456",
        "44007400123456",
        "3906123456780",
        "8601386666123",
        "5490111234567",
        "7891234567890",
        "49015123456789",
    ):
        assert phones._fast_international(digits) == reference(digits), digits
    assert normalize_number("+44 (0)7400 123456", None) == reference("4407400123456") == "447400123456"


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    """An example number with a few digits changed, inserted or deleted after the country code."""
    digits = list(draw(st.sampled_from(EXAMPLES)))
    code_length = next(n for n in (1, 2, 3) if "".join(digits[:n]) in CALLING_CODES)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["change", "insert", "delete"]))
        if action == "delete" and len(digits) > code_length:
            del digits[draw(st.integers(code_length, len(digits) - 1))]
        elif action == "insert":
            digits.insert(draw(st.integers(code_length, len(digits))), draw(st.sampled_from(string.digits)))
        elif len(digits) > code_length:
            digits[draw(st.integers(code_length, len(digits) - 1))] = draw(st.sampled_from(string.digits))
    return "".join(digits)


calling_code_and_digits = st.builds(
    lambda code, zeros, rest: code + "0" * zeros + rest,
    st.sampled_from(CALLING_CODES),
    st.integers(0, 3),
    st.text(string.digits, max_size=17),
)


@FAST
@given(st.one_of(mutated_examples(), calling_code_and_digits, st.text(string.digits, max_size=24)))
def test_fast_path_agrees_with_parse_is_valid_number_format_e164(digits: str) -> None:
    expected = reference(digits)
    assert phones._fast_international(digits) == expected
    assert normalize_number("+" + digits, None) == expected
    assert normalize_number("00" + digits, None) == expected
    assert normalize_number("+" + digits, "GB") == expected
    if not digits.startswith("00"):
        assert normalize_number(digits, None) == expected


@settings(max_examples=150, deadline=None)
@given(mutated_examples(), st.sampled_from(["GB", "US", "CN", "DE", "IT", "IN"]))
def test_national_reading_is_phonenumbers_parse_with_the_region(digits: str, region: str) -> None:
    if digits.startswith("00"):
        return
    try:
        number = phonenumbers.parse(digits, region)
        ok = phonenumbers.is_valid_number(number)
    except phonenumbers.NumberParseException:
        ok = False
    expected = phonenumbers.format_number(number, PhoneNumberFormat.E164)[1:] if ok else None
    assert normalize_number(digits, region) == expected


# -- describe_invalid ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("", None, "no phone number"),
        ("   ", "GB", "no phone number"),
        (
            "1-800-FLOWERS",
            "US",
            "contains letters; write the number with digits only (letters are not converted to digits)",
        ),
        (
            "8.6138E+12",
            None,
            "Excel turned this number into 8.6138E+12 (digits are lost) — format the column as text and "
            "export again",
        ),
        (
            " 8,6138E+12 ",
            "CN",
            "Excel turned this number into 8,6138E+12 (digits are lost) — format the column as text and "
            "export again",
        ),
        (
            "8.61387e12",
            None,
            "Excel turned this number into 8.61387e12 (digits are lost) — format the column as text and "
            "export again",
        ),
        (
            "44740e0123456",
            None,
            "contains letters; write the number with digits only (letters are not converted to digits)",
        ),
        (
            "+44 7400 123456/7",
            None,
            "contains '/'; only digits, spaces, dashes, dots, parentheses and a leading '+' are allowed",
        ),
        (
            "++447400123456",
            None,
            "contains '+'; only digits, spaces, dashes, dots, parentheses and a leading '+' are allowed",
        ),
        ("+", None, "no digits; write the number with digits, e.g. +44 7400 123456"),
        ("( - )", None, "no digits; write the number with digits, e.g. +44 7400 123456"),
        ("+86 138 6666 123", None, "not a valid phone number (read as international: country code first)"),
        ("0086 138 6666 123", "GB", "not a valid phone number (read as international: country code first)"),
        (
            "07400 123456",
            None,
            "not a valid phone number (read as international; use +CC or --default-country)",
        ),
        (
            "8613866661234",
            "gb",
            "not a valid phone number (read as a national number of GB; write other "
            "countries' numbers with +CC)",
        ),
    ],
)
def test_describe_invalid_says_what_was_wrong_and_how_it_was_read(
    raw: str, country: str | None, expected: str
) -> None:
    assert normalize_number(raw, country) is None
    assert describe_invalid(raw, country) == expected


# -- mask_number --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8613866661234", "+86138****1234"),
        ("+8613866661234", "+86138****1234"),
        (" 8613866661234 ", "+86138****1234"),
        ("447400123456", "+4474****3456"),
        ("14155552671", "+141****2671"),
        ("123456789012345", "+12345******2345"),
        ("12345678", "+1***5678"),
        ("1234567", "+1**4567"),
        # not a phone number: at most 3 first and 4 last characters kept, at least half masked
        ("1234567890123456", "123*********3456"),
        ("123456", "1****6"),
        ("page-scoped-id-12345", "pag*************2345"),
        ("abcdefghijkl", "abc******jkl"),
        ("abc", "***"),
        ("a", "*"),
        ("", ""),
        ("+86 138 6666 1234", "+86**********1234"),
    ],
)
def test_mask_number_examples(value: str, expected: str) -> None:
    assert mask_number(value) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(string.digits, min_size=7, max_size=15), st.booleans())
def test_mask_number_phone_keeps_country_code_head_and_last_four_only(digits: str, plus: bool) -> None:
    masked = mask_number(("+" if plus else "") + digits)
    assert masked.startswith("+") and len(masked) == len(digits) + 1
    body = masked[1:]
    head = len(body) - len(body.lstrip(string.digits))
    stars = body[head : len(body) - 4]
    assert set(stars) == {"*"}
    assert body[:head] == digits[:head] and body[-4:] == digits[-4:]
    # never more than 5 leading digits, and the masked middle grows with the number
    assert 1 <= head <= 5
    assert len(stars) >= (4 if len(digits) >= 9 else len(digits) - 5)
    assert len(digits) - len(stars) <= 9


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_characters="*", blacklist_categories=("Cs",)), max_size=60))
def test_mask_number_other_values_keep_at_most_3_and_4_characters_and_mask_half(value: str) -> None:
    text = value.strip()
    digits = text[1:] if text.startswith("+") else text
    if digits.isascii() and digits.isdigit() and 7 <= len(digits) <= 15:
        return  # the phone-number rule, tested above
    masked = mask_number(value)
    assert len(masked) == len(text)
    shown = [i for i, char in enumerate(masked) if char != "*"]
    # only the first 3 and last 4 positions can be shown
    assert all(i < 3 or i >= len(text) - 4 for i in shown)
    assert all(masked[i] == text[i] for i in shown)
    assert masked.count("*") * 2 >= len(text)  # at least half masked


def test_mask_number_never_shows_a_whole_phone_number() -> None:
    for digits in _KNOWN + EXAMPLES[::25]:
        masked = mask_number(digits)
        assert digits not in masked and digits[-8:] not in masked
        assert "*" in masked


# -- looks_like_phone_as_written ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "+44 20 7946 0958",
        "+1 (415) 555-2671",
        "(415) 555-2671",
        "8613866661234",
        "+8613866661234",
        "020.7946.0958",
        "1234567",
        "123456789012345",
        "+1 234 567",
    ],
)
def test_looks_like_phone_as_written_true(value: str) -> None:
    assert looks_like_phone_as_written(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "+",
        "123456",  # 6 digits
        "+1 23 45",
        "1234567890123456",  # 16 digits
        "+1 234 567 890 123 456",
        "-1234567",  # a leading '-' is a formula, not a number
        "-(415) 555-2671",
        "=1+2345678",
        "+1234567=",
        "++1234567",
        "1234567 ",  # must end with a digit
        " 1234567",
        "1234567-",
        "(415) 555-2671)",
        "+44 20 7946 0958\n",
        "+44 20 7946 0958 x12",
        "+44/20/7946/0958",
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667",  # non-ASCII digits
        "+1 (415) 555-2671;=HYPERLINK()",
        "@SUM(1234567)",
    ],
)
def test_looks_like_phone_as_written_false(value: str) -> None:
    assert not looks_like_phone_as_written(value)


@settings(max_examples=200, deadline=None)
@given(st.text(string.digits + " ().-+=@x", max_size=25))
def test_looks_like_phone_as_written_matches_its_rule(value: str) -> None:
    body = value[1:] if value.startswith("+") else value
    count = sum(c.isdigit() for c in value)
    rule = (
        bool(body)
        and body[0] in string.digits + "("
        and all(c in string.digits + " ().-" for c in body)
        and body[-1] in string.digits
        and 7 <= count <= 15
    )
    assert looks_like_phone_as_written(value) == rule
