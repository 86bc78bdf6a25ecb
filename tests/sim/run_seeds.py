"""Run many simulation seeds outside pytest, with progress (for long runs: ``--sim-seeds`` prints only at the end).

    .venv/bin/python tests/sim/run_seeds.py sqlite|tablestore FIRST COUNT

Prints a line every 100 seeds and a summary; exits 1 at the first failing seed (replay it with
``pytest tests/sim --sim-seed S``)."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time

# sys.path is set first (it finds the imports below): hence their noqa: E402
sys.path.insert(0, os.path.dirname(__file__))

from chatapp_mass.store.sqlite import SqliteStore  # noqa: E402
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore  # noqa: E402

from harness import run_seed  # noqa: E402


def main() -> int:
    backend, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    logging.disable(logging.CRITICAL)
    totals: dict[str, int] = {}
    started = time.perf_counter()

    def go(open_store):  # type: ignore[no-untyped-def]
        for index, seed in enumerate(range(first, first + count), 1):
            for key, value in run_seed(seed, open_store).items():
                totals[key] = totals.get(key, 0) + value
            if index % 100 == 0 or index == count:
                print(
                    f"{backend}: seeds {first}..{seed}: {index} passed, {time.perf_counter() - started:.0f} s, "
                    f"{totals}",
                    flush=True,
                )

    if backend == "sqlite":
        path = os.path.join(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None), "sim.db")
        go(lambda clock: SqliteStore(path, clock=clock))
        return 0
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
        TablestoreStore(settings, **keys).close()
        go(lambda clock: TablestoreStore(settings, create_tables=False, clock=clock, **keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
