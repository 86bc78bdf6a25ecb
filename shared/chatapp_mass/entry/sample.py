"""Sample recipient files: valid numbers of several countries written in the usual ways, some invalid rows,
some duplicates, and per-recipient template values. Deterministic for a seed; used by the demo, the tests
and the benchmarks."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from typing import IO

import phonenumbers

COUNTRIES = ("CN", "GB", "US", "DE", "IN", "BR", "SG", "ID")
FIRST_NAMES = ("Ana", "Bo", "Chen", "Dev", "Emma", "Farah", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")


def valid_numbers(seed: int = 7) -> Iterator[phonenumbers.PhoneNumber]:
    """An endless stream of distinct valid mobile numbers."""
    rng = random.Random(seed)
    seen: set[tuple[int | None, int | None]] = set()
    bases = []
    for region in COUNTRIES:
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is not None:  # every region in COUNTRIES has a mobile example
            bases.append(example)
    while True:
        base = rng.choice(bases)
        national = str(base.national_number)
        keep = max(len(national) - 6, 2)
        candidate = int(national[:keep] + "".join(rng.choice("0123456789") for _ in national[keep:]))
        number = phonenumbers.PhoneNumber(country_code=base.country_code, national_number=candidate)
        key = (number.country_code, number.national_number)
        if key in seen or not phonenumbers.is_valid_number(number):
            continue
        seen.add(key)
        yield number


def _written(number: phonenumbers.PhoneNumber, rng: random.Random) -> str:
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    style = rng.random()
    if style < 0.4:
        return e164[1:]  # the API's own form: digits, no '+'
    if style < 0.7:
        return e164
    if style < 0.85:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return "00" + e164[1:]


INVALID_EXAMPLES = ("12345", "not a number", "+1 555 0100", "+86 138", "0000000000000000", "")


def write_sample_csv(
    out: IO[str],
    rows: int,
    *,
    seed: int = 7,
    invalid_share: float = 0.03,
    duplicate_share: float = 0.03,
    empty_param_share: float = 0.01,
) -> None:
    rng = random.Random(seed)
    numbers = valid_numbers(seed)
    written: list[phonenumbers.PhoneNumber] = []
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["to", "name", "code"])
    for index in range(rows):
        draw = rng.random()
        name = rng.choice(FIRST_NAMES)
        code = f"C{index:07d}"
        if draw < invalid_share:
            writer.writerow([rng.choice(INVALID_EXAMPLES), name, code])
        elif draw < invalid_share + duplicate_share and written:
            writer.writerow([_written(rng.choice(written), rng), name, code])
        elif draw < invalid_share + duplicate_share + empty_param_share:
            writer.writerow([_written(next(numbers), rng), "", code])
        else:
            number = next(numbers)
            if len(written) < 10_000:
                written.append(number)
            writer.writerow([_written(number, rng), name, code])
