"""Delivery receipts end to end in the local cloud, at the issue's scale (issue 17's first target).

A job of ``--recipients`` (default 50,000) is submitted over HTTP to the api function (the local FC running it
from s.yaml), planned and sent by the functions to the local CAMS, which pushes the receipts back to the api
function's ``POST /receipts`` as the service does: 10% failed, half read, 10% pushed twice, out of order, over
4 connections at once. Once every receipt is pushed, the report (``GET /jobs/{id}/report``, following a 302 to
OSS) is compared row by row with what the local CAMS says it delivered (``delivery_truth``).

Prints: the time to send, the time until the last receipt was pushed, the receipt POSTs' answer times
(p50/p95/p99/max, measured by the local CAMS from connect to the end of the answer, over loopback, through the
local FC's HTTP trigger, in the api function's worker processes), how many answered over 3 s (each such POST
is retried by the local CAMS, as the service does), the report's mismatches (must be 0: the exit status is 1
otherwise), and the job's delivery figures. Whole process from cold: the local cloud is started here.

    .venv/bin/python bench/bench_delivery_e2e.py [--recipients 50000]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

import requests  # noqa: E402

from chatapp_mass.entry.localcloud import LocalCloud  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}


def percentile(values: list[float], share: float) -> float:
    return values[min(int(len(values) * share), len(values) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=50_000)
    args = parser.parse_args()
    token, key = "bench-" + secrets.token_hex(20), secrets.token_urlsafe(18)
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCloud(
            s_yaml=str(ROOT / "s.yaml"),
            data_dir=os.path.join(tmp, "cloud"),
            function_environment={
                "CHATAPP_API_TOKEN": token,
                "CHATAPP_RECEIPT_KEY": key,
                "CHATAPP_LOG_LEVEL": "WARNING",
            },
            cams_options={
                "receipt_options": {"retry_scale": 0.001}
            },  # a refused push is retried in ms, not minutes
        ) as cloud,
    ):
        backend = cloud.cams.backend
        backend.configure(failed_share=0.1, read_share=0.5, duplicate_share=0.1)
        base = cloud.fc.http_endpoint("chatapp-mass-api")
        http = requests.Session()
        http.trust_env = False
        http.headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        recipients = [{"To": f"+8613{i:09d}"} for i in range(args.recipients)]
        answer = http.post(f"{base}/jobs", json={"options": OPTIONS, "recipients": recipients}, timeout=600)
        if answer.status_code != 202:
            print(f"submit refused: {answer.status_code} {answer.text[:300]}")
            return 1
        job_id = answer.json()["job_id"]
        while http.get(f"{base}/jobs/{job_id}", timeout=60).json()["status"] != "completed":
            time.sleep(0.5)
        sent = time.monotonic() - started
        pushed_all = backend.wait_receipts_pushed(1800)
        pushed = time.monotonic() - started
        stats = backend.receipts.stats()
        pushes = list(backend.receipts.pushes)
        times = sorted(p.elapsed for p in pushes)
        slow = sum(1 for t in times if t > 3.0)
        truth = {to: t for (_, to), t in backend.delivery_truth().items()}
        asked = time.monotonic()
        report = http.get(f"{base}/jobs/{job_id}/report", timeout=600)
        report_seconds = time.monotonic() - asked
        rows = list(csv.DictReader(io.StringIO(report.text))) if report.status_code == 200 else []
        mismatches = sum(
            1
            for row in rows
            if (row["delivery"], row["delivery_code"], row["delivery_message"])
            != (truth[row["to"]].status, truth[row["to"]].error_code, truth[row["to"]].error_description)
        )
        figures = http.get(f"{base}/jobs/{job_id}", timeout=60).json()["delivery"]
    print(
        f"recipients {args.recipients:,}: sent (job completed) {sent:.1f} s after the submit, from a cold local cloud"
    )
    print(
        f"receipts: {sum(p.count for p in pushes):,} reports in {len(pushes):,} POSTs, the last pushed "
        f"{pushed:.1f} s after the submit (all pushed: {pushed_all}; abandoned {stats['abandoned']})"
    )
    print(
        f"POST /receipts answer times: p50 {percentile(times, 0.5) * 1000:.0f} ms, p95 "
        f"{percentile(times, 0.95) * 1000:.0f} ms, p99 {percentile(times, 0.99) * 1000:.0f} ms, max "
        f"{times[-1] * 1000:.0f} ms; over 3 s: {slow} of {len(times)} (retried by the local CAMS)"
    )
    said = dict(Counter(r["delivery"] for r in rows))
    print(f"report: HTTP {report.status_code}, {len(rows):,} rows in {report_seconds:.1f} s; delivery {said}")
    known = dict(Counter(t.status for t in truth.values()))
    print(f"mismatches with the local CAMS's truth: {mismatches} (truth {known})")
    print(f"job delivery figures: {figures}")
    return 0 if mismatches == 0 and len(rows) == args.recipients else 1


if __name__ == "__main__":
    sys.exit(main())
