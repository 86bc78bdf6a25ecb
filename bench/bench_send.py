"""Benchmark sending: calls/s achieved against the rate limit, beside a plain sequential SDK loop.

The local CAMS answers after 250 ms ±50% (like the service from a nearby region) and allows 10 calls in any
sliding second. In one run, on one machine:

1. a plain loop: the same SDK call, one after another (what a simple script does);
2. ``JobRunner`` (what ``chatapp-mass send`` runs): the limiter, the worker pool, the SQLite store.

Printed: calls/s of each, the runner's rate as a share of the limit (counted over the steady part, from
the first to the last arrival: (calls - 1) / span), the busiest
sliding second the emulator saw, throttled replies, and whether every valid recipient arrived exactly once.

    python bench/bench_send.py               # 250 calls of 10 recipients
    python bench/bench_send.py --calls 400   # longer
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

from alibaba_localcloud.cams import LocalCams  # noqa: E402
from chatapp_mass.adapters.cams import CamsClient  # noqa: E402
from chatapp_mass.core.options import IntakeOptions, JobOptions  # noqa: E402
from chatapp_mass.entry.bootstrap import cams_client_for  # noqa: E402
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner  # noqa: E402
from chatapp_mass.services.plan import PlanSettings, plan_job  # noqa: E402
from chatapp_mass.store.sqlite import SqliteStore  # noqa: E402

OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "BENCH", "Language": "en", "From": "8613800000000"}


def _client(cams: LocalCams) -> CamsClient:
    return cams_client_for(cams.endpoint, cams.credentials)


def _rate(cams: LocalCams, since: float) -> tuple[int, float]:
    times = sorted(a.arrived_at for a in cams.backend.attempts if a.arrived_at >= since)
    if len(times) < 2:
        return len(times), 0.0
    return len(times), (len(times) - 1) / (times[-1] - times[0])


def plain_loop(cams: LocalCams, calls: int) -> float:
    client = _client(cams)
    options = JobOptions.model_validate(OPTIONS)
    started = time.time()
    for i in range(calls):
        client.send(options, [{"To": f"4474001{i:05d}"}])
    return calls / (time.time() - started)


def runner(cams: LocalCams, calls: int, batch: int, workdir: str) -> dict[str, object]:
    path = os.path.join(workdir, "recipients.csv")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("to,name\n")
        for i in range(calls * batch):
            handle.write(f"+86 139 {i // 10000:04d} {i % 10000:04d},Guest {i}\n")
    store = SqliteStore(os.path.join(workdir, "state.db"))
    try:
        job, _ = plan_job(
            store,
            source=path,
            open_stream=lambda: open(path, "rb"),  # noqa: SIM115 - plan_job opens it in a with block
            options=JobOptions.model_validate(OPTIONS),
            intake=IntakeOptions(),
            settings=PlanSettings(batch_size=batch),
        )
        since = time.time()
        result = JobRunner(store, _client(cams), DispatchSettings(qps=10)).run(job)
    finally:
        store.close()
    attempts, rate = _rate(cams, since)
    received = Counter(m.to for m in cams.backend.received if m.arrived_at >= since)
    return {
        "attempts": attempts,
        "rate": rate,
        "sent": result.snapshot.sent,
        "valid": job.valid,
        "late_slots": result.snapshot.late_slots,
        "throttled": result.snapshot.throttled,
        "busiest": cams.backend.max_calls_in_any_window(1.0),
        "twice": sum(1 for n in received.values() if n > 1),
        "distinct": len(received),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=250, help="calls the runner makes (default %(default)s)")
    parser.add_argument("--batch", type=int, default=10, help="recipients per call (default %(default)s)")
    parser.add_argument(
        "--plain-calls", type=int, default=40, help="calls of the plain loop (default %(default)s)"
    )
    args = parser.parse_args(argv)
    with LocalCams(latency=0.25, latency_jitter=0.5) as cams, tempfile.TemporaryDirectory() as workdir:
        limit = cams.backend.qps_limit
        plain = plain_loop(cams, args.plain_calls)
        cams.backend.reset()
        time.sleep(1.1)  # the plain loop's calls leave the window
        figures = runner(cams, args.calls, args.batch, workdir)
    rate = float(figures["rate"])  # type: ignore[arg-type]
    print(f"bench_send: local CAMS, latency 0.25 s ±50%, limit {limit} calls in any sliding second")
    print(f"  plain sequential SDK loop : {plain:6.2f} calls/s  ({args.plain_calls} calls)")
    print(
        f"  JobRunner (chatapp-mass)  : {rate:6.2f} calls/s  ({figures['attempts']} calls) = "
        f"{rate / limit:.1%} of the limit, {rate / plain:.1f}x the plain loop"
    )
    print(
        f"  busiest sliding second    : {figures['busiest']} calls; throttled replies {figures['throttled']}; "
        f"slots given up late {figures['late_slots']}"
    )
    print(
        f"  recipients                : {figures['sent']:,} sent of {figures['valid']:,} valid; "
        f"{figures['distinct']:,} distinct received, {figures['twice']} more than once"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
