"""End to end: a job sent by `chatapp-mass send` (a real process, the real SDK) to the local CAMS, then the
receipts CAMS would push for exactly what it received (its recorded TaskId per message), posted by hand to the
api function's handler over the same SQLite store: out of order, repeated, one for a TaskId no job sent. The
report, `status` and `receipts unmatched` then say what the receipts said, recipient by recipient."""

from __future__ import annotations

import csv
import io
import json
import random
import secrets
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, cast

from fakes import Invocations, Objects
from test_send import cams, sample, send  # noqa: F401 - the local CAMS fixture

from alibaba_localcloud.cams import LocalCams
from chatapp_mass.entry.console import serve
from chatapp_mass.entry.http_api import ApiSettings, HttpEvent, JobsApi
from chatapp_mass.services.jobs import FunctionSettings
from chatapp_mass.store.sqlite import SqliteStore

KEY = secrets.token_urlsafe(18)
AT = 1_765_000_000_000  # ms


def post(api: JobsApi, path: str, body: Any) -> dict[str, Any]:
    event = {
        "rawPath": path,
        "body": json.dumps(body),
        "headers": {"Content-Type": "application/json"},
        "queryParameters": {"key": KEY},
        "requestContext": {"http": {"method": "POST", "path": path}},
    }
    response = serve(api, HttpEvent.model_validate(event))
    assert response["statusCode"] == 200, response
    return cast(dict[str, Any], json.loads(response["body"]))


def test_the_report_of_a_sent_job_says_what_its_receipts_said(cams: LocalCams, tmp_path: Path) -> None:  # noqa: F811
    csv_path = sample(tmp_path, 300)
    store_path = tmp_path / "state.db"
    result = send(cams, csv_path, store_path, "--batch-size", "40")
    assert result.returncode == 0, result.stderr
    received = list(cams.backend.received)
    assert len({m.task_id for m in received}) > 3  # a TaskId per batch

    # what each number's receipts will say, and the reports for it, in order then shuffled with repeats
    rng = random.Random(11)
    said: dict[str, str] = {}
    reports = []
    for m in received:
        final = rng.choice(["Read", "Delivered", "Failed", "Sent", "none"])
        said[m.to] = "" if final == "none" else final.lower()
        steps = {"Read": ["Sent", "Delivered", "Read"], "Delivered": ["Sent", "Delivered"],
                 "Failed": ["Sent", "Failed"], "Sent": ["Sent"], "none": []}[final]  # fmt: skip
        for k, status in enumerate(steps):
            reports.append(
                {
                    "MessageId": m.message_id,
                    "TaskId": m.task_id,
                    "From": m.from_,
                    "To": m.to,
                    "Status": status,
                    "Timestamp": AT + 1000 * k,
                    "ErrorCode": "131049" if status == "Failed" else "",
                    "ErrorDescription": "healthy ecosystem engagement" if status == "Failed" else "",
                }  # fmt: skip
            )
    reports += reports[::5]
    rng.shuffle(reports)
    stray = {
        "MessageId": "x",
        "TaskId": "123123123123123123",
        "To": "6591234567",
        "Status": "Read",
        "Timestamp": AT,
    }

    store = SqliteStore(str(store_path))
    api = JobsApi(
        store,
        cast(Any, Objects()),
        cast(Any, Invocations()),
        FunctionSettings(bucket="b"),
        ApiSettings(token="t" * 40, receipt_key=KEY),
    )
    accepted = 0
    for start in range(0, len(reports), 100):
        accepted += post(api, "/receipts", reports[start : start + 100])["accepted"]
    assert accepted == len(reports)
    assert post(api, "/receipts", [stray])["accepted"] == 1
    store.close()

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chatapp_mass", *args, "--store", f"sqlite:///{store_path}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    job_id = cli("jobs").splitlines()[1].split()[0]
    out = tmp_path / "report.csv"
    cli("report", job_id, "--out", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 300
    by_number = {r["to"]: r for r in rows if r["status"] == "sent"}
    assert {n: by_number[n]["delivery"] for n in said} == said
    for number, state in said.items():
        row = by_number[number]
        assert (row["delivery_code"], row["delivery_message"]) == (
            ("131049", "healthy ecosystem engagement") if state == "failed" else ("", "")
        )
        second = {"": None, "sent": 0, "failed": 1, "delivered": 1, "read": 2}[state]
        assert row["delivery_at"] == ("" if second is None else f"2025-12-06T05:46:4{second}Z")
    assert {r["delivery"] for r in rows if r["status"] != "sent"} == {""}

    counts = Counter(said.values())
    delivery = json.loads(cli("status", job_id, "--json"))["delivery"]
    assert (delivery["read"], delivery["failed"]) == (counts["read"], counts["failed"])
    assert delivery["delivered"] == counts["read"] + counts["delivered"]
    assert delivery["sent"] == counts["read"] + counts["delivered"] + counts["sent"]
    assert f"delivery: accepted {len(said):,}, sent" in cli("status", job_id)
    assert delivery["failed_codes"] == ({"131049": counts["failed"]} if counts["failed"] else {})
    assert delivery["awaiting"] == counts["sent"] + counts[""]

    unmatched = json.loads(cli("receipts", "unmatched", "--json"))["unmatched"]
    assert [(u["task_id"], u["to"], u["status"]) for u in unmatched] == [
        ("123123123123123123", "6591234567", "read")
    ]
    assert "123123123123123123" in cli("receipts", "unmatched")
