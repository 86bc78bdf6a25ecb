"""Ingest accepts the OSS event's object key raw or URL-encoded (which one real events carry is unverified):
the local OSS emits both forms (``url_encode_event_keys``), the real SDKs read the objects back."""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Iterator
from urllib.parse import unquote_plus

import pytest

from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.store.interface import JobStatus

from oracle import sample_bytes, valid_numbers
from world import World


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024  # every test's world has its own ten tables
        yield local


@pytest.fixture
def encoding(cloud: LocalCloud, request: pytest.FixtureRequest) -> Iterator[bool]:
    cloud.oss.backend.url_encode_event_keys = request.param
    yield request.param
    cloud.oss.backend.url_encode_event_keys = False


def _key_forms(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.key_form for r in caplog.records if hasattr(r, "key_form")]


@pytest.mark.parametrize("encoding", [False, True], indirect=True, ids=["raw", "url-encoded"])
@pytest.mark.parametrize("name", ["März Liste ü.csv", "list one+two.csv", "plain.csv"])
def test_keys_with_spaces_and_non_ascii_run_as_jobs_in_both_forms(
    cloud: LocalCloud, encoding: bool, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(cloud, batch_size=100)
    data = sample_bytes(120, seed=31)
    key = f"incoming/{secrets.token_hex(3)}/{name}"
    event = world.upload(key, data)
    event_key = event["events"][0]["oss"]["object"]["key"]
    assert (event_key != key) == (encoding and name != "plain.csv")
    with caplog.at_level(logging.INFO, logger="chatapp_mass"):
        [result] = world.ingest(event)
    assert result.status == "planned", result.message
    assert result.key == key  # the object's real key, whichever form the event carried
    if event_key == key:
        assert "url-decoded" not in _key_forms(caplog)
        if unquote_plus(key) != key:  # a key that decoding would change: the raw form is checked and logged
            assert _key_forms(caplog) == ["raw"]
    else:
        assert _key_forms(caplog) == ["url-decoded"]
    world.run_senders()
    job = world.store.get_job(result.job_id)
    assert job is not None and job.status is JobStatus.completed
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter({n: 1 for n in valid_numbers(data)})


def test_a_key_missing_in_both_forms_fails_the_job_saying_so(cloud: LocalCloud) -> None:
    world = World(cloud)
    event = world.upload(f"incoming/{secrets.token_hex(3)}/gone soon.csv", sample_bytes(5, seed=32))
    key = event["events"][0]["oss"]["object"]["key"]
    world.bucket.delete_object(key)
    event["events"][0]["oss"]["object"]["key"] = key.replace(" ", "+")  # the encoded form, also absent
    [result] = world.ingest(event)
    assert result.status == "failed" and "NoSuchKey" in result.message
