"""The receipt routes of the HTTP API (entry.http_api) through the api function's handler, on the local
Tablestore, OSS and CAMS (tests/unit/test_http_api.py's harness): the URL's key, the refusals that say why, and a
job sent over HTTP whose receipts are pushed in both forms (out of order, repeated), then read back in its status
and report; an unknown TaskId listed as unmatched; a STOP reply opting its sender out."""

from __future__ import annotations

import base64
import json
import random
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.entry.http_api import ApiSettings, JobsApi
from chatapp_mass.entry.localcloud import LocalCloud

from test_http_api import OPTIONS, TOKEN, Api, recipients

KEY = "rk-" + secrets.token_hex(12)
AT = 1_765_000_000_000


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024
        yield local


class Hooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str]] = []

    def __call__(self, space: str, numbers: list[str], reason: str) -> None:
        self.calls.append((space, sorted(numbers), reason))


def receipt_api(cloud: LocalCloud, hooks: Hooks | None = None, key: str = KEY) -> Api:
    api = Api(cloud)
    world = api.world
    api.api = JobsApi(
        world.store,
        world.oss,
        world.invoker,
        world.settings,
        ApiSettings(token=TOKEN, receipt_key=key, max_body=200_000),
        cams=world.cams,
        on_opt_out=hooks,
    )
    return api


def push(api: Api, path: str, body: Any, key: str | None = KEY, method: str = "POST") -> tuple[int, Any]:
    return api.json(method, path, body, query={"key": key} if key is not None else None, auth=False)


def test_the_receipt_routes_need_the_url_key_and_say_why(cloud: LocalCloud) -> None:
    unset = receipt_api(cloud, key="")
    status, body = push(unset, "/receipts", [])
    assert (status, body["error"]["code"]) == (503, "receipts_not_configured")
    assert "CHATAPP_RECEIPT_KEY" in body["error"]["message"]

    api = receipt_api(cloud)
    for path in ("/receipts", "/receipts/mns", "/inbound"):
        assert push(api, path, [], key=None)[1]["error"] == {
            "code": "unauthenticated",
            "message": "the URL must carry ?key=<CHATAPP_RECEIPT_KEY>",
            "field": "key",
        }
        assert push(api, path, [], key=KEY[:-1] + "x")[1]["error"]["code"] == "invalid_key"
        assert push(api, path, [], key=KEY) == (
            200,
            {"code": 0, "msg": "success", "accepted": 0, "skipped": 0},
        )
    # a bearer token is no key
    response = api.call("POST", "/receipts", "[]")
    assert (response["statusCode"], json.loads(response["body"])["error"]["code"]) == (401, "unauthenticated")
    response = api.call("GET", "/receipts", query={"key": KEY}, auth=False)
    assert (response["statusCode"], response["headers"]["Allow"]) == (405, "POST")
    for bad, says in [({"MessageId": "1"}, "JSON array"), ("nope", "not JSON")]:
        status, body = push(api, "/receipts", bad)
        assert status == 400 and says in body["error"]["message"] and body["error"]["field"] == "body"
    assert api.call("GET", "/receipts/unmatched", auth=False)["statusCode"] == 401  # the bearer token's route
    assert api.json("GET", "/receipts/unmatched") == (200, {"unmatched": []})

    with pytest.raises(OptionsError, match="at least 16"):
        ApiSettings(receipt_key="short")
    assert ApiSettings.from_env({"CHATAPP_RECEIPT_KEY": f" {KEY} "}).receipt_key == KEY


def test_a_job_s_receipts_pushed_in_both_forms_reach_its_status_and_report(cloud: LocalCloud) -> None:
    hooks = Hooks()
    api = receipt_api(cloud, hooks)
    status, created = api.json("POST", "/jobs", {"options": OPTIONS, "recipients": recipients(120, seed=7)})
    assert status == 202, created
    api.world.run_senders()
    received = list(cloud.cams.backend.received)
    assert len(received) == 118 and len({m.task_id for m in received}) == 3  # batches of 50: three TaskIds

    def report(m: Any, status: str, k: int, **more: Any) -> dict[str, Any]:
        return {"MessageId": m.message_id or f"m{m.to}", "TaskId": m.task_id, "From": m.from_, "To": m.to,
                "Status": status, "Timestamp": AT + k * 1000, **more}  # fmt: skip

    reports = []
    for i, m in enumerate(received):
        reports.append(report(m, "Sent", 0))
        if i % 10 == 0:
            reports.append(report(m, "Failed", 1, ErrorCode=131026, ErrorDescription="Receiver is incapable"))
        else:
            reports.append(report(m, "Delivered", 1))
            if i % 2:
                reports.append(report(m, "Read", 2))
    reports += reports[::4]  # repeats
    random.Random(3).shuffle(reports)  # out of order
    unknown = report(received[0], "Delivered", 5) | {"TaskId": "404404404404404404"}
    http, mns = reports[: len(reports) // 2] + [unknown, "junk"], reports[len(reports) // 2 :]
    assert push(api, "/receipts", http) == (
        200,
        {"code": 0, "msg": "success", "accepted": len(http) - 1, "skipped": 1},
    )
    batch = [{"MessageId": f"q{i}", "MessageBody": base64.b64encode(json.dumps(r).encode()).decode()}
             for i, r in enumerate(mns)] + [{"MessageId": "bad", "MessageBody": "{"}]  # fmt: skip
    assert push(api, "/receipts/mns", batch)[1] == {
        "code": 0,
        "msg": "success",
        "accepted": len(mns),
        "skipped": 1,
    }

    status, job = api.json("GET", f"/jobs/{created['job_id']}")
    read, failed = sum(1 for i in range(118) if i % 10 and i % 2), sum(1 for i in range(118) if i % 10 == 0)
    assert job["delivery"] == {
        "accepted": 118,
        "sent": 118 - failed,
        "delivered": 118 - failed,
        "read": read,
        "failed": failed,
        "awaiting": 0,
        "failed_codes": {"131026": failed},
        "delivered_rate": round((118 - failed) / 118, 4),
        "read_rate": round(read / 118, 4),
        "failed_rate": round(failed / 118, 4),
    }
    lines = api.report(created["job_id"])
    rows = {r["to"]: r for r in lines if r["status"] == "sent"}
    for i, m in enumerate(received):
        row = rows[m.to]
        expected = "failed" if i % 10 == 0 else "read" if i % 2 else "delivered"
        assert row["delivery"] == expected, (i, row)
        assert row["delivery_code"] == ("131026" if expected == "failed" else "")
        assert row["delivery_at"] == (
            "2025-12-06T05:46:42Z" if expected == "read" else "2025-12-06T05:46:41Z"
        )
    assert {(r["status"], r["delivery"]) for r in lines if r["status"] != "sent"} == {
        ("invalid", ""),
        ("duplicate", ""),
    }

    status, listed = api.json("GET", "/receipts/unmatched")
    assert status == 200 and [(u["task_id"], u["to"], u["status"]) for u in listed["unmatched"]] == [
        ("404404404404404404", received[0].to, "delivered")
    ]
    assert api.json("GET", "/receipts/unmatched", query={"limit": "0"})[0] == 400

    inbound = [
        {
            "MessageId": "in1",
            "From": f"+{received[1].to}",
            "To": "8613800000000",
            "Type": "TEXT",
            "Message": "Stop",
        },
        {"MessageId": "in2", "From": received[2].to, "Type": "TEXT", "Message": "thanks!"},
    ]
    assert push(api, "/inbound", inbound)[1]["accepted"] == 2
    assert hooks.calls == [("default", [received[1].to], "stop-keyword")]
