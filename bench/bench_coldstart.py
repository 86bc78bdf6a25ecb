"""Benchmark the functions' cold start: what an instance pays before its first invocation does any work.

Two parts, each per handler (``functions/ingest``, ``functions/sender``, ``functions/api``):

1. **Fresh interpreters** (no cloud): ``import index`` the way FC loads it (working directory
   ``functions/<key>``, ``sys.path`` = that directory + ``shared/``, the function's environment as s.yaml sets
   it, endpoints on a closed loopback port), then a first invocation with an event no handler accepts
   (``{}``): it builds the services (``entry.handlers.services()``) and imports the handler's own modules, as
   every first invocation does, and refuses the event before any I/O. Prints, per step, the median wall and
   CPU time (CPU time suffers less from a busy machine), the peak RSS after it, and which heavy third-party
   packages it loaded (numpy, aiohttp, the SDKs...).
2. **First invocations on the local cloud** (``--no-cloud`` skips it): the local FC runs the three functions
   from s.yaml in worker processes; a CSV is uploaded (ingest -> sender), then the job is read over the api
   function's HTTP trigger (``GET /jobs/ID``); then the same again with a second CSV, on the warm instances.
   Prints per function, medians of ``--clouds`` fresh clouds: the handler import (the local FC's cold start
   record), the first invocation's duration and the second's (the same work on a warm instance: the
   difference is what the first invocation pays for building services and loading the SDKs its path uses),
   the worker's CPU time from its start to the end of round one and in round two (steadier than durations on
   a busy machine), and its peak RSS (``VmHWM``).

Figures, not assertions: the machine is shared and noisy. ``--root`` measures another checkout with this same
script; repeated, it compares them, the fresh interpreters of each root interleaved so that load hits them
alike (the figure before a change: ``--root ../main --root .``)::

    python bench/bench_coldstart.py                         # 15 interpreters per handler, and 3 clouds
    python bench/bench_coldstart.py --root ../main --root . --runs 21          # before and after a change
    python bench/bench_coldstart.py --root ../main --root . --runs 21 --no-cloud
    python bench/bench_coldstart.py --importtime sender     # the heaviest imports (python -X importtime)
    python bench/bench_coldstart.py --importtime sender --root ../main --root . --runs 15
    python bench/bench_coldstart.py --numpy                 # import tablestore with numpy, and with it hidden

``--importtime HANDLER`` runs part 1's two steps under ``python -X importtime`` (``--runs`` / 3 interpreters per
root, interleaved) and prints the self time of the imports summed per top-level package, medians (the first
column includes the interpreter's own start: ``site``, ``encodings``...). It ranks what to cut; the times
themselves are inflated by the tracing.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HANDLERS = ("ingest", "sender", "api")
FUNCTION_NAMES = {"ingest": "chatapp-mass-ingest", "sender": "chatapp-mass-sender", "api": "chatapp-mass-api"}
# Third-party packages worth naming when a step loads them (the cost of each: --importtime).
HEAVY = (
    "numpy",
    "aiohttp",
    "google.protobuf",
    "tablestore",
    "oss2",
    "aliyunsdkcore",
    "Crypto",
    "alibabacloud_credentials",
    "alibabacloud_tea_openapi",
    "darabonba",
    "Tea",
    "alibabacloud_cams20200606",
    "alibabacloud_fc20230330",
    "requests",
    "urllib3",
    "pydantic",
    "phonenumbers",
)
# What s.yaml gives every function, with loopback endpoints on a port nothing listens on (nothing connects
# while importing or building services) and STS-shaped keys in the variables FC sets.
FUNCTION_ENV = {
    "CHATAPP_STORE": "tablestore://chatapp-bench",
    "CHATAPP_TABLESTORE_ENDPOINT": "http://127.0.0.1:9",
    "CHATAPP_OSS_ENDPOINT": "http://127.0.0.1:9",
    "CHATAPP_OSS_REGION": "ap-southeast-1",
    "CHATAPP_FC_ENDPOINT": "http://127.0.0.1:9",
    "CHATAPP_CAMS_ENDPOINT": "http://127.0.0.1:9",
    "CHATAPP_BUCKET": "chatapp-bench",
    "CHATAPP_INCOMING_PREFIX": "incoming/",
    "CHATAPP_REPORTS_PREFIX": "reports/",
    "CHATAPP_QPS": "10",
    "CHATAPP_SENDER_FUNCTION": "chatapp-mass-sender",
    "CHATAPP_INGEST_FUNCTION": "chatapp-mass-ingest",
    "CHATAPP_LOG_LEVEL": "WARNING",
    "CHATAPP_API_TOKEN": "bench-token-0123456789abcdef0123456789",
    "FC_REGION": "ap-southeast-1",
    "FC_ACCOUNT_ID": "1234567890123456",
    "ALIBABA_CLOUD_REGION_ID": "ap-southeast-1",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.bench",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "bench-secret",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "bench-token",
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
}
# Run in the fresh interpreter: argv = code directory, shared directory, the HEAVY names (JSON). The first
# invocation gets an event no handler accepts ({}): it builds the services and imports the handler's own
# modules, as a real first invocation does, then refuses the event before any I/O.
CHILD = r"""
import json, resource, sys, time
code_dir, shared, heavy = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def step(started, cpu):
    return {
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "heavy": sorted(h for h in heavy if h in sys.modules),
        "modules": len(sys.modules),
    }

class Function:
    name, handler, memory_size, timeout = "bench", "index.handler", 512, 600

class Context:
    request_id, function = "bench-request", Function()

sys.path[:0] = [code_dir, shared]
started, cpu = time.perf_counter(), time.process_time()
import index
after_import = step(started, cpu)
sys.stderr.write("--- first call\n")  # where -X importtime's lines of the call begin
started, cpu = time.perf_counter(), time.process_time()
try:
    index.handler(b"{}", Context())
except Exception:
    pass
after_call = step(started, cpu)
print(json.dumps({"import": after_import, "call": after_call}))
"""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    environ.pop("PYTHONPATH", None)  # sys.path is the function's: its directory and shared/ only
    return {**environ, **FUNCTION_ENV, **(extra or {})}


def fresh_import(root: Path, key: str) -> dict[str, Any]:
    code_dir = root / "functions" / key
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(code_dir), str(root / "shared"), json.dumps(HEAVY)],
        cwd=code_dir,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{key}: the fresh interpreter failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def part_imports(roots: list[Path], runs: int) -> None:
    """Runs interleave the roots (root A, root B, A, B...): load on a shared machine hits them alike."""
    samples: dict[tuple[Path, str], list[dict[str, Any]]] = {(r, k): [] for r in roots for k in HANDLERS}
    for _ in range(runs):
        for key in HANDLERS:
            for root in roots:
                samples[root, key].append(fresh_import(root, key))
    for root in roots:
        print(
            f"Cold start of each handler, {runs} fresh interpreters (median wall and CPU time; peak RSS), "
            f"{root}, Python {sys.version.split()[0]}"
        )
        print(
            f"  {'handler':8s} {'import index':>20s} {'RSS':>7s}   {'1st call (services)':>20s} {'RSS':>7s}  "
            "heavy packages loaded by the import; by the call"
        )
        for key in HANDLERS:
            of = samples[root, key]
            last = of[-1]
            figures = {
                (step, what): statistics.median(s[step][what] for s in of) * 1000
                for step in ("import", "call")
                for what in ("seconds", "cpu")
            }
            by_import = last["import"]["heavy"]
            by_call = [h for h in last["call"]["heavy"] if h not in by_import]
            cells = [
                f"{figures[step, 'seconds']:6.0f}ms (cpu {figures[step, 'cpu']:4.0f}ms) {last[step]['rss']:4.0f}MiB"
                for step in ("import", "call")
            ]
            print(
                f"  {key:8s} {cells[0]}   {cells[1]}  {', '.join(by_import) or '-'}; {', '.join(by_call) or '-'}"
            )


def importtime_once(root: Path, key: str) -> dict[str, list[int]]:
    """One fresh interpreter under ``-X importtime``: package -> [us importing index, us in the first call]."""
    code_dir = root / "functions" / key
    command = [sys.executable, "-X", "importtime", "-c", CHILD, str(code_dir), str(root / "shared"), "[]"]
    result = subprocess.run(
        command, cwd=code_dir, env=child_env(), capture_output=True, text=True, check=False
    )
    per_package: dict[str, list[int]] = {}
    phase = 0
    for line in result.stderr.splitlines():
        if line.startswith("--- first call"):
            phase = 1
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = (part.strip() for part in line[len("import time:") :].split("|"))
        per_package.setdefault(name.split(".")[0], [0, 0])[phase] += int(self_us)
    return per_package


def importtime(roots: list[Path], key: str, runs: int, top: int = 25) -> None:
    """``python -X importtime`` of ``import index`` and the first call: the self time of the imports summed per
    top-level package, the median of ``runs`` interpreters (the roots interleaved)."""
    samples: dict[Path, list[dict[str, list[int]]]] = {root: [] for root in roots}
    for _ in range(runs):
        for root in roots:
            samples[root].append(importtime_once(root, key))
    for root in roots:
        names = {name for sample in samples[root] for name in sample}
        median = {
            name: [
                statistics.median(s.get(name, [0, 0])[phase] for s in samples[root]) / 1000
                for phase in (0, 1)
            ]
            for name in names
        }
        totals = [
            statistics.median(sum(us[phase] for us in s.values()) for s in samples[root]) / 1000
            for phase in (0, 1)
        ]
        print(
            f"python -X importtime, {key}, {root}: self time of the imports per top-level package, median of {runs} "
            "(inflated by the tracing)"
        )
        print(f"  {'package':28s} {'import index':>12s} {'first call':>11s}")
        print(f"  {'(all)':28s} {totals[0]:10.0f}ms {totals[1]:9.0f}ms")
        for name, ms in sorted(median.items(), key=lambda item: -sum(item[1]))[:top]:
            print(f"  {name:28s} {ms[0]:10.1f}ms {ms[1]:9.1f}ms")


TABLESTORE_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
started, cpu = time.perf_counter(), time.process_time()
import tablestore
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "cpu": time.process_time() - cpu,
    "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "numpy": "numpy" in sys.modules,
}))
"""


def tablestore_numpy(runs: int) -> None:
    """``import tablestore`` as installed, and with numpy hidden: what its numpy import costs a cold start.

    tablestore's flatbuffers code calls ``flatbuffers.compat.import_numpy()``, which imports numpy whenever it
    is installed (tablestore declares it as a dependency); the product never calls the numpy accessors. The
    hidden case runs on a copy of site-packages without ``numpy*`` (symbolic links), ``python -S``."""
    import sysconfig

    packages = Path(sysconfig.get_paths()["purelib"])
    with tempfile.TemporaryDirectory() as tmp:
        hidden = Path(tmp)
        for entry in packages.iterdir():
            if not entry.name.startswith("numpy"):
                (hidden / entry.name).symlink_to(entry)
        samples: dict[str, list[dict[str, Any]]] = {"installed": [], "hidden": []}
        for _ in range(runs):
            for case, path in (("installed", packages), ("hidden", hidden)):
                command = [sys.executable, "-S", "-c", TABLESTORE_CHILD, str(path)]
                result = subprocess.run(command, env=child_env(), capture_output=True, text=True, check=True)
                samples[case].append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"import tablestore, {runs} fresh interpreters each (median wall and CPU time; peak RSS)")
    for case, of in samples.items():
        wall = statistics.median(s["seconds"] for s in of) * 1000
        cpu = statistics.median(s["cpu"] for s in of) * 1000
        rss = statistics.median(s["rss"] for s in of)
        print(
            f"  numpy {case:9s} {wall:6.0f}ms (cpu {cpu:4.0f}ms) {rss:4.0f}MiB  numpy loaded: {of[-1]['numpy']}"
        )


# --- part 2: first invocations on the local cloud ------------------------------------------------------------
META = {
    "x-oss-meta-channel-type": "whatsapp",
    "x-oss-meta-template-code": "BENCH",
    "x-oss-meta-language": "en",
    "x-oss-meta-from": "8613800000000",
}


def csv_bytes(rows: int, offset: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["to", "name"])
    for i in range(rows):
        writer.writerow([f"86138{offset + i:08d}", f"N{i}"])
    return out.getvalue().encode()


def workers(root: Path) -> dict[str, dict[str, float]]:
    """CPU seconds so far (summed) and peak RSS (``VmHWM``, MiB; the largest) of the live function workers,
    by function key (a worker's working directory is its code directory)."""
    import psutil

    found: dict[str, dict[str, float]] = {}
    for process in psutil.Process().children(recursive=True):
        try:
            cwd = Path(process.cwd())
            times = process.cpu_times()
            with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
                hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        except (psutil.Error, OSError, StopIteration):
            continue
        for key in HANDLERS:
            if cwd == (root / "functions" / key).resolve():
                mine = found.setdefault(key, {"cpu": 0.0, "rss": 0.0})
                mine["cpu"] += times.user + times.system
                mine["rss"] = max(mine["rss"], hwm / 1024)
    return found


def cloud_run(root: Path, rows: int) -> dict[str, dict[str, float]]:
    """One local cloud: two rounds (upload -> ingest -> sender, then GET /jobs/ID), figures per function."""
    from chatapp_mass.entry.localcloud import LocalCloud
    from chatapp_mass.store.interface import JobStatus
    from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

    token = "bench-token-0123456789abcdef0123456789"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCloud(
            s_yaml=str(root / "s.yaml"),
            data_dir=tmp,
            cams_options={"latency": 0.0},
            function_environment={"CHATAPP_LOG_LEVEL": "WARNING", "CHATAPP_API_TOKEN": token},
        ) as cloud,
    ):
        creds = cloud.credentials
        store = TablestoreStore(
            TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token or "",
            create_tables=False,
        )
        api_url = cloud.fc.http_endpoint(FUNCTION_NAMES["api"])
        after: list[dict[str, dict[str, float]]] = []
        for round_ in range(2):
            key = f"incoming/bench-coldstart-{round_}.csv"
            source = f"oss://{cloud.bucket}/{key}"
            cloud.oss.oss2_bucket(cloud.bucket).put_object(key, csv_bytes(rows, round_ * rows), headers=META)
            deadline = time.time() + 300
            job = None
            while time.time() < deadline:
                job = next((j for j in store.list_jobs(5) if j.source == source), None)
                if job is not None and job.status is JobStatus.completed:
                    break
                time.sleep(0.1)
            assert job is not None and job.status is JobStatus.completed, job
            request = urllib.request.Request(
                f"{api_url}/jobs/{job.job_id}", headers={"Authorization": f"Bearer {token}"}
            )
            with opener.open(request, timeout=60) as reply:
                assert reply.status == 200, reply.status
            time.sleep(1.0)  # the sender's last writes after the job reads completed
            after.append(workers(root))
        store.close()
        backend = cloud.fc.backend
        cold = {c.function: c for c in backend.cold_starts}
        figures: dict[str, dict[str, float]] = {}
        for handler in HANDLERS:
            name = FUNCTION_NAMES[handler]
            runs = sorted((r for r in backend.invocations if r.function == name), key=lambda r: r.started)
            first = runs[0]
            second = next((r for r in runs if r.instance_id == first.instance_id and r is not first), None)
            start = cold.get(name)
            one, two = after[0].get(handler, {}), after[1].get(handler, {})
            figures[handler] = {
                "import": (start.import_seconds or 0.0) if start else 0.0,
                "first": first.duration,
                "second": second.duration if second else 0.0,
                "cpu_first": one.get("cpu", 0.0),
                "cpu_second": two.get("cpu", 0.0) - one.get("cpu", 0.0),
                "rss": two.get("rss", 0.0),
            }
        return figures


def part_cloud(root: Path, rows: int, repeat: int) -> None:
    os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    sys.path.insert(0, str(root / "shared"))
    runs = [cloud_run(root, rows) for _ in range(repeat)]
    print(
        f"First invocations on the local cloud, {root} (median of {repeat} clouds; {rows:,}-row CSV: "
        "ingest -> sender, then GET /jobs/ID on the api function; then the same on the warm instances)"
    )
    print(
        f"  {'function':8s} {'import':>7s} {'1st invocation':>15s} {'2nd (warm)':>11s} "
        f"{'worker CPU: start to 1st done':>30s} {'2nd':>7s} {'peak RSS':>9s}"
    )
    for handler in HANDLERS:

        def median(what: str, handler: str = handler) -> float:
            return statistics.median(run[handler][what] for run in runs)

        print(
            f"  {handler:8s} {median('import') * 1000:5.0f}ms {median('first') * 1000:13.0f}ms "
            f"{median('second') * 1000:9.0f}ms {median('cpu_first') * 1000:28.0f}ms "
            f"{median('cpu_second') * 1000:5.0f}ms {median('rss'):6.0f}MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root", action="append", help="a checkout to measure; repeat to compare them (default: this one)"
    )
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per handler (default 15)")
    parser.add_argument(
        "--rows", type=int, default=200, help="rows of each CSV in the cloud part (default 200)"
    )
    parser.add_argument(
        "--no-cloud", action="store_true", help="skip the first invocations on the local cloud"
    )
    parser.add_argument("--clouds", type=int, default=3, help="local clouds in the cloud part (default 3)")
    parser.add_argument("--cloud-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--importtime", metavar="HANDLER", choices=HANDLERS, help="only the heaviest imports")
    parser.add_argument("--numpy", action="store_true", help="only: import tablestore with and without numpy")
    args = parser.parse_args()
    roots = [Path(r).resolve() for r in args.root or [Path(__file__).resolve().parents[1]]]
    if args.importtime:
        importtime(roots, args.importtime, max(1, args.runs // 3))
        return
    if args.numpy:
        tablestore_numpy(args.runs)
        return
    if args.cloud_only:
        part_cloud(roots[0], args.rows, args.clouds)
        return
    part_imports(roots, args.runs)
    if not args.no_cloud:
        for root in roots:  # one process each: the bench side imports the emulators from that root
            options = ["--root", str(root), "--rows", str(args.rows), "--clouds", str(args.clouds)]
            subprocess.run([sys.executable, __file__, *options, "--cloud-only"], check=True)


if __name__ == "__main__":
    main()
