"""The API against its contract (docs/openapi.json), by a property-based fuzzer: schemathesis generates requests
from the OpenAPI document for every operation, sends them over HTTP to the api function's trigger on the local
cloud (the local FC running the function from s.yaml, with the local Tablestore, OSS and CAMS), with an admin
token, and checks every reply: no 5xx, a status the operation documents, the documented content type and
headers, a body the documented schema accepts. At least 1,000 requests in all, every failure listed at the end.
Half the rounds are schemathesis's negative mode: requests the contract refuses (a wrong type, a missing field,
an id off its pattern, no token), which must get a documented 4xx (a 401 with its WWW-Authenticate).

Deterministic (a fixed seed per round, no example database) and it sends nothing: a submission without
``scheduledAt`` is given one in 2099, so the jobs it creates wait for the timer. The job ids in the paths are
the generated ones (404) or, as often, jobs the test made first (scheduled ones, and one that has sent), so
pause, resume, cancel, reconcile, resend and the report meet real jobs in changing states.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chatapp_mass.entry.localcloud import LocalCloud

from speed import budget

ROOT = Path(__file__).resolve().parents[2]
API = "chatapp-mass-api"
TOKEN = "fuzz-" + secrets.token_hex(20)
RECEIPT_KEY = "fuzz-" + secrets.token_hex(12)  # the receipt pushes' ?key= (no token there)
RECEIPT_ROUTES = {"POST /receipts", "POST /receipts/mns", "POST /inbound"}
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}
LATER = "2099-01-01T09:00:00"  # a schedule far away: a generated job never sends
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Generated requests per operation: submissions have the most to explore (three body types, the query's
# options and schedule, idempotency keys, previews).
EXAMPLES = {
    "POST /jobs": 320,
    "GET /openapi.json": 4,
    # receipts: an array of items, decoded one by one (bad ones counted): a few dozen cover the refusals
    **dict.fromkeys(RECEIPT_ROUTES, 40),
    "GET /receipts/unmatched": 20,
    # the suppression list: a list of numbers read as recipients are (that reading is fuzzed via POST /jobs)
    **dict.fromkeys(("GET /suppressions", "POST /suppressions", "DELETE /suppressions"), 50),
}
DEFAULT_EXAMPLES = 100  # x 9 other operations
ROUNDS = 4
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
MINIMUM = 1000


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path_factory.mktemp("fuzz") / "cloud"),
        function_environment={
            "CHATAPP_API_TOKEN": TOKEN,
            "CHATAPP_RECEIPT_KEY": RECEIPT_KEY,
            # the options a generated submission lacks: it gets as far as the plan (or the preview)
            "CHATAPP_DEFAULT_CHANNEL_TYPE": OPTIONS["ChannelType"],
            "CHATAPP_DEFAULT_TEMPLATE_CODE": OPTIONS["TemplateCode"],
            "CHATAPP_DEFAULT_LANGUAGE": OPTIONS["Language"],
            "CHATAPP_DEFAULT_FROM": OPTIONS["From"],
        },
    ) as local:
        yield local


def later(case: schemathesis.Case) -> None:
    """A submission's schedule, unless the generated request has one: 2099 (local time when it names a zone)."""
    if case.media_type == "application/json" and isinstance(case.body, dict):
        holder: dict[str, Any] = case.body
    else:
        case.query = holder = dict(case.query or {})
    if holder.get("scheduledAt") in (None, ""):
        holder["scheduledAt"] = LATER if holder.get("timeZone") else LATER + "+00:00"


def made_jobs(http: requests.Session, base: str) -> list[str]:
    """Jobs for the fuzzer's paths: three scheduled ones and one that has sent (completed, a report of rows)."""
    ids = []
    for n in range(3):
        body = {
            "options": OPTIONS,
            "recipients": [{"To": f"+8613900000{n:03d}"}],
            "scheduledAt": LATER + "+00:00",
        }
        response = http.post(f"{base}/jobs", json=body, timeout=budget(30))
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    body = {
        "options": OPTIONS,
        "recipients": [{"To": "+8613900001001"}, {"To": "+8613900001002"}, {"To": "1"}],
    }
    response = http.post(f"{base}/jobs", json=body, timeout=budget(30))
    assert response.status_code == 202, response.text
    sent = response.json()["job_id"]
    deadline = time.monotonic() + budget(60)
    while http.get(f"{base}/jobs/{sent}", timeout=budget(30)).json()["status"] != "completed":
        assert time.monotonic() < deadline, f"job {sent} did not complete"
        time.sleep(0.1)
    return [*ids, sent]


def fuzz(
    operation: Any, examples: int, round_: int, known: int, call: Callable[[schemathesis.Case, int], None]
) -> None:
    """``call`` each generated request of one operation (``examples`` of them, from the round's own fixed
    seed), with a number that picks a known job (or none)."""
    # odd rounds: requests the contract refuses (a wrong type, a missing required field, a bad pattern), which
    # must be refused with a documented 4xx; an operation without inputs has none
    inputs = operation.definition.raw.get("parameters") or operation.definition.raw.get("requestBody")
    mode = MODES[round_ % len(MODES)] if inputs else schemathesis.GenerationMode.POSITIVE

    @seed(round_)  # deterministic: the same requests on every run
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), pick=st.integers(0, 2 * known - 1))
    def run(case: schemathesis.Case, pick: int) -> None:
        call(case, pick)

    run()


def test_every_reply_is_in_the_contract(cloud: LocalCloud) -> None:
    base = cloud.fc.http_endpoint(API)
    http = requests.Session()
    http.trust_env = False  # loopback only, whatever proxies the environment names
    http.headers["Authorization"] = f"Bearer {TOKEN}"
    document = http.get(f"{base}/openapi.json", timeout=budget(30)).json()  # the served document, no token
    schema = schemathesis.openapi.from_dict(document)
    known = made_jobs(http, base)
    sent: Counter[str] = Counter()
    statuses: Counter[tuple[str, int]] = Counter()
    codes: Counter[tuple[str, str]] = Counter()
    failures: dict[str, str] = {}  # one per distinct failure: the first request that showed it
    started = time.monotonic()

    def call(case: schemathesis.Case, pick: int) -> None:
        label = f"{case.operation.method.upper()} {case.operation.path}"
        # the first two jobs are never cancelled: they go on being paused and resumed, round after round
        jobs = known[2:] if label.endswith("/cancel") else known
        if "id" in (case.path_parameters or {}) and pick < len(jobs):
            case.path_parameters = {**(case.path_parameters or {}), "id": jobs[pick]}
        if label == "POST /jobs":
            later(case)
        if (
            label in RECEIPT_ROUTES and pick % 2 == 0
        ):  # half with the function's key (else: as generated, 401)
            case.query = {**(case.query or {}), "key": RECEIPT_KEY}
        sent[label] += 1
        try:
            response = case.call_and_validate(
                base_url=base,
                session=http,
                headers={"Authorization": f"Bearer {TOKEN}"},
                checks=CHECKS,
                timeout=budget(60),
            )
            statuses[(label, response.status_code)] += 1
            if response.status_code >= 400:
                codes[(label, response.json()["error"]["code"])] += 1
        except (
            Exception,
            FailureGroup,
        ) as error:  # a check's failure (or a group of them): kept, the run goes on
            first = str(error).splitlines()[0] if str(error) else ""
            failures.setdefault(
                f"{label}: {type(error).__name__}: {first}", f"{error}\n{case.as_curl_command()}"
            )

    operations = [result.ok() for result in schema.get_all_operations()]
    for round_ in range(ROUNDS):  # the operations take turns, so each meets the jobs in the others' states
        for operation in operations:
            label = f"{operation.method.upper()} {operation.path}"
            fuzz(operation, EXAMPLES.get(label, DEFAULT_EXAMPLES) // ROUNDS, round_, len(known), call)

    elapsed = time.monotonic() - started
    total = sum(sent.values())
    print(
        f"\nfuzzer: {total} requests in {elapsed:.1f} s; statuses: {sorted(statuses.items())} {sorted(codes.items())}"
    )
    assert not failures, f"{len(failures)} distinct failures:\n\n" + "\n\n".join(failures.values())
    assert total >= MINIMUM, sent
    assert set(sent) == {
        f"{r.method.upper()} {r.path}" for r in map(lambda x: x.ok(), schema.get_all_operations())
    }
