"""``chatapp-mass demo``: the whole product on loopback, no Alibaba account needed.

Starts the local CAMS (signature, STS token, 10 calls/s and latency like the service), writes a sample CSV
(valid numbers of several countries in several notations, invalid rows, duplicates, per-recipient params),
sends it through the same code path as ``chatapp-mass send``, and writes the report.

``--cloud`` runs the deployed path instead, on the whole local cloud: the CSV is uploaded to the local OSS
under ``incoming/``; its event triggers the **ingest** function (run by the local FC from s.yaml), which
plans the job into the local Tablestore and invokes **sender** asynchronously; senders call the local CAMS;
the report and summary land in the bucket under ``reports/`` and are copied to ``--dir``.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from collections import Counter
from typing import IO, Any

from chatapp_mass.entry.bootstrap import build_services, cams_client_for
from chatapp_mass.entry.sample import write_sample_csv
from chatapp_mass.runtime import env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", default="demo-out", help="where the sample CSV, state and report go (default %(default)s)"
    )
    parser.add_argument("--rows", type=int, default=20_000, help="sample rows (default %(default)s)")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.25,
        help="local CAMS reply latency in seconds, ±50%% (default %(default)s)",
    )
    parser.add_argument("--qps", type=int, default=10, help="attempts per second (default %(default)s)")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="recipients per call (default %(default)s)"
    )
    parser.add_argument(
        "--cloud",
        action="store_true",
        help="the serverless path: OSS upload -> ingest -> senders on the local FC (needs s.yaml "
        "and functions/, i.e. a checkout of the project)",
    )
    parser.add_argument(
        "--s-yaml", default="s.yaml", help="with --cloud: the Serverless Devs file (default s.yaml)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="with --cloud: give up waiting for the job after this many seconds",
    )


def run(args: argparse.Namespace, *, out: IO[str], err: IO[str]) -> int:
    if args.cloud:
        return run_cloud(args, out=out, err=err)
    from alibaba_localcloud.cams import LocalCams
    from chatapp_mass.entry.send import run_send, send_parser

    os.environ.setdefault(env.ALIBABA_CLOUD_ECS_METADATA_DISABLED, "true")
    os.makedirs(args.dir, exist_ok=True)
    csv_path = os.path.join(args.dir, "recipients.csv")
    report_path = os.path.join(args.dir, "report.csv")
    store_url = "sqlite:///" + os.path.join(args.dir, "state.db")
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        write_sample_csv(handle, args.rows)
    print(f"demo: wrote {args.rows:,} sample rows to {csv_path}", file=err)

    with LocalCams(latency=args.latency, latency_jitter=0.5) as cams:
        print(
            f"demo: local CAMS listening on {cams.endpoint} (signature and STS token checked, "
            f"{cams.backend.qps_limit} calls/s)",
            file=err,
        )
        client = cams_client_for(cams.endpoint, cams.credentials)
        services = build_services(store_url=store_url, cams=client)
        send_args = send_parser().parse_args(
            [
                csv_path,
                "--channel-type",
                "whatsapp",
                "--template-code",
                "DEMO_WELCOME",
                "--language",
                "en",
                "--from",
                "8613800000000",
                "--store",
                store_url,
                "--report",
                report_path,
                "--qps",
                str(args.qps),
                "--batch-size",
                str(args.batch_size),
                "--new-job",
                "--yes",  # unattended: the demo shows no preview and asks nothing
            ]
        )
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
        f"{len(received):,} distinct numbers, {twice} of them more than once",
        file=out,
    )
    print(
        f"demo: report {report_path}: " + ", ".join(f"{n:,} {s}" for s, n in sorted(statuses.items())),
        file=out,
    )
    print(f"demo: look around with `{runnable_command()} jobs --store {store_url}`", file=out)
    print(
        f"demo: or in a browser: `make console` prints the web console's address and token; upload {csv_path} "
        "on its New job page",
        file=out,
    )
    return code


def run_cloud(args: argparse.Namespace, *, out: IO[str], err: IO[str]) -> int:
    import json
    import time

    from chatapp_mass.adapters.oss import OssLocation
    from chatapp_mass.core.errors import OptionsError
    from chatapp_mass.entry.localcloud import LocalCloud
    from chatapp_mass.store.interface import BatchStatus, JobStatus
    from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

    if not os.path.isfile(args.s_yaml):
        raise OptionsError(
            f"--s-yaml {args.s_yaml}: no such file; run `demo --cloud` from the project's root"
        )
    os.environ.setdefault(env.ALIBABA_CLOUD_ECS_METADATA_DISABLED, "true")
    os.makedirs(args.dir, exist_ok=True)
    csv_path = os.path.join(args.dir, "recipients.csv")
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        write_sample_csv(handle, args.rows)
    print(f"demo: wrote {args.rows:,} sample rows to {csv_path}", file=err)
    cams_options = {"latency": args.latency, "latency_jitter": 0.5 if args.latency else 0.0}
    function_env = {env.CHATAPP_QPS: str(args.qps), env.CHATAPP_BATCH_SIZE: str(args.batch_size)}
    with LocalCloud(
        s_yaml=args.s_yaml, cams_options=cams_options, function_environment=function_env
    ) as cloud:
        local_fc = cloud.fc
        assert local_fc is not None  # given an s.yaml, the local cloud serves its functions
        creds = cloud.credentials
        print(
            f"demo: local cloud up: CAMS {cloud.cams.endpoint}, OSS {cloud.oss.endpoint}, Tablestore "
            f"{cloud.tablestore.endpoint}, FC {local_fc.endpoint} ({', '.join(local_fc.backend.function_names)})",
            file=err,
        )
        store = TablestoreStore(
            TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token or "",
            create_tables=False,
        )  # the cloud made them
        key = f"incoming/demo-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        meta = {
            "x-oss-meta-channel-type": "whatsapp",
            "x-oss-meta-template-code": "DEMO_WELCOME",
            "x-oss-meta-language": "en",
            "x-oss-meta-from": "8613800000000",
        }
        started = time.time()
        cloud.oss.oss2_bucket(cloud.bucket).put_object_from_file(key, csv_path, headers=meta)
        source = OssLocation(cloud.bucket, key).url
        print(
            f"demo: uploaded {source} (options in its x-oss-meta-* metadata); waiting for the functions",
            file=err,
        )
        job, first_send, last_line = None, None, 0.0
        while time.time() - started < args.timeout:
            if job is None:
                job = next((j for j in store.list_jobs(20) if j.source == source), None)
            else:
                job = store.get_job(job.job_id)
            attempts = len(cloud.cams.backend.attempts)
            if first_send is None and attempts:
                first_send = time.time() - started
            if job is not None and time.time() - last_line >= 1.0:
                totals = store.batch_totals(job.job_id)
                sent = totals.get(BatchStatus.sent, (0, 0))[1]
                print(
                    f"demo: job {job.job_id[:12]} {job.status.value}: {sent:,}/{job.valid:,} sent, "
                    f"{attempts} CAMS calls, {len(local_fc.backend.invocations)} function invocations",
                    file=err,
                )
                last_line = time.time()
            if job is not None and job.status in (JobStatus.completed, JobStatus.failed, JobStatus.stopped):
                break
            time.sleep(0.2)
        local_fc.backend.wait_idle(30)
        elapsed = time.time() - started
        if job is None or job.status is not JobStatus.completed:
            print(
                f"demo: the job did not complete in {args.timeout:g} s "
                f"({job.status.value + ': ' + job.reason if job else 'no job was created'}); see the "
                "function logs above",
                file=out,
            )
            return 1
        bucket = cloud.oss.oss2_bucket(cloud.bucket)
        reports = [o.key for o in bucket.list_objects_v2(prefix="reports/").object_list]
        for name in reports:
            bucket.get_object_to_file(name, os.path.join(args.dir, os.path.basename(name)))
        summary: dict[str, Any] = next(
            (json.loads(bucket.get_object(k).read()) for k in reports if k.endswith(".summary.json")), {}
        )
        received = cloud.cams.backend.received_count_by_number()
        fc = local_fc.backend
        print(
            f"demo: {summary.get('sent', 0):,} sent, {summary.get('failed', 0):,} failed, "
            f"{summary.get('uncertain', 0):,} uncertain, {job.invalid:,} invalid, {job.duplicate:,} duplicate "
            f"({job.total_rows:,} rows) in {elapsed:.1f} s; first send {first_send or 0:.1f} s after the upload",
            file=out,
        )
        print(
            f"demo: local CAMS saw {len(cloud.cams.backend.attempts)} calls (at most "
            f"{cloud.cams.backend.max_calls_in_any_window(1.0)} in any 1 s window), {len(received):,} distinct "
            f"numbers, {sum(1 for n in received.values() if n > 1)} of them more than once",
            file=out,
        )
        print(f"demo: local FC ran {len(fc.invocations)} invocations, {fc.gb_seconds():.1f} GB-s", file=out)
        print(
            f"demo: reports in oss://{cloud.bucket}/reports/ copied to {args.dir}/: "
            + ", ".join(os.path.basename(k) for k in reports),
            file=out,
        )
        store.close()
    return 0


def runnable_command(path: str | None = None, python: str = sys.executable) -> str:
    """How to run ``chatapp-mass`` from here: its bare name only where the shell finds this very install (an
    activated virtualenv, ``pip install`` on PATH); else the script beside this Python, relative to the
    working directory (``.venv/bin/chatapp-mass`` after ``make setup`` in a fresh clone); else ``python -m``."""
    script = os.path.join(os.path.dirname(python), "chatapp-mass")
    found = shutil.which("chatapp-mass", path=path)
    if found and os.path.exists(script) and os.path.samefile(found, script):
        return "chatapp-mass"
    if os.path.exists(script):
        relative = os.path.relpath(script)
        return script if relative.startswith("..") else relative
    return f"{python} -m chatapp_mass"
