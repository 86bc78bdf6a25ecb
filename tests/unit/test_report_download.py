"""``GET /jobs/{id}/report`` of any size: a finished job's report object over ``CHATAPP_REPORT_INLINE_MAX``
is answered 302 to a V4-presigned OSS GET URL (300 s) that a plain HTTP client downloads without credentials;
a small one is streamed as before. The local OSS verifies the URL's signature and expiry as OSS does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chatapp_mass.entry.http_api import ApiSettings
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.services.receipts import ReceiptService
from chatapp_mass.services.report import COLUMNS, delivery_fingerprint
from chatapp_mass.store.features import open_receipts

from test_console import Browser
from test_http_api import OPTIONS, Api, recipients

MIB = 1024 * 1024

HEADER = ",".join(COLUMNS).encode() + b"\n"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024
        yield local


def finished_job(api: Api, seed: int) -> str:
    status, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(20, seed=seed)})
    assert status == 202, body
    api.world.run_senders()
    assert api.world.store.get_job(body["job_id"]).status.value == "completed"
    return str(body["job_id"])


def big_report(api: Api, job_id: str) -> bytes:
    """The job's report object replaced by 2 MiB of report-shaped bytes (as a 35k-row job's would be), with
    the receipt fingerprint its job has now (as the finalizer writes it: no receipt changed since)."""
    line = b"1,8613800000000,sent,gm-0000000000,OK,,,,,\n"
    data = HEADER + line * (2 * MIB // len(line) + 1)
    job = api.world.store.get_job(job_id)
    fingerprint = delivery_fingerprint(api.world.store, job)
    api.world.bucket.put_object(
        f"reports/api/{job_id}.report.csv", data, headers={"x-oss-meta-delivery": fingerprint}
    )
    return data


def test_a_big_report_redirects_to_a_presigned_url_that_downloads_the_exact_bytes(cloud: LocalCloud) -> None:
    api = Api(cloud)
    job_id = finished_job(api, seed=61)
    data = big_report(api, job_id)
    response = api.call("GET", f"/jobs/{job_id}/report")
    assert response["statusCode"] == 302, response["body"]
    location = response["headers"]["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["x-oss-signature-version"] == ["OSS4-HMAC-SHA256"] and query["x-oss-expires"] == ["300"]
    assert "x-oss-security-token" in query  # the local cloud's credentials are STS ones
    download = requests.get(location, timeout=30)  # no credentials: the URL is the permission
    assert download.status_code == 200 and download.content == data
    assert f'filename="{job_id}.report.csv"' in download.headers["Content-Disposition"]


def test_a_big_report_is_written_again_once_receipts_changed_it(cloud: LocalCloud) -> None:
    """Receipts come for days after a job finished: the object is written again with them before the URL is
    given, once per change (the fingerprint of the job's receipt states, kept in the object's metadata)."""
    api = Api(cloud)
    job_id = finished_job(api, seed=66)
    stale = big_report(api, job_id)
    received = [m for m in cloud.cams.backend.received if m.to.startswith("8613866")]
    service = ReceiptService(open_receipts(api.world.store))
    report = {"MessageId": "m", "TaskId": received[0].task_id, "To": received[0].to, "Status": "Read",
              "Timestamp": 1_765_000_000_000}  # fmt: skip
    assert service.ingest([report]).changed == 1
    location = api.call("GET", f"/jobs/{job_id}/report")["headers"]["Location"]
    fresh = requests.get(location, timeout=30).text
    assert fresh.encode() != stale and len(fresh.splitlines()) == 21
    assert f",{received[0].to},sent," in fresh and ",read,,,2025-12-06T05:46:40Z" in fresh
    key = f"reports/api/{job_id}.report.csv"
    etag = api.world.bucket.head_object(key).etag
    api.call("GET", f"/jobs/{job_id}/report")
    assert api.world.bucket.head_object(key).etag == etag  # nothing changed since: not written again


def test_a_tampered_or_expired_url_is_refused(cloud: LocalCloud) -> None:
    api = Api(cloud)
    job_id = finished_job(api, seed=62)
    big_report(api, job_id)
    location = api.call("GET", f"/jobs/{job_id}/report")["headers"]["Location"]
    other_key = location.replace(f"/{job_id}.report.csv", f"/{job_id}.summary.json")
    for tampered in (location.replace("x-oss-expires=300", "x-oss-expires=900"), other_key):
        refused = requests.get(tampered, timeout=30)
        assert refused.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in refused.text
    backend = cloud.oss.backend
    real_clock = backend.clock
    backend.clock = lambda: time.time() + 301  # the local OSS's clock, 301 s on
    try:
        expired = requests.get(location, timeout=30)
    finally:
        backend.clock = real_clock
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code>" in expired.text and "Request has expired." in expired.text


def test_a_small_report_is_streamed_as_csv(cloud: LocalCloud) -> None:
    api = Api(cloud)
    job_id = finished_job(api, seed=63)
    rows = api.report(job_id)  # asserts 200 text/csv
    assert len(rows) == 20


def test_the_threshold_is_a_setting(cloud: LocalCloud) -> None:
    assert ApiSettings.from_env({"CHATAPP_REPORT_INLINE_MAX": "10"}).report_inline_max == 10
    assert ApiSettings.from_env({}).report_inline_max == MIB
    api = Api(cloud)
    api.api.api = ApiSettings(token=api.api.api.token, report_inline_max=100)
    job_id = finished_job(api, seed=64)
    assert api.call("GET", f"/jobs/{job_id}/report")["statusCode"] == 302  # its 20 rows are > 100 bytes


def test_the_consoles_report_link_follows_the_redirect(cloud: LocalCloud) -> None:
    api = Api(cloud)
    job_id = finished_job(api, seed=65)
    data = big_report(api, job_id)
    browser = Browser(api)
    browser.sign_in()
    page = browser.request("GET", f"/console/jobs/{job_id}")["body"]
    assert f'href="/console/jobs/{job_id}/report"' in page
    link: dict[str, Any] = browser.request("GET", f"/console/jobs/{job_id}/report")
    assert link["statusCode"] == 302
    assert requests.get(link["headers"]["Location"], timeout=30).content == data
