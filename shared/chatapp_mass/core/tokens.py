"""API tokens with scopes, stored as hashes (issue 16): parsing the setting, checking a presented token.

``CHATAPP_API_TOKENS`` holds comma-separated ``scope:sha256hex`` entries: the scope (``read``, ``send`` or
``admin``) and the SHA-256 of the token's UTF-8, lowercase hex. Several at once, so a token is rotated without
downtime: add the new entry, deploy, hand out the new token, remove the old entry, deploy. The plain
``CHATAPP_API_TOKEN`` (deprecated) still counts as one ``admin`` token. No token is ever stored or logged in
the clear here; a presented token is hashed and its hash compared with every entry's in constant time.

Pure: no I/O. ``chatapp-mass token new --scope read`` makes one (:func:`new_token`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import Enum

from chatapp_mass.core.errors import OptionsError

MIN_TOKEN_LENGTH = 32
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Scope(str, Enum):
    """What a token may do. ``read``: the GET routes; ``send``: those and every POST (create, pause, resume,
    cancel, reconcile, resend-uncertain); ``admin``: everything."""

    read = "read"
    send = "send"
    admin = "admin"

    def allows(self, needed: Scope) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Scope.read: 0, Scope.send: 1, Scope.admin: 2}


@dataclass(frozen=True)
class TokenEntry:
    scope: Scope
    digest: str  # sha256 hex of the token

    def __str__(self) -> str:
        return f"{self.scope.value}:{self.digest}"

    @property
    def id(self) -> str:
        """A short, stable name of the entry (the start of its hash): says which token, never the token."""
        return self.digest[:12]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_entries(text: str, variable: str) -> tuple[TokenEntry, ...]:
    """``scope:hash, scope:hash`` -> entries; OptionsError names the entry and what to do."""
    entries: list[TokenEntry] = []
    for number, raw in enumerate(text.split(","), 1):
        item = raw.strip()
        if not item:
            continue
        scope_text, sep, digest = item.partition(":")
        scope_text, digest = scope_text.strip().lower(), digest.strip().lower()
        # never any of the hash part: a token pasted there by mistake must not appear in an error
        shown = f"{variable} entry {number} (scope {scope_text or '(none)'})"
        if not sep:
            raise OptionsError(
                f"{variable} entry {number}: expected scope:sha256hex (e.g. read:<64 hex>); make one "
                "with `chatapp-mass token new --scope read`"
            )
        if scope_text not in {s.value for s in Scope}:
            raise OptionsError(f"{shown}: unknown scope {scope_text!r}: use read, send or admin")
        if not _HEX64.fullmatch(digest):
            raise OptionsError(
                f"{shown}: the hash must be 64 hex characters (the SHA-256 of the token), not "
                f"{len(digest)} characters; make one with `chatapp-mass token new --scope {scope_text}`"
            )
        entries.append(TokenEntry(Scope(scope_text), digest))
    return tuple(entries)


def plain_token_entry(token: str, variable: str) -> TokenEntry:
    """The deprecated plain token as an ``admin`` entry; OptionsError if it is too short to be safe."""
    check_length(token, variable)
    return TokenEntry(Scope.admin, token_digest(token))


def check_length(token: str, variable: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH:
        raise OptionsError(
            f"{variable} is {len(token)} characters; a token needs at least {MIN_TOKEN_LENGTH}: make one with "
            "`chatapp-mass token new --scope admin` (and set its scope:hash entry in CHATAPP_API_TOKENS)"
        )


def match(entries: tuple[TokenEntry, ...], given: str) -> TokenEntry | None:
    """The entry the presented token is, by its hash compared with every entry's in constant time (each
    comparison runs, whichever matches)."""
    presented = token_digest(given).encode("ascii")
    found: TokenEntry | None = None
    for entry in entries:
        if hmac.compare_digest(presented, entry.digest.encode("ascii")) and found is None:
            found = entry
    return found


def new_token(scope: Scope) -> tuple[str, TokenEntry]:
    """A new random token (43 URL-safe characters) and its entry for ``CHATAPP_API_TOKENS``."""
    token = secrets.token_urlsafe(32)
    return token, TokenEntry(scope, token_digest(token))
