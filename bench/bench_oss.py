"""Benchmark streaming a recipient file out of OSS through the local OSS (real ``oss2`` SDK, real HTTP).

Uploads an object of N MiB (CSV-like text), then reads it back through the product's ``OssClient.open``
(the stream the CSV reader consumes) in 64 KiB reads, and hashes it as job identity does; a local-file read
of the same bytes is the baseline. Also prints how much the peak RSS grew while streaming, which shows the
object is streamed, not held whole. Figures, not assertions.

    python bench/bench_oss.py          # 64 MiB
    python bench/bench_oss.py 256
"""

from __future__ import annotations

import hashlib
import os
import resource
import sys
import tempfile
import time

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared"))

from alibaba_localcloud.oss import LocalOss  # noqa: E402
from chatapp_mass.adapters.oss import OssClient, OssLocation  # noqa: E402

CHUNK = 64 * 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_file(path: str, mib: int) -> None:
    line = b"8613812345678,Ana Maria,CODE-12345\n"
    block = line * (1024 * 1024 // len(line) + 1)
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(block[: 1024 * 1024])


def drain(stream: object) -> tuple[int, str]:
    digest = hashlib.sha256()
    total = 0
    while True:
        chunk = stream.read(CHUNK)  # type: ignore[attr-defined]
        if not chunk:
            return total, digest.hexdigest()
        total += len(chunk)
        digest.update(chunk)


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    rss_start = peak_rss_mib()
    with tempfile.TemporaryDirectory() as tmp, LocalOss(data_dir=os.path.join(tmp, "oss")) as oss:
        path = os.path.join(tmp, "list.csv")
        write_file(path, mib)
        bucket = oss.oss2_bucket("chatapp-mass")
        started = time.perf_counter()
        bucket.put_object_from_file("lists/bench.csv", path)
        upload = time.perf_counter() - started

        started = time.perf_counter()
        with open(path, "rb") as local:
            local_bytes, local_sha = drain(local)
        local_seconds = time.perf_counter() - started

        creds = oss.credentials
        client = OssClient(
            oss.endpoint,
            region=creds.region_id,
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token or "",
        )
        rss_before = peak_rss_mib()
        started = time.perf_counter()
        with client.open(OssLocation("chatapp-mass", "lists/bench.csv")) as stream:
            oss_bytes, oss_sha = drain(stream)
        oss_seconds = time.perf_counter() - started
        rss_growth = peak_rss_mib() - rss_before
        assert (oss_bytes, oss_sha) == (local_bytes, local_sha), "the streamed object differs from the file"

    size = oss_bytes / 2**20
    print(
        f"OSS streaming read through the local OSS, {size:,.0f} MiB object, {CHUNK // 1024} KiB reads, SHA-256"
    )
    print(f"  upload (PutObject):        {size / upload:8,.0f} MiB/s")
    print(f"  OssClient.open stream:     {size / oss_seconds:8,.0f} MiB/s  ({oss_seconds:.2f} s)")
    print(f"  local file (baseline):     {size / local_seconds:8,.0f} MiB/s  ({local_seconds:.2f} s)")
    print(f"  ratio local/OSS:           {oss_seconds / local_seconds:8.1f}x")
    print(
        f"  peak RSS: {rss_start:.0f} MiB at start, {rss_before:.0f} MiB after upload, grew {rss_growth:.1f} MiB "
        f"while streaming (the object is {size:,.0f} MiB)"
    )


if __name__ == "__main__":
    main()
