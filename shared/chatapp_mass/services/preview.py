"""Preview: what a send would do, before anything is planned or sent (``chatapp-mass check``, the prompt of
``chatapp-mass send``, ``POST /jobs?preview=true``).

One pass over the recipients as the planner reads them (:mod:`chatapp_mass.core.intake`), each row judged by
the planner's own :func:`~chatapp_mass.services.plan.plan_row` (so a recipient too large to send counts as
invalid here as in the plan), and the first valid recipient's request built by the CAMS adapter's own
:func:`~chatapp_mass.adapters.cams.wire_request` (what the sender sends, ``SenderList`` in the form body).

Memory: counts, at most :data:`MAX_GROUPS` reason groups of at most :data:`EXAMPLES` example lines each, the
template parameter names with two counters each, and one sample recipient — never the rows. An errors file
(:class:`ErrorsCsv`) is written as the rows stream by.

No store, no network, no credentials: the SDK's models convert the sample request (an import, not a call).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from chatapp_mass.core.options import IntakeOptions, JobOptions
from chatapp_mass.core.planning import PARAMS_IN_BODY, BatchPlanner
from chatapp_mass.services.plan import PlanSettings, plan_row
from chatapp_mass.store.interface import RowStatus

EXAMPLES = 3  # example lines kept per reason group
MAX_GROUPS = 50  # reason groups kept; rows of any further reason join their code's "other" group
_NUMBERS = re.compile(r"\d+")
DEFAULT_SETTINGS = PlanSettings()


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class Example(_Model):
    """One refused line: its number in the file, the recipient as written there (the number as normalized
    for a duplicate), and its own message."""

    line: int
    to: str
    message: str


class ReasonGroup(_Model):
    """Refused rows of one reason: a code (InvalidNumber, Duplicate, EmptyParam...) and its message (the
    rows' own when they all say the same; else with the numbers that differ written N)."""

    code: str
    message: str
    count: int
    examples: list[Example]


class ParamKey(_Model):
    """A TemplateParams key some valid recipient has; ``missing``: valid recipients without it, ``empty``:
    with it blank (accepted by --allow-empty-params)."""

    name: str
    missing: int = 0
    empty: int = 0


class SampleRequest(_Model):
    """The first valid recipient's SendChatappMassMessage request (``request``:
    :meth:`~chatapp_mass.adapters.cams.WireRequest.to_dict`), its line, and the recipient it carries."""

    line: int
    recipient: dict[str, Any]
    request: dict[str, Any]


class Preview(_Model):
    """What a send of these recipients with these options would do. ``to_json()`` is the HTTP shape."""

    channel: str
    template_code: str | None = None
    template_name: str | None = None
    language: str
    from_: str = Field(alias="from")
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicate: int = 0
    batches: int = 0
    reasons: list[ReasonGroup] = Field(default_factory=list)
    params: list[ParamKey] = Field(default_factory=list)
    sample: SampleRequest | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# --- building ----------------------------------------------------------------------------------------------
class _Group:
    __slots__ = ("code", "message", "shape", "count", "examples")

    def __init__(self, code: str, message: str, shape: str) -> None:
        self.code, self.message, self.shape, self.count = code, message, shape, 0
        self.examples: list[Example] = []


def build_preview(
    options: JobOptions,
    rows: Iterable[Any],
    *,
    settings: PlanSettings = DEFAULT_SETTINGS,
    params_in: str = PARAMS_IN_BODY,
    encode: Callable[[str, dict[str, str] | None], tuple[str, int]] | None = None,
    on_refused: Callable[[Any, str, str], None] | None = None,
) -> Preview:
    """The preview of ``rows`` (:class:`~chatapp_mass.core.intake.Row`: a ``RecipientReader`` or a
    ``JsonRecipients``) sent with ``options``, planned with ``settings`` (batch size, request bytes) for
    parameters travelling in ``params_in`` (body | query). ``encode``: the CSV's encoder, as the planner uses
    it (:func:`~chatapp_mass.core.planning.intake_sender_json`). ``on_refused(row, code, message)`` is called
    for every refused row as it streams by (an errors file), with the plan's code and message.
    Reads ``rows`` once."""
    planner = BatchPlanner(settings.batch_size, settings.max_request_bytes)
    counts = {RowStatus.valid: 0, RowStatus.invalid: 0, RowStatus.duplicate: 0}
    groups: dict[tuple[str, str], _Group] = {}
    present: dict[str, int] = {}
    blank: dict[str, int] = {}
    sample: SampleRequest | None = None
    valid = RowStatus.valid
    for row in rows:
        record = plan_row("preview", row, planner, settings.max_request_bytes, encode)
        counts[record.status] += 1
        if record.status is valid:
            params = row.template_params
            if params:
                for key, value in params.items():
                    present[key] = present.get(key, 0) + 1
                    if not str(value).strip():
                        blank[key] = blank.get(key, 0) + 1
            if sample is None:
                sample = _sample(options, record.line, record.recipient or {}, params_in)
            continue
        _group(groups, record.code, record.message, record.line, row.to)
        if on_refused is not None:
            on_refused(row, record.code, record.message)
    valid_count = counts[valid]
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.examples[0].line if g.examples else 0))
    return Preview(
        channel=options.channel_type.value,
        template_code=options.template_code,
        template_name=options.template_name,
        language=options.language,
        **{"from": options.from_},
        rows=sum(counts.values()),
        valid=valid_count,
        invalid=counts[RowStatus.invalid],
        duplicate=counts[RowStatus.duplicate],
        batches=len(planner.sizes),
        reasons=[
            ReasonGroup(code=g.code, message=g.message, count=g.count, examples=g.examples) for g in ordered
        ],
        params=[
            ParamKey(name=key, missing=valid_count - seen, empty=blank.get(key, 0))
            for key, seen in present.items()
        ],
        sample=sample,
    )


def _group(groups: dict[tuple[str, str], _Group], code: str, message: str, line: int, to: str) -> None:
    """Count a refused row in its reason's group (the message with its numbers as N: "same recipient as line
    7" and "... line 9" are one reason); past MAX_GROUPS reasons, in its code's "other reasons" group."""
    shape = _NUMBERS.sub("N", message)
    group = groups.get((code, shape))
    if group is None:
        if len(groups) >= MAX_GROUPS:
            shape = ""
            group = groups.get((code, shape))
        if group is None:
            group = groups[(code, shape)] = _Group(code, message if shape else "other reasons", shape)
    elif group.message != message and group.shape:
        group.message = shape  # the rows of this reason differ in a number: say so
    group.count += 1
    if len(group.examples) < EXAMPLES:
        group.examples.append(Example(line=line, to=to, message=message))


def _sample(options: JobOptions, line: int, recipient: dict[str, Any], params_in: str) -> SampleRequest:
    from chatapp_mass.adapters.cams import wire_request  # the SDK's models: only a preview with a sample

    request = wire_request(options, [recipient], params_in=params_in)
    return SampleRequest(line=line, recipient=recipient, request=request.to_dict())


# --- the readers ---------------------------------------------------------------------------------------------
def preview_recipients(
    stream: IO[bytes],
    *,
    source: str,
    options: JobOptions,
    intake: IntakeOptions,
    settings: PlanSettings = DEFAULT_SETTINGS,
    params_in: str = PARAMS_IN_BODY,
    errors: IO[str] | None = None,
) -> Preview:
    """The preview of a recipient file read from ``stream`` (a CSV, or an Excel workbook recognised by its
    content, as the planner opens it: :func:`~chatapp_mass.core.intake.open_recipients`); ``errors``: where
    to write the errors CSV (:class:`ErrorsCsv`), as the rows stream by. A file that cannot be read raises
    ``CsvFileError``."""
    from chatapp_mass.core.intake import open_recipients
    from chatapp_mass.core.planning import intake_sender_json

    with open_recipients(stream, source=source, channel=options.channel_type, intake=intake) as reader:
        on_refused = None
        if errors is not None:
            writer = ErrorsCsv(errors, reader.header.columns)
            on_refused = lambda row, code, message: writer.write(
                row.line, code, message, reader.refused_cells if row.status != "valid" else None
            )
        return build_preview(
            options,
            reader,
            settings=settings,
            params_in=params_in,
            encode=intake_sender_json(reader.header.param_columns),
            on_refused=on_refused,
        )


def preview_json(
    items: Iterable[dict[str, Any]],
    *,
    options: JobOptions,
    intake: IntakeOptions,
    settings: PlanSettings = DEFAULT_SETTINGS,
    params_in: str = PARAMS_IN_BODY,
) -> Preview:
    """The preview of a JSON list of recipients (an HTTP submission's ``recipients``)."""
    from chatapp_mass.core.intake import JsonRecipients

    rows = JsonRecipients(items, channel=options.channel_type, intake=intake)
    return build_preview(options, rows, settings=settings, params_in=params_in)


class ErrorsCsv:
    """The errors file: one row per refused line (invalid or duplicate): ``line``, ``reason`` (the code),
    ``message``, then the line's cells as the file has them, under the file's own header names. A record
    too large to keep (skimmed by the reader) or refused by the plan alone (RequestTooLarge) has no cells."""

    def __init__(self, stream: IO[str], columns: Iterable[str]) -> None:
        self._writer = csv.writer(stream)
        self._writer.writerow(["line", "reason", "message", *columns])

    def write(self, line: int, code: str, message: str, cells: list[str] | None) -> None:
        self._writer.writerow([line, code, message, *(cells or ())])


# --- text ----------------------------------------------------------------------------------------------------
def preview_text(preview: Preview, *, source: str = "") -> str:
    """The preview as a readable block of lines (no trailing newline)."""
    return "\n".join(_text_lines(preview, source))


def _text_lines(p: Preview, source: str) -> Iterator[str]:
    yield f"Preview of {source}" if source else "Preview"
    template = " / ".join(
        part
        for part in (
            f"code {p.template_code}" if p.template_code else "",
            f"name {p.template_name}" if p.template_name else "",
        )
        if part
    )
    yield f"  channel    {p.channel}"
    yield f"  template   {template or '(none)'}, language {p.language}"
    yield f"  from       {p.from_}"
    calls = f" in {p.batches:,} call{'s' if p.batches != 1 else ''}" if p.valid else ""
    yield (
        f"  rows       {p.rows:,} read: {p.valid:,} valid{calls}, {p.invalid:,} invalid, "
        f"{p.duplicate:,} duplicate"
    )
    if p.reasons:
        refused = p.invalid + p.duplicate
        yield f"Not sent ({refused:,} row{'s' if refused != 1 else ''}), by reason:"
        for group in p.reasons:
            yield f"  {group.code} x{group.count:,}: {group.message}"
            for example in group.examples:
                shown = repr(example.to) if example.to else "(empty)"
                yield f"    line {example.line}: {shown}"
            if group.count > len(group.examples):
                yield f"    ... and {group.count - len(group.examples):,} more"
    if p.params:
        yield "Template parameters: " + ", ".join(param.name for param in p.params)
        for param in p.params:
            gaps = []
            if param.missing:
                gaps.append(f"{param.missing:,} valid recipients lack it")
            if param.empty:
                gaps.append(f"{param.empty:,} have it empty")
            if gaps:
                yield f"  {param.name}: {'; '.join(gaps)}"
    elif p.valid:
        yield "Template parameters: none"
    if p.sample is None:
        yield "No valid recipient: nothing would be sent."
        return
    request = p.sample.request
    yield f"Request for the first valid recipient (line {p.sample.line}):"
    yield f"  {request['method']} {request['action']} (API {request['version']})"
    query = request["query"]
    yield "  query: " + " ".join(f"{name}={value}" for name, value in query.items())
    for name, value in request["body"].items():
        yield f"  body:  {name}={value}"
