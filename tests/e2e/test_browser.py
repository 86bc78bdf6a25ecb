"""A new user in a real browser: headless Chromium (Debian's chromium + chromedriver, driven by Selenium) on
the web console of the api function's HTTP trigger, on the whole local cloud (the functions run by the local
FC from s.yaml): sign in with the token, upload the demo CSV, read the preview with its invalid rows explained,
confirm, watch the job finish, download the report; pause, resume and cancel another job; and no URL the
browser ever requested carries the token (Chrome's own network log).

Screenshots of each step go to ``$CHATAPP_SCREENSHOTS`` when set (``docs/screenshots`` holds the committed
ones: ``CHATAPP_SCREENSHOTS=docs/screenshots make test`` or this file alone refreshes them)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.entry.sample import write_sample_csv

from speed import budget

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "browser-token-7f3a9c-long-enough"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ROWS = 1500

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (make test installs them)",
)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads: Path) -> Iterator[Any]:
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
        "--window-size=1200,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER or ""), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shoot(browser: Any, name: str) -> None:
    folder = os.environ.get("CHATAPP_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1200, min(max(int(height) + 140, 700), 2400))  # the whole page
        browser.save_screenshot(os.path.join(folder, f"{name}.png"))
        browser.set_window_size(1200, 1000)


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """``check()``'s first truthy result; the page may be mid-reload (it refreshes itself): retried."""
    deadline = time.monotonic() + budget(seconds)
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 - stale elements while the page reloads itself
            last = error
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def sample_csv(path: Path, rows: int, seed: int = 7) -> Path:
    """The demo's sample: valid numbers of 8 countries in several notations, invalid rows, duplicates."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        write_sample_csv(handle, rows, seed=seed)
    return path


def console_cloud(tmp_path: Path, *, latency: float, batch_size: int) -> LocalCloud:
    """The whole local cloud, the functions run from s.yaml, the api function's token set."""
    return LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path / "cloud"),
        # a receipt push answered late on a busy machine is retried in ms, not a minute
        cams_options={"latency": latency, "latency_jitter": 0.2, "receipt_options": {"retry_scale": 0.001}},
        function_environment={
            "CHATAPP_BATCH_SIZE": str(batch_size),
            "CHATAPP_API_TOKEN": TOKEN,
            "CHATAPP_RECEIPT_KEY": "browser-receipt-key-0123456789",  # the local CAMS pushes receipts
        },
    )


def requested_urls(browser: Any) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def text_of(browser: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.ID, element_id).text)


def test_a_new_user_sends_the_demo_csv_from_the_console(
    browser: Any, tmp_path: Path, downloads: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    sample = sample_csv(tmp_path / "recipients.csv", ROWS)  # the demo's own kind of file
    with console_cloud(tmp_path, latency=0.3, batch_size=100) as cloud:
        base = cloud.fc.http_endpoint("chatapp-mass-api")
        browser.get(f"{base}/")
        assert browser.current_url.endswith("/console/login")
        shoot(browser, "1-sign-in")
        field = browser.find_element(By.ID, "token")
        field.send_keys(TOKEN)
        field.send_keys(Keys.ENTER)  # the keyboard alone signs in
        wait_for(lambda: browser.find_elements(By.ID, "no-jobs"), 30, "the empty jobs list")
        cookie = browser.get_cookie("chatapp_session")
        assert (
            cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and TOKEN not in cookie["value"]
        )
        shoot(browser, "2-no-jobs-yet")

        browser.find_element(By.LINK_TEXT, "Start one").click()
        wait_for(lambda: browser.find_elements(By.ID, "file"), 30, "the new-job form")
        browser.find_element(By.ID, "file").send_keys(str(sample))
        Select(browser.find_element(By.ID, "ChannelType")).select_by_value("whatsapp")
        for name, value in (("TemplateCode", "T_WELCOME"), ("Language", "en"), ("From", "8613800000000")):
            browser.find_element(By.ID, name).send_keys(value)
        shoot(browser, "3-new-job")
        browser.find_element(By.ID, "preview").click()

        confirm = wait_for(lambda: browser.find_element(By.ID, "confirm"), 60, "the preview")
        with sample.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        page = browser.page_source
        assert "Nothing has been sent" in page and "InvalidNumber" in page and "Duplicate" in page
        valid = int(text_of(browser, "preview-valid").replace(",", ""))
        invalid = int(text_of(browser, "preview-invalid").replace(",", ""))
        duplicate = int(text_of(browser, "preview-duplicate").replace(",", ""))
        assert valid + invalid + duplicate == len(rows) == ROWS and invalid > 0 and duplicate > 0
        assert confirm.text == f"Send to {valid:,} recipients"
        assert cloud.cams.backend.received == [], "nothing is sent before the confirmation"
        shoot(browser, "4-preview")
        confirm.send_keys(Keys.ENTER)

        wait_for(lambda: "/console/jobs/" in browser.current_url, 30, "the job page")
        seen = []
        deadline = time.monotonic() + budget(240)
        while time.monotonic() < deadline:
            try:
                status, sent = text_of(browser, "status"), int(text_of(browser, "sent").replace(",", ""))
            except Exception:  # noqa: BLE001 - caught mid-reload
                time.sleep(0.1)
                continue
            seen.append((status, sent))
            if status == "running" and sent < valid and len(seen) < 400:
                shoot(browser, "5-job-running")  # the last look at it running stays
            if status == "completed":
                break
            time.sleep(0.3)
        assert seen and seen[-1] == ("completed", valid), seen[-5:]
        assert "running" in {s for s, _ in seen}, "the page never showed the job running"
        sents = [n for _, n in seen]
        assert sents == sorted(sents) and len(set(sents)) >= 2, "the page did not refresh its progress"
        # done sending: the page reloads only slowly (10 s) while receipts come in, and not once they are in
        refresh = browser.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]')
        assert [m.get_attribute("content") for m in refresh] in ([], ["10"])
        assert cloud.cams.backend.wait_receipts_pushed(budget(60)), cloud.cams.backend.receipts.stats()
        browser.refresh()
        wait_for(lambda: browser.find_elements(By.ID, "delivery"), 30, "the delivery funnel")
        # every receipt in: no more reloads
        assert browser.find_elements(By.CSS_SELECTOR, 'meta[http-equiv="refresh"]') == []
        assert int(text_of(browser, "accepted").replace(",", "")) == valid
        for fact in ("whatsapp", "T_WELCOME", "console-uploads/", "UTC"):
            assert fact in browser.page_source, fact
        shoot(browser, "6-job-done")

        browser.find_element(By.ID, "report").click()
        report = wait_for(
            lambda: [p for p in downloads.glob("*.csv") if p.stat().st_size > 0], 60, "the downloaded report"
        )[0]
        wait_for(lambda: not list(downloads.glob("*.crdownload")), 30, "the download to finish")
        with report.open(encoding="utf-8") as handle:
            statuses = [row["status"] for row in csv.DictReader(handle)]
        assert len(statuses) == ROWS and statuses.count("sent") == valid
        assert statuses.count("invalid") == invalid and statuses.count("duplicate") == duplicate
        assert sorted(cloud.cams.backend.received_count_by_number().values()) == [1] * valid

        browser.find_element(By.LINK_TEXT, "Jobs").click()
        assert wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr"), 30, "the jobs list")
        shoot(browser, "7-jobs")

        urls = requested_urls(browser)
        assert any("/console/confirm" in url for url in urls), "the network log holds the requests"
        assert all(TOKEN not in url for url in urls), [u for u in urls if TOKEN in u]


def test_pause_resume_and_cancel_from_the_job_page(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    sample = sample_csv(tmp_path / "big.csv", 3000, seed=11)
    with console_cloud(tmp_path, latency=1.0, batch_size=50) as cloud:
        bucket = cloud.oss.oss2_bucket(cloud.bucket)
        bucket.put_object_from_file("console-uploads/big.csv", str(sample))  # the api role reads here
        base = cloud.fc.http_endpoint("chatapp-mass-api")
        browser.get(f"{base}/console/login")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_for(lambda: browser.find_element(By.TAG_NAME, "h1").text == "Jobs", 30, "the jobs list")
        browser.get(f"{base}/console/new")
        wait_for(lambda: browser.find_element(By.ID, "source"), 30, "the new-job form").send_keys(
            "console-uploads/big.csv"
        )
        for name, value in (("TemplateCode", "T_WELCOME"), ("Language", "en"), ("From", "8613800000000")):
            browser.find_element(By.ID, name).send_keys(value)
        browser.find_element(By.ID, "preview").click()
        wait_for(lambda: browser.find_element(By.ID, "confirm"), 60, "the preview").click()

        def press(button: str, then: str) -> None:
            # found and clicked in one try: the page reloads itself every 2 s (a stale element is retried)
            wait_for(lambda: browser.find_element(By.ID, button).click() or True, 60, f"the {button} button")
            wait_for(lambda: text_of(browser, "status") == then, 60, f"the job {then}")

        wait_for(lambda: text_of(browser, "status") == "running", 120, "the job running")
        press("pause", "paused")
        assert "Paused" in text_of(browser, "notice")
        shoot(browser, "8-job-paused")
        press("resume", "running")
        press("cancel", "cancelled")
        wait_for(lambda: "the job has finished" in browser.page_source, 120, "the buttons gone")
        shoot(browser, "9-job-cancelled")
        sent = int(text_of(browser, "sent").replace(",", ""))
        cancelled = int(text_of(browser, "cancelled").replace(",", ""))
        assert cancelled > 0 and sent < 2900
        assert len(cloud.cams.backend.received) == sent
