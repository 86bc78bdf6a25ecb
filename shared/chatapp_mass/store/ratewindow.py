"""The rate window's arithmetic, shared by every store: departures, holds, and when the next slot opens.

A store keeps, per key, two kinds of entries:

- **departures**: the times calls' bytes left (``Store.rate_depart``), or, for ``rate_acquire``, the time a
  slot was granted (the old grant-time stamps, still used by pacers whose service counts nothing finer);
- **holds**: slots granted by ``Store.rate_reserve`` whose call has not left yet, each with the time before
  which it may not leave (``not_before``). A hold counts as departing no earlier than *now*: nothing granted
  later can overtake it. A hold never departed (its process died) counts as departed at
  ``not_before + HOLD_MAX`` and then ages out like a departure.

Pure functions, no I/O: both stores read their entries, call :func:`next_slot`, and write what it says.
"""

from __future__ import annotations

from collections.abc import Iterable

# How long a granted slot may stay un-departed and still count as "now". Longer than any grant-to-first-byte
# (the engine builds and signs the request before the grant; the connection's connect timeout is 5 s).
HOLD_MAX = 10.0


def counted(departures: Iterable[float], holds: Iterable[float], now: float, window: float) -> list[float]:
    """The times the window counts, sorted: departures and holds' effective times still inside it."""
    times = [at for at in departures if at > now - window]
    for not_before in holds:
        effective = min(max(now, not_before), not_before + HOLD_MAX)
        if effective > now - window:
            times.append(effective)
    times.sort()
    return times


def expired_hold(not_before: float, now: float, window: float) -> bool:
    """A hold nothing counts any more (never departed, and aged out of every window)."""
    return not_before + HOLD_MAX <= now - window


def next_slot(times: list[float], limit: int, window: float, now: float) -> float:
    """The earliest time a call may leave given the counted ``times`` (sorted, from :func:`counted`): no
    earlier than now, than any counted time (holds granted before it keep their order), or than the moment
    the ``limit``-th newest leaves the window."""
    slot = max(now, times[-1]) if times else now
    if len(times) >= limit:
        slot = max(slot, times[len(times) - limit] + window)
    return slot
