"""Benchmark the receipt store's ``record``: receipts per second, on each backend, in the shape of an HTTP push.

The api function answers a push of up to a few hundred ChatAppStatus reports within 3 s, at 2,000 reports/s
(ALIBABA-FACTS §6, issue 17): one ``ReceiptStore.record`` call per push. Here a stream of receipts as CAMS
sends them (per recipient Sent, then Delivered or, for 10%, Failed, then Read for half of the delivered) of
recipients spread over 20 TaskIds, slightly out of order, is cut into calls of ``--batch`` receipts of which 20%
repeat a receipt already recorded (CAMS repeats reports). Only the ``record`` calls are timed.

- SQLite: a file in a temporary directory (WAL), this process.
- Tablestore: the local Tablestore in its own process (``python -m alibaba_localcloud.tablestore``), over
  loopback HTTP with the real SDK: the figure includes the SDK's pure-Python encoding and decoding and the
  emulator's own work on the same machine, not a network round trip to the service (~ms in a region).

Figures, not assertions: the machine is shared. A backend whose ``record`` is not in this checkout yet says so.

    python bench/bench_receipt_store.py                        # 10,000 receipts per figure, calls of 100 and 500
    python bench/bench_receipt_store.py --receipts 40000 --batch 200
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

# The environment and sys.path are set first (the SDKs read the environment when imported): hence the noqa: E402
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "shared"))

from chatapp_mass.store.features import open_receipts  # noqa: E402
from chatapp_mass.store.interface import Store  # noqa: E402
from chatapp_mass.store.receipts import DeliveryStatus, Receipt  # noqa: E402
from chatapp_mass.store.sqlite import SqliteStore  # noqa: E402
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore  # noqa: E402

DUPLICATES = 0.2
TASKS = 20


def stream(count: int, rng: random.Random) -> list[Receipt]:
    """``count`` distinct receipts as CAMS sends them, a little out of order (within a window of 50)."""
    out: list[Receipt] = []
    i = 0
    while len(out) < count:
        task, to, at = f"{100000000000000000 + i % TASKS}", f"86138{i:08d}", 1_765_000_000_000 + i
        message = f"m{i:010d}"
        out.append(Receipt(task, to, message, DeliveryStatus.sent, at))
        if rng.random() < 0.1:
            out.append(Receipt(task, to, message, DeliveryStatus.failed, at + 900, "131026", "undeliverable"))
        else:
            out.append(Receipt(task, to, message, DeliveryStatus.delivered, at + 900))
            if rng.random() < 0.5:
                out.append(Receipt(task, to, message, DeliveryStatus.read, at + 5000))
        i += 1
    out = out[:count]
    for start in range(0, len(out), 50):  # out of order, as pushes overlap
        window = out[start : start + 50]
        rng.shuffle(window)
        out[start : start + 50] = window
    return out


def calls(receipts: list[Receipt], batch: int, rng: random.Random) -> Iterator[list[Receipt]]:
    """Calls of ``batch`` receipts: 80% the stream's next, 20% repeats of receipts sent before (any call)."""
    fresh = batch - int(batch * DUPLICATES)
    for start in range(0, len(receipts), fresh):
        new = receipts[start : start + fresh]
        seen = receipts[: start + len(new)]
        call = new + [rng.choice(seen) for _ in range(batch - len(new))]
        rng.shuffle(call)
        yield call


def measure(store: Store, label: str, batch: int, count: int) -> None:
    rng = random.Random(batch)
    receipts = open_receipts(store)
    work = list(calls(stream(count, rng), batch, rng))
    times: list[float] = []
    changed = unchanged = 0
    try:
        cpu = time.process_time()
        for call in work:
            began = time.perf_counter()
            result = receipts.record(call)
            times.append(time.perf_counter() - began)
            changed += result.changed
            unchanged += result.unchanged
        cpu = time.process_time() - cpu
    except NotImplementedError:
        print(f"{label}: batch {batch}: record() is not implemented in this checkout yet")
        return
    total = sum(len(call) for call in work)
    wall = sum(times)
    ordered = sorted(times)
    print(
        f"{label}: calls of {batch} ({int(DUPLICATES * 100)}% repeats): {total:,} receipts in {wall:.2f} s of "
        f"record() = {total / wall:,.0f} receipts/s; per call median {statistics.median(times) * 1000:.0f} ms, "
        f"p95 {ordered[int(len(ordered) * 0.95) - 1] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms; "
        f"this process's CPU {cpu:.2f} s; changed {changed:,}, unchanged {unchanged:,}"
    )


def local_tablestore() -> tuple[subprocess.Popen[str], dict[str, object]]:
    server = subprocess.Popen(
        [sys.executable, "-m", "alibaba_localcloud.tablestore", "--no-realistic"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "shared")},
    )
    assert server.stdout is not None
    return server, json.loads(server.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receipts", type=int, default=10_000, help="distinct receipts per figure")
    parser.add_argument("--batch", type=int, action="append", help="receipts per call (default: 100 and 500)")
    args = parser.parse_args()
    batches = args.batch or [100, 500]
    with tempfile.TemporaryDirectory() as tmp:
        for batch in batches:
            sqlite = SqliteStore(os.path.join(tmp, f"state-{batch}.db"))
            measure(sqlite, "SQLite (a file, WAL; this process)", batch, args.receipts)
            sqlite.close()
    server, info = local_tablestore()
    try:
        creds = info["credentials"]
        assert isinstance(creds, dict)
        for batch in batches:
            settings = TablestoreSettings(
                endpoint=str(info["endpoint"]), instance=str(info["instance"]), table_prefix=f"b{batch}_"
            )
            store = TablestoreStore(
                settings,
                access_key_id=creds["access_key_id"],
                access_key_secret=creds["access_key_secret"],
                security_token=creds.get("security_token") or "",
            )
            measure(
                store,
                "Tablestore (local emulator in its own process, loopback HTTP, real SDK)",
                batch,
                args.receipts,
            )
            store.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
