"""Credentials and accounts, the same for every emulator: LocalCloud gives all three services one set.

Only the shapes live here; each service checks signatures and tokens its own way (in its ``responses.py``).
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_REGION = "ap-southeast-1"


@dataclass(frozen=True)
class Account:
    access_key_id: str
    access_key_secret: str
    security_token: str | None = None


@dataclass(frozen=True)
class CamsCredentials:
    """What a client configures. Named for the first emulator; OSS, Tablestore and LocalCloud use it too."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None
    region_id: str = DEFAULT_REGION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate_credentials(*, sts: bool = True, region_id: str = DEFAULT_REGION) -> CamsCredentials:
    """Throw-away credentials shaped like the real ones (STS ids start with ``STS.``)."""
    if sts:
        return CamsCredentials(
            "STS.local" + secrets.token_hex(10),
            secrets.token_urlsafe(30),
            "CAIS.local." + secrets.token_urlsafe(96),
            region_id,
        )
    return CamsCredentials("LTAI.local" + secrets.token_hex(8), secrets.token_urlsafe(30), None, region_id)


def resolve_credentials(
    *,
    access_key_id: str | None,
    access_key_secret: str | None,
    security_token: str | None,
    region_id: str,
    sts: bool,
) -> CamsCredentials:
    """The keys a ``Local*`` service was given, or generated ones (STS-style when ``sts``) when none were."""
    if access_key_id or access_key_secret:
        if not (access_key_id and access_key_secret):
            raise ValueError("access_key_id and access_key_secret go together")
        return CamsCredentials(access_key_id, access_key_secret, security_token, region_id)
    return generate_credentials(sts=sts, region_id=region_id)


class AccountRegistry:
    """Mixin for a backend: the AccessKeys it accepts.

    The backend sets ``_lock`` (its own lock, so account look-ups order with its other state) and
    ``_accounts = {}`` in its ``__init__``.
    """

    _lock: AbstractContextManager[Any]
    _accounts: dict[str, Account]

    def add_account(
        self, access_key_id: str, access_key_secret: str, security_token: str | None = None
    ) -> Account:
        """Register credentials; with ``security_token`` every request must carry that exact token."""
        account = Account(access_key_id, access_key_secret, security_token or None)
        with self._lock:
            self._accounts[access_key_id] = account
        return account

    def account(self, access_key_id: str) -> Account | None:
        with self._lock:
            return self._accounts.get(access_key_id)

    def token_belongs_to_another_account(self, security_token: str, access_key_id: str) -> bool:
        with self._lock:
            return any(
                a.security_token == security_token and a.access_key_id != access_key_id
                for a in self._accounts.values()
            )
