"""What ``mozaiks-bus prove`` asks of the broker itself: checks, faults and clean-up.

* :func:`preflight`: the doctor's checks (:func:`mozaiks_bus.ops.doctor.run_checks`,
  read-only), split into what ``--allow-volatile`` may override (an evicting
  ``maxmemory-policy``, no persistence at all, on any node) and what it may not (Redis
  unreachable, too old, a plain URL at a cluster).
* :func:`kill_own_clients`: ``CLIENT KILL ID`` of exactly the connections whose client
  name carries the run's marker (its prefix), on every primary; nobody else's.
* :func:`pause_primaries`: ``CLIENT PAUSE`` of every primary (everyone's traffic: opt-in).
* :func:`failover`: ``SENTINEL FAILOVER`` of the URL's master, or ``CLUSTER FAILOVER``
  on a replica of the primary serving a key.
* :func:`delete_prefix`: ``SCAN MATCH <prefix>:*`` on every primary (never ``KEYS``;
  on a cluster, every node whose ``ROLE`` says primary) and ``UNLINK`` of what it finds,
  one key per command (no cross-slot command on a cluster).

Every call is bounded by a 5 s socket timeout; a Redis error becomes the package's
error (:func:`mozaiks_bus.connection.redis_errors.translate_redis_error`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.crc import key_slot

from mozaiks_bus.connection import cluster_node_urls, create_sync_client, parse_broker_url, text
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS, translate_redis_error
from mozaiks_bus.errors import BrokerUnavailable, ConfigError
from mozaiks_bus.ops.doctor import run_checks
from mozaiks_bus.settings import BusSettings

__all__ = [
    "Preflight",
    "delete_prefix",
    "failover",
    "kill_own_clients",
    "pause_primaries",
    "preflight",
    "primary_urls",
]

T = TypeVar("T")
ADMIN_NAME = "mozaiks-bus:prove-admin"  # carries no run marker: never killed by the run
_VOLATILE = ("persistence", "maxmemory-policy")
_SCAN_BATCH = 500
FAILOVER_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Preflight:
    """What the doctor found: ``volatile`` (overridable), ``unreachable``, ``broken``."""

    volatile: list[str]
    unreachable: list[str]
    broken: list[str]


def preflight(settings: BusSettings) -> Preflight:
    """The doctor's failing checks of the broker, sorted into the three kinds."""
    volatile: list[str] = []
    unreachable: list[str] = []
    broken: list[str] = []
    for check in run_checks(settings):
        if check.status != "fail":
            continue
        line = f"{check.name}: {check.found}" + (f" ({check.hint})" if check.hint else "")
        if check.name.startswith(_VOLATILE):
            volatile.append(line)
        elif check.name.startswith("reachable"):
            unreachable.append(line)
        else:
            broken.append(line)
    return Preflight(volatile, unreachable, broken)


def _admin(url: str) -> redis.Redis:
    return create_sync_client(url, socket_timeout=5.0, retries=0, client_name=ADMIN_NAME)


def _on(url: str, action: str, work: Callable[[redis.Redis], T]) -> T:
    """``work`` with an admin client of ``url``; a Redis error becomes ours."""
    client = _admin(url)
    try:
        return work(client)
    except REDIS_ERRORS as exc:
        raise translate_redis_error(exc, action=action, url=url) from None
    finally:
        client.close()


def _cluster_nodes(broker_url: str) -> tuple[str, dict[str, Any]]:
    """CLUSTER NODES from the first seed that answers, with that seed's node URL."""
    for seed in cluster_node_urls(parse_broker_url(broker_url)):
        try:
            nodes: Any = _on(seed, "prove", lambda c: c.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER NODES"))
        except BrokerUnavailable:
            continue
        return seed, dict(nodes)
    raise BrokerUnavailable("prove: no seed node of the cluster answers")


def _node_url(seed: str, addr: str) -> str:
    """``seed`` (a node URL, credentials and options kept) at ``addr`` (``host:port@bus``)."""
    host, _, port = addr.rpartition(":")
    parts = urlsplit(seed)
    auth = parts.netloc.rpartition("@")[0]
    where = f"{host}:{int(port.split('@')[0])}"
    return parts._replace(netloc=f"{auth}@{where}" if auth else where).geturl()


def primary_urls(broker_url: str) -> list[str]:
    """A URL per primary: the broker URL itself for one Redis or Sentinel (its master),
    each primary's node URL for a cluster (as it is now: read again after a failover)."""
    if not parse_broker_url(broker_url).cluster:
        return [broker_url]
    seed, nodes = _cluster_nodes(broker_url)
    return [_node_url(seed, addr) for addr, node in sorted(nodes.items())
            if "master" in node["flags"] and "fail" not in node["flags"]]


def kill_own_clients(broker_url: str, marker: str) -> int:
    """``CLIENT KILL ID`` every connection whose name contains ``marker``, on every
    primary; returns how many were killed."""

    def kill(client: redis.Redis) -> int:
        killed = 0
        for entry in client.client_list():
            if marker in str(entry.get("name", "")):
                killed += int(client.client_kill_filter(_id=entry["id"]))
        return killed

    return sum(_on(url, "prove: client kill", kill) for url in primary_urls(broker_url))


def pause_primaries(broker_url: str, seconds: float) -> None:
    """``CLIENT PAUSE <ms> ALL`` on every primary: every client of it waits meanwhile."""
    for url in primary_urls(broker_url):
        _on(url, "prove: client pause", lambda c: c.client_pause(int(seconds * 1000)))


def failover(broker_url: str, key: str) -> str:
    """Fail over and wait (bounded by ``FAILOVER_WAIT_S``) until it happened; returns
    what was asked of whom. Sentinel: ``SENTINEL FAILOVER`` of the master (first
    sentinel that answers), done when it names another master; cluster: ``CLUSTER
    FAILOVER`` on a replica of the primary serving ``key``, done when that replica says
    it is a primary. Anything else: ConfigError."""
    broker = parse_broker_url(broker_url)
    if broker.scheme == "redis+sentinel":
        for host, port in broker.sentinels:
            client = redis.Redis(host=host, port=port, socket_timeout=5.0,
                                 socket_connect_timeout=5.0, client_name=ADMIN_NAME)
            try:
                before = client.sentinel_get_master_addr_by_name(broker.service_name)
                client.execute_command("SENTINEL FAILOVER", broker.service_name)  # type: ignore[no-untyped-call]
                _until(lambda c=client, b=before: c.sentinel_get_master_addr_by_name(  # type: ignore[misc]
                    broker.service_name) != b, "the sentinel names a new master")
            except REDIS_ERRORS:
                continue
            finally:
                client.close()
            return f"SENTINEL FAILOVER {broker.service_name} at {host}:{port}"
        raise BrokerUnavailable(f"prove: no sentinel failed {broker.service_name} over")
    if broker.cluster:
        seed, nodes = _cluster_nodes(broker_url)
        addr = _replica_of_slot(nodes, key_slot(key.encode()))
        node = _node_url(seed, addr)
        _on(node, "prove: cluster failover",
            lambda c: c.execute_command("CLUSTER FAILOVER"))  # type: ignore[no-untyped-call]
        _until(lambda: _on(node, "prove: cluster failover", _role) == "master",
               f"{addr} becomes a primary")
        return f"CLUSTER FAILOVER on replica {addr}"
    raise ConfigError("--failover", "needs a Sentinel (redis+sentinel://) or Cluster "
                      "(redis+cluster://) broker: one Redis has nothing to fail over to")


def _role(client: redis.Redis) -> str:
    role: Any = client.execute_command("ROLE")  # type: ignore[no-untyped-call]
    return text(role[0])


def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + FAILOVER_WAIT_S
    while not done():
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"prove: the failover did not finish within "
                                    f"{FAILOVER_WAIT_S:g} s ({what})")
        time.sleep(0.1)


def _replica_of_slot(nodes: dict[str, Any], slot: int) -> str:
    for node in nodes.values():
        if "master" in node["flags"] and any(
                int(r[0]) <= slot <= int(r[-1]) for r in node["slots"]):
            for addr, other in sorted(nodes.items()):
                if other["master_id"] == node["node_id"] and "fail" not in other["flags"]:
                    return addr
    raise BrokerUnavailable(f"prove: the primary of slot {slot} has no live replica to "
                            "fail over to")


def delete_prefix(broker_url: str, prefix: str) -> int:
    """UNLINK every key named ``<prefix>:*`` (found by SCAN on every node that says it
    is a primary: after a failover, a seed's view of the cluster may lag); returns how
    many. ``prefix`` holds only ``A-Z a-z 0-9 _ -``: no glob character."""

    def sweep(client: redis.Redis) -> int:
        if _role(client) != "master":
            return 0  # a replica: its primary's UNLINKs reach it
        deleted = 0
        batch: list[str] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=_SCAN_BATCH):
            batch.append(text(key))
            if len(batch) >= _SCAN_BATCH:
                deleted += _unlink(client, batch)
                batch = []
        return deleted + _unlink(client, batch)

    return sum(_on(url, "prove: clean-up", sweep) for url in _node_urls(broker_url))


def _node_urls(broker_url: str) -> list[str]:
    """Every node of a cluster (each is asked its role), or the broker URL itself."""
    if not parse_broker_url(broker_url).cluster:
        return [broker_url]
    seed, nodes = _cluster_nodes(broker_url)
    return [_node_url(seed, addr) for addr, node in sorted(nodes.items())
            if "fail" not in node["flags"]]


def _unlink(client: redis.Redis, keys: list[str]) -> int:
    """UNLINK each key; one a failover just moved away (MOVED) is its new primary's."""
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(n for n in pipe.execute(raise_on_error=False) if isinstance(n, int))
