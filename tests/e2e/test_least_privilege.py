"""Least privilege you can prove: with the local cloud enforcing each function's RAM policy
(deploy/ram-policy-<function>.json, placeholders filled), the serverless path works end to end, and for EVERY
statement of every policy, removing that one statement breaks a named part of it with the service's real
access-denied error.

One local cloud for the module (the functions stay warm); a test that removes a statement swaps the role's policy
(``LocalCloud.set_role_policy``: same credentials, new policy), runs its probe, waits until the functions are
idle, and puts the policy back. Each probe uses its own objects and jobs, so the probes do not see each other.
The deploy-time ``init`` policy (``chatapp-mass init-tables``) is proven on fresh Tablestore instances.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from alibaba_localcloud import ram
from chatapp_mass.core.errors import ChatAppMassError
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.store.interface import JobStatus
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

from speed import budget

ROOT = Path(__file__).resolve().parents[2]
INGEST, SENDER, API = "chatapp-mass-ingest", "chatapp-mass-sender", "chatapp-mass-api"
ROLES = {"ingest": INGEST, "sender": SENDER, "api": API}  # the s.yaml default role names
TOKEN = "lp-" + secrets.token_hex(16)
OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T_WELCOME", "Language": "en", "From": "8613800000000"}
META = {
    "x-oss-meta-channel-type": "whatsapp",
    "x-oss-meta-template-code": "T_WELCOME",
    "x-oss-meta-language": "en",
    "x-oss-meta-from": "8613800000000",
}
CSV = b"to,name\n8613800000001,Ana\n8613800000002,Bo\n"
NUMBERS = itertools.count(8613900000001)  # a recipient per API submission: no two bodies are the same


def recipient() -> list[dict[str, str]]:
    return [{"To": f"+{next(NUMBERS)}"}]


FINAL = {"completed", "cancelled", "stopped", "failed"}


def policy_file(function: str) -> dict[str, Any]:
    return json.loads((ROOT / "deploy" / f"ram-policy-{function}.json").read_text())


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with LocalCloud(
        s_yaml=str(ROOT / "s.yaml"),
        data_dir=str(tmp_path_factory.mktemp("least-privilege")),
        realistic=False,
        function_environment={
            "CHATAPP_BATCH_SIZE": "100",
            "CHATAPP_API_TOKEN": TOKEN,
            "CHATAPP_RECONCILE_AFTER": "1",  # a sender looks uncertain batches up a second after the job ends
            "CHATAPP_REPORT_INLINE_MAX": "200",  # a report of a few rows is "large": answered 302 (presigned)
        },
        fc_options={"retry_base_delay": 0.05, "retry_max_delay": 0.2},
    ) as local:
        yield local


# --- what happened, per service (the evidence a refusal leaves) ---------------------------------------------
class Marks:
    """Where each emulator's records stand now: a probe's evidence is what was recorded after it."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.keys = {a.access_key_id: role for role, a in cloud.fc.role_accounts.items()}
        self.oss = len(cloud.oss.backend.requests)
        self.ots = len(cloud.tablestore.backend.requests)
        self.cams = len(cloud.cams.backend.attempts)
        self.fc = len(cloud.fc.backend.denials)
        self.destinations = len(cloud.fc.backend.destinations)

    def refusals(self) -> set[tuple[str, str, str]]:
        """(role, service, what) for every request refused by RAM since the mark."""
        c, found = self.cloud, set()
        for r in c.oss.backend.requests[self.oss :]:
            if r.code == "AccessDenied" and r.access_key_id in self.keys:
                found.add((self.keys[r.access_key_id], "oss", f"{r.operation} {r.key}"))
        for t in c.tablestore.backend.requests[self.ots :]:
            if t.error_code == "OTSNoPermissionAccess":
                found.add((self.keys.get(t.access_key_id or "", "?"), "ots", t.api))
        for a in c.cams.backend.attempts[self.cams :]:
            if a.code == "Forbidden.RAM":
                found.add((self.keys.get(a.access_key_id or "", "?"), "cams", a.action or ""))
        for role, _action, resource, _ in c.fc.backend.denials[self.fc :]:
            found.add((role, "fc", resource.rsplit("/", 1)[-1]))
        for d in c.fc.backend.destinations[self.destinations :]:
            if d.refused:
                found.add((ROLES[d.function.rsplit("-", 1)[-1]], "mns", d.function))
        return found


def wait(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + budget(seconds)
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {budget(seconds):.0f} s")


def until(cloud: LocalCloud, check: Callable[[], Any], seconds: float = 30) -> Any:
    """``check()``'s value once it has one; None once everything is idle (OSS events delivered; no function
    event running, queued, retried or delayed) and it still has none: what was going to happen has happened."""

    def idle() -> bool:
        return bool(
            cloud.oss.backend.flush_events(budget(5))
            and cloud.fc.backend.wait_idle(0.2, include_delayed=True)
        )

    deadline = time.monotonic() + budget(seconds)
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if idle():
            value = check()  # what finished while we looked
            if value or idle():
                return value or None
        time.sleep(0.1)
    raise AssertionError(f"the functions are still busy after {budget(seconds):.0f} s")


def store(cloud: LocalCloud) -> TablestoreStore:
    c = cloud.credentials
    return TablestoreStore(
        TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=cloud.instance),
        access_key_id=c.access_key_id,
        access_key_secret=c.access_key_secret,
        security_token=c.security_token or "",
        create_tables=False,
    )


def owner_object(cloud: LocalCloud, key: str) -> bytes | None:
    import oss2

    try:
        return bytes(cloud.oss.oss2_bucket(cloud.bucket).get_object(key).read())
    except oss2.exceptions.NoSuchKey:
        return None


class Api:
    def __init__(self, cloud: LocalCloud) -> None:
        self.base = cloud.fc.http_endpoint(API)
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.http.post(f"{self.base}{path}", json=body, timeout=60)

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.base}{path}", timeout=60)

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


# --- the probes: each exercises some statements and says whether that part of the product works -------------
def final_job(cloud: LocalCloud, source: str) -> Any:
    s = store(cloud)
    try:
        return until(
            cloud,
            lambda: next(
                (j for j in s.list_jobs(200) if j.source == source and j.status.value in FINAL), None
            ),
        )
    finally:
        s.close()


def failures(cloud: LocalCloud) -> str:
    return "; ".join(
        f"{r.function}: {str(r.error)[:160]}" for r in cloud.fc.backend.invocations[-20:] if r.error
    )


def probe_upload(cloud: LocalCloud, tag: str) -> str:
    """A CSV uploaded under incoming/: ingest reads and plans it, invokes a sender, which sends through CAMS
    and writes the report. "" when it all happened, else what did not."""
    key = f"incoming/{tag}.csv"
    cloud.oss.oss2_bucket(cloud.bucket).put_object(key, CSV, headers=META)
    job = final_job(cloud, f"oss://{cloud.bucket}/{key}")
    if job is None:
        return f"no job finished ({failures(cloud)})"
    if job.status is not JobStatus.completed:
        return f"job {job.status.value}: {job.reason}"
    if not owner_object(cloud, f"reports/{tag}.{job.job_id[:12]}.report.csv"):
        return "no report"
    return ""


def probe_bad_options(cloud: LocalCloud, tag: str) -> str:
    """An upload without its options: ingest refuses it and writes the error report beside the reports."""
    key = f"incoming/{tag}.csv"
    bucket = cloud.oss.oss2_bucket(cloud.bucket)
    bucket.put_object(key, CSV)  # no x-oss-meta-*: no template

    def error_report() -> bool:
        names = [o.key for o in bucket.list_objects_v2(prefix=f"reports/{tag}.").object_list]
        return any(n.endswith(".error.json") for n in names)

    return "" if until(cloud, error_report) else f"no error report ({failures(cloud)})"


def _settled(cloud: LocalCloud) -> bool:
    return bool(
        cloud.oss.backend.flush_events(budget(5))
        and cloud.fc.backend.wait_idle(budget(10), include_delayed=True)
    )


def probe_dead_letter(cloud: LocalCloud, function: str) -> str:
    """A failed async event of ``function``: FC delivers it to the dead-letter queue with the function's role."""
    from alibabacloud_fc20230330 import models
    from darabonba.runtime import RuntimeOptions

    before = len(cloud.fc.backend.destinations)
    cloud.fc.backend.fail_next(function, 1, "InternalServerError")
    cloud.fc.fc_client().invoke_function_with_options(
        function,
        models.InvokeFunctionRequest(body=b'{"probe": "dead-letter"}'),
        models.InvokeFunctionHeaders(x_fc_invocation_type="Async"),
        RuntimeOptions(),
    )
    record = wait(
        lambda: next((d for d in cloud.fc.backend.destinations[before:] if d.function == function), None),
        15,
        "the destination delivery",
    )
    assert record.destination.startswith("acs:mns:") and record.condition == "SystemError"
    return "" if record.refused is None else f"not delivered: {record.refused}"


def probe_uncertain_reconciled_by_sender(cloud: LocalCloud, tag: str) -> str:
    """A send whose reply is lost (uncertain): the sender invokes itself a second later and finds the messages
    in ListChatappMessage; the summary then counts none uncertain."""
    key = f"incoming/{tag}.csv"
    cloud.cams.backend.reply_non_json_next(1, accept=True)
    cloud.oss.oss2_bucket(cloud.bucket).put_object(
        key, CSV, headers={**META, "x-oss-meta-cust-space-id": "cs-1"}
    )
    job = final_job(cloud, f"oss://{cloud.bucket}/{key}")
    if job is None:
        return f"no job finished ({failures(cloud)})"

    def looked_up() -> bool:
        summary = owner_object(cloud, f"reports/{tag}.{job.job_id[:12]}.summary.json")
        return bool(summary) and json.loads(summary or b"{}").get("uncertain") == 0

    return "" if until(cloud, looked_up) else f"uncertain batches not looked up ({failures(cloud)})"


def probe_api_list(cloud: LocalCloud, tag: str) -> str:
    response = Api(cloud).get("/jobs?limit=5")
    return (
        ""
        if response.status_code == 200
        else f"GET /jobs answered {response.status_code}: {response.text[:300]}"
    )


def submitted_job_completes(cloud: LocalCloud, body: dict[str, Any]) -> str:
    """POST /jobs with ``body``, then wait for the job: "" when it completed, else what went wrong."""
    api = Api(cloud)
    response = api.post("/jobs", body)
    if response.status_code not in (200, 201, 202):
        return f"POST /jobs answered {response.status_code}: {response.text[:300]}"
    job_id = response.json()["job_id"]
    job = until(cloud, lambda: (j := api.job(job_id))["status"] in FINAL and j)
    if job is None:
        return f"job {api.job(job_id)['status']} ({failures(cloud)})"
    return "" if job["status"] == "completed" else f"job {job['status']}: {job.get('reason')}"


def probe_api_submit(cloud: LocalCloud, tag: str) -> str:
    """POST /jobs with recipients: planned by the api, sent by senders it invokes."""
    return submitted_job_completes(cloud, {"options": OPTIONS, "recipients": recipient()})


def probe_api_source(cloud: LocalCloud, tag: str) -> str:
    """POST /jobs naming a CSV in OSS (a console upload): the api reads its head and hands it to ingest."""
    key = f"console-uploads/{tag}.csv"
    cloud.oss.oss2_bucket(cloud.bucket).put_object(key, CSV)
    return submitted_job_completes(cloud, {"options": OPTIONS, "source": key})


def probe_api_source_incoming(cloud: LocalCloud, tag: str) -> str:
    """POST /jobs naming a CSV under incoming/ (uploaded without options, so ingest's own job of it fails)."""
    key = f"incoming/{tag}-src.csv"
    cloud.oss.oss2_bucket(cloud.bucket).put_object(key, CSV)
    return submitted_job_completes(cloud, {"options": OPTIONS, "source": key})


def probe_api_cancel(cloud: LocalCloud, tag: str) -> str:
    """A scheduled job cancelled: the api writes its report (nothing was sent)."""
    api = Api(cloud)
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    response = api.post("/jobs", {"options": OPTIONS, "recipients": recipient(), "scheduledAt": later})
    assert response.status_code in (200, 201, 202), response.text
    job_id = response.json()["job_id"]
    cancelled = api.post(f"/jobs/{job_id}/cancel", {})
    if cancelled.status_code not in (200, 202):
        return f"cancel answered {cancelled.status_code}: {cancelled.text[:300]}"
    if not owner_object(cloud, f"reports/api/{job_id}.report.csv"):
        return "no report"
    return ""


def probe_api_big_report(cloud: LocalCloud, tag: str) -> str:
    """GET /jobs/{id}/report of a report over CHATAPP_REPORT_INLINE_MAX: 302 to a presigned URL (the api's
    HeadObject of the report, then the download, signed with the api's credentials), fetched with no
    credentials at all."""
    api = Api(cloud)
    recipients = [{"To": f"+{next(NUMBERS)}"} for _ in range(4)]
    response = api.post("/jobs", {"options": OPTIONS, "recipients": recipients})
    if response.status_code not in (200, 201, 202):
        return f"POST /jobs answered {response.status_code}: {response.text[:300]}"
    job_id = response.json()["job_id"]
    job = until(cloud, lambda: (j := api.job(job_id))["status"] in FINAL and j)
    if job is None or job["status"] != "completed":
        return f"job {api.job(job_id)['status']} ({failures(cloud)})"
    report = api.http.get(f"{api.base}/jobs/{job_id}/report", timeout=60, allow_redirects=False)
    if report.status_code != 302:
        return f"GET /jobs/{{id}}/report answered {report.status_code}, not 302 (its HeadObject refused?)"
    download = requests.get(report.headers["Location"], timeout=60)
    if download.status_code != 200 or download.content != owner_object(
        cloud, f"reports/api/{job_id}.report.csv"
    ):
        return f"the presigned URL answered {download.status_code}: {download.text[:300]}"
    return ""


def probe_api_reconcile(cloud: LocalCloud, tag: str) -> str:
    """A job left uncertain (no CustSpaceId, so nothing looked it up): POST /jobs/{id}/reconcile lists CAMS."""
    api = Api(cloud)
    cloud.cams.backend.reply_non_json_next(1, accept=True)
    response = api.post("/jobs", {"options": OPTIONS, "recipients": recipient()})
    assert response.status_code in (200, 201, 202), response.text
    job_id = response.json()["job_id"]
    if not until(cloud, lambda: api.job(job_id)["status"] in FINAL):
        return f"job {api.job(job_id)['status']} ({failures(cloud)})"
    reconciled = api.post(f"/jobs/{job_id}/reconcile", {"cust_space_id": "cs-2"})
    if reconciled.status_code != 200:
        return f"reconcile answered {reconciled.status_code}: {reconciled.text[:300]}"
    return "" if reconciled.json()["uncertain"] == 0 else f"still uncertain: {reconciled.text[:300]}"


def probe_console_upload(cloud: LocalCloud, tag: str) -> str:
    """The console's new-job form with a file: the api stores the upload under console-uploads/ and previews it."""
    import re

    from chatapp_mass.entry.console import COOKIE

    base = cloud.fc.http_endpoint(API)
    browser = requests.Session()
    browser.trust_env = False
    browser.headers.update({"Accept": "text/html", "Origin": base})
    signed_in = browser.post(
        f"{base}/console/login", data={"token": TOKEN}, allow_redirects=False, timeout=60
    )
    assert COOKIE in signed_in.headers.get("Set-Cookie", ""), signed_in.text[:300]
    page = browser.get(f"{base}/console/", timeout=60).text
    form_token = re.search(r'name="form_token" value="([0-9a-f]{32})"', page)
    assert form_token, page[:300]
    preview = browser.post(
        f"{base}/console/new",
        data={"form_token": form_token.group(1), **OPTIONS},
        files={"file": (f"{tag}.csv", CSV, "text/csv")},
        timeout=60,
    )
    if preview.status_code != 200 or "Nothing has been sent" not in preview.text:
        return f"the upload's preview answered {preview.status_code}"
    return ""


def dead_letter(function: str) -> Callable[[LocalCloud, str], str]:
    return lambda cloud, tag: probe_dead_letter(cloud, function)


@dataclass(frozen=True)
class Proof:
    """How one statement is proven necessary: the probe it breaks, and the refusal that names it."""

    probe: Callable[[LocalCloud, str], str]
    service: str  # where the refusal is recorded
    what: str  # part of the refused operation, API, action or function


def proof(function: str, statement: dict[str, Any]) -> Proof:
    """The proof for a statement, chosen by what it grants (so a reordered policy keeps its proofs)."""
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    action, resource = actions[0], " ".join(resources)
    if action == "mns:SendMessage":
        return Proof(dead_letter(ROLES[function]), "mns", ROLES[function])
    if action.startswith("ots:"):
        api_probe = {"ingest": probe_upload, "sender": probe_upload, "api": probe_api_list}[function]
        return Proof(api_probe, "ots", "")
    table: dict[tuple[str, ...], Proof] = {
        ("ingest", "oss:GetObject"): Proof(probe_upload, "oss", "Object incoming/"),
        ("ingest", "oss:PutObject"): Proof(probe_bad_options, "oss", "PutObject reports/"),
        ("ingest", "fc:InvokeFunction"): Proof(probe_upload, "fc", SENDER),
        ("sender", "cams:SendChatappMassMessage"): Proof(probe_upload, "cams", "SendChatappMassMessage"),
        ("sender", "cams:ListChatappMessage"): Proof(
            probe_uncertain_reconciled_by_sender, "cams", "ListChatappMessage"
        ),
        ("sender", "oss:PutObject"): Proof(probe_upload, "oss", "PutObject reports/"),
        ("sender", "fc:InvokeFunction"): Proof(probe_uncertain_reconciled_by_sender, "fc", SENDER),
        ("api", "oss:GetObject"): Proof(probe_api_source, "oss", "HeadObject console-uploads/"),
        ("api", "oss:PutObject", "reports"): Proof(probe_api_cancel, "oss", "PutObject reports/api/"),
        ("api", "oss:PutObject", "console-uploads"): Proof(
            probe_console_upload, "oss", "PutObject console-uploads/"
        ),
        ("api", "cams:ListChatappMessage"): Proof(probe_api_reconcile, "cams", "ListChatappMessage"),
    }
    if (function, action) == ("api", "fc:InvokeFunction"):
        target = SENDER if resource.endswith(f"functions/{SENDER}") else INGEST
        return Proof(probe_api_submit if target == SENDER else probe_api_source, "fc", target)
    if (function, action) == ("api", "oss:GetObject") and "/reports/" in resource:
        return Proof(probe_api_big_report, "oss", "HeadObject reports/api/")
    if (function, action) == ("api", "oss:PutObject"):
        return table[(function, action, "reports" if "/reports/" in resource else "console-uploads")]
    return table[(function, action)]


STATEMENTS = [
    pytest.param(
        function,
        index,
        id=f"{function}-{index}-{s['Action'] if isinstance(s['Action'], str) else s['Action'][0]}",
    )
    for function in ("ingest", "sender", "api")
    for index, s in enumerate(policy_file(function)["Statement"])
]


# --- the tests -------------------------------------------------------------------------------------------------
def test_the_serverless_path_works_with_the_policies(cloud: LocalCloud) -> None:
    probes = {
        "upload": probe_upload,
        "bad-options": probe_bad_options,
        "uncertain": probe_uncertain_reconciled_by_sender,
        "api-list": probe_api_list,
        "api-submit": probe_api_submit,
        "api-source": probe_api_source,
        "api-cancel": probe_api_cancel,
        "api-reconcile": probe_api_reconcile,
        "console-upload": probe_console_upload,
        "api-source-incoming": probe_api_source_incoming,
        "api-big-report": probe_api_big_report,
        **{f"dead-letter-{f}": dead_letter(ROLES[f]) for f in ("ingest", "sender", "api")},
    }
    marks = Marks(cloud)
    for name, probe in probes.items():
        assert probe(cloud, f"ok-{name}") == "", name
    _settled(cloud)
    assert marks.refusals() == set(), "nothing the functions do is refused"


def assert_needed(
    cloud: LocalCloud, role: str, reduced: ram.Policy | dict[str, Any], why: Proof, tag: str, removed: str
) -> None:
    """Under ``reduced`` (a role's policy less one grant), ``why``'s probe breaks, and ``why.service`` refused
    ``role`` naming ``why.what``; the role's own policy is put back whatever happens."""
    original = cloud.set_role_policy(role, reduced)
    marks = Marks(cloud)
    try:
        broken = why.probe(cloud, tag)
        _settled(cloud)  # retries run out under the reduced policy too
        refusals = marks.refusals()
    finally:
        cloud.set_role_policy(role, original)
    assert broken, f"{removed}: the probe still works without it"
    named = {r for r in refusals if r[0] == role and r[1] == why.service and why.what in r[2]}
    assert named, (
        f"expected a {why.service} refusal of {role} naming {why.what!r}; got {sorted(refusals)} ({broken})"
    )


@pytest.mark.parametrize(("function", "index"), STATEMENTS)
def test_removing_any_statement_breaks_a_named_part(cloud: LocalCloud, function: str, index: int) -> None:
    statement = policy_file(function)["Statement"][index]
    why = proof(function, statement)
    role = ROLES[function]
    reduced = ram.Policy.parse(ram.fill(json.dumps(policy_file(function)), cloud.policy_values())).without(
        index
    )
    assert_needed(
        cloud, role, reduced, why, f"without-{function}-{index}", f"{function} statement {index} {statement}"
    )


# a statement with several resources: each resource is needed too
RESOURCE_PROOFS = {
    ("ingest", "incoming/*"): Proof(probe_upload, "oss", "Object incoming/"),
    ("ingest", "console-uploads/*"): Proof(probe_api_source, "oss", "Object console-uploads/"),
    ("api", "incoming/*"): Proof(probe_api_source_incoming, "oss", "HeadObject incoming/"),
    ("api", "console-uploads/*"): Proof(probe_api_source, "oss", "HeadObject console-uploads/"),
}
RESOURCES = [
    pytest.param(function, index, resource, id=f"{function}-{index}-{resource.rsplit('/', 2)[-2]}")
    for function in ("ingest", "sender", "api")
    for index, s in enumerate(policy_file(function)["Statement"])
    if isinstance(s["Resource"], list) and len(s["Resource"]) > 1
    for resource in s["Resource"]
]


@pytest.mark.parametrize(("function", "index", "resource"), RESOURCES)
def test_removing_any_resource_of_a_statement_breaks_a_named_part(
    cloud: LocalCloud, function: str, index: int, resource: str
) -> None:
    document = policy_file(function)
    document["Statement"][index]["Resource"].remove(resource)
    why = RESOURCE_PROOFS[(function, resource.split("}/", 1)[-1])]
    role = ROLES[function]
    tag = f"without-{function}-{index}-{secrets.token_hex(3)}"
    assert_needed(cloud, role, document, why, tag, f"{function} statement {index} without {resource}")


@pytest.fixture(scope="module")
def bare_cloud() -> Iterator[LocalCloud]:
    with LocalCloud(product_tables=False, realistic=False) as local:
        yield local


def init_as(cloud: LocalCloud, policy: ram.Policy, instance: str) -> dict[str, Any]:
    cloud.tablestore.backend.add_instance(instance, cloud.credentials.region_id)
    keys = cloud.add_role(f"init-{instance}", policy)
    s = TablestoreStore(
        TablestoreSettings(endpoint=cloud.tablestore.endpoint, instance=instance),
        access_key_id=keys.access_key_id,
        access_key_secret=keys.access_key_secret,
        security_token=keys.security_token or "",
        create_tables=False,
    )
    try:
        # then again as the retention setting changes: the TTL of the rows tables is updated (retention)
        first = s.init_tables()
        again = s.init_tables(retention_days=7)
        assert again["updated"] == sorted(again["time_to_live"]), again
        return first
    finally:
        s.close()


def init_policy(cloud: LocalCloud, instance: str) -> ram.Policy:
    values = {**cloud.policy_values(), "instance": instance}
    return ram.Policy.parse(ram.fill(json.dumps(policy_file("init")), values))


def test_init_tables_works_with_the_init_policy(bare_cloud: LocalCloud) -> None:
    result = init_as(bare_cloud, init_policy(bare_cloud, "init-ok"), "init-ok")
    every = {"jobs", "job_index", "batches", "rows", "rate", "job_status", "requests"}  # the store's tables
    every |= {"receipts", "tasks", "receipts_aside", "reach", "suppressed", "suppressed_rows"}  # its features
    assert set(result["created"]) == {f"chatapp_{t}" for t in every} and result["existing"] == []
    assert init_as(bare_cloud, init_policy(bare_cloud, "init-ok"), "init-ok")["created"] == []  # idempotent


@pytest.mark.parametrize("index", range(len(policy_file("init")["Statement"])))
def test_init_tables_needs_every_statement(bare_cloud: LocalCloud, index: int) -> None:
    instance = f"init-without-{index}"
    statement = policy_file("init")["Statement"][index]
    with pytest.raises(ChatAppMassError, match="OTSNoPermissionAccess") as refused:
        init_as(bare_cloud, init_policy(bare_cloud, instance).without(index), instance)
    assert str(statement["Action"] if isinstance(statement["Action"], str) else statement["Action"][0]).split(
        ":"
    )[1] in str(refused.value), f"the refusal names the API of statement {index}: {refused.value}"


def test_each_function_policy_has_a_proof_for_every_statement() -> None:
    for function in ("ingest", "sender", "api"):
        for statement in policy_file(function)["Statement"]:
            assert proof(function, statement).probe is not None
