"""The ingest and sender core (chatapp_mass.services.jobs) in one process, against the local OSS, Tablestore and
CAMS through the real SDKs. Sender invocations go to a queue that the test drains by hand — including
duplicates and out-of-order deliveries — so the core's own guarantees are tested apart from the FC emulator
(tests/e2e runs the same through it)."""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections import Counter
from collections.abc import Iterator

import pytest

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.services.ingest import parse_oss_event
from chatapp_mass.services.jobs import EventError, resolve_options, sidecar_key
from chatapp_mass.services.sender import Sender, parse_sender_event
from chatapp_mass.store.interface import BatchStatus, JobStatus

from oracle import sample_bytes, valid_numbers
from world import META, World


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024  # every test's world has its own seven tables
        yield local


def test_upload_to_report_every_valid_recipient_once(cloud: LocalCloud) -> None:
    world = World(cloud, batch_size=100, senders=2)
    data = sample_bytes(700, seed=21)
    key = f"incoming/{secrets.token_hex(3)}/march.csv"
    [result] = world.ingest(world.upload(key, data))
    assert result.status == "planned", result.message
    assert [p for _, p, _ in world.invoker.queue] == [{"job_id": result.job_id, "drain": True}] * 2
    world.run_senders(duplicate=True)
    received = Counter(m.to for m in cloud.cams.backend.received)
    assert received == Counter({n: 1 for n in valid_numbers(data)})
    job = world.store.get_job(result.job_id)
    assert job is not None and job.status is JobStatus.completed
    stem = key[len("incoming/") : -len(".csv")]
    report_key = f"reports/{stem}.{result.job_id[:12]}.report.csv"
    rows = list(csv.DictReader(io.StringIO(world.object(report_key).decode())))
    assert [int(r["line"]) for r in rows] == list(range(2, 702))
    assert Counter(r["status"] for r in rows)["sent"] == len(valid_numbers(data))
    summary = json.loads(world.object(f"reports/{stem}.{result.job_id[:12]}.summary.json"))
    assert summary["status"] == "completed" and summary["sent"] == len(valid_numbers(data))
    assert summary["report"] == f"oss://{cloud.bucket}/{report_key}"


def test_repeated_event_is_the_same_job_and_a_new_upload_a_new_one(cloud: LocalCloud) -> None:
    world = World(cloud, batch_size=100)
    data = sample_bytes(150, seed=22)
    key = f"incoming/{secrets.token_hex(3)}.csv"
    event = world.upload(key, data)
    [first] = world.ingest(event)
    world.run_senders()
    calls = len(cloud.cams.backend.attempts)
    [again] = world.ingest(event)  # the same event delivered again
    assert (again.job_id, again.status) == (first.job_id, "resumed")
    world.run_senders()
    assert len(cloud.cams.backend.attempts) == calls
    [new] = world.ingest(world.upload(key, data))  # the same content uploaded again: a new job
    assert new.status == "planned" and new.job_id != first.job_id  # same bytes, same ETag: a new upload
    world.run_senders()
    assert len(cloud.cams.backend.attempts) > calls


def test_per_batch_dispatch_with_duplicate_and_reordered_events(cloud: LocalCloud) -> None:
    world = World(cloud, batch_size=50, dispatch="per-batch")
    data = sample_bytes(400, seed=23)
    [result] = world.ingest(world.upload(f"incoming/{secrets.token_hex(3)}.csv", data))
    refs = [p for _, p, _ in world.invoker.queue]
    assert refs == [{"job_id": result.job_id, "seq": i} for i in range(len(refs))] and len(refs) >= 7
    world.invoker.queue.reverse()
    world.run_senders(duplicate=True)
    assert Counter(m.to for m in cloud.cams.backend.received) == Counter({n: 1 for n in valid_numbers(data)})
    job = world.store.get_job(result.job_id)
    assert job is not None and job.status is JobStatus.completed


def test_options_layers_metadata_over_sidecar_over_defaults(cloud: LocalCloud) -> None:
    world = World(cloud, defaults={"language": "fr", "from": "8613800000009", "channeltype": "viber"})
    key = f"incoming/{secrets.token_hex(3)}.csv"
    world.bucket.put_object(
        sidecar_key(key),
        json.dumps({"TemplateCode": "T_WELCOME", "Language": "en", "default-country": "cn"}).encode(),
    )
    [result] = world.ingest(
        world.upload(key, b"to,name,code\n13866661234,Ana,A1\n", {"x-oss-meta-channel-type": "whatsapp"})
    )
    assert result.status == "planned", result.message
    job = world.store.get_job(result.job_id)
    assert job is not None
    assert job.options == {
        "ChannelType": "whatsapp",
        "TemplateCode": "T_WELCOME",
        "Language": "en",
        "From": "8613800000009",
    }
    assert job.intake["default_country"] == "CN"
    world.run_senders()
    assert [m.to for m in cloud.cams.backend.received] == ["8613866661234"]


def test_bad_options_fail_the_job_with_an_error_object(cloud: LocalCloud) -> None:
    world = World(cloud)
    key = f"incoming/{secrets.token_hex(3)}.csv"
    [result] = world.ingest(world.upload(key, b"to\n8613800000001\n", {"x-oss-meta-chanel-type": "whatsapp"}))
    assert result.status == "failed" and "unknown option 'chanel-type'" in result.message
    job = world.store.get_job(result.job_id)
    assert job is not None and job.status is JobStatus.failed and "chanel-type" in job.reason
    error = json.loads(world.object(f"reports/{key[len('incoming/') : -4]}.{result.job_id[:12]}.error.json"))
    assert (
        error["problem"] == "options"
        and "metadata" in error["error"]
        and "upload the CSV again" in error["fix"]
    )
    assert world.invoker.queue == [] and cloud.cams.backend.attempts == []


def test_unreadable_csv_fails_the_job_naming_the_line(cloud: LocalCloud) -> None:
    world = World(cloud)
    key = f"incoming/{secrets.token_hex(3)}.csv"
    [result] = world.ingest(world.upload(key, b"to,name\n8613800000001,Ana\n8613800000002,\xff\n"))
    assert result.status == "failed" and "line 3" in result.message
    error = json.loads(world.object(f"reports/{key[len('incoming/') : -4]}.{result.job_id[:12]}.error.json"))
    assert error["problem"] == "file" and "line 3" in error["error"]
    assert cloud.cams.backend.attempts == []


def test_objects_outside_the_prefix_or_not_csv_are_ignored(cloud: LocalCloud) -> None:
    world = World(cloud)
    [other] = world.ingest(world.upload("elsewhere/x.csv", b"to\n1\n"))
    [text] = world.ingest(world.upload("incoming/notes.txt", b"hello"))
    assert other.status == text.status == "skipped" and world.invoker.queue == []


def test_an_upload_names_its_recipient_column_in_metadata(cloud: LocalCloud) -> None:
    world = World(cloud)
    key = f"incoming/{secrets.token_hex(3)}.csv"
    meta = {**META, "x-oss-meta-recipient-column": "Cell"}
    [result] = world.ingest(world.upload(key, b"name,Cell\nAna,8613866661234\n", meta))
    assert result.status == "planned", result.message
    job = world.store.get_job(result.job_id)
    assert job is not None and job.intake["recipient_column"] == "Cell"
    world.run_senders()
    assert [m.to for m in cloud.cams.backend.received] == ["8613866661234"]


def test_resolve_options_reads_the_recipient_column_under_any_spelling() -> None:
    job = {"channel-type": "whatsapp", "template-code": "T", "language": "en", "from": "8613800000000"}
    for key in ("recipient-column", "recipient_column", "RecipientColumn"):
        _, intake = resolve_options([("meta", {key: " Phone Number "}), ("defaults", job)])
        assert intake.recipient_column == "Phone Number"


def test_resolve_options_refuses_unknown_and_malformed_values() -> None:
    with pytest.raises(OptionsError, match=r"sidecar: unknown option 'Templat'"):
        resolve_options([("sidecar", {"Templat": "x"})])
    with pytest.raises(OptionsError, match=r"meta: ttl='soon' is not a whole number"):
        resolve_options([("meta", {"ttl": "soon"})])
    with pytest.raises(OptionsError, match=r"options given: ChannelType from meta"):
        resolve_options([("meta", {"channel-type": "whatsapp"})])


def test_events_are_checked_at_the_edge() -> None:
    with pytest.raises(EventError, match="not an FC3 OSS trigger event"):
        parse_oss_event(b'{"events": [{"eventName": "ObjectCreated:PutObject"}]}')
    with pytest.raises(EventError, match="exactly one of"):
        parse_sender_event(b'{"job_id": "j"}')
    with pytest.raises(EventError, match="recipients"):
        parse_sender_event(b'{"job_id": "j", "seq": 1, "recipients": []}')
    assert parse_sender_event(b'{"job_id": "j", "seq": 3}').seq == 3


def test_a_batch_held_by_a_live_sender_is_looked_at_again_later(cloud: LocalCloud) -> None:
    world = World(cloud, batch_size=100, dispatch="per-batch")
    [result] = world.ingest(world.upload(f"incoming/{secrets.token_hex(3)}.csv", sample_bytes(120, seed=24)))
    world.invoker.queue.clear()
    assert world.store.transition_batch(
        result.job_id,
        0,
        expect=[BatchStatus.pending],
        to=BatchStatus.claimed,
        owner="other-host:1:x",
        claim_expires=2e9,
    )
    sender = Sender(world.store, world.cams, world.oss, world.invoker, world.settings)
    outcome = sender.handle(json.dumps({"job_id": result.job_id, "seq": 0}).encode(), deadline=1e12)
    assert outcome["calls"] == 0 and outcome["job"] == "running"
    [(_, payload, delay)] = world.invoker.queue
    assert payload == {"job_id": result.job_id, "seq": 0} and 0 < delay <= 3601
