"""The canary: send the first N recipients, wait for their receipts, go on only if few failed.

A template with a broken parameter, a paused template or a number WhatsApp flags fails every recipient; CAMS
accepts the calls all the same (the failures arrive later, as receipts). With a canary the job sends its
first ``recipients`` valid recipients (the planner closes the first batch there), then holds its other
batches until the canary's receipts decide:

- **passed**: the failure rate is at most ``max_failure_rate``: the job goes on.
- **failed**: more failed: the job is ``paused`` with the rate and the most common error code (an operator
  resumes it, which overrides the canary, or cancels it). 50 people got the broken message, not 500,000.
- **waiting**: not every canary recipient has a final receipt (delivered, read or failed) and ``timeout``
  seconds have not passed since the canary was sent.

Decisions where nothing documents the answer (written down here, the strict choice each time):

- A recipient whose batch CAMS refused counts as failed (it was not reached either).
- At ``timeout``, the rate is taken over the recipients with a final receipt, and only if they are at
  least half of the canary: fewer fails the canary ("too few receipts": a receipt URL that is not set up
  must not let a job go on blind).
- ``sent`` (accepted by WhatsApp, nothing more yet) is not final: it waits.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.options import describe_validation_error

MIN_SHARE_AT_TIMEOUT = 0.5


class CanaryOptions(BaseModel):
    """``--canary N`` (``canary`` in the HTTP body): how big the canary is and what it must show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipients: int = Field(ge=1, le=100_000)
    max_failure_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    timeout: float = Field(default=900.0, ge=10.0, le=7 * 86400.0)


class CanaryState(BaseModel):
    """What the job row keeps (``JobRecord.canary``, JSON): the options and, once decided, the verdict."""

    model_config = ConfigDict(extra="forbid")

    options: CanaryOptions
    verdict: str = ""  # "" (undecided) | passed | failed | overridden (an operator resumed a failed one)
    sent_at: float = 0.0  # when the canary's last batch was resolved: the timeout counts from there
    reason: str = ""

    @property
    def holds(self) -> bool:
        """Whether the canary still holds the job's other batches back."""
        return self.verdict not in ("passed", "overridden")


class CanaryTally(NamedTuple):
    recipients: int  # the canary's recipients CAMS was asked to send to
    refused: int  # in batches CAMS refused (failed)
    delivered: int  # delivered or read
    failed: int  # a Failed receipt
    error_codes: Counter[str]  # of the failed ones (receipts' ErrorCode, or the refusal's code)


class Verdict(NamedTuple):
    decided: bool
    passed: bool
    reason: str


def verdict(tally: CanaryTally, options: CanaryOptions, *, waited: float) -> Verdict:
    """The canary's verdict from its tally, ``waited`` seconds after it was sent (pure)."""
    failed = tally.failed + tally.refused
    final = tally.delivered + failed
    timed_out = waited >= options.timeout
    if tally.recipients == 0:
        return Verdict(True, True, "canary: no recipient to send to")
    if final < tally.recipients and not timed_out:
        return Verdict(False, False, f"canary: {final} of {tally.recipients} recipients have an outcome")
    common = ", ".join(f"{code} x{n}" for code, n in tally.error_codes.most_common(3) if code)
    if final < MIN_SHARE_AT_TIMEOUT * tally.recipients:
        return Verdict(
            True,
            False,
            f"canary: only {final} of {tally.recipients} recipients had a delivery receipt after "
            f"{options.timeout:.0f} s: check that CAMS pushes receipts to POST /receipts (the callback URL "
            "in the CAMS console) before resuming",
        )
    rate = failed / final
    summary = (
        f"canary: {failed} of {final} recipients failed ({rate:.1%}; allowed {options.max_failure_rate:.1%})"
        + (f": {common}" if common else "")
    )
    return Verdict(True, rate <= options.max_failure_rate, summary)


def canary_recipients(state_json: str) -> int:
    """How many recipients a job's canary holds (``JobRecord.canary``); 0 for none."""
    return CanaryState.model_validate_json(state_json).options.recipients if state_json else 0


def canary_from_flags(recipients: int, max_failure_rate: float, timeout: float) -> CanaryOptions | None:
    """``--canary N --canary-max-failure R --canary-timeout S`` (N = 0: no canary); OptionsError names the
    flag of a value out of range."""
    if not recipients:
        return None
    try:
        return CanaryOptions(recipients=recipients, max_failure_rate=max_failure_rate, timeout=timeout)
    except ValidationError as error:
        flags = {
            "recipients": "--canary",
            "max_failure_rate": "--canary-max-failure",
            "timeout": "--canary-timeout",
        }
        raise OptionsError(describe_validation_error(error, flags)) from None
