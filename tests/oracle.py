"""Test helpers shared by several test files: sample recipient files and an independent oracle of who
should receive them."""

from __future__ import annotations

import csv
import io

from chatapp_mass.phones import normalize_number
from chatapp_mass.sample import write_sample_csv


def sample_bytes(rows: int, seed: int) -> bytes:
    out = io.StringIO()
    write_sample_csv(out, rows, seed=seed)
    return out.getvalue().encode()


def valid_numbers(data: bytes) -> set[str]:
    """The numbers a sample file must reach: a parsable number with both template values present."""
    return {number for row in csv.DictReader(io.StringIO(data.decode("utf-8")))
            if (number := normalize_number(row["to"].strip(), None)) and row["name"].strip() and row["code"].strip()}
