"""The API's contract (chatapp_mass.entry.openapi): a valid OpenAPI 3.1 document, the one kept in docs/ is the one
the code builds, served at /openapi.json without a token, and its route table is the API's routing. What the
replies hold against it: tests/e2e/test_api_fuzz.py."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fakes import Invocations, Objects
from openapi_spec_validator import validate

from chatapp_mass.entry import cli
from chatapp_mass.entry.console import serve
from chatapp_mass.entry.http_api import ApiSettings, HttpEvent, JobsApi
from chatapp_mass.entry.openapi import ROUTES, build_document, document_text
from chatapp_mass.services.jobs import FunctionSettings
from chatapp_mass.store.sqlite import SqliteStore

KEPT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
TOKEN = "t" * 40


@pytest.fixture
def api(tmp_path: Path) -> Iterator[JobsApi]:
    store = SqliteStore(str(tmp_path / "jobs.db"))
    try:
        yield JobsApi(
            store,
            cast(Any, Objects()),
            cast(Any, Invocations()),
            FunctionSettings(bucket="b"),
            ApiSettings(token=TOKEN),
        )
    finally:
        store.close()


def call(api: JobsApi, method: str, path: str, **headers: str) -> dict[str, Any]:
    event = {
        "rawPath": path,
        "headers": headers,
        "requestContext": {"http": {"method": method, "path": path}},
    }
    return serve(api, HttpEvent.model_validate(event))


def test_the_document_is_valid_openapi_3_1() -> None:
    document = build_document()
    assert document["openapi"] == "3.1.0"
    validate(document)  # openapi-spec-validator: the 3.1 meta-schema and every $ref resolved


def test_the_kept_document_is_the_built_one() -> None:
    assert KEPT.read_text(encoding="utf-8") == document_text(), (
        "docs/openapi.json is not what the code builds: regenerate it with "
        "`chatapp-mass openapi > docs/openapi.json` and commit it"
    )


def test_the_cli_prints_it() -> None:
    out = io.StringIO()
    assert cli.main(["openapi"], out=out) == 0
    assert out.getvalue() == document_text()


def test_served_without_a_token_even_to_a_browser(api: JobsApi) -> None:
    for headers in ({}, {"Accept": "text/html,application/xhtml+xml"}, {"Authorization": "Bearer wrong"}):
        response = call(api, "GET", "/openapi.json", **headers)
        assert response["statusCode"] == 200, response
        assert response["headers"]["Content-Type"].startswith("application/json")
        assert json.loads(response["body"]) == build_document()
    assert call(api, "POST", "/openapi.json")["statusCode"] == 405
    refused = call(api, "GET", "/jobs")
    assert refused["statusCode"] == 401, "the rest still needs the token"
    assert refused["headers"]["WWW-Authenticate"].startswith('Bearer realm="chatapp-mass"'), (
        "as the contract says"
    )


def test_every_route_of_the_table_is_routed_and_every_status_documented(api: JobsApi) -> None:
    """Each route of the table reaches its handler (a job id that does not exist: 404 job_not_found, not a
    404 for an unknown route nor a 405), and the other method of each path is refused."""
    paths = build_document()["paths"]
    assert {(r.method, r.path) for r in ROUTES} == {(m, p) for p, ops in paths.items() for m in ops}
    for route in ROUTES:
        path = route.path.replace("{id}", "no-such-job")
        response = call(api, route.method.upper(), path, Authorization=f"Bearer {TOKEN}")
        body = json.loads(response["body"])
        if "{id}" in route.path:
            assert (response["statusCode"], body["error"]["code"]) == (404, "job_not_found"), route
        else:
            assert response["statusCode"] < 300 or body["error"]["code"] != "not_found", route
        assert str(response["statusCode"]) in paths[route.path][route.method]["responses"], route
        other = "POST" if route.method == "get" else "GET"
        if other.lower() not in paths[route.path]:
            assert call(api, other, path, Authorization=f"Bearer {TOKEN}")["statusCode"] == 405, route


def test_the_id_pattern_is_the_routers() -> None:
    from chatapp_mass.entry.http_api import JOB_PATH
    from chatapp_mass.entry.openapi import JOB_ID_PATTERN

    assert JOB_ID_PATTERN.strip("^$") in JOB_PATH.pattern
    assert re.fullmatch(JOB_ID_PATTERN.strip("^$"), "k" + "0" * 23)
