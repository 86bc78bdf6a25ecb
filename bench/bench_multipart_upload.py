"""Benchmark a large upload as users send it: a ~50 MB CSV through ``oss2.resumable_upload`` (multipart) into
``incoming/`` of the local cloud, then the job it starts (ingest -> async senders -> CAMS) to its report.

The CSV is the project's sample (``chatapp_mass.entry.sample``: numbers of several countries in the usual
notations, ~3% invalid rows, ~3% duplicates, a few rows without a template value), written to a file in
a stream. Prints:

- the upload: its time and throughput, parts and part size, the object's ETag (``<hex>-<parts>``);
- upload start to the first accepted send, upload end to the job's completion (report written);
- rows, valid / invalid / duplicate, and the summary's sent / failed / uncertain counts;
- peak RSS: this process (the local OSS, Tablestore, CAMS and FC run in it, plus the uploading client)
  sampled before, during the upload and during the job; the function workers (largest one, after exit).

The local CAMS answers in 50 ms +-50%. Figures, not assertions.

    python bench/bench_multipart_upload.py              # 50 MB, parts of 5 MiB, 4 upload threads
    python bench/bench_multipart_upload.py 10 1         # 10 MB, parts of 1 MiB
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import time

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "shared"))

import oss2  # noqa: E402
import psutil  # noqa: E402

from chatapp_mass.entry.localcloud import LocalCloud  # noqa: E402
from chatapp_mass.entry.sample import write_sample_csv  # noqa: E402
from chatapp_mass.store.interface import JobStatus  # noqa: E402
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore  # noqa: E402

META = {
    "Content-Type": "text/csv",
    "x-oss-meta-channel-type": "whatsapp",
    "x-oss-meta-template-code": "BENCH",
    "x-oss-meta-language": "en",
    "x-oss-meta-from": "8613800000000",
}


def write_csv(path: str, megabytes: float) -> int:
    """A sample CSV of about ``megabytes`` MB; returns its data rows."""
    import io

    probe = io.StringIO()
    write_sample_csv(probe, 2000, seed=7)
    per_row = len(probe.getvalue().encode()) / 2000
    rows = int(megabytes * 1024 * 1024 / per_row)
    with open(path, "w", encoding="utf-8", newline="") as out:
        write_sample_csv(out, rows, seed=7)
    return rows


class RssSampler:
    """Peak resident set size of this process, sampled every 50 ms while running."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    megabytes = float(sys.argv[1]) if len(sys.argv) > 1 else 50.0
    part_mib = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    part_size = int(part_mib * 1024 * 1024)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "users list.csv")
        started = time.time()
        rows = write_csv(path, megabytes)
        size = os.path.getsize(path)
        print(
            f"Multipart upload to a job on the local cloud: {rows:,}-row sample CSV ({size / 2**20:.1f} MiB, "
            f"written in {time.time() - started:.0f} s), parts of {part_mib:g} MiB, 4 upload threads, "
            "CAMS 50 ms +-50%"
        )
        with LocalCloud(
            s_yaml=os.path.join(ROOT, "s.yaml"),
            data_dir=os.path.join(tmp, "cloud"),
            cams_options={"latency": 0.05, "latency_jitter": 0.5},
            function_environment={"CHATAPP_LOG_LEVEL": "WARNING"},
        ) as cloud:
            creds = cloud.credentials
            store = TablestoreStore(
                TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
                access_key_id=creds.access_key_id,
                access_key_secret=creds.access_key_secret,
                security_token=creds.security_token or "",
            )
            bucket = cloud.oss.oss2_bucket(cloud.bucket)
            key = "incoming/users list.csv"
            source = f"oss://{cloud.bucket}/{key}"
            with RssSampler() as rss:
                upload_started = time.time()
                result = oss2.resumable_upload(
                    bucket,
                    key,
                    path,
                    store=oss2.ResumableStore(root=tmp),
                    multipart_threshold=part_size,
                    part_size=part_size,
                    num_threads=4,
                    headers=META,
                )
                uploaded = time.time()
                upload_peak, rss.peak = rss.peak, 0
                job = None
                while time.time() - uploaded < 3600:
                    job = next((j for j in store.list_jobs(5) if j.source == source), None)
                    if job is not None and job.status in (
                        JobStatus.completed,
                        JobStatus.failed,
                        JobStatus.stopped,
                    ):
                        break
                    time.sleep(0.5)
                done = time.time()
            assert job is not None, "no job was created"
            accepted = sorted(a.arrived_at for a in cloud.cams.backend.attempts if a.accepted)
            requests = [r.operation for r in cloud.oss.backend.requests]
            summary: dict[str, object] = {}
            if job.status is JobStatus.completed:
                stem = key[len("incoming/") : -len(".csv")]
                summary = json.loads(
                    bucket.get_object(f"reports/{stem}.{job.job_id[:12]}.summary.json").read()
                )
            stats = cloud.fc.backend.stats()["functions"]
            store.close()
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # workers are reaped by now
    upload_s = uploaded - upload_started
    print(
        f"  upload:   {upload_s:5.1f} s ({size / 2**20 / upload_s:5.1f} MiB/s), {requests.count('UploadPart')} parts, "
        f"ETag {result.etag}"
    )
    first = f"{accepted[0] - upload_started:5.1f} s" if accepted else "never"
    print(
        f"  job:      {job.status.value}; upload start -> first send {first}; upload end -> done "
        f"{done - uploaded:5.1f} s"
    )
    print(
        f"  rows:     {job.total_rows:,} (valid {job.valid:,}, invalid {job.invalid:,}, duplicate {job.duplicate:,}), "
        f"{job.batches} batches"
    )
    if summary:
        print(
            "  summary:  "
            + ", ".join(
                f"{name} {summary.get(name, 0):,}"
                for name in ("sent", "failed", "uncertain", "skipped")
                if name in summary
            )
        )
    print(
        f"  sends:    {len(cloud.cams.backend.received):,} recipients received by CAMS in "
        f"{len(cloud.cams.backend.attempts)} calls"
    )
    print(
        f"  GB-s:     ingest {stats['chatapp-mass-ingest']['gb_seconds']:.1f}, "
        f"sender {stats['chatapp-mass-sender']['gb_seconds']:.1f}"
    )
    print(
        f"  peak RSS: this process (local cloud + uploader) {rss.start / 2**20:.0f} MiB before the upload, "
        f"{upload_peak / 2**20:.0f} MiB during it (the local OSS streams parts to disk), "
        f"{max(rss.peak, upload_peak) / 2**20:.0f} MiB during the job (the local CAMS and Tablestore keep every "
        f"message and row in memory); largest function worker {children / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
