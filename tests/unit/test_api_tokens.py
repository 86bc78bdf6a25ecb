"""Scoped API tokens (issue 16): read / send / admin entries stored as hashes, several at once, a minimum length;
401 with WWW-Authenticate, 403 insufficient_scope, 405 with Allow; the console's session carries the scope; the
``chatapp-mass token new`` command. Through the api function's front (console.serve), on the local cloud."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.tokens import Scope, TokenEntry, match, parse_entries, token_digest
from chatapp_mass.entry.cli import main
from chatapp_mass.entry.http_api import JOB_METHODS, ApiSettings
from chatapp_mass.entry.localcloud import LocalCloud

from test_console import Browser
from test_http_api import OPTIONS, TOKEN, Api, recipients

READ = "read-token-" + "r" * 32
SEND = "send-token-" + "s" * 32

ENTRIES = tuple(
    TokenEntry(scope, token_digest(token)) for scope, token in ((Scope.read, READ), (Scope.send, SEND))
)
ACTIONS = ("cancel", "pause", "resume", "reconcile", "resend-uncertain")


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024
        yield local


def scoped(cloud: LocalCloud) -> Api:
    """An API taking a read and a send token (hashed entries) and the plain admin token of test_http_api."""
    return Api(cloud, tokens=ENTRIES)


def call(api: Api, token: str, method: str, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
    return api.call(method, path, body, auth=False, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def answer(response: dict[str, Any]) -> tuple[int, Any]:
    return response["statusCode"], json.loads(response["body"])


def test_a_read_token_reads_but_cannot_create_or_change_a_job(cloud: LocalCloud) -> None:
    api = scoped(cloud)
    status, created = answer(
        call(api, SEND, "POST", "/jobs", {"options": OPTIONS, "recipients": recipients(8)})
    )
    assert status == 202
    job_id = created["job_id"]
    api.world.invoker.queue.clear()  # nothing sent: the job stays as it is
    before = api.world.store.get_job(job_id)

    status, refused = answer(
        call(api, READ, "POST", "/jobs", {"options": OPTIONS, "recipients": recipients(8, seed=2)})
    )
    assert (status, refused["error"]["code"]) == (403, "insufficient_scope")
    assert "send" in refused["error"]["message"] and [j.job_id for j in api.world.store.list_jobs()] == [
        job_id
    ]
    for action in ACTIONS:
        response = call(api, READ, "POST", f"/jobs/{job_id}/{action}", b"")
        status, refused = answer(response)
        assert (status, refused["error"]["code"]) == (403, "insufficient_scope"), action
        assert 'error="insufficient_scope", scope="send"' in response["headers"]["WWW-Authenticate"]
        assert api.world.store.get_job(job_id) == before, f"{action} changed the job"
    assert api.world.invoker.queue == []

    for path in ("/jobs", f"/jobs/{job_id}", f"/jobs/{job_id}/report"):
        assert call(api, READ, "GET", path)["statusCode"] == 200, path


def test_a_send_token_can_create_pause_resume_and_cancel(cloud: LocalCloud) -> None:
    api = scoped(cloud)
    body = {
        "options": OPTIONS,
        "recipients": recipients(8, seed=3),
        "scheduledAt": "2099-01-01T09:00:00+08:00",
    }
    status, created = answer(call(api, SEND, "POST", "/jobs", body))
    assert status == 202 and created["status"] == "scheduled"
    job_id = created["job_id"]
    assert answer(call(api, SEND, "POST", f"/jobs/{job_id}/pause", b""))[1]["status"] == "paused"
    assert answer(call(api, SEND, "POST", f"/jobs/{job_id}/resume", b""))[0] == 202
    assert answer(call(api, SEND, "POST", f"/jobs/{job_id}/cancel", b""))[0] == 202
    assert api.world.store.get_job(job_id).status.value == "cancelled"  # type: ignore[union-attr]


def test_several_tokens_are_valid_at_once_and_a_removed_one_is_not(cloud: LocalCloud) -> None:
    old, new = "old-token-" + "o" * 32, "new-token-" + "n" * 32
    both = tuple(TokenEntry(Scope.send, token_digest(t)) for t in (old, new))
    rotating = Api(cloud, token="", tokens=both)
    assert call(rotating, old, "GET", "/jobs")["statusCode"] == 200
    assert call(rotating, new, "GET", "/jobs")["statusCode"] == 200
    rotated = Api(cloud, token="", tokens=both[1:])
    response = call(rotated, old, "GET", "/jobs")
    assert response["statusCode"] == 401
    assert response["headers"]["WWW-Authenticate"] == 'Bearer realm="chatapp-mass", error="invalid_token"'
    assert call(rotated, new, "GET", "/jobs")["statusCode"] == 200


def test_401_says_how_to_authenticate(cloud: LocalCloud) -> None:
    api = scoped(cloud)
    for method, path in (("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/x"), ("POST", "/jobs/x/cancel")):
        response = api.call(method, path, b"", auth=False)
        assert response["statusCode"] == 401
        assert response["headers"]["WWW-Authenticate"] == 'Bearer realm="chatapp-mass"'
        wrong = call(api, "w" * 40, method, path, b"")
        assert wrong["statusCode"] == 401 and 'error="invalid_token"' in wrong["headers"]["WWW-Authenticate"]
        assert answer(wrong)[1]["error"]["code"] == "invalid_token"


def test_405_names_the_allowed_methods(cloud: LocalCloud) -> None:
    api = scoped(cloud)
    response = call(api, TOKEN, "DELETE", "/jobs")
    assert (response["statusCode"], response["headers"]["Allow"]) == (405, "GET, POST")
    assert answer(response)[1]["error"]["code"] == "method_not_allowed"
    for action, methods in JOB_METHODS.items():
        other = "POST" if "GET" in methods else "GET"
        response = call(api, SEND, other, f"/jobs/abc{action}")
        assert (response["statusCode"], response["headers"]["Allow"]) == (405, ", ".join(methods)), action
        assert response["headers"]["Allow"] in ("GET", "POST")


def test_short_or_malformed_token_settings_are_refused_naming_the_variable() -> None:
    with pytest.raises(OptionsError, match=r"CHATAPP_API_TOKEN is 31 characters; .* at least 32"):
        ApiSettings.from_env({"CHATAPP_API_TOKEN": "x" * 31})
    with pytest.raises(OptionsError, match="CHATAPP_API_TOKEN"):
        ApiSettings(token="short")
    assert ApiSettings.from_env({"CHATAPP_API_TOKEN": "x" * 32}).entries[0].scope is Scope.admin
    digest = "ab" * 32
    with pytest.raises(OptionsError, match=r"CHATAPP_API_TOKENS entry 2 \(scope send\): the hash must be"):
        parse_entries(f"read:{digest}, send:abab", "CHATAPP_API_TOKENS")
    with pytest.raises(OptionsError) as pasted:  # the token itself where its hash belongs
        parse_entries(f"read:{READ}", "CHATAPP_API_TOKENS")
    assert READ[:6] not in str(pasted.value) and READ[-6:] not in str(pasted.value)
    with pytest.raises(OptionsError, match=r"CHATAPP_API_TOKENS entry 1 .*unknown scope 'root'"):
        ApiSettings.from_env({"CHATAPP_API_TOKENS": f"root:{digest}"})
    with pytest.raises(OptionsError, match="CHATAPP_API_TOKENS entry 1: expected scope:sha256hex"):
        ApiSettings.from_env({"CHATAPP_API_TOKENS": digest})
    settings = ApiSettings.from_env({"CHATAPP_API_TOKENS": f" read:{digest.upper()} ,admin:{'cd' * 32},"})
    assert [str(e) for e in settings.entries] == [f"read:{digest}", f"admin:{'cd' * 32}"]


def test_token_new_prints_a_token_and_its_entry() -> None:
    out = io.StringIO()
    assert main(["token", "new", "--scope", "read"], out=out) == 0
    text = out.getvalue()
    token = re.search(r"shown once\): (\S+)", text).group(1)  # type: ignore[union-attr]
    entry = re.search(r"CHATAPP_API_TOKENS: (\S+)", text).group(1)  # type: ignore[union-attr]
    assert len(token) >= 32 and entry == f"read:{token_digest(token)}"
    assert "rotate" in text and "remove the old" in text
    [parsed] = parse_entries(entry, "CHATAPP_API_TOKENS")
    assert match((parsed,), token) == parsed and match((parsed,), token + "x") is None
    out = io.StringIO()
    assert main(["token", "new", "--scope", "send", "--json"], out=out) == 0
    made = json.loads(out.getvalue())
    assert made["entry"] == f"send:{token_digest(made['token'])}"


def test_a_read_token_console_session_shows_jobs_without_actions(cloud: LocalCloud) -> None:
    api = scoped(cloud)
    status, created = answer(
        call(api, SEND, "POST", "/jobs", {"options": OPTIONS, "recipients": recipients(8)})
    )
    job_id = created["job_id"]
    api.world.invoker.queue.clear()
    before = api.world.store.get_job(job_id)
    browser = Browser(api)
    assert browser.sign_in(READ)["statusCode"] == 303
    jobs = browser.request("GET", "/console/")
    assert jobs["statusCode"] == 200 and job_id[:12] in jobs["body"] and "/console/new" not in jobs["body"]
    page = browser.request("GET", f"/console/jobs/{job_id}")
    assert page["statusCode"] == 200 and 'id="read-only"' in page["body"]
    assert 'id="pause"' not in page["body"] and 'id="cancel"' not in page["body"]
    assert browser.request("GET", f"/console/jobs/{job_id}/report")["statusCode"] == 200
    form_token = browser.form_token()
    for action in ("pause", "cancel", "resend"):
        refused = browser.request("POST", f"/console/jobs/{job_id}/{action}", {"form_token": form_token})
        assert refused["statusCode"] == 403 and "scope read" in refused["body"], action
    assert browser.request("GET", "/console/new")["statusCode"] == 403
    assert api.world.store.get_job(job_id) == before and api.world.invoker.queue == []
    signed_out = browser.request("POST", "/console/logout", {"form_token": form_token})
    assert signed_out["statusCode"] == 303, "a read session may still sign out"

    sender = Browser(api)
    assert sender.sign_in(SEND)["statusCode"] == 303
    page = sender.request("GET", f"/console/jobs/{job_id}")
    assert 'id="cancel"' in page["body"] and "/console/new" in page["body"]
    wrong = sender.request("GET", "/console/confirm")
    assert (wrong["statusCode"], wrong["headers"]["Allow"]) == (405, "POST"), (
        "the console's 405s say Allow too"
    )
