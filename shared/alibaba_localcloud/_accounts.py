"""Credentials and accounts, the same for every emulator: LocalCloud gives all three services one set.

Only the shapes live here; each service checks signatures and tokens its own way (in its ``responses.py``).
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alibaba_localcloud.ram import Decision, Policy

DEFAULT_REGION = "ap-southeast-1"
#: the account every emulator names in its resource ARNs unless told another (LocalCloud gives all one)
DEFAULT_ACCOUNT_ID = "1000000000000001"  # ASSUMPTION: any 16-digit id; real ones are the Alibaba Cloud UID


@dataclass(frozen=True)
class Account:
    """AccessKeys a service accepts. ``policy`` None: the account owner's own keys, unrestricted (as on the
    real cloud); otherwise STS credentials of the RAM role ``role``, allowed only what ``policy`` allows."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None
    policy: Policy | None = None
    role: str | None = None
    #: a role's: the owner's AccessKey id, whose per-account quotas and data its requests share (CAMS)
    account_key: str | None = None

    @property
    def tenant(self) -> str:
        """Whose account a request counts against: the owner's key for a role, else the key itself."""
        return self.account_key or self.access_key_id

    def authorize(self, action: str, resource: str) -> Decision:
        from alibaba_localcloud.ram import Decision

        return Decision.ALLOW if self.policy is None else self.policy.evaluate(action, resource)


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
    #: the account id in the resource ARNs requests are authorized against (RAM policies name it)
    account_id: str = DEFAULT_ACCOUNT_ID

    def add_account(
        self,
        access_key_id: str,
        access_key_secret: str,
        security_token: str | None = None,
        *,
        policy: Policy | None = None,
        role: str | None = None,
        account_key: str | None = None,
    ) -> Account:
        """Register credentials; with ``security_token`` every request must carry that exact token; with
        ``policy`` (a role's STS credentials) each request is authorized against it."""
        account = Account(access_key_id, access_key_secret, security_token or None, policy, role, account_key)
        with self._lock:
            self._accounts[access_key_id] = account
        return account

    def add(self, account: Account) -> Account:
        """Register an :class:`Account` as it is (a role's credentials, shared by every service)."""
        with self._lock:
            self._accounts[account.access_key_id] = account
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
