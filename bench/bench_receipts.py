"""Benchmark the receipt endpoint: ChatAppStatus HTTP pushes to the api function's ``POST /receipts?key=``.

The issue-17 figure: the endpoint answers within 3 s (CAMS's rule: a slower or non-2xx answer is a failed push,
retried later) at 2,000 reports per second. The load is what the local CAMS pushes: JSON arrays of ``--batch``
reports (100) built by the local CAMS's own report builder (``alibaba_localcloud.cams.receipts``: Sent,
Delivered, Read and Failed with WhatsApp's codes, 5 % repeats), ``--rate`` reports/s (2,000 = 20 POSTs/s of
100) from ``--senders`` (4) concurrent senders, for ``--seconds`` (20). Open loop: POST i is due at
``start + i / posts_per_second``; a sender that is still waiting for an answer when its next POST is due sends
it late (the lateness is printed, so a slow endpoint cannot hide behind a load that slowed down with it).

Targets:

- default: the whole local cloud (``s.yaml``'s functions on the local FC, Tablestore behind them), the api
  function given ``CHATAPP_RECEIPT_KEY``; with ``--register`` (default on) the batch TaskIds are registered
  in the receipt store first, so the reports match tasks (without it every report is "unmatched": kept aside);
- ``--url URL``: an endpoint already running (the full URL with ``?key=``);
- ``--standin``: a tiny in-process receiver (http.server; parses the array, answers the ack): checks the load
  generator itself, not the product.

Printed, each saying what it includes: response time percentiles (p50/p95/p99/max) per POST, measured by the
sender from opening the connection to reading the whole answer (a new connection per POST, as a push is;
loopback, so the network adds ~nothing; includes the local FC's HTTP trigger and the function's time, and
any queueing in front of it); the share of POSTs answered 2xx within 3 s (the others count as failed pushes);
the achieved reports/s; the lateness of the senders. Figures, not assertions.

    python bench/bench_receipts.py                       # 2,000 reports/s for 20 s into the local cloud
    python bench/bench_receipts.py --standin --seconds 5 # the load generator alone
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "shared"))

from alibaba_localcloud.cams.receipts import ReceiptOptions, decide, status_report  # noqa: E402

DEADLINE = 3.0  # seconds: CAMS's rule for an answer (ALIBABA-FACTS §6)
KEY = "bench-receipt-key-0123456789abcdef"
FROM = "8613800000000"
TASKS = 100  # distinct TaskIds (batches of 1,000 recipients in the product)


# --- the load -------------------------------------------------------------------------------------------------
def make_bodies(rate: int, batch: int, seconds: float, seed: int = 17) -> list[bytes]:
    """The JSON arrays to POST, each of ``batch`` reports, as the local CAMS builds them (its fates: ~10 %
    failed, ~60 % of the delivered read, 5 % repeats), shuffled within each POST."""
    options = ReceiptOptions(duplicate_share=0.05)
    rng = random.Random(seed)
    total = int(rate * seconds)
    reports: list[dict[str, Any]] = []
    number = 0
    now = time.time()
    while len(reports) < total:
        task = f"{900_000_000_000_000_000 + number // 1000 % TASKS}"
        message = SimpleNamespace(
            to=f"6591{number:07d}",
            message_id=f"{8_900_000_100_000_000 + number // 1000}{number % 1000:04d}",
            task_id=task,
            from_=FROM,
            channel_type="whatsapp",
            template_code="BENCH",
            template_name=None,
            language="en",
            arrived_at=now,
        )
        fate = decide(seed, message, options)
        for event, twice in zip(fate.events, fate.duplicated, strict=True):
            report = status_report(message, event, fate)
            reports.extend([report, report] if twice else [report])
        number += 1
    reports = reports[:total]
    bodies = []
    for start in range(0, total, batch):
        chunk = reports[start : start + batch]
        rng.shuffle(chunk)
        bodies.append(json.dumps(chunk, separators=(",", ":")).encode("utf-8"))
    return bodies


@dataclass
class Post:
    due: float
    started: float
    ended: float
    status: int | None
    code: Any  # the ack's "code", if JSON
    size: int  # reports in the POST
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def in_time(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.seconds <= DEADLINE


def post(url: str, body: bytes) -> tuple[int | None, Any, str]:
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(
            "POST", target, body=body, headers={"Content-Type": "application/json;charset=utf-8"}
        )
        response = connection.getresponse()
        data = response.read()
        try:
            code = json.loads(data).get("code")
        except (ValueError, AttributeError):
            code = None
        return response.status, code, ""
    except (OSError, http.client.HTTPException) as error:
        return None, None, f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def run_load(
    url: str, bodies: list[bytes], posts_per_second: float, senders: int
) -> tuple[list[Post], float]:
    """POST every body, body i due at start + i / posts_per_second, from ``senders`` threads (open loop)."""
    results: list[Post] = []
    lock = threading.Lock()
    next_index = iter(range(len(bodies)))
    sizes = [len(json.loads(body)) for body in bodies]
    start = time.monotonic() + 0.2

    def sender() -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            due = start + index / posts_per_second
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            began = time.monotonic()
            status, code, error = post(url, bodies[index])
            ended = time.monotonic()
            record = Post(due - start, began - start, ended - start, status, code, sizes[index], error)
            with lock:
                results.append(record)

    threads = [threading.Thread(target=sender, name=f"bench-sender-{i}") for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.monotonic() - start


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(share * len(ordered))) - 1))]


def report(results: list[Post], elapsed: float, target: str) -> None:
    seconds = [r.seconds for r in results]
    lateness = [max(0.0, r.started - r.due) for r in results]
    statuses = Counter(str(r.status) if r.status is not None else r.error.split(":")[0] for r in results)
    answered = sum(r.size for r in results if r.in_time)
    offered = sum(r.size for r in results)
    print(f"target: {target}")
    print(f"  POSTs: {len(results)}, {offered:,} reports, in {elapsed:.1f} s")
    print(
        "  response time per POST (connect + send + the endpoint's whole answer, loopback, new connection each):"
    )
    print(
        f"    p50 {statistics.median(seconds) * 1000:.0f} ms, p95 {percentile(seconds, 0.95) * 1000:.0f} ms, "
        f"p99 {percentile(seconds, 0.99) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms"
    )
    slow = sorted((r for r in results if not r.in_time), key=lambda r: r.started)
    if slow:
        when = ", ".join(f"{r.started:.1f}s ({r.seconds:.1f}s, {r.status or r.error})" for r in slow[:10])
        print(f"  the POSTs not answered in time, by when they left (took, status): {when}")
    in_time = sum(1 for r in results if r.in_time)
    print(
        f"  answered 2xx within {DEADLINE:.0f} s: {in_time}/{len(results)} POSTs ({in_time / len(results):.2%})"
    )
    print(f"  HTTP statuses / errors: {dict(statuses)}; ack codes: {dict(Counter(r.code for r in results))}")
    print(
        f"  achieved: {answered / elapsed:,.0f} reports/s acknowledged in time "
        f"({offered / elapsed:,.0f} offered over the run's wall time)"
    )
    print(
        "  sender lateness (how late a POST left after its due time: >0 when every sender was still waiting "
        f"for an answer): p50 {statistics.median(lateness) * 1000:.0f} ms, max {max(lateness) * 1000:.0f} ms"
    )


# --- targets ----------------------------------------------------------------------------------------------------
class StandIn:
    """A tiny receiver: parses the array, answers the ack. For checking the load generator only."""

    def __init__(self) -> None:
        self.reports = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                items = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with lock:
                    outer.reports += len(items)
                payload = b'{"code":0,"msg":"success"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/receipts?key={KEY}"


def register_tasks(cloud: Any) -> str:
    """Register the bench's TaskIds in the receipt store (as the sender does before its calls)."""
    from chatapp_mass.store.features import open_receipts
    from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

    creds = cloud.credentials
    store = TablestoreStore(
        TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
    )
    try:
        receipts = open_receipts(store)
        for i in range(TASKS):
            receipts.register_task(f"{900_000_000_000_000_000 + i}", "bench-job", i)
        return f"{TASKS} TaskIds registered (reports match tasks)"
    except NotImplementedError:
        return "the receipt store is not implemented in this checkout: TaskIds not registered"
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=2000, help="reports per second (default 2000)")
    parser.add_argument("--batch", type=int, default=100, help="reports per POST (default 100)")
    parser.add_argument("--senders", type=int, default=4, help="concurrent senders (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long (default 20)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="POST to this endpoint (with ?key=) instead of a local cloud")
    target.add_argument("--standin", action="store_true", help="POST to a tiny in-process receiver")
    parser.add_argument("--register", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--cold", action="store_true", help="no warm-up: the functions start cold under the load"
    )
    args = parser.parse_args()

    bodies = make_bodies(args.rate, args.batch, args.seconds)
    sizes = [len(json.loads(body)) for body in bodies]
    posts_per_second = args.rate / args.batch
    print(
        f"load: {args.rate:,} reports/s = {posts_per_second:g} POSTs/s of {args.batch}, "
        f"{args.senders} senders, {args.seconds:g} s ({len(bodies)} POSTs, {sum(sizes):,} reports)"
    )
    if args.url:
        results, elapsed = run_load(args.url, bodies, posts_per_second, args.senders)
        report(results, elapsed, args.url.split("?")[0])
        return 0
    if args.standin:
        with StandIn() as standin:
            results, elapsed = run_load(standin.url, bodies, posts_per_second, args.senders)
        report(results, elapsed, "a stand-in receiver (http.server): the load generator alone")
        print(f"  the stand-in counted {standin.reports:,} reports")
        return 0

    import tempfile

    from chatapp_mass.entry.localcloud import LocalCloud
    from chatapp_mass.runtime import env

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCloud(
            s_yaml=os.path.join(ROOT, "s.yaml"),
            data_dir=tmp,
            function_environment={env.CHATAPP_RECEIPT_KEY: KEY, env.CHATAPP_LOG_LEVEL: "WARNING"},
            steady_collector=True,
        ) as cloud,
    ):
        assert cloud.fc is not None
        api = cloud.fc.http_endpoints.get("chatapp-mass-api") or next(iter(cloud.fc.http_endpoints.values()))
        if args.register:
            print(register_tasks(cloud))
        # warm-up: one POST per sender at once, so as many instances are warm as POSTs can be in flight (their
        # cold starts are not what the figure is about; --cold measures with them)
        if not args.cold:
            warm = [
                threading.Thread(target=lambda: warmups.append(post(f"{api}/receipts?key={KEY}", bodies[0])))
                for _ in range(args.senders)
            ]
            warmups: list[tuple[int | None, Any, str]] = []
            for thread in warm:
                thread.start()
            for thread in warm:
                thread.join()
            print(f"warm-up: {args.senders} concurrent POSTs, HTTP {sorted(str(w[0]) for w in warmups)}")
        results, elapsed = run_load(f"{api}/receipts?key={KEY}", bodies, posts_per_second, args.senders)
        report(results, elapsed, f"the api function's HTTP trigger on the local FC ({api}/receipts)")
        stats = cloud.fc.backend.stats()["functions"]
        print(f"  api function: {json.dumps(stats.get('chatapp-mass-api', {}), default=str)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
