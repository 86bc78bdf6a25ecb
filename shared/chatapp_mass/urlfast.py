"""A fast path for re-checking URLs that are already percent-encoded (the CAMS call's ~90 KB query string).

The CAMS SDK sends ``SenderList`` (up to 1,000 recipients as JSON) in the URL query, already percent-encoded
by the SDK. Before it reaches the socket, ``requests`` re-quotes that URL (``requote_uri``) and ``urllib3``
checks it twice more for characters to encode (``_encode_invalid_chars`` in ``parse_url`` and
``_encode_target``), each a Python loop over every byte. Measured: ~60% of a sender's CPU per call (about
100 ms of 1,000-recipient call on this machine), which caps one sender instance below the 10 calls/s
ceiling, and in Function Compute CPU comes in proportion to memory.

:func:`install` wraps those two functions with a check that runs in C (regular expressions): when the input
is ASCII, made only of characters the function leaves alone, and every ``%`` starts a valid escape, the
original would return its input unchanged, so the wrapper returns it at once; anything else goes to the
original. Behaviour is therefore identical (a property test compares both on random input:
``tests/unit/test_urlfast.py``). If either library no longer has the function (a future version), that
part is simply not installed.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, Container, Optional

_installed = False
_lock = threading.Lock()
_MIN_LENGTH = 512  # shorter URLs are cheap either way: leave them to the libraries untouched

# requests.utils.UNRESERVED_SET, and requote_uri's safe characters (with '%')
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_REQUOTE_SAFE = "!#$%&'()*+,/:;=?@[]~"
_REQUOTE_KEEPS = re.compile("[" + re.escape(_UNRESERVED + _REQUOTE_SAFE) + "]*")
_BAD_OR_LOWER_ESCAPE = re.compile(r"%(?![0-9A-F]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# an escape that requote_uri would decode (it un-escapes unreserved characters)
# (hex codes: digits 30-39, A-Z 41-5A, a-z 61-7A, '-' 2D, '.' 2E, '_' 5F, '~' 7E)
_UNRESERVED_ESCAPE = re.compile(r"%(?:3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|2[DdEe]|5[Ff]|7[Ee])")


def requote_is_identity(uri: str) -> bool:
    """True when ``requests.utils.requote_uri(uri)`` returns ``uri`` itself."""
    return (uri.isascii() and _REQUOTE_KEEPS.fullmatch(uri) is not None
            and _BAD_ESCAPE.search(uri) is None and _UNRESERVED_ESCAPE.search(uri) is None)


class _KeepsPattern:
    """Per ``allowed_chars`` container: the pattern of components ``_encode_invalid_chars`` leaves alone."""

    def __init__(self) -> None:
        self._patterns: dict[int, tuple[Container[str], "re.Pattern[str]"]] = {}

    def get(self, allowed: Container[str]) -> Optional["re.Pattern[str]"]:
        entry = self._patterns.get(id(allowed))
        if entry is not None and entry[0] is allowed:
            return entry[1]
        if not isinstance(allowed, (set, frozenset, str)):
            return None
        ascii_allowed = sorted(c for c in allowed if len(c) == 1 and c.isascii())
        pattern = re.compile("[" + re.escape("".join(ascii_allowed)) + "%]*")
        self._patterns[id(allowed)] = (allowed, pattern)  # the container is kept alive: its id stays its own
        return pattern


def encode_is_identity(component: str, allowed: Container[str], keeps: _KeepsPattern) -> bool:
    """True when urllib3's ``_encode_invalid_chars(component, allowed)`` returns ``component`` itself: ASCII,
    only allowed characters and ``%``, every ``%`` starting an upper-case escape (it upper-cases escapes)."""
    pattern = keeps.get(allowed)
    return (pattern is not None and component.isascii() and pattern.fullmatch(component) is not None
            and _BAD_OR_LOWER_ESCAPE.search(component) is None)


def _wrap_encode(original: Callable[..., Any]) -> Callable[..., Any]:
    keeps = _KeepsPattern()

    def _encode_invalid_chars(component: Any, allowed_chars: Any) -> Any:
        if isinstance(component, str) and len(component) >= _MIN_LENGTH \
                and encode_is_identity(component, allowed_chars, keeps):
            return component
        return original(component, allowed_chars)

    _encode_invalid_chars.__wrapped__ = original  # type: ignore[attr-defined]
    return _encode_invalid_chars


def _wrap_requote(original: Callable[[str], str]) -> Callable[[str], str]:
    def requote_uri(uri: str) -> str:
        if isinstance(uri, str) and len(uri) >= _MIN_LENGTH and requote_is_identity(uri):
            return uri
        return original(uri)

    requote_uri.__wrapped__ = original  # type: ignore[attr-defined]
    return requote_uri


def install() -> None:
    """Install the fast paths once per process (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        try:
            from urllib3.util import url as urllib3_url
        except ImportError:  # pragma: no cover - urllib3 is always there with requests
            urllib3_url = None
        original = getattr(urllib3_url, "_encode_invalid_chars", None)
        if original is not None and not hasattr(original, "__wrapped__"):
            urllib3_url._encode_invalid_chars = _wrap_encode(original)
        try:
            import requests.models
            import requests.utils
        except ImportError:  # pragma: no cover
            return
        requote = getattr(requests.utils, "requote_uri", None)
        if requote is not None and not hasattr(requote, "__wrapped__"):
            fast = _wrap_requote(requote)
            requests.utils.requote_uri = fast
            if getattr(requests.models, "requote_uri", None) is requote:  # imported by name there
                requests.models.requote_uri = fast
