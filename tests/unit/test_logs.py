"""Structured logs: JSON with a fixed key order, numbers masked, secrets and template values never written."""

from __future__ import annotations

import io
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from chatapp_mass.runtime import logs


@pytest.fixture(autouse=True)
def _restore_logger() -> object:
    """logs.configure replaces the package logger's handler and level: later tests get them back."""
    logger = logging.getLogger("chatapp_mass")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def _log(level: str, message: str, **extra: object) -> list[dict[str, object]]:
    stream = io.StringIO()
    logs.configure(level, function="sender", stream=stream)
    logging.getLogger("chatapp_mass.test").info(message, extra=extra)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_entry_is_json_with_fixed_leading_keys_and_masked_numbers() -> None:
    [entry] = _log("INFO", "batch sent", job_id="j1", batch=3, to="8613866661234", code="OK")
    assert list(entry)[:6] == ["timestamp", "level", "message", "logger", "function", "job_id"]
    assert entry["to"] == "+86138****1234" and entry["code"] == "OK" and entry["batch"] == 3


def test_secrets_and_template_values_are_dropped() -> None:
    [entry] = _log(
        "INFO",
        "x",
        access_key_secret="s3cret",
        security_token="tok",
        template_params={"code": "123456"},
        recipient="8613866661234",
    )
    text = json.dumps(entry)
    assert "s3cret" not in text and "tok" not in text and "123456" not in text
    assert entry["recipient"] == "+86138****1234"


def test_level_filters() -> None:
    assert _log("WARNING", "quiet") == []


# ------------------------------------------------------------------------------- invocation (FC request id)


@dataclass(frozen=True)
class _Function:
    name: str


@dataclass(frozen=True)
class _Context:  # the attributes of FC3's Python context that the logs read (ALIBABA-FACTS.md §1)
    request_id: str
    function: _Function


def _configured() -> io.StringIO:
    stream = io.StringIO()
    logs.configure("INFO", stream=stream)
    return stream


def _entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_of_an_invocation_carries_the_request_id_and_function_name() -> None:
    stream = _configured()
    log = logging.getLogger("chatapp_mass.test")
    log.info("before")
    with logs.invocation(_Context("1-6a1b-c2d3", _Function("chatapp-mass-sender"))) as fields:
        assert dict(fields) == {"request_id": "1-6a1b-c2d3", "function": "chatapp-mass-sender"}
        log.info("one", extra={"job_id": "j1", "to": "8613866661234"})
        log.warning("two")
    log.info("after")
    before, one, two, after = _entries(stream)
    assert "request_id" not in before and "request_id" not in after and "function" not in after
    for entry in (one, two):
        assert entry["request_id"] == "1-6a1b-c2d3" and entry["function"] == "chatapp-mass-sender"
    assert list(one)[:7] == ["timestamp", "level", "message", "logger", "function", "request_id", "job_id"]
    assert one["to"] == "+86138****1234" and "8613866661234" not in stream.getvalue()


def test_lines_logged_by_threads_the_invocation_starts_carry_it_too() -> None:
    stream = _configured()
    log = logging.getLogger("chatapp_mass.test")

    def work(n: int) -> int:
        log.info("worker", extra={"n": n, "recipient": f"86138666612{n:02d}"})
        return n

    with logs.invocation(_Context("req-A", _Function("chatapp-mass-sender"))):
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(logs.carried(work), range(6))) == list(range(6))
            pool.submit(logs.carried(work), 6).result()
        thread = threading.Thread(target=logs.carried(work), args=(7,))
        thread.start()
        thread.join()
        bare = threading.Thread(target=work, args=(8,))  # not carried: a thread starts with an empty context
        bare.start()
        bare.join()
    entries = _entries(stream)
    carried = [e for e in entries if e["n"] != 8]
    [uncarried] = [e for e in entries if e["n"] == 8]
    assert "request_id" not in uncarried  # why the engine's pools are handed logs.carried work
    assert sorted(e["n"] for e in carried) == list(range(8))
    assert all(e["request_id"] == "req-A" and e["function"] == "chatapp-mass-sender" for e in carried)
    assert all(str(e["recipient"]).startswith("+86138****") for e in entries)
    assert "8613866661" not in stream.getvalue()


def test_concurrent_invocations_in_threads_keep_their_own_ids() -> None:
    stream = _configured()
    log = logging.getLogger("chatapp_mass.test")
    barrier = threading.Barrier(2)

    def invoke(request_id: str) -> None:
        with logs.invocation(_Context(request_id, _Function("chatapp-mass-api"))):
            barrier.wait()
            log.info("in", extra={"mine": request_id})
            barrier.wait()

    threads = [threading.Thread(target=invoke, args=(r,)) for r in ("r1", "r2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted((e["request_id"], e["mine"]) for e in _entries(stream)) == [("r1", "r1"), ("r2", "r2")]


def test_function_name_falls_back_to_fc_function_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FC_FUNCTION_NAME", "chatapp-mass-ingest")

    class Bare:
        request_id = "r9"

    assert logs.invocation_fields(Bare()) == {"request_id": "r9", "function": "chatapp-mass-ingest"}
    monkeypatch.delenv("FC_FUNCTION_NAME")
    assert logs.invocation_fields(object()) == {}
