"""Benchmark the deployed path on the local cloud: OSS upload -> ingest -> async senders -> CAMS.

For each dispatch mode (``CHATAPP_DISPATCH``: ``drain`` with 1 and with 4 sender invocations per job, and
``per-batch``: one invocation per batch) it uploads a CSV of N rows (default 100,000) and prints:

- upload to the first CAMS call (any attempt) and to the first accepted one, and to the job's completion
  (report written); ingest sends while it plans (``services.streaming``), so the first call does not wait
  for the whole plan;
- recipients/s while sending (first to last accepted call) as a share of the ceiling (10 calls/s x 1,000
  recipients), and the busiest sliding second of calls;
- function time: GB-s per function (duration x memory from s.yaml) and per 1M recipients, invocations,
  instances at once; sender GB-s above the calls' own time is time spent waiting (mostly on the limiter);
- peak RSS of each function's instances (VmHWM of the worker processes, sampled), to right-size memory;
- cold start: each handler module's import time in a fresh instance.

``--start cold`` (default) uploads into a fresh local cloud: every function starts cold. ``--start warm``
first sends a 3,000-row file through the same cloud and waits for it to finish, so ingest and sender have
warm instances; only the second upload is measured (its own GB-s, calls and times). ``both`` runs each.

The local CAMS answers in 250 ms +-50%. Figures, not assertions; compare modes within one run.

    python bench/bench_serverless.py                                  # 100k rows, all modes, cold
    python bench/bench_serverless.py 20000 drain-1                    # a size and some modes
    python bench/bench_serverless.py 1000000 drain-1 --start both     # the issue-14 figures
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "shared"))

from chatapp_mass.entry.localcloud import LocalCloud  # noqa: E402
from chatapp_mass.store.interface import JobStatus  # noqa: E402
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore  # noqa: E402

MODES = {
    "drain-1": {"CHATAPP_DISPATCH": "drain", "CHATAPP_SENDERS": "1"},
    "drain-4": {"CHATAPP_DISPATCH": "drain", "CHATAPP_SENDERS": "4"},
    "per-batch": {"CHATAPP_DISPATCH": "per-batch"},
}
META = {
    "x-oss-meta-channel-type": "whatsapp",
    "x-oss-meta-template-code": "BENCH",
    "x-oss-meta-language": "en",
    "x-oss-meta-from": "8613800000000",
}


def write_csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["to", "name"])
    for i in range(rows):
        writer.writerow([f"86138{i:08d}", f"N{i}"])
    return out.getvalue().encode()


class RssSampler:
    """Peak RSS (VmHWM) per function of this process's FC worker subprocesses, sampled every 0.5 s."""

    def __init__(self) -> None:
        self.peak: dict[str, int] = {}  # function -> bytes
        self.cpu: dict[tuple[str, str], float] = {}  # (function, pid) -> CPU seconds (user + system) so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        me = str(os.getpid())
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                if fields[1] != me:
                    continue
                with open(f"/proc/{pid}/environ", "rb") as environ:
                    env = dict(item.split(b"=", 1) for item in environ.read().split(b"\0") if b"=" in item)
                function = env.get(b"FC_FUNCTION_NAME", b"").decode()
                if not function:
                    continue
                ticks = os.sysconf("SC_CLK_TCK")
                self.cpu[function, pid] = (int(fields[11]) + int(fields[12])) / ticks
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            rss = int(line.split()[1]) * 1024
                            self.peak[function] = max(self.peak.get(function, 0), rss)
            except (OSError, IndexError, ValueError):
                continue


def _store(cloud: LocalCloud) -> TablestoreStore:
    creds = cloud.credentials
    return TablestoreStore(
        TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
    )


def _upload_and_wait(cloud: LocalCloud, store: TablestoreStore, key: str, data: bytes) -> tuple[float, float]:
    """Upload ``data`` as ``key``; (upload time, seconds until the job completed)."""
    source = f"oss://{cloud.bucket}/{key}"
    started = time.time()
    cloud.oss.oss2_bucket(cloud.bucket).put_object(key, data, headers=META)
    job = None
    while time.time() - started < 1800:
        job = next((j for j in store.list_jobs(5) if j.source == source), None)
        if job is not None and job.status in (JobStatus.completed, JobStatus.failed, JobStatus.stopped):
            break
        time.sleep(0.1)
    assert job is not None and job.status is JobStatus.completed, job
    return started, time.time() - started


def run_mode(name: str, environment: dict[str, str], data: bytes, warm: bool) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCloud(
            s_yaml=os.path.join(ROOT, "s.yaml"),
            data_dir=tmp,
            cams_options={"latency": 0.25, "latency_jitter": 0.5},
            function_environment={**environment, "CHATAPP_LOG_LEVEL": "WARNING"},
            steady_collector=True,  # the emulators' 1M rows and messages: no collector pauses (see _collector)
        ) as cloud,
        RssSampler() as rss,
    ):
        cpu_before: dict[str, float] = {}
        store = _store(cloud)
        before: dict[str, Any] = {}
        skip = 0
        if warm:  # a small job first: ingest and sender have warm instances when the measured one comes
            _upload_and_wait(cloud, store, f"incoming/warmup-{name}.csv", write_csv(3_000))
            while cloud.fc.backend.stats()["pending"]:
                time.sleep(0.1)  # its invocations returned: the instances are idle in the pool
            before = cloud.fc.backend.stats()["functions"]
            rss.sample()
            for (function, _), seconds in rss.cpu.items():
                cpu_before[function] = cpu_before.get(function, 0.0) + seconds
            skip = len(cloud.cams.backend.attempts)
        started, done = _upload_and_wait(cloud, store, f"incoming/bench-{name}.csv", data)
        settled = time.time()
        while cloud.fc.backend.stats()["pending"] and time.time() - settled < 120:
            time.sleep(0.1)  # the invocation that finished the job is recorded when it returns
        attempts = cloud.cams.backend.attempts[skip:]
        if os.environ.get("BENCH_STALLS"):  # where the rate was lost, beside what else ran then
            arrived = sorted(a.arrived_at for a in attempts if a.accepted)
            for a, b in zip(arrived, arrived[10:], strict=False):
                if b - a > 1.1:
                    print(f"    stall: {b - a - 1.0:.3f} s beyond the window, ending at {b - started:.2f} s")
            for r in cloud.fc.backend.records():
                if r.started >= started and "sender" not in r.function:
                    print(
                        f"    {r.function} {r.trigger} {r.started - started:.2f} -> {r.ended - started:.2f} s"
                    )
        store_calls = Counter(
            f"{r.api} {(r.table or '').removeprefix('chatapp_')}".strip()
            for r in cloud.tablestore.backend.requests
            if r.at >= started
        )
        accepted = sorted(a.arrived_at for a in attempts if a.accepted)
        stats = cloud.fc.backend.stats()["functions"]

        def delta(function: str, key: str) -> float:
            return float(stats[function][key]) - float(before.get(function, {}).get(key, 0))

        rss.sample()
        cpu: dict[str, float] = {}
        for (function, _), seconds in rss.cpu.items():
            cpu[function] = cpu.get(function, 0.0) + seconds
        # while ingest plans (its invocation, from the upload) and after: does planning beside the sending
        # slow it down?
        plan_end = max(
            (
                r.started + r.duration
                for r in cloud.fc.backend.records("chatapp-mass-ingest")
                if r.started >= started
            ),
            default=started,
        )
        during = [a for a in accepted if a <= plan_end]
        after = [a for a in accepted if a > plan_end]
        cold = {c.function: c.import_seconds for c in cloud.fc.backend.cold_starts if c.import_seconds}
        sending = max(accepted[-1] - accepted[0], 1e-6)
        recipients = sum(len(a.recipients) for a in attempts if a.accepted)
        calls = len(attempts)
        store.close()
        call_seconds = 0.25 * calls  # the calls' own (mean) latency
        sender_gbs = delta("chatapp-mass-sender", "gb_seconds")
        return {
            "first_call": min(a.arrived_at for a in attempts) - started,
            "first_send": accepted[0] - started,
            "done": done,
            "store_calls": store_calls,
            "tail": done - (accepted[-1] - started),  # the last accepted call -> the report written
            # each call's distance from the 10th before it, beyond the 1 s window: what the rate loses (the
            # learned margin, late departures, a pipeline run dry)
            "beyond": _percentiles([b - a - 1.0 for a, b in zip(accepted, accepted[10:], strict=False)]),
            "recipients": recipients,
            "calls": calls,
            "rate": recipients / sending,
            "busiest": cloud.cams.backend.max_calls_in_any_window(1.0),
            "ingest_gbs": delta("chatapp-mass-ingest", "gb_seconds"),
            "sender_gbs": sender_gbs,
            "sender_invocations": int(delta("chatapp-mass-sender", "invocations")),
            "sender_peak": stats["chatapp-mass-sender"]["peak_busy"],
            "sender_wait_gbs": max(sender_gbs - call_seconds * 512 / 1024, 0.0),
            "cold_ingest": cold.get("chatapp-mass-ingest", 0.0),
            "cold_sender": cold.get("chatapp-mass-sender", 0.0),
            "rss": dict(rss.peak),
            "cpu": {f: seconds - cpu_before.get(f, 0.0) for f, seconds in cpu.items()},
            "plan_seconds": plan_end - started,
            "calls_per_s_planning": len(during) / max(plan_end - during[0], 1e-6) if during else 0.0,
            "calls_per_s_after": len(after) / max(after[-1] - plan_end, 1e-6) if after else 0.0,
        }


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values) or [0.0]
    return {
        name: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        for name, q in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
    } | {"max": ordered[-1], "mean": sum(ordered) / len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("modes", nargs="*", help=f"of {', '.join(MODES)} (default: all)")
    parser.add_argument("--start", choices=["cold", "warm", "both"], default="cold")
    args = parser.parse_args()
    modes = args.modes or list(MODES)
    if set(modes) - set(MODES):
        parser.error(f"modes are {', '.join(MODES)}")
    starts = ["cold", "warm"] if args.start == "both" else [args.start]
    data = write_csv(args.rows)
    print(
        f"Serverless path on the local cloud: {args.rows:,}-row CSV ({len(data) / 2**20:.1f} MiB), CAMS 250 ms "
        f"+-50%, ceiling 10 calls/s x 1,000 = 10,000 recipients/s; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs at the start"
    )
    for name in modes:
        for start in starts:
            r = run_mode(name, MODES[name], data, warm=start == "warm")
            per1m = 1_000_000 / max(r["recipients"], 1)
            label = f"{name} {start}"
            print(
                f"  {label:14s}: upload->first CAMS call {r['first_call']:5.2f} s (first accepted "
                f"{r['first_send']:5.2f} s), ->done {r['done']:6.1f} s (last call->report written "
                f"{r['tail']:.1f} s); {r['rate']:7,.0f} recipients/s while "
                f"sending = {r['rate'] / 10_000:4.0%} of the ceiling (busiest second {r['busiest']} calls, "
                f"{r['calls']} calls)"
            )
            print(
                f"  {'':14s}  GB-s: ingest {r['ingest_gbs']:.1f}, sender {r['sender_gbs']:.1f} "
                f"({r['sender_invocations']} invocations, {r['sender_peak']} at once; ~{r['sender_wait_gbs']:.1f} "
                f"beyond the calls' own time); per 1M recipients {(r['ingest_gbs'] + r['sender_gbs']) * per1m:.1f}"
            )
            print(
                f"  {'':14s}  a call's distance from the 10th before it, beyond the 1 s window: "
                + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r["beyond"].items())
            )
            per_call = sorted(r["store_calls"].items(), key=lambda kv: -kv[1])
            print(
                f"  {'':14s}  Tablestore requests per CAMS call: {sum(r['store_calls'].values()) / r['calls']:.1f} ("
                + ", ".join(f"{name} {n / r['calls']:.1f}" for name, n in per_call[:8])
                + ")"
            )
            print(
                f"  {'':14s}  ingest ran {r['plan_seconds']:.1f} s; accepted calls/s while it planned "
                f"{r['calls_per_s_planning']:.2f}, after {r['calls_per_s_after']:.2f}; CPU seconds: "
                + ", ".join(f"{f.removeprefix('chatapp-mass-')} {c:.1f}" for f, c in sorted(r["cpu"].items()))
            )
            peaks = ", ".join(
                f"{f.removeprefix('chatapp-mass-')} {b / 2**20:.0f} MB" for f, b in sorted(r["rss"].items())
            )
            print(
                f"  {'':14s}  peak RSS per instance: {peaks or 'n/a'}; cold import: ingest handler "
                f"{r['cold_ingest'] * 1000:.0f} ms, sender handler {r['cold_sender'] * 1000:.0f} ms; load average "
                f"{os.getloadavg()[0]:.2f}"
            )


if __name__ == "__main__":
    main()
