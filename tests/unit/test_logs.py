"""Structured logs: JSON with a fixed key order, numbers masked, secrets and template values never written."""

from __future__ import annotations

import io
import json
import logging

from chatapp_mass import logs


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
