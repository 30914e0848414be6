"""The Redis connection layer every scope shares: URLs in, clients out, errors translated.

Accepted broker URLs (anything else raises :class:`ConfigError` naming these):

* ``redis://[[user]:password@]host[:port][/db][?option=...]`` and ``rediss://`` (TLS);
  query options are redis-py's (``ssl_ca_certs``, ``ssl_cert_reqs``...).
* ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``.
* ``memory://[name][?db=N]``: fakeredis in this process. Every client of one name, sync
  or async, shares one fake server until :func:`release_memory_server`.
* ``redis+sentinel://[[user]:password@]host1:port1,host2:port2/service_name[/db]``: the
  master of ``service_name`` as Sentinel reports it, followed across failover. The
  credentials are for the master; sentinels are reached without auth (port 26379 if none).
* ``redis+cluster://[[user]:password@]host1:port1[,host2:port2...][?option=...]`` and
  ``rediss+cluster://`` (TLS): a Redis Cluster, the listed nodes being seeds (the rest
  is discovered; port 6379 if none). A cluster has one database, so no ``/db`` and no
  ``?db=``. The client factories return a ``RedisCluster`` for it (:data:`AsyncClient`,
  :data:`SyncClient`); :func:`cluster_node_urls` gives each seed as a plain node URL.

Passwords never appear in a message: :func:`redact_url` masks them, and
:mod:`mozaiks_bus.connection.redis_errors` (the one boundary where redis-py errors are
translated) scrubs them with :func:`secrets_in`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol, TypedDict, Unpack, cast

import fakeredis
import redis
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry
from redis.sentinel import Sentinel

from mozaiks_bus.connection.broker_urls import (
    BrokerUrl,
    cluster_node_urls,
    is_cluster_url,
    parse_broker_url,
)
from mozaiks_bus.errors import ConfigError

__all__ = [
    "AsyncClient",
    "ClientOptions",
    "StreamClients",
    "SyncClient",
    "create_async_any_client",
    "create_async_client",
    "create_sync_any_client",
    "create_sync_client",
    "release_memory_server",
    "text",
]

AsyncClient = aioredis.Redis | aioredis.RedisCluster
"""What :func:`create_async_client` returns: a ``RedisCluster`` for a cluster URL."""
SyncClient = redis.Redis | redis.RedisCluster
"""What :func:`create_sync_client` returns: a ``RedisCluster`` for a cluster URL."""



_memory_servers: dict[str, fakeredis.FakeServer] = {}
_memory_lock = threading.Lock()


def _memory_server(name: str) -> fakeredis.FakeServer:
    with _memory_lock:
        if name not in _memory_servers:
            _memory_servers[name] = fakeredis.FakeServer()
        return _memory_servers[name]


def release_memory_server(name: str) -> None:
    """Forget the ``memory://name`` server; later clients of that name start empty."""
    with _memory_lock:
        _memory_servers.pop(name, None)


class _AsyncSentinelRedis(aioredis.Redis):
    """A Sentinel-managed master client that also closes its connections to sentinels."""

    sentinel_nodes: list[aioredis.Redis] = []  # noqa: RUF012  (replaced per instance)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for node in self.sentinel_nodes:
            await node.aclose()


class _SentinelRedis(redis.Redis):
    sentinel_nodes: list[redis.Redis] = []  # noqa: RUF012  (replaced per instance)

    def close(self) -> None:
        super().close()
        for node in self.sentinel_nodes:
            node.close()


class _AsyncCluster(aioredis.RedisCluster):
    """redis-py's asyncio cluster client, with two mends:

    * the topology is read before the first command: redis-py 8.2 resolves a command's
      slot before it first initializes, and a command whose keys it must ask the server
      about (GETDEL, XREADGROUP...) then fails with an AttributeError;
    * a command that fails because a node is gone refreshes the topology before the
      error is raised, and points redis-py's command parser at a live primary (it
      asks one node for the keys of commands like GETDEL, and kept asking the dead
      one after a failover);
    * XREAD/XREADGROUP are slotted by their STREAMS keys here: redis-py asked a node
      (``COMMAND GETKEYS``) before every read, one more round trip each."""

    _ready = False

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self._ready:
            await self.initialize()
            self._ready = True
        try:
            return await super().execute_command(*args, **kwargs)
        except _NODE_GONE:
            with contextlib.suppress(*_NODE_GONE, rexc.RedisError, OSError):
                await self.nodes_manager.initialize()
                primaries = self.get_primaries()
                if primaries and self.commands_parser.node not in primaries:
                    self.commands_parser.node = primaries[0]
            raise

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command.upper() in ("XREADGROUP", "XREAD"):
            at = next((i for i, arg in enumerate(args)
                       if isinstance(arg, str | bytes) and arg.upper() in ("STREAMS", b"STREAMS")),
                      None)
            rest = args[at + 1:] if at is not None else ()
            slots = {self.keyslot(key) for key in rest[:len(rest) // 2]}
            if len(slots) == 1:
                return slots.pop()
        slot: int = await super()._determine_slot(command, *args)
        return slot


_NODE_GONE: tuple[type[BaseException], ...] = (
    rexc.ConnectionError, rexc.TimeoutError, rexc.ClusterDownError,
    rexc.RedisClusterException)


class ClientOptions(TypedDict, total=False):
    """Keyword options of the client factories; defaults as in ``_create`` below.

    ``socket_timeout`` (5 s) bounds every reply: pass ``None`` (or more than the BLOCK
    time) for a client that issues blocking reads. ``source`` names where the URL came
    from (an env var, ``file:line``) for :class:`ConfigError`. ``protocol`` (default:
    redis-py's, RESP3) picks RESP2 or RESP3.
    """

    decode_responses: bool
    health_check_interval: float | None
    socket_timeout: float | None
    socket_connect_timeout: float | None
    client_name: str | None
    retries: int
    source: str | None
    protocol: int | None


def _create(
    url: str,
    *,
    sync: bool,
    decode_responses: bool = False,
    health_check_interval: float | None = None,
    socket_timeout: float | None = 5.0,
    socket_connect_timeout: float | None = 5.0,
    client_name: str | None = None,
    retries: int = 3,
    source: str | None = None,
    protocol: int | None = None,
) -> Any:
    broker = parse_broker_url(url, source=source)
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=0.5)
    opts: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "retry": Retry(backoff, retries) if sync else AsyncRetry(backoff, retries),
    }
    if health_check_interval is not None:
        opts["health_check_interval"] = health_check_interval
    if client_name is not None:
        opts["client_name"] = client_name
    if broker.scheme == "memory":  # fakeredis speaks whatever it is asked; no protocol
        fake = fakeredis.FakeRedis if sync else fakeredis.FakeAsyncRedis
        return fake(server=_memory_server(broker.name), db=broker.db, **opts)
    if protocol is not None:
        opts["protocol"] = protocol
    if broker.cluster:
        return _create_cluster(broker, sync=sync, opts=opts)
    if broker.scheme == "redis+sentinel":
        auth: dict[str, Any] = {"username": broker.username, "password": broker.password,
                                "db": broker.db}
        manager = (Sentinel if sync else AsyncSentinel)(list(broker.sentinels), **auth, **opts)
        managed: type[Any] = _SentinelRedis if sync else _AsyncSentinelRedis
        client = manager.master_for(cast(str, broker.service_name), redis_class=managed)
        client.sentinel_nodes = manager.sentinels
        return client
    return (redis.Redis if sync else aioredis.Redis).from_url(url, **opts)


def _create_cluster(broker: BrokerUrl, *, sync: bool, opts: dict[str, Any]) -> Any:
    """A ``RedisCluster`` seeded with every node of the URL. Its own retries (and the
    bus's above them) cover a failover; replicas are never read (acks are guarded on
    the primary's view)."""
    first, *_ = cluster_node_urls(broker)
    node_class: Any = ClusterNode if sync else AsyncClusterNode
    seeds = [node_class(host, port) for host, port in broker.nodes]
    cluster_class: Any = redis.RedisCluster if sync else _AsyncCluster
    return cluster_class.from_url(first, startup_nodes=seeds, **opts)


def create_async_client(url: str, **options: Unpack[ClientOptions]) -> aioredis.Redis:
    """An asyncio client for ``url`` (see the module docstring); it connects lazily.
    A cluster URL is refused here: use :func:`create_async_any_client`."""
    _refuse_cluster(url, options.get("source"))
    client: aioredis.Redis = _create(url, sync=False, **options)
    return client


def create_sync_client(url: str, **options: Unpack[ClientOptions]) -> redis.Redis:
    """A blocking client for ``url``, on the same rules as :func:`create_async_client`."""
    _refuse_cluster(url, options.get("source"))
    client: redis.Redis = _create(url, sync=True, **options)
    return client


def create_async_any_client(url: str, **options: Unpack[ClientOptions]) -> AsyncClient:
    """:func:`create_async_client`, or a ``RedisCluster`` for a cluster URL."""
    client: AsyncClient = _create(url, sync=False, **options)
    return client


def create_sync_any_client(url: str, **options: Unpack[ClientOptions]) -> SyncClient:
    """:func:`create_sync_client`, or a ``RedisCluster`` for a cluster URL (which, unlike
    every other client, connects at once: redis-py's sync cluster client reads the
    topology in its constructor, raising a ``RedisError`` if no seed answers)."""
    client: SyncClient = _create(url, sync=True, **options)
    return client


def _refuse_cluster(url: str, source: str | None) -> None:
    if is_cluster_url(url):
        raise ConfigError("broker_url", "this part of mozaiks-bus (the HTTP sink worker, the "
                          "MassTransit bridge, the demo) runs on one Redis or Sentinel, not "
                          "on a Redis Cluster", source=source)


class StreamClients(Protocol):
    """The Redis clients of the durable scope, as a transport provides them.

    Both are created lazily on the running loop and closed by :meth:`aclose`; the
    blocking one is only for ``XREADGROUP ... BLOCK`` (its socket timeout outlasts the
    block time), so a blocked read never delays a command."""

    @property
    def url(self) -> str:
        """The broker URL (for error messages; may hold a password: redact it)."""

    def command_client(self) -> AsyncClient:
        """The client for ordinary commands."""

    def blocking_client(self) -> AsyncClient:
        """The client for blocking reads."""

    async def aclose(self) -> None:
        """Close both clients (they are created again on next use)."""


def text(value: object) -> str:
    """A Redis reply as ``str`` (the clients keep bytes, since payloads are bytes)."""
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else str(value)
