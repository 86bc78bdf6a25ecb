"""A cold start loads only what the handler's path uses: checked on ``sys.modules``, never on a clock.

Each handler is imported in a fresh interpreter the way FC loads it (working directory ``functions/<key>``,
``sys.path`` = that directory + ``shared/``, the function's environment with endpoints on a closed loopback
port), then called once with an event every handler refuses (``{}``): that first invocation builds the
services (``entry.handlers.services()``) and imports the handler's own modules, and stops before any I/O.
``bench/bench_coldstart.py`` prints what this saves in time and memory; this test keeps it saved on a busy
machine, where a timed assertion would only be noise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
HANDLERS = ("ingest", "sender", "api")

ENVIRONMENT = {  # s.yaml's variables, with endpoints nothing listens on: nothing may connect
    "CHATAPP_STORE": "tablestore://chatapp-coldstart",
    "CHATAPP_TABLESTORE_ENDPOINT": "http://127.0.0.1:9",
    "CHATAPP_OSS_ENDPOINT": "http://127.0.0.1:9",
    "CHATAPP_OSS_REGION": "ap-southeast-1",
    "CHATAPP_FC_ENDPOINT": "http://127.0.0.1:9",
    "CHATAPP_CAMS_ENDPOINT": "http://127.0.0.1:9",
    "CHATAPP_BUCKET": "chatapp-coldstart",
    "CHATAPP_LOG_LEVEL": "CRITICAL",
    "CHATAPP_API_TOKEN": "coldstart-token-0123456789abcdef0123",
    "FC_REGION": "ap-southeast-1",
    "FC_ACCOUNT_ID": "1234567890123456",
    "ALIBABA_CLOUD_REGION_ID": "ap-southeast-1",
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.coldstart",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "coldstart-secret",
    "ALIBABA_CLOUD_SECURITY_TOKEN": "coldstart-token-0123456789abcdef0123",
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
}

PROBE = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import index
imported = sorted(sys.modules)
try:
    index.handler(b"{}", None)
except Exception as error:  # the sender and the ingest refuse {} by raising, the api by a 400
    refused = type(error).__name__
else:
    refused = "reply"
print(json.dumps({"imported": imported, "called": sorted(sys.modules), "refused": refused}))
"""

# The packages only some paths use: each is loaded by the first call that needs it, never by a cold start.
SDKS = (
    "oss2",  # OSS: reading an uploaded file, writing a report
    "aliyunsdkcore",  # oss2's
    "Crypto",  # oss2's
    "alibabacloud_cams20200606",  # CAMS: sending, reconciling
    "alibabacloud_fc20230330",  # FC: invoking a function
    "alibabacloud_tea_openapi",  # the two above
    "darabonba",
    "Tea",
    "alibabacloud_credentials",  # the default credential chain: the SDK clients, OSS without explicit keys
    "requests",  # the SDKs'; the product's own use (classifying a failed call) comes after one
    "phonenumbers",  # reading numbers: planning a file
)
# A handler never loads another function's service (nor the HTTP API unless it is the api function).
NOT_FOR = {
    "ingest": ("chatapp_mass.entry.http_api", "chatapp_mass.services.sender", "chatapp_mass.services.timer"),
    "sender": ("chatapp_mass.entry.http_api", "chatapp_mass.services.ingest", "chatapp_mass.services.timer"),
    "api": ("chatapp_mass.services.ingest", "chatapp_mass.services.sender"),
}
OWN = {
    "ingest": "chatapp_mass.services.ingest",
    "sender": "chatapp_mass.services.sender",
    "api": "chatapp_mass.entry.http_api",
}


def _loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return sorted({p for p in packages for m in modules if m == p or m.startswith(p + ".")})


@pytest.fixture(scope="module")
def cold() -> dict[str, dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    environ.pop("PYTHONPATH", None)  # the function's sys.path only
    found = {}
    for key in HANDLERS:
        code_dir = ROOT / "functions" / key
        result = subprocess.run(
            [sys.executable, "-c", PROBE, str(code_dir), str(SHARED)],
            cwd=code_dir,
            env={**environ, **ENVIRONMENT},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        found[key] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize("key", HANDLERS)
def test_importing_a_handler_loads_the_logs_and_the_standard_library_only(
    key: str, cold: dict[str, dict[str, Any]]
) -> None:
    imported = cold[key]["imported"]
    third_party = sorted(  # private helpers (_sysconfigdata_..., the interpreter's own) are not packages
        {m.split(".")[0] for m in imported if not m.startswith("_")}
        - set(sys.stdlib_module_names)
        - {"chatapp_mass", "index", "sitecustomize", "usercustomize"}
    )
    assert third_party == [], f"importing functions/{key}/index.py loads {third_party}"
    deeper = [m for m in imported if m.split(".")[1:2] in (["store"], ["adapters"], ["services"])]
    assert deeper == [], f"importing functions/{key}/index.py loads {deeper}: build them on first use"
    assert "chatapp_mass.entry.bootstrap" not in imported


@pytest.mark.parametrize("key", HANDLERS)
def test_the_first_invocation_builds_the_services_and_loads_no_sdk_its_path_may_not_use(
    key: str, cold: dict[str, dict[str, Any]]
) -> None:
    called = cold[key]["called"]
    # the services were built (the store's SDK is loaded: every invocation reads the store), and the
    # handler's own service was imported: the probe is not vacuous
    assert "chatapp_mass.entry.bootstrap" in called and "tablestore" in called
    assert OWN[key] in called
    early = _loaded(called, SDKS)
    assert early == [], f"{key}'s first invocation loads {early} before its path needs them"
    others = [m for m in NOT_FOR[key] if m in called]
    assert others == [], f"{key} loads another function's modules: {others}"
    # numpy is loaded, by tablestore (its flatbuffers code imports numpy whenever it is installed; tablestore
    # declares it as a dependency). Not avoidable without patching the SDK or leaving a declared dependency
    # out of the package: see bench/bench_coldstart.py and README "Figures".
