"""Broker URLs: parsed, validated and redacted (no client is made here).

The accepted forms are listed in :mod:`mozaiks_bus.connection`, which re-exports
everything public here; anything else raises :class:`ConfigError` naming the field, the
accepted schemes, and the URL with its password masked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import cast
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from mozaiks_bus import names
from mozaiks_bus.errors import ConfigError

__all__ = [
    "CLUSTER_SCHEMES",
    "SCHEMES",
    "BrokerUrl",
    "cluster_node_urls",
    "is_cluster_url",
    "parse_broker_url",
    "redact_url",
    "secrets_in",
]

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = ("redis", "rediss", "unix", "memory", "redis+sentinel", *CLUSTER_SCHEMES)
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
    nodes: tuple[tuple[str, int], ...] = ()  # redis+cluster:// seed nodes
    query: str = ""  # redis+cluster:// options, passed to every node connection

    @property
    def cluster(self) -> bool:
        """Whether this URL names a Redis Cluster."""
        return self.scheme in CLUSTER_SCHEMES


def is_cluster_url(url: str) -> bool:
    """Whether ``url``'s scheme names a Redis Cluster (no other check is made)."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


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
        if scheme in CLUSTER_SCHEMES and db is not None:
            raise fail("a Redis Cluster has one database: no ?db=")
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


def _parse_cluster(base: BrokerUrl, parts: SplitResult, db: int | None,
                   fail: _Fail) -> BrokerUrl:
    nodes = [urlsplit("//" + item) for item in parts.netloc.rpartition("@")[2].split(",")]
    if not all(node.hostname for node in nodes):
        raise fail(f"{base.scheme}:// needs host:port[,host:port...] of cluster nodes")
    if parts.path not in ("", "/"):
        raise fail("a Redis Cluster has one database: no /db path")
    return replace(base, nodes=tuple((cast(str, n.hostname), n.port or 6379) for n in nodes),
                   query=parts.query)


def cluster_node_urls(broker: BrokerUrl,
                      nodes: Sequence[tuple[str, int]] | None = None) -> list[str]:
    """Each seed of a cluster URL (or each of ``nodes``) as a plain ``redis://`` or
    ``rediss://`` node URL with the same credentials and options: a client of one node
    (pub/sub, doctor)."""
    scheme = "rediss" if broker.scheme == "rediss+cluster" else "redis"
    userinfo = broker.url.partition("://")[2].rpartition("@")[0]
    auth = f"{userinfo}@" if userinfo else ""
    query = f"?{broker.query}" if broker.query else ""
    return [f"{scheme}://{auth}{_netloc(host)}:{port}{query}"
            for host, port in (broker.nodes if nodes is None else nodes)]


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_PARSERS: dict[str, Callable[[BrokerUrl, SplitResult, int | None, _Fail], BrokerUrl]] = {
    "redis": _parse_tcp,
    "rediss": _parse_tcp,
    "unix": _parse_unix,
    "memory": _parse_memory,
    "redis+sentinel": _parse_sentinel,
    "redis+cluster": _parse_cluster,
    "rediss+cluster": _parse_cluster,
}
