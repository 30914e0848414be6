"""The cluster sender's executor: one batch of commands, routed over the primaries.

The batching sender hands over a flat list of commands (``MULTI``...``EXEC`` blocks
included) and wants one reply per command back. :class:`ClusterRouter`:

* **Routes by slot.** A command goes to the primary of its first key's slot; a block to
  the primary of the one slot all its keys share. Keyless commands (classic ``PUBLISH``,
  relayed to every node by the cluster) all go to one *publish node*, so one sender's
  fan-out events reach every subscriber in the order sent. A ``SADD`` of the stream
  index found inside a block runs just before the block, outside it: it is bookkeeping
  for discovery, in a slot of its own. A block whose keys span slots gets an error
  reply (:class:`CrossSlot`); the cluster transport never builds one.
* **Sends each node's share in one write on one connection**, every node at once, in
  the batch's order per node: a stream's entries (one slot, one node) keep their order.
  Each share is one RESP exchange (:mod:`mozaiks_bus.connection.exchange`), as on one
  Redis.
* **Follows the cluster.** A command the node did not run (``MOVED``, ``ASK``,
  ``TRYAGAIN``, ``CLUSTERDOWN``: the one redirect policy,
  :mod:`mozaiks_bus.connection.redirects`) or a node that could not be reached before
  anything was written is sent again, after a topology refresh where asked and the
  policy's backoff, until ``retry_window_s`` has passed since the batch began: long
  enough to outlast a failover (``cluster-node-timeout`` plus the election) with the
  defaults. ``ASK`` is followed at once, with ``ASKING`` on the same connection.
* **Waits for replicas on every primary written.** A batch that ends with ``WAIT n
  ms`` (confirmed items asking for ``min_replicas``) gets that ``WAIT`` after each
  node's share, on the same connection (``WAIT`` counts that connection's writes); its
  reply is the fewest replicas any of those primaries reported (0 for a node lost).
* **Never guesses.** A link lost after the write (the node may have run the commands)
  is not retried here: those commands get the error as their reply and the batch ends
  with :class:`PartialBatch`, so the sender fails (or re-queues) exactly the items that
  had a command there, as it does on one Redis.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as rexc
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from mozaiks_bus.connection.exchange import Command, connect, exchange
from mozaiks_bus.connection.redirects import Follow, Redirects, redirect_of
from mozaiks_bus.errors import TransportError
from mozaiks_bus.transports.redis.commands import PartialBatch

__all__ = ["ClusterRouter", "CrossSlot", "Unsent", "command_slot"]

logger = logging.getLogger("mozaiks_bus.cluster")
_KEYLESS = frozenset({b"PUBLISH", b"PING"})


class CrossSlot(TransportError, rexc.ResponseError):
    """A block (or a script) whose keys are in several cluster slots: never sent."""


def _name(command: tuple[Any, ...]) -> bytes:
    head = command[0]
    return (head if isinstance(head, bytes) else str(head).encode()).upper()


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def command_slot(command: tuple[Any, ...]) -> int | None:
    """The slot of a command the bus sends (None: keyless, any node serves it)."""
    name = _name(command)
    if name in _KEYLESS or len(command) < 2:
        return None
    if name in (b"EVAL", b"EVALSHA"):
        count = int(command[2])
        if count == 0:
            return None
        slots = {key_slot(_as_bytes(key)) for key in command[3:3 + count]}
        if len(slots) > 1:
            raise CrossSlot("CROSSSLOT a script's keys are in several cluster slots")
        return slots.pop()
    return key_slot(_as_bytes(command[1]))


@dataclass(slots=True)
class _Unit:
    """One command, or one block, with where its replies go."""

    commands: list[tuple[Any, ...]]
    positions: list[int]  # reply index of each command in the batch
    slot: int | None
    block: bool = False
    ask: tuple[str, int] | None = None  # send with ASKING to this node next
    replies: list[Any] = field(default_factory=list)

    def place(self, replies: list[Any], got: list[Any]) -> None:
        """Put ``got`` (this unit's replies) at its positions in the batch's ``replies``;
        an aborted block's EXEC gets the error that aborted it."""
        for position, reply in zip(self.positions, got, strict=False):
            replies[position] = reply
        if self.block and got:
            exec_reply = got[-1]
            if isinstance(exec_reply, rexc.ExecAbortError):
                first = next((r for r in got if isinstance(r, rexc.ResponseError)
                              and not isinstance(r, rexc.ExecAbortError)), exec_reply)
                replies[self.positions[-1]] = first


class Unsent(TransportError):
    """The node's share was not written at all: safe to send again."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class ClusterRouter:
    """Runs the sender's batches on a ``RedisCluster`` (see the module docstring)."""

    def __init__(self, cluster: RedisCluster, *, index_key: str, retry_window_s: float,
                 read_timeout_s: float = 5.0) -> None:
        self.cluster = cluster
        self._index_key = index_key.encode()
        self.retry_window_s = retry_window_s
        self._read_timeout_s = read_timeout_s
        self._publish_node: str | None = None
        self._initialized = False
        self.redirects = 0  # MOVED/ASK/TRYAGAIN/CLUSTERDOWN followed (for tests, health)

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One reply per command; raises the first error reply, or :class:`PartialBatch`
        when some commands got errors (their replies are the exceptions)."""
        if not commands or _name(commands[-1]) != b"WAIT":
            return await self._execute(commands, None, [])
        reached: list[int] = []
        try:
            replies = await self._execute(commands[:-1], commands[-1], reached)
        except PartialBatch as partial:
            raise PartialBatch([*partial.replies, min(reached, default=0)]) from None
        return [*replies, min(reached, default=0)]

    async def _execute(self, commands: list[tuple[Any, ...]], wait: tuple[Any, ...] | None,
                       reached: list[int]) -> list[Any]:
        redirects = Redirects(window_s=self.retry_window_s)
        replies: list[Any] = [None] * len(commands)
        pending = self._units(commands, replies)
        while True:
            if not self._initialized:
                await self._refresh(redirects)
            retry, refresh = await self._send_round(pending, wait, reached)
            again = {id(unit) for unit in retry}
            for unit in pending:
                if id(unit) not in again:
                    unit.place(replies, unit.replies)
            if not retry:
                break
            if redirects.exhausted():
                gave_up = _gave_up(redirects.elapsed_s())
                for unit in retry:
                    unit.place(replies, [gave_up] * len(unit.positions))
                break
            # an ASK is followed at once; anything else after the backoff's delay
            await redirects.pause(wait=any(unit.ask is None for unit in retry))
            if refresh:
                await self._refresh(redirects)
            pending = retry
        errors = [reply for reply in replies if isinstance(reply, BaseException)]
        if not errors:
            return replies
        if len(errors) == len(replies):
            raise errors[0]
        raise PartialBatch(replies)

    # -- planning -----------------------------------------------------------------------

    def _units(self, commands: list[tuple[Any, ...]], replies: list[Any]) -> list[_Unit]:
        units: list[_Unit] = []
        index = 0
        while index < len(commands):
            command = commands[index]
            if _name(command) != b"MULTI":
                units.append(self._single(command, index, replies))
                index += 1
                continue
            end = next(i for i in range(index, len(commands)) if _name(commands[i]) == b"EXEC")
            inner: list[tuple[tuple[Any, ...], int]] = []
            for position in range(index + 1, end):
                member = commands[position]
                if _name(member) == b"SADD" and _as_bytes(member[1]) == self._index_key:
                    units.append(self._single(member, position, replies))
                    replies[position] = b"QUEUED"
                    continue
                inner.append((member, position))
            units.append(self._block(commands[index], commands[end], index, end, inner))
            index = end + 1
        return units

    @staticmethod
    def _single(command: tuple[Any, ...], position: int, replies: list[Any]) -> _Unit:
        try:
            slot = command_slot(command)
        except CrossSlot as exc:
            replies[position] = exc
            return _Unit([], [], None)
        return _Unit([command], [position], slot)

    @staticmethod
    def _block(multi: tuple[Any, ...], exec_: tuple[Any, ...], start: int, end: int,
               inner: list[tuple[tuple[Any, ...], int]]) -> _Unit:
        slots: set[int] = set()
        crossed: CrossSlot | None = None
        for member, _ in inner:
            try:
                slot = command_slot(member)
            except CrossSlot as exc:
                crossed = exc
                continue
            if slot is not None:
                slots.add(slot)
        if len(slots) > 1:
            crossed = CrossSlot("CROSSSLOT a transaction's keys are in several cluster slots")
        unit = _Unit([multi, *(m for m, _ in inner), exec_],
                     [start, *(p for _, p in inner), end], next(iter(slots), None), block=True)
        if crossed is not None:
            unit.commands = []
            unit.replies = [crossed] * len(unit.positions)
        return unit

    # -- sending ------------------------------------------------------------------------

    async def _send_round(self, units: list[_Unit], wait: tuple[Any, ...] | None,
                          reached: list[int]) -> tuple[list[_Unit], bool]:
        """Send every unit once (each node's share followed by ``wait``, whose replies
        go to ``reached``); returns the units to send again, and whether the topology
        should be refreshed first."""
        by_node: dict[str, tuple[ClusterNode, list[_Unit]]] = {}
        retry: list[_Unit] = []
        refresh = False
        for unit in units:
            if not unit.commands:
                continue
            try:
                node = self._node_for(unit)
            except rexc.RedisError as exc:  # slot not covered right now
                unit.replies = [exc] * len(unit.positions)
                retry.append(unit)
                refresh = True
                continue
            by_node.setdefault(node.name, (node, []))[1].append(unit)
        waits = {name: _Unit([wait], [], None) for name in by_node} if wait is not None else {}
        outcomes = await asyncio.gather(
            *(self._send_node(node, [*share, *([waits[node.name]] if waits else [])])
              for node, share in by_node.values()),
            return_exceptions=True,
        )
        for (node, share), outcome in zip(by_node.values(), outcomes, strict=True):
            if waits:
                got = waits[node.name].replies
                reached.append(got[0] if outcome is None and got and isinstance(got[0], int)
                               else 0)
            refresh = self._absorb(node, share, outcome, retry) or refresh
        return retry, refresh

    def _absorb(self, node: ClusterNode, share: list[_Unit], outcome: BaseException | None,
                retry: list[_Unit]) -> bool:
        """Take one node's outcome; appends what to send again to ``retry`` and returns
        whether the topology should be refreshed first."""
        if isinstance(outcome, asyncio.CancelledError):
            raise outcome
        if outcome is not None:
            if node.name == self._publish_node:
                self._publish_node = None
            cause = outcome.cause if isinstance(outcome, Unsent) else outcome
            for unit in share:
                unit.replies = [cause] * len(unit.positions)
            if isinstance(outcome, Unsent):
                logger.warning("cluster node %s unreachable (%s): retrying after a topology "
                               "refresh", node.name, cause)
                retry.extend(share)
                return True
            self._initialized = False  # lost after the write (ambiguous): not retried
            return False
        refresh = False
        for unit in share:
            again = self._redirected(unit)
            if again is not None:
                retry.append(unit)
                refresh = refresh or again
        return refresh

    def _node_for(self, unit: _Unit) -> ClusterNode:
        manager = self.cluster.nodes_manager
        if unit.ask is not None:
            host, port = unit.ask
            node = manager.get_node(host=host, port=port)
            if node is not None:
                return node
        if unit.slot is not None:
            return manager.get_node_from_slot(unit.slot)
        if self._publish_node is not None:
            node = manager.get_node(node_name=self._publish_node)
            if node is not None and node.server_type == "primary":
                return node
        primaries = sorted(manager.get_nodes_by_server_type("primary"), key=lambda n: n.name)
        if not primaries:
            raise rexc.ClusterDownError("CLUSTERDOWN no primary known")
        chosen = primaries[0]
        self._publish_node = chosen.name
        return chosen

    async def _send_node(self, node: ClusterNode, units: list[_Unit]) -> None:
        """Write ``units`` (an ``ASK``ed one after ``ASKING``) in one exchange on one
        connection of ``node`` and read every reply into ``unit.replies``; raises
        :class:`Unsent` if nothing could be written."""
        try:
            connection = node.acquire_connection()
        except rexc.RedisError as exc:
            raise Unsent(exc) from exc
        try:
            try:
                await connect(connection)
            except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
                raise Unsent(exc) from exc
            except BaseException:
                await connection.disconnect()
                raise
            sent: list[Command] = []
            for unit in units:
                sent.extend([("ASKING",), *unit.commands] if unit.ask else unit.commands)
            got = await exchange(connection, sent, timeout_s=self._read_timeout_s)
            at = 0
            for unit in units:
                at += unit.ask is not None  # ASKING's OK
                unit.replies = got[at:at + len(unit.commands)]
                at += len(unit.commands)
                unit.ask = None
        finally:
            node.release(connection)

    def _redirected(self, unit: _Unit) -> bool | None:
        """None: the unit is done (its replies stand). Else it is sent again (to the
        node an ``ASK`` named); True when the topology should be refreshed first."""
        redirect = redirect_of(unit.replies)
        if redirect is None:
            return None
        self.redirects += 1
        unit.ask = redirect.node
        return redirect.follow is Follow.REFRESH

    async def _refresh(self, redirects: Redirects) -> None:
        """Ask the cluster for its slots again (bounded by the retry window)."""
        try:
            async with asyncio.timeout(max(0.1, redirects.left_s())):
                await self.cluster.nodes_manager.initialize()
            self._initialized = True
        except (rexc.RedisError, OSError, TimeoutError) as exc:
            logger.warning("cluster topology refresh failed: %s", exc)


def _gave_up(waited: float) -> BaseException:
    return rexc.ClusterDownError(f"CLUSTERDOWN the cluster did not take the command within "
                                 f"{waited:.1f}s")
