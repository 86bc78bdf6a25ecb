"""``chatapp-mass demo``: the whole product on loopback, no Alibaba account needed.

Starts the local CAMS (signature, STS token, 10 calls/s and latency like the service), writes a sample CSV
(valid numbers of several countries in several notations, invalid rows, duplicates, per-recipient params),
sends it through the same code path as ``chatapp-mass send``, and writes the report.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import Counter
from typing import IO

from chatapp_mass import env
from chatapp_mass.bootstrap import build_services, static_credential
from chatapp_mass.cams import CamsClient, CamsSettings, parse_endpoint
from chatapp_mass.sample import write_sample_csv


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="demo-out", help="where the sample CSV, state and report go "
                        "(default %(default)s)")
    parser.add_argument("--rows", type=int, default=20_000, help="sample rows (default %(default)s)")
    parser.add_argument("--latency", type=float, default=0.25,
                        help="local CAMS reply latency in seconds, ±50%% (default %(default)s)")
    parser.add_argument("--qps", type=int, default=10, help="attempts per second (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1000, help="recipients per call (default %(default)s)")


def run(args: argparse.Namespace, *, out: IO[str], err: IO[str]) -> int:
    from chatapp_mass.cli import build_parser, run_send
    from chatapp_mass.localcloud.cams import LocalCams

    os.environ.setdefault(env.ALIBABA_CLOUD_ECS_METADATA_DISABLED, "true")
    os.makedirs(args.dir, exist_ok=True)
    csv_path = os.path.join(args.dir, "recipients.csv")
    report_path = os.path.join(args.dir, "report.csv")
    store_url = "sqlite:///" + os.path.join(args.dir, "state.db")
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        write_sample_csv(handle, args.rows)
    print(f"demo: wrote {args.rows:,} sample rows to {csv_path}", file=err)

    with LocalCams(latency=args.latency, latency_jitter=0.5) as cams:
        creds = cams.credentials
        print(f"demo: local CAMS listening on {cams.endpoint} (signature and STS token checked, "
              f"{cams.backend.qps_limit} calls/s)", file=err)
        endpoint, protocol = parse_endpoint(cams.endpoint)
        client = CamsClient(
            CamsSettings(endpoint=endpoint, protocol=protocol),
            credential=static_credential(creds.access_key_id, creds.access_key_secret, creds.security_token),
        )
        services = build_services(store_url=store_url, cams=client)
        send_args = build_parser().parse_args([
            "send", csv_path, "--channel-type", "whatsapp", "--template-code", "DEMO_WELCOME",
            "--language", "en", "--from", "8613800000000", "--store", store_url, "--report", report_path,
            "--qps", str(args.qps), "--batch-size", str(args.batch_size), "--new-job",
        ])
        try:
            code = run_send(send_args, services, out=out, err=err)
        finally:
            services.close()
        received = cams.backend.received_count_by_number()
        attempts = len(cams.backend.attempts)
        twice = sum(1 for n in received.values() if n > 1)
        busiest = cams.backend.max_calls_in_any_window(1.0)
    with open(report_path, encoding="utf-8", newline="") as handle:
        statuses = Counter(row["status"] for row in csv.DictReader(handle))
    print(
        f"demo: local CAMS saw {attempts} calls (at most {busiest} in any 1 s window) and received "
        f"{len(received):,} distinct numbers, {twice} of them more than once", file=out,
    )
    print(f"demo: report {report_path}: " + ", ".join(f"{n:,} {s}" for s, n in sorted(statuses.items())), file=out)
    print(f"demo: look around with `chatapp-mass jobs --store {store_url}`", file=out)
    return code
