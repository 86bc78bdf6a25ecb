"""The web console (chatapp_mass.entry.console) through the api function's handler, in one process: FC3 HTTP
events as a browser's requests make them (cookies, Origin, forms), against the local OSS, Tablestore and CAMS.
The real browser walks the same pages in tests/e2e/test_browser.py."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from urllib3 import encode_multipart_formdata

from chatapp_mass.core.tokens import Scope, TokenEntry, token_digest
from chatapp_mass.entry.console import COOKIE, SESSION_SECONDS, Sessions
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.services.ingest import Ingest
from chatapp_mass.store.interface import JobStatus

from test_http_api import OPTIONS, TOKEN, Api, Clock, recipients

HOST = "abc.ap-southeast-1.fcapp.run"
#: the new-job form's message fields, as a person fills them in
NEW_JOB = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024
        yield local


class Browser:
    """What a browser sends: its cookie, Accept: text/html, Origin on a POST; form bodies."""

    def __init__(self, api: Api, *, host: str = HOST) -> None:
        self.api, self.host, self.session = api, host, ""
        self.urls: list[str] = []

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, Any] | None = None,
        *,
        multipart: bool = False,
        origin: str | None = "same",
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Host": self.host, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        if self.session:
            headers["Cookie"] = f"other=1; {COOKIE}={self.session}"
        if method == "POST" and origin:
            headers["Origin"] = f"https://{self.host}" if origin == "same" else origin
        body: bytes = b""
        if form is not None and multipart:
            body, headers["Content-Type"] = encode_multipart_formdata(form)
        elif form is not None:
            body, headers["Content-Type"] = urlencode(form).encode(), "application/x-www-form-urlencoded"
        else:
            headers["Content-Type"] = ""
        self.urls.append(path + ("?" + urlencode(query) if query else ""))
        response = self.api.call(method, path, body, headers=headers, query=query, auth=False)
        cookie = response["headers"].get("Set-Cookie", "")
        if cookie.startswith(f"{COOKIE}="):
            self.session = cookie.split(";")[0].split("=", 1)[1]
        return response

    def sign_in(self, token: str = TOKEN) -> dict[str, Any]:
        return self.request("POST", "/console/login", {"token": token})

    def form_token(self) -> str:
        page = self.request("GET", "/console/")["body"]
        match = re.search(r'name="form_token" value="([0-9a-f]{32})"', page)
        assert match, page
        return match.group(1)


def test_sign_in_once_with_the_token_in_a_form_never_in_a_url(cloud: LocalCloud) -> None:
    api = Api(cloud)
    browser = Browser(api)
    first = browser.request("GET", "/console/")
    assert (first["statusCode"], first["headers"]["Location"]) == (303, "/console/login")
    login = browser.request("GET", "/console/login")
    assert (
        login["statusCode"] == 200 and 'type="password"' in login["body"] and 'for="token"' in login["body"]
    )
    headers = login["headers"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "same-origin" and headers["X-Content-Type-Options"] == "nosniff"
    assert (
        "<script" not in login["body"] and "http://" not in login["body"] and "https://" not in login["body"]
    )

    wrong = browser.sign_in("not-the-token")
    assert (
        wrong["statusCode"] == 403 and "not valid" in wrong["body"] and "Set-Cookie" not in wrong["headers"]
    )
    signed = browser.sign_in()
    assert (signed["statusCode"], signed["headers"]["Location"]) == (303, "/console/")
    cookie = signed["headers"]["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Secure", f"Max-Age={SESSION_SECONDS}"):
        assert attribute in cookie.split("; "), cookie
    assert TOKEN not in cookie and TOKEN not in browser.session
    jobs = browser.request("GET", "/console/")
    assert jobs["statusCode"] == 200 and 'id="no-jobs"' in jobs["body"]
    assert all(TOKEN not in url for url in browser.urls)
    assert browser.request("GET", "/console/login")["statusCode"] == 303  # signed in: on to the jobs

    # the session is the console's: the JSON API still wants the bearer header
    status, body = api.json("GET", "/jobs", auth=False, headers={"Cookie": f"{COOKIE}={browser.session}"})
    assert (status, body["error"]["code"]) == (401, "unauthenticated")

    out = browser.request("POST", "/console/logout", {"form_token": browser.form_token()})
    assert out["statusCode"] == 303 and "Max-Age=0" in out["headers"]["Set-Cookie"]
    assert browser.request("GET", "/console/")["statusCode"] == 303


def test_sessions_are_signed_expire_and_end_with_the_token() -> None:
    clock = Clock()
    one, two = (
        TokenEntry(Scope.admin, token_digest("token-one")),
        TokenEntry(Scope.admin, token_digest("two")),
    )
    sessions = Sessions((one,), clock=clock)
    value = sessions.issue(one)
    assert sessions.check(value) == one
    version, expires, entry, nonce, mac = value.split(".")
    assert entry == one.id and "token-one" not in value
    assert not sessions.valid(f"{version}.{int(expires) + 3600}.{entry}.{nonce}.{mac}"), (
        "a lengthened session"
    )
    assert not sessions.valid(f"{version}.{expires}.{entry}.{nonce}x.{mac}")
    assert not sessions.valid("v1.9999999999.x") and not sessions.valid("")
    assert not Sessions((two,), clock=clock).valid(value), "a rotated token ends every session"
    assert Sessions((two, one), clock=clock).valid(value), "while its token is still listed, a session holds"
    assert not Sessions((one,), "a secret", clock=clock).valid(value), "the console secret keys sessions"
    assert sessions.form_token(value) != sessions.form_token(sessions.issue(one))
    clock.now += SESSION_SECONDS + 1
    assert not sessions.valid(value)


def test_a_forged_post_changes_nothing(cloud: LocalCloud) -> None:
    api = Api(cloud)
    _, job = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(120, seed=11)})
    browser = Browser(api)
    browser.sign_in()
    token = browser.form_token()
    cancel = f"/console/jobs/{job['job_id']}/cancel"
    for origin, form, reason in (
        ("https://evil.example", {"form_token": token}, "Origin"),
        (None, {"form_token": token}, "Origin"),
        ("null", {"form_token": token}, "Origin"),
        ("same", {"form_token": "0" * 32}, "another session"),
        ("same", {}, "another session"),
    ):
        refused = browser.request("POST", cancel, form, origin=origin)
        assert refused["statusCode"] == 403 and reason in refused["body"], (origin, form)
    assert api.world.store.get_job(job["job_id"]).status is JobStatus.running
    stranger = Browser(api)
    assert stranger.request("POST", cancel, {"form_token": token})["statusCode"] == 401
    assert api.world.store.get_job(job["job_id"]).status is JobStatus.running


def test_job_page_shows_the_job_and_its_buttons_work(cloud: LocalCloud) -> None:
    api = Api(cloud)
    _, job = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(300, seed=12)})
    job_id = job["job_id"]
    api.send_first_batch_only(job_id)
    browser = Browser(api)
    browser.sign_in()
    page = browser.request("GET", f"/console/jobs/{job_id}")
    assert page["statusCode"] == 200, page["body"]
    text = page["body"]
    for fact in ("whatsapp", "T_WELCOME", "8613800000000", f"http:{job_id}.json", " UTC"):
        assert fact in text, fact
    assert re.search(r'id="status">running<', text) and 'http-equiv="refresh"' in text
    assert re.search(r'id="sent">50<', text) and re.search(r'id="invalid">1<', text)
    assert 'id="pause"' in text and 'id="cancel"' in text and 'id="resume"' not in text

    listing = browser.request("GET", "/console/")["body"]
    assert f'href="/console/jobs/{job_id}"' in listing and "T_WELCOME" in listing

    token = browser.form_token()
    paused = browser.request("POST", f"/console/jobs/{job_id}/pause", {"form_token": token})
    assert (paused["statusCode"], paused["headers"]["Location"]) == (
        303,
        f"/console/jobs/{job_id}?done=pause",
    )
    page = browser.request("GET", f"/console/jobs/{job_id}", query={"done": "pause"})["body"]
    assert 'id="status">paused<' in page and 'id="resume"' in page and 'id="notice"' in page
    browser.request("POST", f"/console/jobs/{job_id}/resume", {"form_token": token})
    assert api.world.store.get_job(job_id).status is JobStatus.running
    browser.request("POST", f"/console/jobs/{job_id}/cancel", {"form_token": token})
    api.world.run_senders()
    done = browser.request("GET", f"/console/jobs/{job_id}")["body"]
    assert 'id="status">cancelled<' in done and 'http-equiv="refresh" content="2"' not in done
    # its 50 accepted recipients have no receipt yet: the page looks again every 10 s (the delivery funnel)
    assert 'http-equiv="refresh" content="10"' in done and re.search(r'id="awaiting">50<', done)
    assert 'id="cancel"' not in done and "the job has finished" in done
    again = browser.request("POST", f"/console/jobs/{job_id}/pause", {"form_token": token})
    assert "error=" in again["headers"]["Location"]  # said on the page, not a crash
    shown = browser.request("GET", again["headers"]["Location"].split("?")[0], query={"error": "x<b>"})
    assert "x&lt;b&gt;" in shown["body"]  # escaped

    report = browser.request("GET", f"/console/jobs/{job_id}/report")
    assert report["statusCode"] == 200 and report["headers"]["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(report["body"])))
    assert len(rows) == 300 and {"sent", "cancelled", "invalid", "duplicate"} >= {r["status"] for r in rows}


def test_a_browser_following_an_api_link_lands_on_the_console(cloud: LocalCloud) -> None:
    api = Api(cloud)
    _, job = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(20, seed=13)})
    browser = Browser(api)
    to_job = browser.request("GET", f"/jobs/{job['job_id']}")
    assert (to_job["statusCode"], to_job["headers"]["Location"]) == (303, f"/console/jobs/{job['job_id']}")
    assert browser.request("GET", "/jobs")["headers"]["Location"] == "/console/"
    assert browser.request("GET", "/")["headers"]["Location"] == "/console/"
    status, body = api.json("GET", f"/jobs/{job['job_id']}")  # an API client still gets JSON
    assert status == 200 and body["job_id"] == job["job_id"]


def test_without_a_token_the_console_is_off(cloud: LocalCloud) -> None:
    browser = Browser(Api(cloud, token=""))
    page = browser.request("GET", "/console/login")
    assert page["statusCode"] == 404 and "CHATAPP_API_TOKEN" in page["body"]
    assert browser.request("GET", "/console/console.css")["statusCode"] == 200


def test_the_new_job_form_is_labelled_and_refuses_bad_options_in_words(cloud: LocalCloud) -> None:
    api = Api(cloud)
    browser = Browser(api)
    browser.sign_in()
    page = browser.request("GET", "/console/new")["body"]
    for name in ("file", "source", "ChannelType", "TemplateCode", "Language", "From", "recipient_column"):
        assert f'<label for="{name}"' in page and f'id="{name}"' in page, name
    assert 'enctype="multipart/form-data"' in page
    token = browser.form_token()
    form = {
        "form_token": token,
        "ChannelType": "whatsapp",
        "Language": "en",
        "From": "861380000",
        "source": "x",
    }
    refused = browser.request("POST", "/console/new", form, multipart=True)
    assert refused["statusCode"] == 400 and "TemplateCode or TemplateName" in refused["body"]
    assert 'value="861380000"' in refused["body"]  # what was typed is kept
    missing = browser.request(
        "POST", "/console/new", {**form, "TemplateCode": "T", "source": "nope/none.csv"}, multipart=True
    )
    assert missing["statusCode"] == 400 and "nope/none.csv" in missing["body"]
    no_key = browser.request(
        "POST", "/console/new", {**form, "TemplateCode": "T", "source": "oss://b"}, multipart=True
    )
    assert no_key["statusCode"] == 400 and "oss://my-bucket/lists/march.csv" in no_key["body"]
    forged = dict(form, nonce="0" * 32, source="oss://b", TemplateCode="T")
    refused_confirm = browser.request("POST", "/console/confirm", forged)
    assert refused_confirm["statusCode"] == 400 and "oss://b" in refused_confirm["body"]
    assert api.world.store.list_jobs(10) == []


def test_upload_preview_confirm_creates_one_job_that_sends(cloud: LocalCloud) -> None:
    api = Api(cloud)
    browser = Browser(api)
    browser.sign_in()
    token = browser.form_token()
    rows = "phone number,name\n+86 138 0000 0001,Ada\n12,Bob\n8613800000002,Cy\n+8613800000001,Ada again\n"
    form = {"form_token": token, "file": ("march list.csv", rows.encode(), "text/csv"), **NEW_JOB}
    preview = browser.request("POST", "/console/new", form, multipart=True)
    assert preview["statusCode"] == 200, preview["body"]
    page = preview["body"]
    assert "Nothing has been sent" in page and "Send to 2 recipients" in page
    assert "line 3" in page and "name" in page  # the invalid row, and the TemplateParams key
    uploaded = api.world.keys("console-uploads/")
    assert len(uploaded) == 1 and uploaded[0].endswith("/march-list.csv")
    assert api.world.store.list_jobs(10) == [] and cloud.cams.backend.received == []

    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    first = browser.request("POST", "/console/confirm", fields)
    second = browser.request("POST", "/console/confirm", fields)  # a double click
    assert first["statusCode"] == second["statusCode"] == 303
    assert first["headers"]["Location"] == second["headers"]["Location"]
    [job] = api.world.store.list_jobs(10)
    assert job.source == f"oss://{cloud.bucket}/{uploaded[0]}"
    function, payload, _ = api.world.invoker.queue.pop(0)
    assert (function, payload) == ("chatapp-mass-ingest", {"plan_job": job.job_id})
    assert api.world.invoker.queue == []
    Ingest(api.world.store, api.world.oss, api.world.invoker, api.world.settings).handle(json.dumps(payload))
    api.world.run_senders()
    assert sorted(m.to for m in cloud.cams.backend.received) == ["8613800000001", "8613800000002"]
    done = browser.request("GET", first["headers"]["Location"])["body"]
    assert 'id="status">completed<' in done and re.search(r'id="sent">2<', done)


def test_an_excel_workbook_upload_is_previewed_by_its_sheet_rows(cloud: LocalCloud) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "March"
    sheet.append(["Phone Number", "name"])
    sheet.append([8613800000001, "Ada"])  # a number stored as a number keeps its digits
    sheet.append(["not a number", "Bob"])
    sheet.append(["+86 138 0000 0002", "Cy"])
    data = io.BytesIO()
    book.save(data)
    api = Api(cloud)
    browser = Browser(api)
    browser.sign_in()
    form = {
        "form_token": browser.form_token(),
        "file": ("list.xlsx", data.getvalue(), "application/octet-stream"),
        **NEW_JOB,
        "sheet": "march",
    }
    preview = browser.request("POST", "/console/new", form, multipart=True)
    assert preview["statusCode"] == 200, preview["body"]
    assert "Send to 2 recipients" in preview["body"] and "line 3: not a number" in preview["body"]
    assert '"8613800000001' in preview["body"] or "8613800000001" in preview["body"]
    wrong = browser.request("POST", "/console/new", {**form, "sheet": "April"}, multipart=True)
    assert wrong["statusCode"] == 400 and "April" in wrong["body"] and "March" in wrong["body"]
