"""The HTTP API and the timer (chatapp_mass.entry.http_api, chatapp_mass.services.timer) in one process, against the
local OSS, Tablestore and CAMS through the real SDKs; FC3 HTTP and timer events built as FC sends them, and
function invocations queued for the test to deliver (tests/e2e drives the same through the local FC)."""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from chatapp_mass.core.tokens import TokenEntry
from chatapp_mass.entry.console import serve
from chatapp_mass.entry.http_api import ApiError, ApiSettings, HttpEvent, JobsApi, parse_schedule
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.services.ingest import Ingest
from chatapp_mass.services.timer import Timer
from chatapp_mass.store.interface import BatchStatus, JobStatus

from oracle import sample_bytes, valid_numbers
from world import World

TOKEN = "s3cret-" + secrets.token_hex(16)  # 39 characters: at least 32
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024  # every test's world has its own five tables
        yield local


class Clock:
    """Starts at the real time (the store stamps batch changes with it) and moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Api:
    def __init__(
        self,
        cloud: LocalCloud,
        *,
        token: str = TOKEN,
        tokens: tuple[TokenEntry, ...] = (),
        clock: Clock | None = None,
        **settings: Any,
    ) -> None:
        self.world = World(cloud, **{"batch_size": 50, **settings})
        self.clock = clock
        extra = {"clock": clock} if clock else {}
        self.api = JobsApi(
            self.world.store,
            self.world.oss,
            self.world.invoker,
            self.world.settings,
            ApiSettings(token=token, tokens=tokens, max_body=200_000),
            cams=self.world.cams,
            **extra,
        )

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        auth: bool = True,
    ) -> dict[str, Any]:
        raw = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        data = raw.encode() if isinstance(raw, str) else (raw or b"")
        all_headers = {
            "Host": "abc.ap-southeast-1.fcapp.run",
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {TOKEN}"} if auth else {}),
            **(headers or {}),
        }
        event = {
            "version": "v1",
            "rawPath": path,
            "body": base64.b64encode(data).decode(),
            "isBase64Encoded": True,
            "headers": all_headers,
            "queryParameters": query or {},
            "requestContext": {
                "http": {"method": method, "path": path, "sourceIp": "10.0.0.1"},
                "requestId": secrets.token_hex(8),
            },
        }
        response = serve(self.api, HttpEvent.model_validate(event))  # as the api function's handler does
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
        return response

    def json(self, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        response = self.call(*args, **kwargs)
        return response["statusCode"], json.loads(response["body"])

    def report(self, job_id: str) -> list[dict[str, str]]:
        response = self.call("GET", f"/jobs/{job_id}/report")
        assert response["statusCode"] == 200 and response["headers"]["Content-Type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(response["body"])))

    def send_first_batch_only(self, job_id: str) -> list[Any]:
        """Deliver batch 0 alone; returns the fan-out's drain events, held back for the test to deliver."""
        drains = list(self.world.invoker.queue)
        self.world.invoker.queue[:] = [("chatapp-mass-sender", {"job_id": job_id, "seq": 0}, 0)]
        self.world.run_senders()
        return drains

    def timer(self) -> dict[str, Any]:
        extra = {"clock": self.clock} if self.clock else {}
        event = {"triggerTime": "2030-03-17T08:00:00Z", "triggerName": "api-timer", "payload": ""}
        return Timer(
            self.world.store, self.world.oss, self.world.invoker, self.world.settings, **extra
        ).handle(json.dumps(event))


def recipients(count: int, seed: int = 1) -> list[dict[str, Any]]:
    items = [{"To": f"+86 138{seed:02d}{i:06d}", "TemplateParams": {"name": f"N{i}"}} for i in range(count)]
    items[3]["To"] = "12"  # invalid
    items[5]["To"] = items[4]["To"]  # duplicate
    return items


def test_json_submission_sends_every_valid_recipient_once_with_its_own_fields(cloud: LocalCloud) -> None:
    api = Api(cloud)
    items = recipients(120)
    items[0]["Payload"] = ["yes", "no"]
    items[1]["FlowAction"] = {"FlowToken": "tok", "FlowActionData": {"step": "1"}}
    status, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": items})
    assert status == 202, body
    assert (body["valid"], body["invalid"], body["duplicate"]) == (118, 1, 1)
    assert body["status_url"] == f"https://abc.ap-southeast-1.fcapp.run/jobs/{body['job_id']}"
    api.world.run_senders(duplicate=True)
    received = cloud.cams.backend.received
    assert Counter(m.to for m in received) == Counter(
        {f"86138{1:02d}{i:06d}": 1 for i in range(120) if i not in (3, 5)}
    )
    by_number = {m.to: m.recipient for m in received}
    assert by_number["8613801000000"]["Payload"] == ["yes", "no"]
    assert by_number["8613801000001"]["FlowAction"]["FlowToken"] == "tok"
    assert by_number["8613801000002"]["TemplateParams"] == {"name": "N2"}
    status, job = api.json("GET", f"/jobs/{body['job_id']}")
    assert status == 200 and job["status"] == "completed"
    assert (job["sent"], job["invalid"], job["duplicate"], job["pending"]) == (118, 1, 1, 0)
    rows = api.report(body["job_id"])
    assert [int(r["line"]) for r in rows] == list(range(1, 121))
    assert Counter(r["status"] for r in rows) == {"sent": 118, "invalid": 1, "duplicate": 1}
    assert rows[3]["code"] == "InvalidNumber" and rows[5]["message"] == "same recipient as recipient 5"
    keys = api.world.keys(f"reports/api/{body['job_id']}")
    assert keys == [f"reports/api/{body['job_id']}.report.csv", f"reports/api/{body['job_id']}.summary.json"]


def test_idempotency_key_makes_a_repeat_the_same_job(cloud: LocalCloud) -> None:
    api = Api(cloud)
    request = {"options": OPTIONS, "recipients": recipients(60, seed=2)}
    key = {"Idempotency-Key": secrets.token_hex(6)}
    first_status, first = api.json("POST", "/jobs", request, headers=key)
    api.world.run_senders()
    calls = len(cloud.cams.backend.attempts)
    again_status, again = api.json("POST", "/jobs", request, headers=key)
    assert (first_status, again_status) == (202, 200)
    assert again["job_id"] == first["job_id"] and again["repeated"] is True and again["status"] == "completed"
    api.world.run_senders()
    assert len(cloud.cams.backend.attempts) == calls, "a repeated submission sent again"
    assert max(Counter(m.to for m in cloud.cams.backend.received).values()) == 1


def test_an_identical_body_without_a_key_is_refused_unless_forced(cloud: LocalCloud) -> None:
    api = Api(cloud)
    request = {"options": OPTIONS, "recipients": recipients(10, seed=3)}
    status, first = api.json("POST", "/jobs", request)
    assert status == 202
    status, refused = api.json("POST", "/jobs", request)
    assert status == 409 and refused["error"]["code"] == "probable_repeat"
    assert first["job_id"] in refused["error"]["message"]
    status, forced = api.json("POST", "/jobs", request, query={"force": "true"})
    assert status == 202 and forced["job_id"] != first["job_id"]


def test_identical_bodies_without_a_key_at_the_same_moment_are_one_job(cloud: LocalCloud) -> None:
    """Identical keyless submissions arriving together: the repeat check is one conditional write in the
    store, so exactly one is 202 and makes a job (sent once); every other is 409 naming that job."""
    api = Api(cloud)
    request = {"options": OPTIONS, "recipients": recipients(10, seed=4)}
    count = 6
    answers: list[Any] = [None] * count
    start = threading.Barrier(count)

    def submit(i: int) -> None:
        start.wait()
        answers[i] = api.json("POST", "/jobs", request)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = Counter(status for status, _ in answers)
    assert statuses == {202: 1, 409: count - 1}, answers
    [made] = [body["job_id"] for status, body in answers if status == 202]
    assert all(made in body["error"]["message"] for status, body in answers if status == 409)
    assert [job.job_id for job in api.world.store.list_jobs()] == [made]
    api.world.run_senders()
    assert max(Counter(m.to for m in cloud.cams.backend.received).values()) == 1


def test_a_keyed_request_then_the_same_body_without_its_key_is_a_probable_repeat(cloud: LocalCloud) -> None:
    api = Api(cloud)
    request = {"options": OPTIONS, "recipients": recipients(10, seed=5)}
    status, keyed = api.json("POST", "/jobs", request, headers={"Idempotency-Key": secrets.token_hex(6)})
    assert status == 202
    status, refused = api.json("POST", "/jobs", request)
    assert (status, refused["error"]["code"]) == (409, "probable_repeat")
    assert keyed["job_id"] in refused["error"]["message"]
    status, forced = api.json("POST", "/jobs", request, query={"force": "true"})
    assert status == 202 and forced["job_id"] != keyed["job_id"]
    assert len(api.world.store.list_jobs()) == 2


def test_a_refused_submission_leaves_no_repeat_behind(cloud: LocalCloud) -> None:
    """A request that made no job (here: its source is missing) does not hold its digest: sent again once
    the object is there, it is a job, not a probable repeat."""
    api = Api(cloud)
    request = {"options": OPTIONS, "source": "api/later.csv"}
    status, refused = api.json("POST", "/jobs", request)
    assert (status, refused["error"]["code"]) == (400, "source_not_found")
    api.world.upload("api/later.csv", b"To\n+8613800000001\n")
    status, _ = api.json("POST", "/jobs", request)
    assert status == 202


def test_authentication(cloud: LocalCloud) -> None:
    api = Api(cloud)
    status, body = api.json("GET", "/jobs", auth=False)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    response = api.call("GET", "/jobs", auth=False, headers={"Authorization": "Bearer nope"})
    assert response["statusCode"] == 401 and json.loads(response["body"])["error"]["code"] == "invalid_token"
    assert response["headers"]["WWW-Authenticate"] == 'Bearer realm="chatapp-mass", error="invalid_token"'
    status, body = api.json("GET", "/jobs", auth=False, query={"token": TOKEN})
    assert status == 401, "the token is never taken from a URL (browsers sign in to the console)"
    status, body = api.json(
        "POST", "/jobs", {"options": OPTIONS, "recipients": []}, auth=False, query={"token": TOKEN}
    )
    assert status == 401, "a write never takes the token from the URL"
    unconfigured = Api(cloud, token="")
    status, body = unconfigured.json("GET", "/jobs")
    assert (status, body["error"]["code"]) == (503, "auth_not_configured")
    assert "CHATAPP_API_TOKENS" in body["error"]["message"]


@pytest.mark.parametrize(
    "body, headers, status, code, field",
    [
        (b"{not json", None, 400, "invalid_json", "body"),
        (
            {"options": OPTIONS, "recipients": [{"To": "+8613800000001", "Colour": "red"}]},
            None,
            400,
            "invalid_field",
            "recipients.0.Colour",
        ),
        (
            {"options": OPTIONS, "recipients": [{"To": "+8613800000001", "TemplateParams": {"a": 1}}]},
            None,
            400,
            "invalid_field",
            "recipients.0.TemplateParams.a",
        ),
        (
            {"options": {**OPTIONS, "ChannelType": "sms"}, "recipients": []},
            None,
            400,
            "invalid_options",
            "options",
        ),
        ({"options": OPTIONS}, None, 400, "invalid_field", "recipients"),
        # an empty or folder-like key is no object: refused, not tried on OSS (the fuzzer found a 503)
        ({"options": OPTIONS, "source": ""}, None, 400, "invalid_field", "source"),
        ({"options": OPTIONS, "source": "/uploads/"}, None, 400, "invalid_field", "source"),
        (
            {"options": OPTIONS, "recipients": [], "scheduledAt": "next tuesday"},
            None,
            400,
            "invalid_schedule",
            "scheduledAt",
        ),
        (b"x" * 200_001, None, 413, "body_too_large", "body"),
        (b"<xml/>", {"Content-Type": "application/xml"}, 415, "unsupported_media_type", "Content-Type"),
    ],
)
def test_refusals_name_the_field(
    cloud: LocalCloud, body: Any, headers: Any, status: int, code: str, field: str | None
) -> None:
    api = Api(cloud)
    got, answer = api.json("POST", "/jobs", body, headers=headers)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"].get("field") == field
    assert api.world.invoker.queue == []


def test_routes_and_methods(cloud: LocalCloud) -> None:
    api = Api(cloud)
    assert api.json("GET", "/jobs/nope")[0] == 404
    assert api.json("DELETE", "/jobs")[0] == 405
    assert api.json("POST", "/jobs/abc")[0] == 405
    assert api.json("GET", "/elsewhere")[0] == 404
    status, body = api.json("GET", "/jobs", query={"limit": "0"})
    assert (status, body["error"]["field"]) == (400, "limit")


def test_csv_body_with_options_in_the_query(cloud: LocalCloud) -> None:
    api = Api(cloud)
    data = sample_bytes(200, seed=31)
    query = {
        "channel-type": "whatsapp",
        "template-code": "T_WELCOME",
        "language": "en",
        "from": "8613800000000",
    }
    status, body = api.json("POST", "/jobs", data, headers={"Content-Type": "text/csv"}, query=query)
    assert status == 202, body
    api.world.run_senders()
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter({n: 1 for n in valid_numbers(data)})
    status, bad = api.json(
        "POST", "/jobs", b"\xff\xfe\x00garbage\n", headers={"Content-Type": "text/csv"}, query=query
    )
    assert (status, bad["error"]["code"]) == (400, "invalid_csv") and bad["error"]["field"].startswith(
        "line "
    )
    workbook = b"PK\x03\x04" + bytes(22) + (19).to_bytes(2, "little") + bytes(2) + b"[Content_Types].xml"
    status, bad = api.json("POST", "/jobs", workbook, headers={"Content-Type": "text/csv"}, query=query)
    assert (status, bad["error"]["code"], bad["error"]["field"]) == (400, "invalid_csv", "file")
    # recognised by content as a workbook (read: tests/unit/test_xlsx.py), and this one is cut short
    assert "the workbook cannot be read" in bad["error"]["message"]


def test_an_excel_workbook_body_with_its_sheet_in_the_query(cloud: LocalCloud) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["to"])
    sheet = book.create_sheet("Customers")
    sheet.append(["Phone Number", "name"])
    sheet.append([8613866661234, "Ana"])
    buffer = io.BytesIO()
    book.save(buffer)
    api = Api(cloud)
    query = {
        "channel-type": "whatsapp",
        "template-code": "T_WELCOME",
        "language": "en",
        "from": "8613800000000",
    }
    xlsx_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    status, body = api.json(
        "POST",
        "/jobs",
        buffer.getvalue(),
        headers={"Content-Type": xlsx_type},
        query={**query, "sheet": "customers"},
    )
    assert status == 202, body
    api.world.run_senders()
    assert "8613866661234" in [m.to for m in cloud.cams.backend.received]
    status, bad = api.json(
        "POST",
        "/jobs",
        buffer.getvalue(),
        headers={"Content-Type": xlsx_type},
        query={**query, "sheet": "Nope"},
    )
    assert (status, bad["error"]["code"]) == (400, "invalid_csv")
    assert "sheets found: 'Sheet', 'Customers'" in bad["error"]["message"]


def test_preview_true_answers_the_preview_and_creates_no_job(cloud: LocalCloud) -> None:
    """Issue 15: POST /jobs?preview=true with any of the three bodies answers 200 with the preview (counts,
    reasons, keys, the first request); no job, nothing invoked, nothing sent. Auth as for every route."""
    api = Api(cloud)
    preview = {"preview": "true"}
    status, body = api.json(
        "POST", "/jobs", {"options": OPTIONS, "recipients": recipients(20)}, query=preview
    )
    assert status == 200, body
    assert (body["rows"], body["valid"], body["invalid"], body["duplicate"]) == (20, 18, 1, 1)
    assert {g["code"] for g in body["reasons"]} == {"InvalidNumber", "Duplicate"}
    assert body["reasons"][0]["examples"][0]["line"] in (4, 6)
    assert body["params"] == [{"name": "name", "missing": 0, "empty": 0}]
    assert (body["channel"], body["template_code"], body["from"]) == (
        "whatsapp",
        "T_WELCOME",
        "8613800000000",
    )
    sample = body["sample"]
    assert sample["line"] == 1 and sample["recipient"]["To"] == "8613801000000"
    assert "SenderList" in sample["request"]["body"] and "SenderList" not in sample["request"]["query"]

    data = sample_bytes(60, seed=33)
    query = {**preview, "channel-type": "whatsapp", "template-code": "T_WELCOME", "language": "en"}
    query["from"] = "8613800000000"
    status, csv_preview = api.json("POST", "/jobs", data, headers={"Content-Type": "text/csv"}, query=query)
    assert status == 200 and csv_preview["valid"] == len(valid_numbers(data))

    key = f"uploads/{secrets.token_hex(3)}.csv"
    api.world.bucket.put_object(key, data)
    status, oss_preview = api.json("POST", "/jobs", {"options": OPTIONS, "source": key}, query=preview)
    assert status == 200 and oss_preview["valid"] == csv_preview["valid"]
    status, missing = api.json(
        "POST", "/jobs", {"options": OPTIONS, "source": "uploads/none.csv"}, query=preview
    )
    assert (status, missing["error"]["code"]) == (400, "source_not_found")
    status, no_key = api.json("POST", "/jobs", {"options": OPTIONS, "source": "oss://only-a-bucket"})
    assert (status, no_key["error"]["code"], no_key["error"]["field"]) == (400, "invalid_field", "source")
    status, bad = api.json(
        "POST", "/jobs", b"\xff\xfe\x00garbage\n", headers={"Content-Type": "text/csv"}, query=query
    )
    assert (status, bad["error"]["code"]) == (400, "invalid_csv")

    status, unauthenticated = api.json(
        "POST", "/jobs", {"options": OPTIONS, "recipients": recipients(8)}, query=preview, auth=False
    )
    assert status == 401
    status, jobs = api.json("GET", "/jobs")
    assert status == 200 and jobs["jobs"] == []
    assert api.world.invoker.queue == [] and cloud.cams.backend.received == []
    # the same body without preview is a job as usual (the preview left no repeat behind)
    status, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(20)})
    assert status == 202, body


def test_oss_source_is_planned_by_ingest(cloud: LocalCloud) -> None:
    api = Api(cloud)
    data = sample_bytes(150, seed=32)
    key = f"uploads/{secrets.token_hex(3)}.csv"
    api.world.bucket.put_object(key, data)
    status, missing = api.json("POST", "/jobs", {"options": OPTIONS, "source": "uploads/none.csv"})
    assert (status, missing["error"]["code"]) == (400, "source_not_found")
    status, body = api.json("POST", "/jobs", {"options": OPTIONS, "source": key})
    assert status == 202 and body["status"] == "planning"
    assert api.world.invoker.queue[-1][:2] == ("chatapp-mass-ingest", {"plan_job": body["job_id"]})
    _, plan, _ = api.world.invoker.queue.pop()
    ingest = Ingest(api.world.store, api.world.oss, api.world.invoker, api.world.settings)
    [result] = ingest.handle(json.dumps(plan))
    assert result.status == "planned", result.message
    [again] = ingest.handle(json.dumps(plan))  # a re-delivered plan event
    assert again.status == "resumed"
    api.world.run_senders()
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter({n: 1 for n in valid_numbers(data)})


def test_cancel_mid_job_leaves_every_row_in_one_final_status(cloud: LocalCloud) -> None:
    api = Api(cloud)
    status, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(300, seed=4)})
    job_id = body["job_id"]
    drains = api.send_first_batch_only(job_id)
    status, cancelled = api.json("POST", f"/jobs/{job_id}/cancel")
    assert status == 202 and cancelled["status"] == "cancelled" and cancelled["pending_cancelled"] == 248
    api.world.invoker.queue[:] = drains  # the drainers arrive late: they find nothing to send
    api.world.run_senders()
    assert len(cloud.cams.backend.received) == 50
    rows = api.report(job_id)
    assert len(rows) == 300
    assert Counter(r["status"] for r in rows) == {"sent": 50, "cancelled": 248, "invalid": 1, "duplicate": 1}
    assert api.world.store.get_job(job_id).status is JobStatus.cancelled
    assert f"reports/api/{job_id}.report.csv" in api.world.keys("reports/api/")
    status, again = api.json("POST", f"/jobs/{job_id}/cancel")
    assert status == 202 and again["status"] == "cancelled"  # cancelling twice is harmless


def test_scheduled_job_starts_once_and_not_before_its_time(cloud: LocalCloud) -> None:
    clock = Clock()
    api = Api(cloud, clock=clock, sweep_idle=600.0)  # the store stamps changes with the real clock
    at = int(clock.now) + 300
    when = time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(at + 8 * 3600))  # the same instant, at +08:00
    assert parse_schedule(when, None, now=clock.now) == at
    status, body = api.json(
        "POST", "/jobs", {"options": OPTIONS, "recipients": recipients(40, seed=6), "scheduledAt": when}
    )
    assert status == 202 and body["status"] == "scheduled"
    assert api.world.invoker.queue == []
    clock.now = at - 1
    assert api.timer()["started"] == [] and api.world.invoker.queue == []
    clock.now = at + 30
    assert api.timer()["started"] == [body["job_id"]]
    assert api.timer()["started"] == []  # the same minute's event delivered again
    assert len(api.world.invoker.queue) == 1
    api.world.run_senders()
    for _ in range(3):  # later minutes
        assert api.timer() == {
            "started": [],
            "resumed": [],
            "finalized": [],
            "released": 0,
            "recurring": None,
        }
    assert api.world.invoker.queue == []
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter(
        {f"86138{6:02d}{i:06d}": 1 for i in range(40) if i not in (3, 5)}
    )


def test_schedule_with_a_time_zone() -> None:
    now = time.time()
    assert parse_schedule("2030-03-17T16:00:00", "Asia/Singapore", now=now) == parse_schedule(
        "2030-03-17T08:00:00Z", None, now=now
    )
    with pytest.raises(ApiError, match="not an IANA time zone"):
        parse_schedule("2030-03-17T16:00:00", "Mars/Olympus", now=now)
    with pytest.raises(ApiError, match="no UTC offset"):
        parse_schedule("2030-03-17T16:00:00", None, now=now)
    with pytest.raises(ApiError, match="in the past"):
        parse_schedule("2001-01-01T00:00:00Z", None, now=now)


def test_sweeper_resumes_a_stalled_job_and_never_resends_what_may_have_gone(cloud: LocalCloud) -> None:
    clock = Clock()
    api = Api(cloud, clock=clock, claim_ttl=90.0, sweep_idle=120.0)
    _, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(200, seed=7)})
    job_id = body["job_id"]
    api.world.invoker.queue.clear()  # the fan-out was lost: nobody is sending
    store = api.world.store
    # a sender that died: one batch claimed, one on the wire (its call may have reached CAMS)
    store.transition_batch(
        job_id,
        0,
        expect=[BatchStatus.pending],
        to=BatchStatus.claimed,
        owner="gone:1:x",
        claim_expires=clock.now + 90,
    )
    store.transition_batch(
        job_id,
        1,
        expect=[BatchStatus.pending],
        to=BatchStatus.claimed,
        owner="gone:1:x",
        claim_expires=clock.now + 90,
    )
    store.transition_batch(
        job_id,
        1,
        expect=[BatchStatus.claimed],
        to=BatchStatus.sending,
        owner="gone:1:x",
        claim_expires=clock.now + 90,
    )
    assert api.timer()["resumed"] == []  # claims still valid, batches changed just now
    clock.now += 10_000
    result = api.timer()
    assert result["released"] == 2 and result["resumed"] == [job_id]
    api.world.run_senders()
    totals = store.batch_totals(job_id)
    assert totals[BatchStatus.uncertain][0] == 1 and totals[BatchStatus.sent][0] == 3
    sent_numbers = Counter(m.to for m in cloud.cams.backend.received)
    assert len(sent_numbers) == 148 and max(sent_numbers.values()) == 1  # batch 1's 50 never went again
    assert store.get_job(job_id).status is JobStatus.completed
    assert Counter(r["status"] for r in api.report(job_id))["uncertain"] == 50


def test_recurring_send_from_the_timer_payload_once_per_firing(cloud: LocalCloud) -> None:
    api = Api(cloud)
    data = sample_bytes(120, seed=33)
    key = f"recurring/{secrets.token_hex(3)}.csv"
    api.world.bucket.put_object(key, data)
    payload = json.dumps({"recurring": {"source": key, "options": OPTIONS}})
    timer = Timer(api.world.store, api.world.oss, api.world.invoker, api.world.settings)

    def fire(at: str) -> dict[str, Any]:
        return timer.handle(json.dumps({"triggerTime": at, "triggerName": "weekly", "payload": payload}))

    first = fire("2026-12-07T01:00:00Z")
    again = fire("2026-12-07T01:00:00Z")  # the same firing delivered twice: the same job
    assert first["recurring"]["created"] is True and again["recurring"] == {
        **first["recurring"],
        "created": False,
    }
    plans = [p for f, p, _ in api.world.invoker.queue if f == "chatapp-mass-ingest"]
    api.world.invoker.queue[:] = [q for q in api.world.invoker.queue if q[0] != "chatapp-mass-ingest"]
    ingest = Ingest(api.world.store, api.world.oss, api.world.invoker, api.world.settings)
    for plan in plans:
        ingest.handle(json.dumps(plan))
    api.world.run_senders()
    next_week = fire("2026-12-14T01:00:00Z")  # the next firing: a new job of the same list
    assert next_week["recurring"]["job_id"] != first["recurring"]["job_id"]
    for _, plan, _ in [q for q in api.world.invoker.queue if q[0] == "chatapp-mass-ingest"]:
        ingest.handle(json.dumps(plan))
    api.world.invoker.queue[:] = [q for q in api.world.invoker.queue if q[0] != "chatapp-mass-ingest"]
    api.world.run_senders()
    received = Counter(m.to for m in cloud.cams.backend.received)
    assert received == Counter({n: 2 for n in valid_numbers(data)})  # once per firing, not per delivery
    # a bad payload is refused in the result, and the firing's sweep still runs (tests/corpus)
    refused = timer.handle(
        json.dumps(
            {
                "triggerTime": "2026-12-07T01:00:00Z",
                "triggerName": "weekly",
                "payload": '{"recurrent": {}}',
            }
        )
    )
    assert refused["recurring"]["job_id"] is None and "payload" in refused["recurring"]["error"]


def test_pause_and_resume_over_http(cloud: LocalCloud) -> None:
    api = Api(cloud)
    _, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(400, seed=8)})
    job_id = body["job_id"]
    drains = api.send_first_batch_only(job_id)
    status, paused = api.json("POST", f"/jobs/{job_id}/pause")
    assert status == 202 and paused["status"] == "paused" and "operator" in paused["reason"]
    api.world.invoker.queue[:] = drains
    api.world.run_senders()  # the drainers find the job paused: nothing more is sent, nobody re-invokes
    assert len(cloud.cams.backend.received) == 50 and api.world.invoker.queue == []
    assert api.json("GET", f"/jobs/{job_id}")[1]["pending"] == 348
    assert api.timer()["resumed"] == []  # the sweeper leaves a paused job alone
    _, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(200, seed=9)})
    api.world.invoker.queue.clear()
    assert api.json("POST", f"/jobs/{body['job_id']}/pause")[1]["status"] == "paused"
    assert api.json("POST", f"/jobs/{body['job_id']}/pause")[0] == 202  # pausing twice is harmless
    status, resumed = api.json("POST", f"/jobs/{body['job_id']}/resume")
    assert status == 202 and resumed["status"] == "running"
    assert api.json("POST", f"/jobs/{body['job_id']}/resume")[0] == 409  # not paused any more
    api.world.run_senders()
    assert api.json("GET", f"/jobs/{body['job_id']}")[1]["status"] == "completed"
    assert Counter(m.to for m in cloud.cams.backend.received if m.to.startswith("8613809")) == Counter(
        {f"86138{9:02d}{i:06d}": 1 for i in range(200) if i not in (3, 5)}
    )


def test_error_threshold_pauses_a_job_and_says_why(cloud: LocalCloud) -> None:
    api = Api(cloud, batch_size=50, sender_concurrency=1, error_threshold=0.2)
    cloud.cams.backend.configure(latency=0.25, latency_jitter=0.0)
    cloud.cams.backend.fail_next(2, code="InvalidParameter.SenderList", http_status=400)
    try:
        _, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(1000, seed=10)})
        api.world.run_senders()
        status, job = api.json("GET", f"/jobs/{body['job_id']}")
        assert job["status"] == "paused", job
        # paused once a tenth of the job (100 recipients) was tried and over 20% failed: the two failed calls
        assert "above the 20% threshold" in job["reason"] and job["failed"] == 100
        assert job["pending"] > 0 and api.world.invoker.queue == []
        api.json("POST", f"/jobs/{body['job_id']}/resume")  # the operator looked and goes on: counted afresh
        api.world.run_senders()
        _, job = api.json("GET", f"/jobs/{body['job_id']}")
        assert job["status"] == "completed" and job["sent"] == 998 - 100 and job["failed"] == 100
    finally:
        cloud.cams.backend.configure(latency=0.0, latency_jitter=0.0)


def test_reconcile_then_resend_over_http_reaches_every_number_once(cloud: LocalCloud) -> None:
    """Two batches end uncertain: CAMS processed one (its reply was lost) and never saw the other. Reconciling
    finds the first in ListChatappMessage (sent) and not the second (still uncertain, NotFound); nothing is
    resent until the operator asks; the resend then sends the second batch only, and everyone has it once."""
    api = Api(cloud, dispatch="per-batch", reconcile_after=0)  # no automatic lookup: the operator's
    backend = cloud.cams.backend
    backend.reply_non_json_next(1, http_status=502, accept=True)
    backend.reply_non_json_next(1, http_status=502, accept=False)
    _, body = api.json(
        "POST", "/jobs", {"options": {**OPTIONS, "CustSpaceId": "cs-9"}, "recipients": recipients(200, 8)}
    )
    job_id = body["job_id"]
    api.world.run_senders()
    _, job = api.json("GET", f"/jobs/{job_id}")
    assert (job["status"], job["uncertain"], job["sent"]) == ("completed", 100, 98)
    assert job["reconcile_url"] == f"https://abc.ap-southeast-1.fcapp.run/jobs/{job_id}/reconcile"
    status, result = api.json("POST", f"/jobs/{job_id}/reconcile")
    assert status == 200, result
    assert (result["batches"], result["found"], result["not_found"], result["uncertain"]) == (2, 50, 50, 50)
    assert result["queries"] == 100  # one per recipient: no GroupMessageId for a lost reply
    rows = [r for r in api.report(job_id) if r["status"] == "uncertain"]
    assert len(rows) == 50 and {r["code"] for r in rows} == {"NotFound"}
    assert set(r["to"] for r in rows).isdisjoint(backend.received_count_by_number())
    calls = len(backend.attempts)
    status, bad = api.json("POST", f"/jobs/{job_id}/resend-uncertain", {"reconcile": "maybe"})
    assert status == 400 and bad["error"]["field"] == "reconcile"
    status, resent = api.json("POST", f"/jobs/{job_id}/resend-uncertain")
    assert status == 202 and resent["resent_recipients"] == 50 and resent["status"] == "running", resent
    assert len(backend.attempts) == calls  # reopened, not sent yet: the senders do that
    api.world.run_senders()
    assert Counter(backend.received_count_by_number().values()) == {1: 198}
    _, job = api.json("GET", f"/jobs/{job_id}")
    assert (job["status"], job["sent"], job["uncertain"]) == (
        "completed",
        198,
        0,
    ) and "reconcile_url" not in job


def test_reconcile_refusals_say_why(cloud: LocalCloud) -> None:
    api = Api(cloud)
    cloud.cams.backend.reply_non_json_next(1, http_status=502, accept=True)
    _, body = api.json(
        "POST", "/jobs", {"options": OPTIONS, "recipients": recipients(40, 9)}
    )  # no CustSpaceId
    api.world.run_senders()
    status, error = api.json("POST", f"/jobs/{body['job_id']}/reconcile")
    assert (
        status == 409
        and error["error"]["code"] == "not_reconcilable"
        and "CustSpaceId" in error["error"]["message"]
    )
    status, error = api.json("POST", f"/jobs/{body['job_id']}/resend-uncertain")
    assert status == 409 and error["error"]["code"] == "not_resent"
    status, error = api.json("POST", f"/jobs/{body['job_id']}/reconcile", {"cust_space": "x"})
    assert status == 400 and "known: cust_space_id, reconcile" in error["error"]["message"]
    status, fine = api.json("POST", f"/jobs/{body['job_id']}/reconcile", {"cust_space_id": "cs-1"})
    assert status == 200 and fine["found"] == 38  # sent without CustSpaceId: the account's own space
    assert len(cloud.cams.backend.received) == 38


@pytest.mark.parametrize("dispatch", ["drain", "per-batch"])
def test_a_batch_refused_for_one_number_is_split_in_the_cloud(cloud: LocalCloud, dispatch: str) -> None:
    api = Api(cloud, dispatch=dispatch)
    items = recipients(150, 10)
    bad = ["8613810000007", "8613810000120"]
    cloud.cams.backend.configure(refused_numbers=bad)
    _, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": items})
    api.world.run_senders(duplicate=True)
    received = Counter(cloud.cams.backend.received_count_by_number())
    assert len(received) == 146 and set(received.values()) == {1} and not set(bad) & set(received)
    _, job = api.json("GET", f"/jobs/{body['job_id']}")
    assert (job["status"], job["sent"], job["failed"], job["pending"]) == ("completed", 146, 2, 0)
    rows = api.report(body["job_id"])
    assert [int(r["line"]) for r in rows] == list(range(1, 151))
    assert sorted(r["to"] for r in rows if r["status"] == "failed") == bad


def test_a_job_finished_with_uncertain_batches_is_looked_up_by_itself(cloud: LocalCloud) -> None:
    """The finalizer schedules a lookup (reconcile_after s later): what CAMS has becomes sent and the report
    object is written again; what it does not have stays uncertain, never resent without the operator."""
    api = Api(cloud)
    backend = cloud.cams.backend
    backend.reply_non_json_next(1, http_status=502, accept=True)
    backend.reply_non_json_next(1, http_status=502, accept=False)
    _, body = api.json(
        "POST", "/jobs", {"options": {**OPTIONS, "CustSpaceId": "cs-3"}, "recipients": recipients(150, 11)}
    )
    job_id = body["job_id"]
    api.world.run_senders()
    sent_first = [e for e in api.world.invoker.queue]
    assert sent_first == []  # the lookup event was delivered by run_senders (it ignores delays)
    _, job = api.json("GET", f"/jobs/{job_id}")
    # the batch CAMS never saw (48 or 50 recipients: whichever call came second) stays uncertain
    assert (
        job["status"] == "completed"
        and job["uncertain"] in (48, 50)
        and job["sent"] + job["uncertain"] == 148
    )
    summary = json.loads(api.world.object(f"reports/api/{job_id}.summary.json"))
    assert (summary["sent"], summary["uncertain"]) == (
        job["sent"],
        job["uncertain"],
    )  # the report, written again
    assert Counter(backend.received_count_by_number().values()) == {1: job["sent"]}  # nothing resent


def test_a_job_past_its_retention_answers_its_summary_and_410_for_its_report(cloud: LocalCloud) -> None:
    """Retention (issue 17): the summary is written when the job finishes; once the rows tables' TTL has passed
    (the local Tablestore ages them), GET /jobs/{id} shows the kept counts and when the rows went, and the
    report is 410 Gone with the summary, never an empty CSV."""
    clock = Clock()
    api = Api(cloud, clock=clock)
    status, body = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(12, seed=9)})
    assert status == 202, body
    job_id = body["job_id"]
    api.world.run_senders()
    status, job = api.json("GET", f"/jobs/{job_id}")
    assert status == 200 and job["status"] == "completed" and job["finished_at"]
    assert "rows_purged_at" not in job
    assert len(api.report(job_id)) == 12
    stored = api.world.store.get_job(job_id)
    assert stored is not None and (stored.summary["sent"], stored.summary["invalid"]) == (10, 1)

    prefix = api.world.store.settings.table_prefix
    for table in ("rows", "batches"):  # a month and a day later: past the tables' 30-day TTL
        cloud.tablestore.backend.age_rows(f"{prefix}{table}", 31 * 86400, cloud.tablestore.instance_name)
    clock.now += 31 * 86400
    assert list(api.world.store.report_rows(job_id)) == []  # the rows are gone from the store
    status, gone = api.json("GET", f"/jobs/{job_id}/report")
    assert status == 410, gone
    assert gone["error"]["code"] == "rows_purged" and "CHATAPP_RETENTION_DAYS" in gone["error"]["message"]
    assert gone["rows_purged_at"] and (gone["summary"]["sent"], gone["summary"]["duplicate"]) == (10, 1)
    status, job = api.json("GET", f"/jobs/{job_id}")
    assert status == 200 and job["status"] == "completed"
    assert (job["sent"], job["invalid"], job["duplicate"], job["pending"]) == (10, 1, 1, 0)
    assert job["retention"].startswith("rows purged on ")
    status, refused = api.json("POST", f"/jobs/{job_id}/reconcile")  # nothing left to look up
    assert status == 410 and refused["error"]["code"] == "rows_purged"
