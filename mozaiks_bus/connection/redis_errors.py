"""The one boundary where redis-py and socket errors become mozaiks-bus errors.

Every ``redis.exceptions.RedisError`` or ``OSError`` crossing
:func:`redis_errors` becomes :class:`BrokerUnavailable` (the server cannot be reached or
cannot serve now: connection, timeout, loading, READONLY after a failover, cluster down)
or :class:`TransportError` (the server refused the command: the message names the
reply's error code and what it means; the server's own sentence is only in
``__cause__``, so no raw Redis text reaches a CLI user or an HTTP client). Clients
retry a dropped connection ``retries`` times with short jittered backoff, then raise.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
import redis.exceptions as rexc

from mozaiks_bus.connection.broker_urls import redact_url, secrets_in
from mozaiks_bus.errors import BrokerUnavailable, MozaiksBusError, TransportError

__all__ = [
    "REDIS_ERRORS",
    "is_busygroup",
    "is_group_vanished",
    "ping",
    "redis_errors",
    "translate_redis_error",
]

# "cannot serve now, try later": a lost link, a timeout, a loading or read-only replica
# (READONLY right after a failover), a cluster slot moving or down.
_UNAVAILABLE = (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError,
                rexc.RedisClusterUnreachableError, rexc.SlotNotCoveredError)
_UNAVAILABLE_REPLIES = (rexc.ClusterDownError, rexc.TryAgainError)
# What a user is told when Redis refuses a command, by the reply's error code: the raw
# server sentence stays in the exception's __cause__ (for logs), never in the message.
_CLUSTER = ("this Redis is a Cluster node: point the broker URL at the cluster, "
            "redis+cluster://host:port[,host:port...]; `mozaiks-bus doctor` checks the nodes")
_REFUSALS = {
    "WRONGTYPE": "a key under this prefix holds another type of value (does another "
                 "program write under MOZAIKS_BUS_PREFIX?)",
    "NOPERM": "the Redis user may not run it: check its ACL",
    "NOAUTH": "Redis wants a password: put it in the broker URL",
    "WRONGPASS": "the broker URL's user or password is wrong",
    "OOM": "Redis is out of memory (maxmemory reached)",
    "MISCONF": "Redis cannot persist to disk and refuses writes: check its disk",
    "BUSY": "Redis is busy running a script",
    "NOSCRIPT": "a script was not loaded",
    "NOGROUP": "the consumer group does not exist (was Redis flushed?)",
    "EXECABORT": "a transaction was refused: one of its commands was invalid",
    "CROSSSLOT": "the keys of one command are in different cluster slots",
    "MOVED": _CLUSTER,
    "ASK": _CLUSTER,
    "CLUSTERDOWN": "the Redis Cluster is down (a slot has no primary: failing over?)",
}
_CODED: tuple[tuple[type[BaseException], str], ...] = (
    (rexc.MovedError, "MOVED"), (rexc.AskError, "ASK"), (rexc.ClusterCrossSlotError, "CROSSSLOT"),
    (rexc.OutOfMemoryError, "OOM"), (rexc.NoScriptError, "NOSCRIPT"),
    (rexc.NoPermissionError, "NOPERM"), (rexc.ExecAbortError, "EXECABORT"),
)
REDIS_ERRORS: tuple[type[BaseException], ...] = (rexc.RedisError, rexc.RedisClusterException,
                                                 OSError)
"""What a Redis call can raise for Redis's (or the network's) reasons: the one tuple
every ``except`` around a redis-py call names."""

def translate_redis_error(
    exc: BaseException, *, action: str, url: str | None = None
) -> MozaiksBusError:
    """The mozaiks-bus error for ``exc``, raised while doing ``action`` on ``url``."""
    if isinstance(exc, MozaiksBusError):
        return exc
    detail = str(exc) or type(exc).__name__
    for secret in secrets_in(url) if url else ():
        detail = detail.replace(secret, "***")
    where = f" at {redact_url(url)}" if url else ""
    if isinstance(exc, _UNAVAILABLE + _UNAVAILABLE_REPLIES):
        return BrokerUnavailable(f"{action}: Redis{where} is unavailable: {detail}")
    if isinstance(exc, rexc.ResponseError):
        # redis-py strips the code from replies it maps to a class of its own
        code = next((name for kind, name in _CODED if isinstance(exc, kind)), None) or (
            detail.split(" ", 1)[0] if detail[:1].isupper() else "ERR")
        reason = _REFUSALS.get(code, "the server refused the command")
        return TransportError(f"{action}: Redis{where} refused it: {reason} ({code})")
    return TransportError(f"{action}: Redis{where} failed: {type(exc).__name__}: {detail}")


@contextlib.asynccontextmanager
async def redis_errors(action: str, url: str | None = None) -> AsyncIterator[None]:
    """Re-raise redis-py and socket errors inside as translated mozaiks-bus errors.

    ``async with redis_errors("publish", url): ...``, or ``@redis_errors("publish")`` on
    an async function. The original error is kept as ``__cause__``. (Sync code calls
    :func:`translate_redis_error` in its own ``except``.)
    """
    try:
        yield
    except MozaiksBusError:
        raise
    except REDIS_ERRORS as exc:
        raise translate_redis_error(exc, action=action, url=url) from exc


def is_busygroup(exc: BaseException) -> bool:
    """True if ``exc`` is Redis's reply to creating a consumer group that exists."""
    return isinstance(exc, rexc.ResponseError) and str(exc).startswith("BUSYGROUP")


def is_group_vanished(exc: BaseException) -> bool:
    """True for NOGROUP, or Redis 7's reply to a blocked read whose stream was deleted."""
    message = str(exc)
    return isinstance(exc, rexc.ResponseError) and (
        "NOGROUP" in message or message.startswith("UNBLOCKED"))


async def ping(client: aioredis.Redis | aioredis.RedisCluster, *, url: str | None = None) -> float:
    """Round-trip time of one PING in seconds; BrokerUnavailable if it fails."""
    async with redis_errors("ping", url):
        started = time.perf_counter()
        await client.ping()
        return time.perf_counter() - started
