"""A main store on a local Tablestore, as the contract and store tests open one (explicit keys, no chain)."""

from __future__ import annotations

import secrets
from typing import Any

from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore


def tablestore_on(server: Any, prefix: str = "") -> TablestoreStore:
    """A TablestoreStore on ``server``'s instance (a ``LocalTablestore``), its tables made if missing, under
    ``prefix`` (default: a fresh one, so that each caller has tables of its own)."""
    creds = server.credentials
    settings = TablestoreSettings(
        endpoint=server.endpoint,
        instance=server.instance_name,
        table_prefix=prefix or f"t{secrets.token_hex(4)}_",
    )
    return TablestoreStore(
        settings,
        access_key_id=creds.access_key_id,
        access_key_secret=creds.access_key_secret,
        security_token=creds.security_token or "",
    )
