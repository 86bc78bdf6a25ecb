"""Where a request's bytes leave: a per-thread departure gate at the HTTP connection's ``send``.

The rate window counts a call from the moment its bytes leave (see ``services.ratelimit``), so the engine
needs two things from the HTTP layer the SDK uses: to hold the first byte until the call's slot opens, and
to know when the request line has been written.

**The hook, and why there.** The CAMS SDK (tea-openapi 0.4.6 ``call_api`` -> darabonba-core 1.0.9
``DaraCore.do_action``) sends through a ``requests.Session`` it creates and caches per host itself, over
urllib3 2, whose ``HTTPConnection.request`` writes the request line and headers with one ``self.send(...)``
(``http.client.HTTPConnection.send``: ``sock.sendall``), then the body, then ``getresponse()``. The SDK takes
no transport adapter, connection class or hook of its own, so :func:`install` wraps those two methods of
``http.client.HTTPConnection``, the base every connection of that stack (HTTP and HTTPS) inherits them from.
The wrappers act only on a thread where :func:`departing` is active (the engine's CAMS call); on any other
send they cost one thread-local lookup. Considered and rejected: a clock read just before ``call_api``
(signing, ``PreparedRequest``, the pool's lock and a connect still lie between it and the wire: the ~80 ms
that broke the window under load); mounting an adapter on the SDK's session (a private, version-specific
cache key); an audit hook (``socket.sendall`` raises no audit event).

**What is recorded.** ``first_byte``: the clock just before the first ``send`` (after connecting, if the
connection was not open: http.client connects inside ``send``, and a connect is not a departure; then after
waiting for ``not_before``); ``sent_at``: the clock just after that ``send`` returned. On loopback the
kernel delivers (and the local CAMS stamps) the request line's segment within that ``sendall``, so
``sent_at`` is normally no earlier than the arrival; a receive deferred to the kernel's softirq thread can
stamp it a little later, which the margin's floor covers. The engine records ``sent_at`` as the departure:
the next grant waits on it, so the gap between a call and the ``limit``-th after it, at the service, is at
least the window whatever the host did between grant and send; only the network's own variance remains,
which the learned margin covers. ``on_sent`` runs once the whole request is written (at ``getresponse``),
off the path between slot and first byte; the thread's gate is cleared first, so whatever ``on_sent`` sends
(a Tablestore write) passes untouched.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()
_installed = threading.Lock()
_done = False

MIN_NAP = 0.001  # a wait never sleeps less (a sub-resolution remainder must not spin under a fake clock)


class Departure:
    """One call's gate: hold the first byte until ``not_before``; note when it left; report it once."""

    def __init__(
        self,
        not_before: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
        on_sent: Callable[[float], object] | None = None,
    ) -> None:
        self.not_before = not_before
        self.clock = clock
        self.sleep = sleep
        self.on_sent = on_sent
        self.first_byte: float | None = None
        self.sent_at: float | None = None
        self.reported = False
        self.connecting = False

    def before_first_send(self) -> None:
        while True:
            left = self.not_before - self.clock()
            if left <= 0:
                break
            self.sleep(max(left, MIN_NAP))
        self.first_byte = self.clock()

    def after_first_send(self) -> None:
        self.sent_at = self.clock()

    def report(self) -> None:
        """``on_sent(sent_at)`` once, if the request left; an error there is left for the caller to retry
        (``reported`` stays False): it must never break the call whose bytes are out."""
        if self.reported or self.sent_at is None or self.on_sent is None:
            return
        try:
            self.on_sent(self.sent_at)
        except Exception:  # noqa: BLE001, S110 - the caller records it after the call (see ``reported``)
            return
        self.reported = True


@contextmanager
def departing(departure: Departure) -> Iterator[Departure]:
    """Gate this thread's next HTTP request with ``departure`` (see the module docstring)."""
    install()
    _local.departure = departure
    try:
        yield departure
    finally:
        _local.departure = None


def install() -> None:
    """Wrap ``http.client.HTTPConnection.send`` and ``getresponse`` once per process (idempotent)."""
    global _done
    if _done:
        return
    with _installed:
        if _done:
            return
        original_send = http.client.HTTPConnection.send
        original_getresponse = http.client.HTTPConnection.getresponse

        def send(self: http.client.HTTPConnection, data: Any) -> None:
            departure: Departure | None = getattr(_local, "departure", None)
            if departure is None or departure.first_byte is not None or departure.connecting:
                return original_send(self, data)  # not gated, already left, or a proxy's CONNECT
            if self.sock is None and self.auto_open:
                departure.connecting = True  # as http.client's send would: a connect is not a departure
                try:
                    self.connect()
                finally:
                    departure.connecting = False
            departure.before_first_send()
            original_send(self, data)
            departure.after_first_send()  # not on an error: the engine then counts the call when it returns

        def getresponse(self: http.client.HTTPConnection) -> http.client.HTTPResponse:
            departure: Departure | None = getattr(_local, "departure", None)
            if departure is not None and departure.sent_at is not None:
                _local.departure = None  # what on_sent sends is not this call
                departure.report()
            return original_getresponse(self)

        http.client.HTTPConnection.send = send  # type: ignore[method-assign] # the hook: see the docstring
        http.client.HTTPConnection.getresponse = getresponse  # type: ignore[method-assign] # same
        _done = True
