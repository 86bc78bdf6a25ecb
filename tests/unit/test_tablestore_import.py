"""``store.tablestore.import_sdk``: the Tablestore SDK without numpy (see its docstring), and still working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"

_CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore, import_sdk
import_sdk()
without = "numpy" not in sys.modules
from alibaba_localcloud.tablestore import LocalTablestore
from chatapp_mass.store.interface import JobRecord
with LocalTablestore() as server:
    creds = server.credentials
    store = TablestoreStore(
        TablestoreSettings(endpoint=server.endpoint, instance=server.instance_name, table_prefix="imp_"),
        access_key_id=creds.access_key_id, access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
    )
    store.create_job(JobRecord(job_id="j1", source="s.csv", options={}, intake={}, content_sha256="x"))
    found = store.get_job("j1") is not None
import importlib.machinery
print(json.dumps({"without_numpy": without, "round_trip": found,
                  "numpy_found_after": importlib.machinery.PathFinder.find_spec("numpy") is not None}))
"""


def test_the_sdk_loads_without_numpy_and_works() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    }
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(SHARED)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=300,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"without_numpy": True, "round_trip": True, "numpy_found_after": True}
