"""One root error for the package; every error a user sees says what was wrong and what to do."""

from __future__ import annotations


class ChatAppMassError(Exception):
    """Root of every error this package raises on purpose."""


class OptionsError(ChatAppMassError):
    """A job option (or command-line parameter) is wrong. Nothing has been read or sent."""


class AccessError(ChatAppMassError):
    """CAMS cannot be used as configured (no credentials, keys refused, endpoint unreachable): nothing sent."""


class CsvFileError(ChatAppMassError):
    """The recipient file as a whole cannot be used (encoding, header). Nothing is sent.

    ``line`` is the 1-based physical line the problem was found on (the header is line 1).
    """

    def __init__(self, source: str, line: int | None, problem: str, fix: str = "") -> None:
        self.source = source
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{source}, line {line}" if line else source
        super().__init__(f"{where}: {problem}" + (f" — {fix}" if fix else ""))


class StoreError(ChatAppMassError):
    """The state store cannot be opened or used."""


class JobNotFound(ChatAppMassError):
    """No job with that id (or id prefix) in the store."""
