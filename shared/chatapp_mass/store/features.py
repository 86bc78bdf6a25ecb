"""The stores of the features beside the main store (receipts, suppression, messaging limit, ...): each opened
for a main store on the same backend (the same SQLite file, the same Tablestore instance).

Each feature's interface lives in ``store/<feature>.py`` and its backends in ``store/<feature>_sqlite.py`` and
``store/<feature>_tablestore.py``; the openers are here, apart, so that an interface never imports its backends.
"""

from __future__ import annotations

from collections.abc import Callable

from chatapp_mass.store.interface import Store
from chatapp_mass.store.reach import ReachStore
from chatapp_mass.store.receipts import ReceiptStore
from chatapp_mass.store.sqlite import SqliteStore


def open_receipts(store: Store) -> ReceiptStore:
    """The receipt store beside ``store``."""
    if isinstance(store, SqliteStore):
        from chatapp_mass.store.receipts_sqlite import SqliteReceipts

        return SqliteReceipts(store)
    from chatapp_mass.store.tablestore import TablestoreStore  # not imported for a SQLite store

    if isinstance(store, TablestoreStore):
        from chatapp_mass.store.receipts_tablestore import TablestoreReceipts

        return TablestoreReceipts(store)
    raise TypeError(f"no receipt store for a {type(store).__name__}")


def open_reach(store: Store, *, clock: Callable[[], float] | None = None) -> ReachStore:
    """The messaging limit's window (``reach``) beside ``store``, on ``clock`` (default: the store's)."""
    if isinstance(store, SqliteStore):
        from chatapp_mass.store.reach_sqlite import SqliteReach

        return SqliteReach(store, clock=clock)
    from chatapp_mass.store.tablestore import TablestoreStore  # not imported for a SQLite store

    if isinstance(store, TablestoreStore):
        from chatapp_mass.store.reach_tablestore import TablestoreReach

        return TablestoreReach(store, clock=clock)
    raise TypeError(f"no messaging limit window for a {type(store).__name__}")
