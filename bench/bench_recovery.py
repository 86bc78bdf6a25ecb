"""Figures for the two recovery paths (figures, not assertions; tests prove the behaviour):

1. **Splitting** a batch CAMS refuses for one number: the same 10,000-recipient job (batches of 1,000) with
   0, 1 and 5 numbers the local CAMS refuses — calls made, extra calls per refused number, time relative to
   none refused (measured in this run).
2. **Reconciling** uncertain batches with ListChatappMessage: one uncertain 1,000-recipient batch looked up
   one query per recipient, at --list-qps 20 (the default) and 50 (the quota page's limit) — queries, seconds,
   queries/s.

    python bench/bench_recovery.py

The engine on SQLite and the local CAMS through the real SDK (CAMS latency 100 ms ±50%, 10 calls/s).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(name, None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))

from alibaba_localcloud.cams import LocalCams  # noqa: E402
from chatapp_mass.adapters.cams import CamsClient  # noqa: E402
from chatapp_mass.core.options import IntakeOptions, parse_job_options  # noqa: E402
from chatapp_mass.entry.bootstrap import cams_client_for  # noqa: E402
from chatapp_mass.services.dispatch import DispatchSettings, JobRunner  # noqa: E402
from chatapp_mass.services.plan import plan_job  # noqa: E402
from chatapp_mass.services.reconcile import Reconciler  # noqa: E402
from chatapp_mass.store.interface import BatchStatus  # noqa: E402
from chatapp_mass.store.sqlite import SqliteStore  # noqa: E402

OPTIONS = parse_job_options(
    {
        "ChannelType": "whatsapp",
        "TemplateCode": "T1",
        "Language": "en",
        "From": "8613800000000",
        "CustSpaceId": "cs-bench",
    }
)
RECIPIENTS = 10_000


def numbers(count: int) -> list[str]:
    return [f"86139{i:08d}" for i in range(count)]


def csv_of(count: int) -> bytes:
    return ("to,name\n" + "".join(f"+{n},N\n" for n in numbers(count))).encode()


def client(cams: LocalCams) -> CamsClient:
    return cams_client_for(cams.endpoint, cams.credentials)


def send_job(cams: LocalCams, tmp: str, refused: list[str]) -> tuple[float, int, int]:
    cams.backend.reset()
    cams.backend.configure(refused_numbers=refused)
    store = SqliteStore(os.path.join(tmp, f"split-{len(refused)}.db"))
    data = csv_of(RECIPIENTS)
    job, _ = plan_job(
        store,
        source="bench.csv",
        open_stream=lambda: io.BytesIO(data),
        options=OPTIONS,
        intake=IntakeOptions(),
    )
    started = time.perf_counter()
    result = JobRunner(store, client(cams), DispatchSettings()).run(job)
    seconds = time.perf_counter() - started
    failed = result.totals.get(BatchStatus.failed, (0, 0))[1]
    store.close()
    return seconds, len(cams.backend.attempts), failed


def reconcile_batch(cams: LocalCams, tmp: str, qps: int) -> tuple[float, int, int]:
    cams.backend.reset()
    cams.backend.configure(refused_numbers=[])
    store = SqliteStore(os.path.join(tmp, f"reconcile-{qps}.db"))
    data = csv_of(1_000)
    job, _ = plan_job(
        store,
        source="bench.csv",
        open_stream=lambda: io.BytesIO(data),
        options=OPTIONS,
        intake=IntakeOptions(),
    )
    cams.backend.reply_non_json_next(1, accept=True)  # CAMS takes it, the reply is garbage: uncertain
    JobRunner(store, client(cams), DispatchSettings()).run(job)
    started = time.perf_counter()
    result = Reconciler(store, client(cams), qps=qps).reconcile(store.get_job(job.job_id))  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    store.close()
    assert result.found == 1_000, result
    return seconds, result.queries, result.found


def main() -> None:
    logging.disable(logging.WARNING)  # the engine's per-batch warnings are the expected story here
    with tempfile.TemporaryDirectory() as tmp, LocalCams(latency=0.1, latency_jitter=0.5) as cams:
        print(f"Splitting: {RECIPIENTS:,} recipients, batches of 1,000, numbers CAMS refuses")
        print(
            f"  {'refused':>7s} {'calls':>6s} {'extra calls / refused':>22s} {'failed':>6s} {'seconds':>8s} "
            f"{'x none':>7s}"
        )
        base_seconds = base_calls = 0.0
        for count in (0, 1, 5):
            refused = numbers(RECIPIENTS)[1234::1777][:count]
            seconds, calls, failed = send_job(cams, tmp, refused)
            base_seconds, base_calls = (seconds, calls) if count == 0 else (base_seconds, base_calls)
            extra = f"{(calls - base_calls) / count:.1f}" if count else "-"
            print(
                f"  {count:>7} {calls:>6} {extra:>22s} {failed:>6} {seconds:>8.1f} {seconds / base_seconds:>6.1f}x",
                flush=True,
            )
        print("Reconciling one uncertain batch of 1,000 recipients (one ListChatappMessage query each)")
        for qps in (20, 50):
            seconds, queries, found = reconcile_batch(cams, tmp, qps)
            print(
                f"  --list-qps {qps}: {queries:,} queries, {found:,} found, {seconds:.1f} s, "
                f"{queries / seconds:.1f} queries/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
