"""Benchmark sending: the old limiter and this one, side by side, against the local CAMS.

The local CAMS (in this process) answers after 250 ms ±50% (like the service from a nearby region), allows
10 calls in any sliding second and stamps each call's arrival from the kernel's receive timestamp
(``SO_TIMESTAMPNS``), so its own load cannot bunch arrivals. In one run, on one machine:

1. optionally a plain loop: the same SDK call, one after another (what a simple script does);
2. ``JobRunner`` (what ``chatapp-mass send`` runs: the limiter, the worker pool, the SQLite store) of the
   **baseline** revision (``--baseline REV``, default 584c50e: the grant-time limiter), checked out into a
   temporary ``git worktree`` and run in a subprocess with that checkout's ``shared/`` as its PYTHONPATH;
3. the same of **this** checkout, in a subprocess of its own the same way.

Each sender plans ``--recipients`` numbers into batches of ``--batch`` and sends them. Printed per sender,
from what the local CAMS recorded: accepted calls/s over the steady part (the slope of accepted arrivals
from the 11th on, so a first second's burst does not count; "(accepted - 1) / span" beside it, as issue 14
measured) as a share of the 10 calls/s ceiling, refusals by the rate window (``System.LimitControl``), the
busiest sliding second (attempts, accepted or refused), and whether every valid recipient arrived exactly
once. Also the load around the run (load average, CPUs), since these
machines are shared: compare the two rows of one run, not figures of different runs.

    python bench/bench_send.py                                 # 150,000 recipients, 1,000 per call
    python bench/bench_send.py --burn                          # a CPU-bound process beside it all along
    python bench/bench_send.py --burn 2                        # two: both CPUs of this machine busy
    python bench/bench_send.py --burn --jitter 0.1             # and an extra ±100 ms on every reply's latency
    python bench/bench_send.py --baseline HEAD~3 --plain-calls 40

``--jitter`` sets the local CAMS's ``latency_extra_jitter``, a benchmark knob (not a property of the service).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)
from _baseline import ROOT, Baseline  # noqa: E402 - bench/_baseline.py, beside this script

OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "BENCH", "Language": "en", "From": "8613800000000"}

QPS = 10


# --- the sender, in a subprocess: whichever chatapp_mass its PYTHONPATH holds ---------------------------
def child(spec: dict[str, Any]) -> None:
    import chatapp_mass
    from chatapp_mass.core.options import IntakeOptions, JobOptions
    from chatapp_mass.entry.bootstrap import cams_client_for
    from chatapp_mass.services.dispatch import DispatchSettings, JobRunner
    from chatapp_mass.services.plan import PlanSettings, plan_job
    from chatapp_mass.store.sqlite import SqliteStore

    class Credentials:
        access_key_id = spec["key"]
        access_key_secret = spec["secret"]
        security_token = spec["token"]

    workdir = spec["workdir"]
    path = os.path.join(workdir, "recipients.csv")
    store = SqliteStore(os.path.join(workdir, "state.db"))
    try:
        job, _ = plan_job(
            store,
            source=path,
            open_stream=lambda: open(path, "rb"),  # noqa: SIM115 - plan_job opens it in a with block
            options=JobOptions.model_validate(OPTIONS),
            intake=IntakeOptions(),
            settings=PlanSettings(batch_size=spec["batch"]),
        )
        since = time.time()
        client = cams_client_for(spec["endpoint"], Credentials())
        result = JobRunner(store, client, DispatchSettings(qps=QPS)).run(job)
    finally:
        store.close()
    print(
        json.dumps(
            {
                "package": chatapp_mass.__file__,
                "since": since,
                "valid": job.valid,
                "sent": result.snapshot.sent,
                "throttled": result.snapshot.throttled,
            }
        )
    )


# --- the parent: the local CAMS, the checkouts, the figures ---------------------------------------------
def write_recipients(workdir: str, count: int) -> None:
    with open(os.path.join(workdir, "recipients.csv"), "w", encoding="utf-8") as handle:
        handle.write("to,name\n")
        for i in range(count):
            handle.write(f"+86 139 {i // 10000:04d} {i % 10000:04d},Guest {i}\n")


def run_sender(cams: Any, shared: Path, workdir: str, batch: int) -> dict[str, Any]:
    spec = {
        "endpoint": cams.endpoint,
        "key": cams.credentials.access_key_id,
        "secret": cams.credentials.access_key_secret,
        "token": cams.credentials.security_token or "",
        "workdir": workdir,
        "batch": batch,
    }
    env = {**os.environ, "PYTHONPATH": str(shared)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"sender from {shared} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not figures["package"].startswith(str(shared)):
        raise SystemExit(f"the sender imported {figures['package']}, not the package under {shared}")
    return figures


def service_figures(cams: Any, since: float) -> dict[str, Any]:
    attempts = [a for a in cams.backend.attempts if a.arrived_at >= since]
    accepted = sorted(a.arrived_at for a in attempts if a.code == "OK")
    span = (len(accepted) - 1) / (accepted[-1] - accepted[0]) if len(accepted) > 1 else 0.0
    received = Counter(m.to for m in cams.backend.received if m.arrived_at >= since)
    return {
        "attempts": len(attempts),
        "accepted": len(accepted),
        "rate": steady_rate(accepted),
        "span_rate": span,
        "refused": sum(1 for a in attempts if a.code == "System.LimitControl"),
        "busiest": cams.backend.max_calls_in_any_window(1.0),
        "distinct": len(received),
        "twice": sum(1 for n in received.values() if n > 1),
    }


def steady_rate(arrivals: list[float]) -> float:
    """Calls/s in the steady part: the least-squares slope of call number against arrival time, from the
    ``QPS + 1``-th call on. (The first second may hold ``QPS`` calls at once, which inflates "(calls - 1) /
    span" on a short run for a sender that starts with a burst and not for one that does not.)"""
    times = arrivals[QPS:]
    if len(times) < 2:
        return 0.0
    mean_t = sum(times) / len(times)
    mean_i = (len(times) - 1) / 2
    covariance = sum((t - mean_t) * (i - mean_i) for i, t in enumerate(times))
    variance = sum((t - mean_t) ** 2 for t in times)
    return covariance / variance if variance else 0.0


def plain_loop(cams: Any, calls: int) -> float:
    from chatapp_mass.core.options import JobOptions
    from chatapp_mass.entry.bootstrap import cams_client_for

    client = cams_client_for(cams.endpoint, cams.credentials)
    options = JobOptions.model_validate(OPTIONS)
    started = time.time()
    for i in range(calls):
        client.send(options, [{"To": f"4474001{i:05d}"}])
    return calls / (time.time() - started)


def line(name: str, sent: dict[str, Any], seen: dict[str, Any]) -> str:
    once = "yes" if sent["sent"] == sent["valid"] == seen["distinct"] and seen["twice"] == 0 else "NO"
    return (
        f"  {name:<22} {seen['rate']:6.2f} calls/s = {seen['rate'] / QPS:6.1%} of the ceiling "
        f"((accepted - 1) / span: {seen['span_rate']:.2f}) | "
        f"refused by the rate window {seen['refused']:3d} of {seen['attempts']} attempts | "
        f"busiest second {seen['busiest']:2d} | exactly once: {once} "
        f"({seen['distinct']:,} of {sent['valid']:,} received, {seen['twice']} twice)"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=150_000, help="default %(default)s")
    parser.add_argument("--batch", type=int, default=1000, help="recipients per call (default %(default)s)")
    parser.add_argument("--baseline", default="584c50e", help="the old limiter's git revision (%(default)s)")
    parser.add_argument(
        "--burn",
        type=int,
        nargs="?",
        const=1,
        default=0,
        help="CPU-bound processes beside it for the whole run (--burn: one; --burn 2: two)",
    )
    parser.add_argument("--jitter", type=float, default=0.0, help="extra ± seconds on every reply's latency")
    parser.add_argument("--plain-calls", type=int, default=0, help="calls of a plain SDK loop (0: none)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return

    from alibaba_localcloud.cams import LocalCams

    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])  # noqa: S603 - our own interpreter
        for _ in range(args.burn)
    ]
    load_before = os.getloadavg()
    rows: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    plain = 0.0
    try:
        with (
            Baseline(args.baseline) as baseline,
            LocalCams(latency=0.25, latency_jitter=0.5, latency_extra_jitter=args.jitter) as cams,
        ):
            if args.plain_calls:
                plain = plain_loop(cams, args.plain_calls)
            for name, shared in (
                (f"baseline {args.baseline}", baseline.path / "shared"),
                ("this checkout", ROOT / "shared"),
            ):
                cams.backend.reset()
                time.sleep(1.1)  # the previous calls leave the window
                with tempfile.TemporaryDirectory() as workdir:
                    write_recipients(workdir, args.recipients)
                    sent = run_sender(cams, shared, workdir, args.batch)
                rows.append((name, sent, service_figures(cams, sent["since"])))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    load_after = os.getloadavg()
    print(
        f"bench_send: local CAMS (kernel arrival stamps), latency 0.25 s ±50%"
        f"{f' ±{args.jitter:g} s more' if args.jitter else ''}, ceiling {QPS} calls in any sliding second; "
        f"{args.recipients:,} recipients, {args.batch:,} per call; "
        f"{args.burn or 'no'} CPU-bound process{'es' if args.burn != 1 else ''} beside it"
    )
    print(
        f"  load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"(1 min; {os.cpu_count()} CPUs, shared machine)"
    )
    if plain:
        print(f"  plain sequential SDK loop: {plain:.2f} calls/s ({args.plain_calls} calls)")
    for name, sent, seen in rows:
        print(line(name, sent, seen))


if __name__ == "__main__":
    main(sys.argv[1:])
