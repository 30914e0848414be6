"""One-slot transactions that run the same on one Redis and on a Redis Cluster.

On one Redis (or Sentinel, or memory://) these are redis-py transactional pipelines. On
a cluster they are written by hand on one connection of the slot's primary: redis-py's
asyncio cluster transaction runs every queued command in a thread of its own with a
private event loop and connection (about 25 ms a command on a 2-core machine), which
held a guarded consumer to some 40 events a second.

Contract, both ways:

* every key of one transaction hashes to one slot (a type's stream, dead letters and
  processed ids share the type's tag; :mod:`mozaiks_bus.keys`), else CROSSSLOT;
* ``MOVED``/``ASK``/``TRYAGAIN``/``CLUSTERDOWN`` (nothing ran) are followed a bounded
  number of times, by the one redirect policy (:mod:`mozaiks_bus.connection.redirects`);
  a link lost after the write is raised, never retried (the commands may have run);
* replies are the server's own (no redis-py response callbacks on a cluster).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis import exceptions as rexc
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from mozaiks_bus.connection.clients import AsyncClient
from mozaiks_bus.connection.exchange import Command, connect, exchange, raise_first
from mozaiks_bus.connection.redirects import Follow, Redirects, redirect_of

__all__ = ["CLAIM_IF_EMPTY", "Command", "commit_unless", "multi_exec"]

CLAIM_IF_EMPTY = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return redis.call('GET', KEYS[1])
"""
"""A one-key script: set ``KEYS[1]`` to ``ARGV[1]`` for ``ARGV[2]`` seconds unless it
holds a value; answers 1 (taken) or the value found (the HTTP API's dedupe claims)."""
_REDIRECTS = 5


async def multi_exec(client: AsyncClient, commands: Sequence[Command]) -> list[Any]:
    """Run ``commands`` in one MULTI/EXEC; their replies (raises the first error)."""
    if not isinstance(client, RedisCluster):
        pipe = client.pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    async def run(connection: Any) -> list[Any]:
        replies = await _exec(connection, commands)
        if replies is None:  # only a WATCH aborts an EXEC, and none was sent
            raise rexc.WatchError("EXEC aborted")
        return replies

    done: list[Any] = await _on_slot(client, _slot(commands), run)
    return done


async def commit_unless(client: AsyncClient, watch: str, probe: Command,
                        commit: Callable[[Any], Sequence[Command] | None]) -> list[Any] | None:
    """WATCH ``watch``, run ``probe``, and MULTI/EXEC what ``commit(probe's reply)``
    returns, again from the WATCH if the key changed meanwhile; None (and nothing run)
    when ``commit`` returns None. The EXEC replies otherwise."""
    if not isinstance(client, RedisCluster):
        async with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(watch)
                    commands = commit(await pipe.execute_command(*probe))
                    if commands is None:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return None
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for command in commands:
                        pipe.execute_command(*command)
                    return list(await pipe.execute())
                except rexc.WatchError:
                    continue

    async def run(connection: Any) -> list[Any] | None:
        while True:
            watched = await _exchange(connection, [("WATCH", watch), probe])
            raise_first(watched)
            commands = commit(watched[1])
            if commands is None:
                raise_first(await _exchange(connection, [("UNWATCH",)]))
                return None
            replies = await _exec(connection, commands)
            if replies is not None:
                return replies

    committed: list[Any] | None = await _on_slot(client, key_slot(watch.encode()), run)
    return committed


def _slot(commands: Sequence[Command]) -> int:
    slots = {key_slot(_key(command)) for command in commands}
    if len(slots) != 1:
        raise rexc.ResponseError("CROSSSLOT a transaction's keys are in several cluster "
                                 "slots")
    return slots.pop()


def _key(command: Command) -> bytes:
    key = command[1]
    return key if isinstance(key, bytes) else str(key).encode()


async def _on_slot(client: RedisCluster, slot: int,
                   work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(connection)`` on a connection of the slot's primary, following
    redirects (:mod:`mozaiks_bus.connection.redirects`; the work must send nothing
    that runs before a redirect answer)."""
    await client.initialize()  # a no-op once the topology is known
    redirects = Redirects(limit=_REDIRECTS)
    ask: tuple[str, int] | None = None
    while True:
        manager = client.nodes_manager
        node = manager.get_node(host=ask[0], port=ask[1]) if ask else None
        node = node or manager.get_node_from_slot(slot)
        connection = node.acquire_connection()
        try:
            await connect(connection)
            if ask is not None:
                raise_first(await _exchange(connection, [("ASKING",)]))
            return await work(connection)
        except BaseException as failed:
            redirect = redirect_of([failed])
            if redirect is None:
                await connection.disconnect()  # it may hold a WATCH, or be out of step
                raise
            if redirects.exhausted():
                if isinstance(failed, rexc.ClusterDownError):
                    raise
                raise rexc.ClusterError(f"slot {slot} kept moving: {_REDIRECTS} "
                                        "redirects") from failed
        finally:
            node.release(connection)
        if redirect.follow is not Follow.RETRY:  # TRYAGAIN: the same node again
            ask = redirect.node
        await redirects.pause(wait=redirect.waits)
        if redirect.follow is Follow.REFRESH:
            await manager.initialize()


async def _exec(connection: Any, commands: Sequence[Command]) -> list[Any] | None:
    """MULTI, the commands, EXEC; the EXEC replies (None: a WATCH aborted it)."""
    replies = await _exchange(connection, [("MULTI",), *commands, ("EXEC",)])
    queued = [reply for reply in replies[:-1] if isinstance(reply, BaseException)]
    if queued:  # refused while queueing (MOVED, a wrong arity...): EXEC aborted
        raise queued[0]
    result = replies[-1]
    if isinstance(result, BaseException):
        raise result
    if result is None:
        return None
    raise_first(result)
    return list(result)


async def _exchange(connection: Any, commands: Sequence[Command]) -> list[Any]:
    return await exchange(connection, commands, timeout_s=connection.socket_timeout)
