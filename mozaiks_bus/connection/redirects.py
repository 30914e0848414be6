"""The one redirect policy: what a cluster's "not here" or "not now" reply asks for.

A cluster node answers a command it did not run with one of these; nothing ran, so
sending the command again never runs it twice:

* ``MOVED slot host:port``: the slot lives on another node now: read the slot map
  again, then send again (:attr:`Follow.REFRESH`);
* ``ASK slot host:port``: the slot is migrating and this key has left: send again to
  that node at once, after ``ASKING``; the slot map stands (:attr:`Follow.ASK`);
* ``TRYAGAIN``: a multi-key command met a migration half done: send again to the same
  node after a pause (:attr:`Follow.RETRY`);
* ``CLUSTERDOWN``: the slot has no primary (a failover is under way): read the slot
  map again after a pause (:attr:`Follow.REFRESH`).

:func:`redirect_of` classifies a command's replies; :class:`Redirects` is one
operation's budget for following them (a number of redirects, a time window, or both)
and paces the sends after them with :class:`~mozaiks_bus.retry.Backoff` (every
follow-up but an ``ASK`` waits its next delay). The cluster router (a batch's units)
and one-slot transactions both follow this policy.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rexc

from mozaiks_bus.retry import Backoff

__all__ = ["Follow", "Redirect", "Redirects", "redirect_of"]


class Follow(enum.Enum):
    """What a redirect asks the sender to do before sending again."""

    REFRESH = "refresh"  # read the slot map again (MOVED, CLUSTERDOWN)
    ASK = "ask"  # send to the node named, after ASKING (ASK)
    RETRY = "retry"  # send to the same node again (TRYAGAIN)


@dataclass(frozen=True, slots=True)
class Redirect:
    """One reply that asks for the command to be sent again, and how."""

    follow: Follow
    error: rexc.ResponseError
    node: tuple[str, int] | None = None  # the node an ASK names

    @property
    def waits(self) -> bool:
        """Whether the next send waits a backoff delay (all but an ASK)."""
        return self.follow is not Follow.ASK


def redirect_of(replies: Iterable[Any]) -> Redirect | None:
    """The first reply among ``replies`` that is a redirect; None: no reply is one (the
    replies stand)."""
    for reply in replies:
        if isinstance(reply, rexc.MovedError):  # before AskError: MOVED is one too
            return Redirect(Follow.REFRESH, reply)
        if isinstance(reply, rexc.AskError):
            return Redirect(Follow.ASK, reply, (reply.host, int(reply.port)))
        if isinstance(reply, rexc.TryAgainError):
            return Redirect(Follow.RETRY, reply)
        if isinstance(reply, rexc.ClusterDownError):
            return Redirect(Follow.REFRESH, reply)
    return None


class Redirects:
    """One operation's following of redirects: bounded by ``limit`` sends again and/or
    a ``window_s`` from its start, paced by a :class:`Backoff` (50 ms doubling to
    500 ms unless given)."""

    def __init__(self, *, limit: int | None = None, window_s: float | None = None,
                 backoff: Backoff | None = None) -> None:
        self.started = time.monotonic()
        self.limit = limit
        self.window_s = window_s
        self.sent_again = 0
        self._backoff = backoff or Backoff(min_s=0.05, max_s=0.5)

    def elapsed_s(self) -> float:
        """Seconds since the operation began."""
        return time.monotonic() - self.started

    def left_s(self) -> float:
        """Seconds left of the window (infinite without one)."""
        if self.window_s is None:
            return float("inf")
        return max(0.0, self.window_s - self.elapsed_s())

    def exhausted(self) -> bool:
        """Whether the budget is spent: no more sending again."""
        return (self.limit is not None and self.sent_again >= self.limit) or \
            self.left_s() <= 0

    async def pause(self, *, wait: bool) -> None:
        """Count one send again and, when ``wait``, sleep the backoff's next delay
        (never past the window)."""
        self.sent_again += 1
        if wait:
            await asyncio.sleep(min(self._backoff.next_delay(), self.left_s()))
