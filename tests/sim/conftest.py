"""The simulation's seeds: 1,000 on SQLite and 50 on the local Tablestore in ``make test``; more with
``--sim-seeds N`` (or CHATAPP_SIM_SEEDS); one exactly with ``--sim-seed S`` (a failing seed replays the same steps)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sim-seeds",
        type=int,
        default=int(os.environ.get("CHATAPP_SIM_SEEDS", "0") or 0),
        help="seeds per store for the simulation (default: 1000 on SQLite, 50 on Tablestore)",
    )
    parser.addoption("--sim-seed", type=int, default=None, help="run this one seed of the simulation")
