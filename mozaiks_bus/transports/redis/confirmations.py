"""Which (P)SUBSCRIBEs of one pub/sub link Redis has confirmed.

A link counts as receiving only once Redis confirmed every subscription sent when it
connected (:meth:`Confirmations.expect` / :meth:`Confirmations.settled`), not when they
were sent: a link that answers the handshake but not SUBSCRIBE, or a half-open one, is
not receiving. Callers that read history and then go live (the ui scope) wait for their
own name's confirmation first (:meth:`Confirmations.wait`), so nothing published in
between is missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

__all__ = ["Confirmations"]


class Confirmations:
    """The confirmed names of the current link, and who waits for which (one loop)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._expected: set[str] | None = None  # sent at connect, not yet all confirmed

    def expect(self, names: Iterable[str]) -> None:
        """A new link sent these subscriptions; it is settled once all are confirmed."""
        self._expected = set(names)

    def confirm(self, name: str) -> None:
        """Redis confirmed ``name``: wake whoever waits for it."""
        self.names.add(name)
        for waiter in self._waiters.pop(name, []):
            if not waiter.done():
                waiter.set_result(None)

    def settled(self, wanted: set[str]) -> bool:
        """True once (and only the first time) every name expected at connect that is
        still ``wanted`` was confirmed."""
        if self._expected is None:
            return False
        self._expected &= wanted
        if self._expected - self.names:
            return False
        self._expected = None
        return True

    def forget(self, names: Iterable[str] = ()) -> None:
        """Names unsubscribed; with none given, the link is gone: forget them all."""
        if names:
            self.names -= set(names)
            return
        self.names = set()
        self._expected = None

    async def wait(self, name: str, timeout: float) -> bool:
        """Wait until ``name`` is confirmed; False on timeout."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        return True
