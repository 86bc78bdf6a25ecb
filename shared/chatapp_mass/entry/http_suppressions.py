"""``/suppressions`` on the api function: the suppression list of a space over HTTP (``entry.http_api`` routes
here after its auth check; ``GET`` needs a ``read`` token, ``POST`` and ``DELETE`` a ``send`` one, as the other
writes).

- ``GET /suppressions?space=&limit=&cursor=`` — a page of numbers in number order: ``{"space", "numbers":
  [{"number", "reason", "at", "source"}], "next_cursor"}`` (``next_cursor`` null on the last page).
- ``POST /suppressions`` — JSON ``{"numbers": [...], "space": "default", "reason": "operator", "source": "",
  "default_country": null}``: numbers read as recipients are (``core.phones``); answers ``{"space",
  "requested", "added"}`` (a number already listed keeps its first reason).
- ``DELETE /suppressions`` — JSON ``{"numbers": [...], "space": ...}`` or ``?number=...&space=...``; answers
  ``{"space", "requested", "removed"}``.

A number that is not a phone number refuses the request (400 naming ``numbers[i]``): nothing changes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatapp_mass.core.tokens import Scope
from chatapp_mass.services.report import utc_timestamp
from chatapp_mass.services.suppress import normalize_numbers, suppression_of
from chatapp_mass.store.interface import Store
from chatapp_mass.store.suppression import DEFAULT_SPACE, MAX_SPACE, PAGE_MAX, REASONS, SuppressionStore

Query = Callable[[str], str]  # a query parameter's value by name ("" if absent)

SUPPRESSIONS_METHODS = {"GET": Scope.read, "POST": Scope.send, "DELETE": Scope.send}
MAX_NUMBERS = 10_000  # numbers per request (an import of more: several requests, or the CLI's --file)


class Refused(Exception):
    """A request refused: ``entry.http_api`` answers it as its other refusals (``ApiError``)."""

    def __init__(self, status: int, code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class SuppressionsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numbers: list[str] = Field(min_length=1, max_length=MAX_NUMBERS)
    space: str = Field(default=DEFAULT_SPACE, min_length=1, max_length=MAX_SPACE)
    reason: str = "operator"
    source: str = Field(default="", max_length=256)
    default_country: str | None = Field(default=None, min_length=2, max_length=2)


def route(store: Store, method: str, raw: bytes, query: Query) -> dict[str, Any]:
    """The reply's JSON body (status 200) for ``method`` on /suppressions; :class:`Refused` otherwise."""
    sup = suppression_of(store)
    if sup is None:
        raise Refused(503, "no_suppression_list", "this store keeps no suppression list")
    if method == "GET":
        return _list(sup, query)
    body = _body(method, raw.strip(), query)
    numbers = _numbers(body)
    if method == "POST":
        if body.reason not in REASONS:
            raise Refused(400, "invalid_field", f"body: reason: one of {', '.join(REASONS)}", "reason")
        added = sup.add(body.space, numbers, reason=body.reason, source=body.source)
        return {"space": body.space, "requested": len(numbers), "added": added}
    removed = sup.remove(body.space, numbers)
    return {"space": body.space, "requested": len(numbers), "removed": removed}


def _body(method: str, raw: bytes, query: Query) -> SuppressionsBody:
    if not raw and method == "DELETE":
        number = query("number")
        if not number:
            raise Refused(
                400, "invalid_field", 'give the numbers: a JSON body {"numbers": [...]} or ?number=', "number"
            )
        space = query("space") or DEFAULT_SPACE
        if len(space) > MAX_SPACE:
            raise Refused(400, "invalid_parameter", f"space: at most {MAX_SPACE} characters", "space")
        return SuppressionsBody(numbers=[number], space=space)
    try:
        return SuppressionsBody.model_validate_json(raw or b"{}")
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        message = (
            "unknown field (known: numbers, space, reason, source, default_country)"
            if first["type"] == "extra_forbidden"
            else first["msg"]
        )
        raise Refused(400, "invalid_field", f"body: {field}: {message}", field) from None


def _numbers(body: SuppressionsBody) -> list[str]:
    from chatapp_mass.core.phones import describe_invalid

    try:
        good, bad = normalize_numbers(body.numbers, body.default_country)
    except ValueError as error:
        raise Refused(400, "invalid_field", f"body: default_country: {error}", "default_country") from None
    if bad:
        index = body.numbers.index(bad[0]) if bad[0] in body.numbers else 0
        raise Refused(
            400,
            "invalid_field",
            f"body: numbers[{index}]: {bad[0]!r}: {describe_invalid(bad[0], body.default_country)} "
            f"({len(bad)} not a phone number; nothing changed)",
            f"numbers[{index}]",
        )
    if not good:
        raise Refused(400, "invalid_field", "body: numbers: no number given", "numbers")
    return good


def _list(sup: SuppressionStore, query: Query) -> dict[str, Any]:
    space = query("space") or DEFAULT_SPACE
    if len(space) > MAX_SPACE:
        raise Refused(400, "invalid_parameter", f"space: at most {MAX_SPACE} characters", "space")
    text = query("limit") or "100"
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= PAGE_MAX:
        raise Refused(400, "invalid_parameter", f"limit: a whole number from 1 to {PAGE_MAX}", "limit")
    limit = int(text)
    cursor = query("cursor")
    after = decode_cursor(cursor) if cursor else ""
    page = sup.list(space, after=after, limit=limit)
    return {
        "space": space,
        "numbers": [
            {"number": s.number, "reason": s.reason, "at": utc_timestamp(s.at), "source": s.source}
            for s in page
        ],
        "next_cursor": encode_cursor(page[-1].number) if len(page) == limit else None,
    }


def encode_cursor(number: str) -> str:
    return base64.urlsafe_b64encode(f"n:{number}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        text = ""
    number = text[2:]
    if len(cursor) > 64 or not text.startswith("n:") or not (number.isascii() and number.isdigit()):
        raise Refused(
            400,
            "invalid_parameter",
            "cursor: not a cursor this API gave (use next_cursor of the previous page as it is)",
            "cursor",
        )
    return number
