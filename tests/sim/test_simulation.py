"""The simulation (harness.py) on both stores: every seed a random cast of concurrent actors on one job with
crashes and pauses; the invariants are checked after each. A failure names its seed: ``pytest tests/sim
--sim-seed S`` replays it step for step."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chatapp_mass.store.interface import Store
from chatapp_mass.store.sqlite import SqliteStore
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

from harness import run_seed

# make test's share (about a minute of CPU): seeds found failing are kept as tests/sim/test_regressions.py, and
# long runs (10,000 seeds per store: README's figures) take ``--sim-seeds N`` or tests/sim/run_seeds.py
DEFAULT_SEEDS = {"sqlite": 1000, "tablestore": 50}
# Seeds per test: the run is cut into shards so that pytest-xdist's workers share it (``make test`` runs two),
# and a failure names a shard of a few hundred seeds (its message names the seed)
SHARD = {"sqlite": 250, "tablestore": 25}


@pytest.fixture
def quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)  # thousands of seeds log every stale claim they provoke
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _seeds(config: pytest.Config, backend: str) -> range:
    one = config.getoption("--sim-seed")
    if one is not None:
        return range(one, one + 1)
    first = int(os.environ.get("CHATAPP_SIM_FIRST", "0") or 0)  # shards of a long run: seeds from here
    return range(first, first + (config.getoption("--sim-seeds") or DEFAULT_SEEDS[backend]))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    backend = {"test_simulation_sqlite": "sqlite", "test_simulation_tablestore": "tablestore"}.get(
        metafunc.function.__name__
    )
    if backend is None:
        return
    seeds = _seeds(metafunc.config, backend)
    size = SHARD[backend]
    shards = [seeds[i : i + size] for i in range(0, len(seeds), size)]
    metafunc.parametrize("seeds", shards, ids=[f"seeds-{s.start}-{s.stop - 1}" for s in shards])


def _run(seeds: range, open_store: Callable[[Callable[[], float]], Store]) -> dict[str, Any]:
    started = time.perf_counter()
    totals: dict[str, int] = {}
    for seed in seeds:
        for key, value in run_seed(seed, open_store).items():
            totals[key] = totals.get(key, 0) + value
    totals["seconds"] = round(time.perf_counter() - started, 1)  # a figure printed, never asserted
    print(f"simulation: {len(seeds)} seeds: {totals}")
    return totals


def test_simulation_sqlite(seeds: range, quiet: None) -> None:
    directory = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    path = os.path.join(directory, "sim.db")
    totals = _run(seeds, lambda clock: SqliteStore(path, clock=clock))
    assert totals.get("calls", 0) > 0


def test_simulation_tablestore(seeds: range, quiet: None) -> None:
    from alibaba_localcloud.tablestore import LocalTablestore

    with LocalTablestore() as server:
        creds = server.credentials
        settings = TablestoreSettings(
            endpoint=server.endpoint, instance=server.instance_name, table_prefix="sim_"
        )
        keys = dict(
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token or "",
        )
        TablestoreStore(settings, **keys).close()  # the tables, once

        def open_store(clock: Callable[[], float]) -> Store:
            return TablestoreStore(settings, create_tables=False, clock=clock, **keys)

        totals = _run(seeds, open_store)
    assert totals.get("calls", 0) > 0
