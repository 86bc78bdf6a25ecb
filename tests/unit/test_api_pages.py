"""``GET /jobs`` a page at a time (issue 16): ``limit`` and an opaque ``cursor``, ``next_cursor`` until the last
page; a bad cursor or limit is a 400 naming the parameter. Through the api function's front, on the local cloud."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from chatapp_mass.entry.http_api import decode_cursor, encode_cursor
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.store.interface import JobKey, JobRecord

from test_http_api import Api


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024
        yield local


def test_every_job_once_page_by_page_newest_first(cloud: LocalCloud) -> None:
    api = Api(cloud)
    for i, at in enumerate([1000.0, 3000.0, 2000.0, 3000.0, 1500.0, 2500.0, 3000.0]):
        api.world.store.create_job(
            JobRecord(
                job_id=f"j{i}", source="f.csv", options={}, intake={}, content_sha256="x", created_at=at
            )
        )
    whole = [j.job_id for j in api.world.store.list_jobs(100)]
    status, first = api.json("GET", "/jobs")
    assert status == 200 and [j["job_id"] for j in first["jobs"]] == whole and first["next_cursor"] is None
    for limit in (1, 2, 3, 6, 7):
        seen: list[str] = []
        query = {"limit": str(limit)}
        while True:
            status, page = api.json("GET", "/jobs", query=query)
            assert status == 200 and len(page["jobs"]) <= limit
            seen += [j["job_id"] for j in page["jobs"]]
            if page["next_cursor"] is None:
                break
            assert len(page["jobs"]) == limit
            query = {"limit": str(limit), "cursor": page["next_cursor"]}
        assert seen == whole, limit
    status, page = api.json("GET", "/jobs", query={"limit": "7"})
    assert page["next_cursor"] is None, "a last page that is full says so"


@pytest.mark.parametrize(
    "query, field",
    [
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": "e30"}, "cursor"),  # {} in base64url
        ({"cursor": base64.urlsafe_b64encode(b'[1.5, "../x"]').decode()}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'[true, "j1"]').decode()}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'["1", "j1"]').decode()}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'[NaN, "j1"]').decode()}, "cursor"),
        ({"cursor": "\u00e9\u00e9"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
def test_a_bad_cursor_or_limit_is_a_400_naming_it(
    cloud: LocalCloud, query: dict[str, str], field: str
) -> None:
    status, body = Api(cloud).json("GET", "/jobs", query=query)
    assert (status, body["error"]["code"], body["error"]["field"]) == (400, "invalid_parameter", field)


def test_a_cursor_round_trips_and_is_opaque() -> None:
    key = JobKey(1765000000.123456, "b0123456789abcdef01234567")
    cursor = encode_cursor(key)
    assert decode_cursor(cursor) == key and "=" not in cursor and key.job_id not in cursor
