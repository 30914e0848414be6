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

Passwords never appear in a message: :func:`redact_url` masks them, and
:mod:`mozaiks_bus.redis_errors` (the one boundary where redis-py errors are translated)
scrubs them with :func:`secrets_in`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypedDict, Unpack, cast
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import fakeredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from mozaiks_bus import names
from mozaiks_bus.errors import ConfigError

__all__ = [
    "SCHEMES",
    "BrokerUrl",
    "ClientOptions",
    "StreamClients",
    "create_async_client",
    "create_sync_client",
    "parse_broker_url",
    "redact_url",
    "release_memory_server",
    "secrets_in",
    "text",
]

SCHEMES = ("redis", "rediss", "unix", "memory", "redis+sentinel")
_SCHEME_RULE = "must start with one of " + ", ".join(f"{s}://" for s in SCHEMES)
# a query option whose name says it holds a secret: password, sentinel_password, token...
_SECRET_QUERY_RE = re.compile(r"([?&][^=&#]*(?:pass|secret|token|key)[^=&#]*=)([^&#]*)",
                              re.IGNORECASE)
_Fail = Callable[[str], ConfigError]


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A validated broker URL. ``url`` and ``password`` hold secrets: not in ``repr``."""

    scheme: str
    url: str = field(repr=False)
    host: str | None = None
    port: int | None = None
    path: str | None = None  # unix socket path
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    name: str = ""  # memory:// server name
    service_name: str | None = None  # redis+sentinel:// master name
    sentinels: tuple[tuple[str, int], ...] = ()


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: the user info's password (a bare
    user info too, since ``redis://secret@host`` is a password), and query values whose
    name says secret (``pass``, ``secret``, ``token``, ``key``)."""
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    userinfo, at, hostpart = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{hostpart}" if colon else f"***@{hostpart}"
    return head + sep + _SECRET_QUERY_RE.sub(r"\1***", rest)


def secrets_in(url: str) -> set[str]:
    """The password-like parts of ``url`` (raw and percent-decoded), to scrub from text."""
    rest = url.partition("://")[2] or url
    userinfo, at, _ = rest.rpartition("@")
    found = {userinfo.partition(":")[2] or userinfo} if at else set()
    found.update(value for _, value in _SECRET_QUERY_RE.findall(rest))
    return {s for raw in found if raw for s in (raw, unquote(raw))}


def parse_broker_url(url: str, *, source: str | None = None,
                     field: str = "broker_url") -> BrokerUrl:
    """Validate ``url``; raise ``ConfigError(field, ...)`` (password masked)."""
    if not isinstance(url, str):
        raise ConfigError(field, "must be a string", source=source)

    def fail(rule: str) -> ConfigError:
        return ConfigError(field, f"{rule} (got {redact_url(url)!r})", source=source)

    try:  # ValueError from urlsplit/.port is never echoed: it may quote a misplaced secret
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if "://" not in url or scheme not in SCHEMES:
            raise fail(_SCHEME_RULE)
        if "@" in parts.path + parts.query or parts.fragment:
            raise fail("must have no #fragment; percent-encode / ? # @ in user names, passwords")
        query = parse_qs(parts.query, keep_blank_values=True)
        db = _db(query.pop("db", [""])[-1], fail)
        if scheme in ("memory", "redis+sentinel") and query:
            raise fail(f"{scheme}:// takes no query option except ?db=")
        base = BrokerUrl(
            scheme=scheme,
            url=url,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            db=db or 0,
        )
        return _PARSERS[scheme](base, parts, db, fail)
    except ConfigError:
        raise
    except ValueError:
        pass  # raised below, outside this block, so no __context__ can quote a secret
    raise fail("is not a valid URL")


def _db(text: str, fail: _Fail) -> int | None:
    if text and not text.isdigit():
        raise fail("db must be a non-negative integer")
    return int(text) if text else None


def _parse_tcp(base: BrokerUrl, parts: SplitResult, db: int | None, fail: _Fail) -> BrokerUrl:
    path_db = _db(parts.path.strip("/"), fail)
    host, port = parts.hostname or "localhost", parts.port or 6379
    return replace(base, host=host, port=port, db=db if db is not None else path_db or 0)


def _parse_unix(base: BrokerUrl, parts: SplitResult, db: int | None, fail: _Fail) -> BrokerUrl:
    if parts.hostname or parts.path in ("", "/"):
        raise fail("unix:// takes a socket path: unix:///path/to/redis.sock?db=0")
    return replace(base, path=unquote(parts.path))


def _parse_memory(base: BrokerUrl, parts: SplitResult, db: int | None, fail: _Fail) -> BrokerUrl:
    name = parts.netloc
    if "@" in name or parts.path not in ("", "/") or not names.MEMORY_SERVER.matches(name):
        raise fail(f"memory:// takes {names.MEMORY_SERVER.rule} (memory://name)")
    return replace(base, name=name)


def _parse_sentinel(base: BrokerUrl, parts: SplitResult, db: int | None, fail: _Fail) -> BrokerUrl:
    nodes = [urlsplit("//" + item) for item in parts.netloc.rpartition("@")[2].split(",")]
    if not all(node.hostname for node in nodes):
        raise fail("redis+sentinel:// needs host:port[,host:port...] of the sentinels")
    service, _, path_db = parts.path.strip("/").partition("/")
    if not service or "/" in path_db or (path_db and db is not None):
        raise fail("redis+sentinel:// needs a path /service_name[/db]")
    return replace(
        base,
        service_name=unquote(service),
        sentinels=tuple((cast(str, n.hostname), n.port or 26379) for n in nodes),
        db=db if db is not None else _db(path_db, fail) or 0,
    )


_PARSERS: dict[str, Callable[[BrokerUrl, SplitResult, int | None, _Fail], BrokerUrl]] = {
    "redis": _parse_tcp,
    "rediss": _parse_tcp,
    "unix": _parse_unix,
    "memory": _parse_memory,
    "redis+sentinel": _parse_sentinel,
}
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
    if broker.scheme == "redis+sentinel":
        auth = {"username": broker.username, "password": broker.password, "db": broker.db}
        manager = (Sentinel if sync else AsyncSentinel)(list(broker.sentinels), **auth, **opts)
        managed: type[Any] = _SentinelRedis if sync else _AsyncSentinelRedis
        client = manager.master_for(cast(str, broker.service_name), redis_class=managed)
        client.sentinel_nodes = manager.sentinels
        return client
    return (redis.Redis if sync else aioredis.Redis).from_url(url, **opts)


def create_async_client(url: str, **options: Unpack[ClientOptions]) -> aioredis.Redis:
    """An asyncio client for ``url`` (see the module docstring); it connects lazily."""
    client: aioredis.Redis = _create(url, sync=False, **options)
    return client


def create_sync_client(url: str, **options: Unpack[ClientOptions]) -> redis.Redis:
    """A blocking client for ``url``, on the same rules as :func:`create_async_client`."""
    client: redis.Redis = _create(url, sync=True, **options)
    return client


class StreamClients(Protocol):
    """The Redis clients of the durable scope, as a transport provides them.

    Both are created lazily on the running loop and closed by :meth:`aclose`; the
    blocking one is only for ``XREADGROUP ... BLOCK`` (its socket timeout outlasts the
    block time), so a blocked read never delays a command."""

    @property
    def url(self) -> str:
        """The broker URL (for error messages; may hold a password: redact it)."""

    def command_client(self) -> aioredis.Redis:
        """The client for ordinary commands."""

    def blocking_client(self) -> aioredis.Redis:
        """The client for blocking reads."""

    async def aclose(self) -> None:
        """Close both clients (they are created again on next use)."""


def text(value: object) -> str:
    """A Redis reply as ``str`` (the clients keep bytes, since payloads are bytes)."""
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else str(value)
