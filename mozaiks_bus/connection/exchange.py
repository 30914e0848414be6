"""The one hand-written RESP exchange: a batch written at once, every reply read.

Three executors speak to a redis-py connection themselves rather than through a
pipeline: the sender on one Redis (``HeldConnection``), the cluster router (each
node's share of a batch) and one-slot cluster transactions. hiredis packs commands in
C (redis-py's pipeline packs in Python, which was half the sender's cost), and a whole
batch goes out in one write. All three do it through :func:`exchange`:

* the commands are packed by hiredis and written with one
  ``send_packed_command(..., check_health=False)`` (no health PING before a batch);
* one reply is read per command; an error reply is *returned* as its
  ``ResponseError`` (it was parsed whole, so the stream stays in step) and what it
  means is the caller's call (raise the first, split by unit, follow a redirect);
* one deadline covers every reply (not redis-py's timer per reply), extended by the
  server-side block time of any ``WAIT`` in the batch; running out raises redis-py's
  ``TimeoutError``;
* on any failure (a lost link, the deadline, a cancellation) the connection is
  disconnected before the error propagates: its reply stream is out of step, and
  redis-py connects it again on next use.

The redis-py members relied on here and by the callers are checked by
``tests/unit/test_redis_py_seams.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import hiredis
from redis import exceptions as rexc

__all__ = ["Command", "connect", "exchange", "pack", "raise_first"]

Command = tuple[Any, ...]
"""One Redis command as sent: its name then its arguments (str, bytes, int, float)."""


def pack(commands: Sequence[Command]) -> bytes:
    """``commands`` in RESP, packed by hiredis, ready for one write."""
    return b"".join(hiredis.pack_command(command) for command in commands)


async def connect(connection: Any) -> None:
    """Connect ``connection`` unless it is connected.

    Done before every exchange, and not left to ``send_packed_command``'s own
    reconnect: ``connect()`` is what asks a Sentinel for the current primary after a
    failover."""
    if not connection.is_connected:
        await connection.connect()


async def exchange(connection: Any, commands: Sequence[Command], *,
                   timeout_s: float | None) -> list[Any]:
    """Write ``commands`` in one send on ``connection`` (connected) and return one
    reply per command, an error reply as its ``ResponseError``.

    Every reply arrives within ``timeout_s`` (None: unbounded) plus the timeout of any
    ``WAIT`` among the commands, else redis-py's ``TimeoutError``. On any failure the
    connection is disconnected before the error is raised."""
    try:
        await connection.send_packed_command(pack(commands), check_health=False)
        deadline = None if timeout_s is None else timeout_s + _blocking_s(commands)
        try:
            async with asyncio.timeout(deadline):
                return [await _read(connection) for _ in commands]
        except TimeoutError:
            raise rexc.TimeoutError(f"Redis did not answer {len(commands)} commands "
                                    f"within {deadline}s") from None
    except BaseException:
        await connection.disconnect()
        raise


def raise_first(replies: Sequence[Any]) -> None:
    """Raise the first error among ``replies``."""
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply


async def _read(connection: Any) -> Any:
    try:
        return await connection.read_response(timeout=math.inf)
    except rexc.ResponseError as exc:  # parsed whole: the stream stays in step
        return exc


def _blocking_s(commands: Sequence[Command]) -> float:
    """How long the server may hold the replies back on purpose: ``WAIT n ms``."""
    return sum(int(command[2]) / 1000 for command in commands
               if len(command) == 3 and _name(command) == b"WAIT")


def _name(command: Command) -> bytes:
    head = command[0]
    return (head if isinstance(head, bytes) else str(head).encode()).upper()
