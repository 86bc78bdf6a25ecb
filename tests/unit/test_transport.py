"""The departure gate over the real SDK and real HTTP (the local CAMS on loopback): it holds the first byte
until the slot, sees it leave, reports the departure once the request is written, and touches nothing else.
Only orderings are asserted (each time is read before or after the event it bounds), never durations."""

from __future__ import annotations

import time

from alibaba_localcloud.cams import LocalCams
from chatapp_mass.adapters.transport import Departure, departing
from chatapp_mass.core.options import JobOptions
from chatapp_mass.core.outcomes import OutcomeKind
from chatapp_mass.entry.bootstrap import cams_client_for

OPTIONS = {"ChannelType": "whatsapp", "TemplateCode": "T", "Language": "en", "From": "8613800000000"}


def test_the_gate_holds_the_first_byte_until_the_slot_and_reports_the_departure() -> None:
    with LocalCams(latency=0.0) as cams:
        client = cams_client_for(cams.endpoint, cams.credentials)
        options = JobOptions.model_validate(OPTIONS)
        assert client.send(options, [{"To": "8613800000001"}]).kind is OutcomeKind.sent  # session warm
        call = client.prepare(options, [{"To": "8613800000002"}])
        assert call.gated
        reported: list[float] = []
        gate = Departure(time.time() + 0.05, on_sent=reported.append)
        with departing(gate):
            outcome = call()
        assert outcome.kind is OutcomeKind.sent
        arrival = cams.backend.attempts[-1].arrived_at  # the kernel's receive stamp of the request line
        assert gate.first_byte is not None and gate.sent_at is not None
        assert gate.not_before <= gate.first_byte <= arrival
        assert gate.first_byte <= gate.sent_at
        assert reported == [gate.sent_at]  # once, with the time the request line was written
        # the thread is ungated afterwards: another request passes untouched, the gate is not reused
        first_byte = gate.first_byte
        assert client.send(options, [{"To": "8613800000003"}]).kind is OutcomeKind.sent
        assert gate.first_byte == first_byte and len(reported) == 1


def test_a_call_that_never_connects_leaves_nothing_reported() -> None:
    with LocalCams(latency=0.0) as cams:
        endpoint = cams.endpoint
    client = cams_client_for(endpoint, cams.credentials, connect_timeout_ms=500)  # the server is gone
    gate = Departure(0.0, on_sent=lambda at: None)
    with departing(gate):
        outcome = client.prepare(JobOptions.model_validate(OPTIONS), [{"To": "8613800000002"}])()
    assert outcome.kind is OutcomeKind.not_sent
    assert gate.first_byte is None and gate.sent_at is None and not gate.reported
