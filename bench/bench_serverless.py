"""Benchmark the deployed path on the local cloud: OSS upload -> ingest -> async senders -> CAMS.

For each dispatch mode (``CHATAPP_DISPATCH``: ``drain`` with 1 and with 4 sender invocations per job, and
``per-batch``: one invocation per batch) it uploads a CSV of N rows (default 100,000) and prints:

- upload to first send, and to the job's completion (report written);
- recipients/s while sending (first to last accepted call) as a share of the ceiling (10 calls/s x 1,000
  recipients), and the busiest sliding second of calls;
- function time: GB-s per function (duration x memory from s.yaml) and per 100k recipients, invocations,
  instances at once; sender GB-s above the calls' own time is time spent waiting (mostly on the limiter);
- cold start: each handler module's import time in a fresh instance.

The local CAMS answers in 250 ms +-50%. Figures, not assertions; compare modes within one run.

    python bench/bench_serverless.py                    # 100k rows, all modes
    python bench/bench_serverless.py 20000 drain-1      # a size and some modes
"""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
import time

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


def run_mode(name: str, environment: dict[str, str], data: bytes, rows: int) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCloud(
            s_yaml=os.path.join(ROOT, "s.yaml"),
            data_dir=tmp,
            cams_options={"latency": 0.25, "latency_jitter": 0.5},
            function_environment={**environment, "CHATAPP_LOG_LEVEL": "WARNING"},
        ) as cloud,
    ):
        creds = cloud.credentials
        store = TablestoreStore(
            TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token or "",
        )
        key = f"incoming/bench-{name}.csv"
        source = f"oss://{cloud.bucket}/{key}"
        started = time.time()
        cloud.oss.oss2_bucket(cloud.bucket).put_object(key, data, headers=META)
        job = None
        while time.time() - started < 1800:
            job = next((j for j in store.list_jobs(5) if j.source == source), None)
            if job is not None and job.status in (JobStatus.completed, JobStatus.failed, JobStatus.stopped):
                break
            time.sleep(0.2)
        done = time.time() - started
        assert job is not None and job.status is JobStatus.completed, job
        accepted = sorted(a.arrived_at for a in cloud.cams.backend.attempts if a.accepted)
        stats = cloud.fc.backend.stats()["functions"]
        cold = {c.function: c.import_seconds for c in cloud.fc.backend.cold_starts if c.import_seconds}
        sending = max(accepted[-1] - accepted[0], 1e-6)
        recipients = len(cloud.cams.backend.received)
        calls = len(cloud.cams.backend.attempts)
        sender = stats["chatapp-mass-sender"]
        ingest = stats["chatapp-mass-ingest"]
        store.close()
        call_seconds = sum(0.25 for _ in range(calls))  # the calls' own (mean) latency
        return {
            "first_send": accepted[0] - started,
            "done": done,
            "recipients": recipients,
            "calls": calls,
            "rate": recipients / sending,
            "busiest": cloud.cams.backend.max_calls_in_any_window(1.0),
            "ingest_gbs": ingest["gb_seconds"],
            "sender_gbs": sender["gb_seconds"],
            "sender_invocations": sender["invocations"],
            "sender_peak": sender["peak_busy"],
            "sender_wait_gbs": max(sender["gb_seconds"] - call_seconds * 512 / 1024, 0.0),
            "cold_ingest": cold.get("chatapp-mass-ingest", 0.0),
            "cold_sender": cold.get("chatapp-mass-sender", 0.0),
        }


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    modes = sys.argv[2:] or list(MODES)
    data = write_csv(rows)
    print(
        f"Serverless path on the local cloud: {rows:,}-row CSV ({len(data) / 2**20:.1f} MiB), CAMS 250 ms +-50%, "
        "ceiling 10 calls/s x 1,000 = 10,000 recipients/s"
    )
    for name in modes:
        r = run_mode(name, MODES[name], data, rows)
        per100k = 100_000 / max(r["recipients"], 1)
        print(
            f"  {name:9s}: upload->first send {r['first_send']:5.1f} s, ->done {r['done']:5.1f} s; "
            f"{r['rate']:7,.0f} recipients/s while sending = {r['rate'] / 10_000:4.0%} of the ceiling "
            f"(busiest second {r['busiest']} calls, {r['calls']} calls)"
        )
        print(
            f"  {'':9s}  GB-s: ingest {r['ingest_gbs']:.1f}, sender {r['sender_gbs']:.1f} "
            f"({r['sender_invocations']} invocations, {r['sender_peak']} at once; ~{r['sender_wait_gbs']:.1f} "
            f"beyond the calls' own time); per 100k recipients {(r['ingest_gbs'] + r['sender_gbs']) * per100k:.1f}"
        )
        print(
            f"  {'':9s}  cold import: ingest handler {r['cold_ingest']:.2f} s, sender handler {r['cold_sender']:.2f} s"
        )


if __name__ == "__main__":
    main()
