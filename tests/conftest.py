"""Shared test setup: everything stays on loopback; the credentials chain never probes the metadata address."""

from __future__ import annotations

import os
import sys

# The environment and sys.path are set first (the SDKs read the environment when imported, and
# sys.path finds the imports): hence the noqa: E402 of the imports below
sys.path.insert(0, os.path.dirname(__file__))  # tests/oracle.py: helpers shared by test files

os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_proxy, None)


# --- local CAMS (alibaba_localcloud.cams) -------------------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture
def local_cams():  # type: ignore[no-untyped-def]
    """A started local CAMS on 127.0.0.1 (port 0, no latency, 10 calls/s); stopped after the test."""
    from alibaba_localcloud.cams import LocalCams

    with LocalCams(latency=0.0) as cams:
        yield cams


def pytest_configure(config: pytest.Config) -> None:
    from progress import register  # tests/progress.py: a line per finished file under pytest-xdist

    register(config)
