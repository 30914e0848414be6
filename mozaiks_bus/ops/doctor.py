"""``mozaiks-bus doctor``: is this Redis fit to carry events?

Each check yields a :class:`Check` (``ok`` / ``warn`` / ``fail``, what was found, what to
do). Failing checks make the command exit non-zero:

* configuration loads and validates;
* Redis answers (version shown; 6.2+ required for XAUTOCLAIM and GETDEL);
* persistence is on (AOF, or at least RDB snapshots): without it a restart loses every
  confirmed event;
* ``maxmemory-policy`` is ``noeviction``: any other policy can silently evict streams,
  dead letters and RQ jobs under memory pressure;
* a Redis Cluster: the ``cluster`` check passes for a ``redis+cluster://`` URL whose
  cluster has every slot served (``cluster_state:ok``), warns for a primary without a
  replica (nothing to fail over to), and fails for a plain URL pointed at a cluster node
  (it would meet MOVED); every node (found with CLUSTER NODES, reached with the URL's
  credentials) gets the persistence and eviction checks, named by address and role: a
  promoted replica must be as durable as its primary;
* a variable that looks like a misspelled ``MOZAIKS_*`` one (a warning naming the
  likely intended variable);
* hints (warnings, not failures): no TLS to a non-loopback host, the default user
  without a password, ``appendfsync no``;
* with ``amqp_url`` (the MassTransit bridge): RabbitMQ answers, and aio-pika is
  installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import redis

from mozaiks_bus.connection import (
    cluster_node_urls,
    create_sync_client,
    parse_broker_url,
    redact_url,
)
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS, translate_redis_error
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.settings.env_names import find_misspellings

__all__ = ["Check", "cluster_nodes", "run_checks"]

Status = Literal["ok", "warn", "fail"]
MIN_VERSION = (6, 2)


@dataclass(frozen=True, slots=True)
class Check:
    """One finding of the doctor."""

    name: str
    status: Status
    found: str
    hint: str = ""


def run_checks(settings: BusSettings) -> list[Check]:
    """Misspelled ``MOZAIKS_*`` variables (warnings), then every check against the
    configured broker (connects, reads CONFIG/INFO, writes nothing)."""
    return [Check("environment", "warn", str(found), f"rename it to {found.suggestion}")
            for found in find_misspellings(settings)] + _broker_checks(settings)


def _broker_checks(settings: BusSettings) -> list[Check]:
    url = settings.broker_url
    if not url:
        return [Check("broker", "fail", "MOZAIKS_BROKER_URL is not set and no "
                      "`mozaiks-bus up` runs in this data directory",
                      "set it (redis://...), or start `mozaiks-bus up` here (or pass "
                      "--data-dir / MOZAIKS_BUS_HOME where one runs)")]
    if url.startswith("memory://"):
        return [Check("broker", "warn", "memory:// (in-process fakeredis)",
                      "fine for demos and tests; nothing survives a restart")]
    broker = parse_broker_url(url)
    seeds = cluster_node_urls(broker) if broker.cluster else [url]
    for seed in seeds:  # a cluster: the first seed that answers speaks for it
        client = create_sync_client(seed, socket_timeout=5.0, retries=0)
        try:
            checks = list(_checks(client, seed, cluster_url=broker.cluster))
        finally:
            client.close()
        if checks[0].status == "ok":
            break
    if settings.amqp_url:
        checks.append(_rabbitmq(settings.amqp_url))
    return checks


def _rabbitmq(url: str) -> Check:
    """The bridge's RabbitMQ (the bridge itself would wait for it, so this says why)."""
    from mozaiks_bus.amqp import require_amqp  # noqa: PLC0415

    try:
        require_amqp()
    except ConfigError as exc:
        return Check("rabbitmq", "fail", exc.reason, "install the extra, or unset amqp_url")
    from mozaiks_bus.amqp.link import AMQP_ERRORS, probe  # noqa: PLC0415  # aio-pika

    try:
        found = asyncio.run(probe(url))
    except AMQP_ERRORS as exc:
        return Check("rabbitmq", "fail", f"{redact_url(url)}: {type(exc).__name__}: {exc}",
                     "is RabbitMQ running, and do the URL, user, password and vhost match? "
                     "(the bridge waits for it meanwhile)")
    return Check("rabbitmq", "ok", f"{found} at {redact_url(url)}")


def _checks(client: redis.Redis, url: str, *, cluster_url: bool) -> Iterator[Check]:
    try:
        info: Any = client.info("server")
        cluster: Any = client.info("cluster")
        config = _node_config(client)
    except REDIS_ERRORS as exc:
        error = translate_redis_error(exc, action="doctor", url=url)
        yield Check("reachable", "fail", str(error),
                    "is Redis running, and do the URL, user and password match?")
        return
    version = str(info.get("redis_version", "0"))
    yield Check("reachable", "ok", f"Redis {version} at {redact_url(url)}")
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if numbers < MIN_VERSION:
        yield Check("version", "fail", version, "Redis 6.2 or newer is required")
    if int(cluster.get("cluster_enabled", 0)):
        yield from _cluster(client, url, cluster_url=cluster_url)
    elif cluster_url:
        yield Check("cluster", "fail", f"{redact_url(url)} is not a Redis Cluster node",
                    "use redis:// for one Redis, redis+cluster:// only for a cluster")
        yield from _durability(config)
    else:
        yield from _durability(config)
    yield from _hints(url, config)


def cluster_nodes(url: str) -> list[dict[str, Any]] | None:
    """Every node of the cluster ``url`` names (None: not a cluster URL), as ``status``
    shows them: address, role, slots served, link, persistence and eviction policy (a
    node that does not answer says so in ``error``)."""
    broker = parse_broker_url(url)
    if not broker.cluster:
        return None
    for seed in cluster_node_urls(broker):
        client = create_sync_client(seed, socket_timeout=5.0, retries=0)
        try:
            nodes: Any = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
        except REDIS_ERRORS:
            continue
        finally:
            client.close()
        return [_node_row(seed, addr, node) for addr, node in sorted(nodes.items())]
    return [{"node": "-", "error": "no seed node answers"}]


def _node_row(seed: str, addr: str, node: dict[str, Any]) -> dict[str, Any]:
    node_url = _node_url(seed, addr)
    row: dict[str, Any] = {
        "node": addr, "role": "primary" if "master" in node["flags"] else "replica",
        "flags": node["flags"], "slots": sum(int(r[-1]) - int(r[0]) + 1 for r in node["slots"]),
        "connected": node.get("connected"),
    }
    client = create_sync_client(node_url, socket_timeout=5.0, retries=0)
    try:
        config = _node_config(client)
        row.update(persistence=_persistence(config).found,
                   maxmemory_policy=config.get("maxmemory-policy"))
    except REDIS_ERRORS as exc:
        row["error"] = str(translate_redis_error(exc, action="status", url=node_url))
    finally:
        client.close()
    return row


def _node_config(client: redis.Redis) -> dict[str, Any]:
    """What the durability checks read from one node: INFO persistence and CONFIG."""
    persistence: Any = client.info("persistence")
    config: Any = client.config_get("maxmemory-policy")
    config.update(client.config_get("appendfsync"))
    config.update(client.config_get("save"))
    config["aof_enabled"] = persistence.get("aof_enabled", 0)
    return dict(config)


def _durability(config: dict[str, Any], where: str = "") -> Iterator[Check]:
    """Persistence and eviction of one node (``where``: which node, on a cluster)."""
    suffix = f" {where}" if where else ""
    persistence = _persistence(config)
    yield Check(persistence.name + suffix, persistence.status, persistence.found,
                persistence.hint)
    policy = str(config.get("maxmemory-policy", "?"))
    if policy == "noeviction":
        yield Check("maxmemory-policy" + suffix, "ok", policy)
    else:
        yield Check("maxmemory-policy" + suffix, "fail", policy,
                    "set maxmemory-policy noeviction: any other policy can evict streams, "
                    "dead letters and jobs without a trace")


def _cluster(client: redis.Redis, url: str, *, cluster_url: bool) -> Iterator[Check]:
    """A Redis Cluster: is the URL one, is every slot served, can every primary fail
    over; then every node, since a failover promotes a replica that must be as durable
    as its primary."""
    nodes: Any = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
    state: Any = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    primaries = [addr for addr, node in nodes.items() if "master" in node["flags"]]
    replicas = [addr for addr, node in nodes.items() if "slave" in node["flags"]]
    found = f"Redis Cluster: {len(primaries)} primaries, {len(replicas)} replicas"
    served = _cluster_state(state) == "ok"
    orphans = sorted(addr for addr in primaries if not any(
        node["master_id"] == nodes[addr]["node_id"] and "fail" not in node["flags"]
        for node in nodes.values()))
    if not cluster_url:
        yield Check("cluster", "fail", found + f", reached as one Redis ({redact_url(url)})",
                    "use redis+cluster://host:port[,host:port...] so the bus follows the "
                    "slots; a plain URL meets MOVED for most keys")
    elif not served:
        yield Check("cluster", "fail", found + f", cluster_state {_cluster_state(state)}",
                    "some slots have no primary: wait for the failover, or fix the cluster")
    elif orphans:
        yield Check("cluster", "warn", found + f"; no replica for {', '.join(orphans)}",
                    "a primary without a replica cannot fail over: its slots go down with it")
    else:
        yield Check("cluster", "ok", found + ", every slot served")
    for addr in sorted(primaries) + sorted(replicas):
        role = "primary" if addr in primaries else "replica"
        node_url = _node_url(url, addr)
        node = create_sync_client(node_url, socket_timeout=5.0, retries=0)
        try:
            yield from _durability(_node_config(node), f"{addr} ({role})")
        except REDIS_ERRORS as exc:
            error = translate_redis_error(exc, action="doctor", url=node_url)
            yield Check(f"reachable {addr} ({role})", "fail", str(error),
                        "every node must answer: is it running, with the same password?")
        finally:
            node.close()


def _cluster_state(info: Any) -> str:
    if isinstance(info, dict):
        return str(info.get("cluster_state", "?"))
    for line in (info.decode() if isinstance(info, bytes) else str(info)).splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _node_url(url: str, addr: str) -> str:
    """``url`` (a node's) with its credentials and options, at ``addr`` (another node
    of the same cluster, as CLUSTER NODES names it: ``host:port[@bus-port]``)."""
    host, _, port = addr.rpartition(":")
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    where = f"{host}:{int(port.split('@')[0])}"
    return parts._replace(netloc=f"{auth}@{where}" if auth else where).geturl()


def _persistence(config: dict[str, Any]) -> Check:
    aof = bool(int(config.get("aof_enabled", 0)))
    rdb = bool(str(config.get("save", "")).strip())
    if aof:
        return Check("persistence", "ok", f"AOF on (appendfsync {config.get('appendfsync')})")
    if rdb:
        return Check("persistence", "warn", f"RDB snapshots only (save {config.get('save')})",
                     "a crash loses the writes since the last snapshot: turn on appendonly")
    return Check("persistence", "fail", "off (no AOF, no RDB)",
                 "appendonly yes: without persistence a restart loses every confirmed event")


def _hints(url: str, config: dict[str, Any]) -> Iterator[Check]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = host in {"127.0.0.1", "localhost", "::1"} or parts.scheme == "unix"
    if parts.scheme == "redis" and not loopback:
        yield Check("tls", "warn", f"plain TCP to {host}",
                    "use rediss:// (TLS) for a Redis that is not on this host")
    if not parts.password and parts.scheme != "unix":
        yield Check("auth", "warn", "no password in the URL",
                    "use an ACL user with a password, fenced to the key prefix (~<prefix>:*)")
    if config.get("appendfsync") == "no":
        yield Check("appendfsync", "warn", "no", "everysec loses at most ~1 s on a crash")
