"""The intake's fast path (:mod:`chatapp_mass.core.phone_fast`) gives exactly the answers of the path it
replaces, and of the public ``phonenumbers`` API, for numbers as people write them: a large seeded sample of
mixed notations (+E.164, 00-prefix, digits alone, national with a default country, spaces, dashes,
parentheses, invalid lengths, letters, Excel's scientific notation, unknown calling codes, numbers that look
right but are not valid for their region), hypothesis on top; and the reader over a file of them yields the
same rows (valid / invalid with the same reason / duplicate of the same line) either way."""

from __future__ import annotations

import io
import random
import string

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from chatapp_mass.core import intake, phone_fast, phones
from chatapp_mass.core.intake import RecipientReader, Row
from chatapp_mass.core.options import ChannelType, IntakeOptions

REGIONS = (None, "GB", "US", "CN", "DE", "IN", "BR", "IT", "RU", "FR", "AR", "MX", "NG", "AU", "JP")
PER_REGION = 12_000  # of the sample, read with each default country (all of it without one)
_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE, PhoneNumberType.VOIP)


def public(raw: str, region: str | None) -> str | None:
    """The reading rules of :mod:`phones` on the public API alone: ``parse`` + ``is_valid_number`` +
    ``format_number(E164)`` for ``"+" + digits`` (international) or ``digits`` with the region."""
    digits, plus = phones._digits(raw)
    if not digits:
        return None
    if plus:
        return phones._slow_international(digits)
    if digits[:2] == "00":
        return phones._slow_international(digits[2:])
    if region is None:
        return phones._slow_international(digits)
    if len(digits) > phones._MAX_DIGITS:
        return None
    return phones._national(digits, region)


def _examples() -> list[phonenumbers.PhoneNumber]:
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in _TYPES:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                found.append(example)
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            found.append(example)
    return found


EXAMPLES = _examples()
E164 = sorted({phonenumbers.format_number(n, PhoneNumberFormat.E164)[1:] for n in EXAMPLES})
CALLING_CODES = sorted(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def _mutated(rng: random.Random, digits: str) -> str:
    """An E.164 number with a few digits changed, inserted or deleted after its first two."""
    chars = list(digits)
    for _ in range(rng.randrange(4)):
        where = rng.randrange(2, len(chars) + 1)
        action = rng.randrange(3)
        if action == 0:
            chars.insert(where, rng.choice(string.digits))
        elif where < len(chars):
            if action == 1:
                del chars[where]
            else:
                chars[where] = rng.choice(string.digits)
    return "".join(chars)


def _spaced(rng: random.Random, digits: str) -> str:
    out = []
    for index, char in enumerate(digits):
        if index and rng.random() < 0.25:
            out.append(rng.choice([" ", "-", ".", " - ", "\u00a0"]))
        out.append(char)
    return "".join(out)


def written(rng: random.Random) -> str:
    """One recipient cell as users have it."""
    example = rng.choice(EXAMPLES)
    e164 = phonenumbers.format_number(example, PhoneNumberFormat.E164)[1:]
    roll = rng.random()
    if roll < 0.3:
        digits = e164 if rng.random() < 0.7 else _mutated(rng, e164)
        notation = rng.randrange(6)
        if notation == 0:
            return "+" + digits
        if notation == 1:
            return "00" + digits
        if notation == 2:
            return digits
        if notation == 3:
            return "+" + _spaced(rng, digits)
        if notation == 4:
            return f"+{digits[:2]} ({digits[2:5]}) {digits[5:]}"
        return f"{float(digits):.5E}" if rng.random() < 0.5 else f"{float(digits):.11E}"  # Excel's way
    if roll < 0.45:
        return phonenumbers.format_number(example, PhoneNumberFormat.INTERNATIONAL)
    if roll < 0.65:
        national = phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
        return national if rng.random() < 0.5 else "".join(c for c in national if c.isdigit())
    if roll < 0.75:  # an unknown or odd calling code, or digits of any length
        code = rng.choice(["999", "0", "888", "80", "281", "1", "7", "44", "86", "39", "262", "599"])
        return (
            rng.choice(["+", "00", ""]) + code + "".join(rng.choices(string.digits, k=rng.randrange(0, 18)))
        )
    if roll < 0.82:  # letters, other characters, nothing
        base = rng.choice(["+44 7400 1234", "0800 FLOWERS", "+1 415 555 2671", "86138666612"])
        where = rng.randrange(len(base) + 1)
        return base[:where] + rng.choice(["x", "a", "#", "/", "+", "ext", "*", ",", "e"]) + base[where:]
    if roll < 0.9:  # wrong length for the region
        digits = (
            e164[: rng.randrange(1, len(e164))] if rng.random() < 0.5 else e164 + rng.choice(string.digits)
        )
        return rng.choice(["+", "00", ""]) + digits
    return rng.choice(CALLING_CODES) + "0" * rng.randrange(3) + _mutated(rng, e164)[2:]


SAMPLE = [written(random.Random(seed)) for seed in range(40_000)]


def test_the_sample_is_varied() -> None:
    readings = [phones.normalize_number(raw, None) for raw in SAMPLE]
    valid = sum(r is not None for r in readings)
    assert 0.3 * len(SAMPLE) < valid < 0.8 * len(SAMPLE)
    assert any("E+" in raw for raw in SAMPLE) and any(raw.startswith("00") for raw in SAMPLE)
    assert len({raw[:3] for raw in SAMPLE if raw.startswith("+")}) > 150  # many calling codes


def test_fast_path_is_in_use() -> None:
    assert phone_fast._international is phone_fast.international
    assert intake._normalize is phone_fast.normalize


@pytest.mark.parametrize("region", REGIONS)
def test_fast_path_agrees_with_phones_and_the_public_api_on_the_sample(region: str | None) -> None:
    for raw in SAMPLE if region is None else SAMPLE[:PER_REGION]:
        expected = phones._normalize(raw, region)
        assert phone_fast.normalize(raw, region) == expected, (raw, region)
        assert public(raw, region) == expected, (raw, region)


def test_fast_international_agrees_with_the_library_on_every_example_and_its_neighbours() -> None:
    for digits in E164:
        for candidate in (digits, digits[:-1], digits + "0", digits[:3] + "0" + digits[3:], digits[:2] + "0"):
            assert phone_fast.international(candidate) == phones._slow_international(candidate), candidate


_characters = st.sampled_from(list(string.digits * 4 + "+ -().eE/xa\u00a0\uff11"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(_characters, max_size=24),
        st.builds(lambda code, rest: "+" + code + rest, st.sampled_from(CALLING_CODES), st.text(_characters)),
        st.builds(_mutated, st.randoms(use_true_random=False), st.sampled_from(E164)),
    ),
    st.sampled_from(REGIONS),
)
def test_fast_path_agrees_on_any_text(raw: str, region: str | None) -> None:
    expected = phones._normalize(raw, region)
    assert phone_fast.normalize(raw, region) == expected
    assert public(raw, region) == expected


def _read(data: bytes, region: str | None) -> list[Row]:
    return list(
        RecipientReader(
            io.BytesIO(data),
            source="sample.csv",
            channel=ChannelType.whatsapp,
            intake=IntakeOptions(default_country=region),
        )
    )


@pytest.mark.parametrize("region", [None, "GB"])
def test_the_reader_yields_the_same_rows_with_either_path(
    region: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(14)
    cells = SAMPLE + [rng.choice(SAMPLE) for _ in range(4_000)]  # repeats: duplicates of earlier lines
    rng.shuffle(cells)
    lines = ["to,name"] + [f'"{cell}",n{index}' for index, cell in enumerate(cells)]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    fast = _read(data, region)
    monkeypatch.setattr(intake, "_normalize", phones._normalize)
    reference = _read(data, region)
    assert fast == reference
    statuses = {row.status for row in fast}
    assert statuses == {"valid", "invalid", "duplicate"}
