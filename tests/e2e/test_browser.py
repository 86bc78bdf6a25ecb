"""A person watching a send: headless Chromium (Debian's chromium + chromedriver, driven by Selenium) opens
the job's page from the api function's HTTP trigger on the local cloud and reads its progress, which
refreshes itself while the job runs and stops refreshing when it is done."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from chatapp_mass.entry.localcloud import LocalCloud

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "browser-token-7f3a9c"
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (make test installs them)",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    profile = tempfile.mkdtemp(prefix="chatapp-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER or ""), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_job_page_shows_progress_and_refreshes_until_done(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path / "cloud"),
        cams_options={"latency": 0.4, "latency_jitter": 0.2},
        function_environment={"CHATAPP_BATCH_SIZE": "50", "CHATAPP_API_TOKEN": TOKEN},
    ) as cloud:
        base = cloud.fc.http_endpoint("chatapp-mass-api")
        recipients = [{"To": f"+86 137{i:08d}", "TemplateParams": {"name": f"N{i}"}} for i in range(1500)]
        session = requests.Session()
        session.trust_env = False
        created = session.post(
            f"{base}/jobs",
            json={"options": OPTIONS, "recipients": recipients},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ).json()
        browser.get(f"{base}/jobs/{created['job_id']}?token={TOKEN}")
        assert created["job_id"][:12] in browser.find_element(By.TAG_NAME, "h1").text
        seen: list[tuple[str, int, int]] = []
        deadline = time.time() + 90
        while time.time() < deadline:
            try:  # the page reloads itself every 2 s: read what is there now
                status = browser.find_element(By.ID, "status").text
                share = int(browser.find_element(By.ID, "progress").get_attribute("aria-valuenow"))
                sent = int(browser.find_element(By.ID, "sent").text.replace(",", ""))
            except Exception:  # noqa: BLE001 - caught mid-reload
                time.sleep(0.1)
                continue
            seen.append((status, share, sent))
            if status == "completed":
                break
            time.sleep(0.3)
        statuses = [s for s, _, _ in seen]
        assert statuses and statuses[-1] == "completed", seen[-5:]
        assert "running" in statuses, "the page never showed the job running"
        assert seen[-1][1:] == (100, 1500)
        progress = [share for status, share, _ in seen if status == "running"]
        assert progress == sorted(progress) and len(set(share for _, share, _ in seen)) >= 2, (
            "the page did not refresh its progress"
        )
        assert (
            browser.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]') == []
        )  # done: no more reloads
        report = browser.find_element(By.LINK_TEXT, "Report (CSV)").get_attribute("href")
        assert report.endswith(f"/jobs/{created['job_id']}/report?token={TOKEN}")
