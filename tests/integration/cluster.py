"""A Redis Cluster on loopback for the tests: 3 primaries and 3 replicas.

Each node is the package's one launcher (:class:`tests.redis_server.RedisServer`, so
Valkey in CI's second pass) with ``--cluster-enabled yes`` in its own directory. The
cluster is formed with plain commands (CLUSTER MEET, ADDSLOTSRANGE, REPLICATE), not
``redis-cli --cluster create``, so nothing but the server binary is needed. Every wait
is bounded; :meth:`LoopbackCluster.close` stops every node.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Sequence
from typing import Any

import redis

from tests.redis_server import RedisServer

__all__ = ["LoopbackCluster"]

SLOTS = 16384
FORM_TIMEOUT_S = 30.0


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 50000)  # not security
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free pair of loopback ports for a cluster node")


class LoopbackCluster:
    """``primaries`` primaries, each with one replica; :attr:`nodes` primaries first."""

    def __init__(self, *, primaries: int = 3, node_args: Sequence[Sequence[str]] = (),
                 appendonly: bool = True, node_timeout_ms: int = 2000,
                 replicas: bool = True) -> None:
        self.primaries = primaries
        self.replicas = replicas
        self.nodes: list[RedisServer] = []
        for index in range(primaries * (2 if replicas else 1)):
            # no 5 s wait before a replica's first (diskless) sync: a replica that never
            # synced is not allowed to fail over, and the tests kill primaries early
            extra = [*("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                       "--cluster-node-timeout", str(node_timeout_ms),
                       "--repl-diskless-sync-delay", "0")]
            if index < len(node_args):
                extra += list(node_args[index])
            node = RedisServer(appendonly=appendonly, extra_args=extra)
            node.port = _cluster_port()
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of the first primary."""
        return self.nodes[0].url

    @property
    def cluster_url(self) -> str:
        """``redis+cluster://`` with every primary as a seed."""
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:self.primaries])
        return f"redis+cluster://{seeds}"

    def start(self) -> LoopbackCluster:
        """Start the nodes and form the cluster; returns once every node says ``ok``."""
        try:
            for node in self.nodes:
                node.start()
            self._form()
        except BaseException:
            self.close()
            raise
        return self

    def client(self, index: int) -> redis.Redis:
        """A plain (non-cluster) client of node ``index``."""
        return redis.Redis(host="127.0.0.1", port=int(self.nodes[index].port or 0),
                           socket_timeout=5.0)

    def _form(self) -> None:
        clients = [self.client(i) for i in range(len(self.nodes))]
        try:
            first = clients[0]
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
            per = SLOTS // self.primaries
            for index in range(self.primaries):
                start = index * per
                end = SLOTS - 1 if index == self.primaries - 1 else start + per - 1
                clients[index].execute_command("CLUSTER ADDSLOTSRANGE", start, end)
            self._wait(lambda: all(len(_nodes(c)) == len(self.nodes) for c in clients),
                       "every node to know every other")
            for index in range(self.primaries if self.replicas else 0):
                primary_id = clients[index].execute_command("CLUSTER MYID")
                clients[self.primaries + index].execute_command(
                    "CLUSTER REPLICATE", primary_id.decode() if isinstance(primary_id, bytes)
                    else primary_id)
            self._wait(lambda: all(_state(c) == "ok" for c in clients) and all(
                _synced(c) for c in clients[self.primaries:]) and all(
                _replicas_seen(c) == (self.primaries if self.replicas else 0) for c in clients),
                "cluster_state ok and every replica synced, as every node sees it")
        finally:
            for client in clients:
                client.close()

    @staticmethod
    def _wait(predicate: Any, what: str) -> None:
        deadline = time.monotonic() + FORM_TIMEOUT_S
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the loopback cluster did not form: waited for {what}")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop and remove every node."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> LoopbackCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _nodes(client: redis.Redis) -> list[str]:
    """The ``host:port`` of every node this one knows (redis-py parses CLUSTER NODES)."""
    raw: Any = client.execute_command("CLUSTER NODES")
    if isinstance(raw, dict):
        return list(raw)
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return [line.split()[1] for line in text.splitlines() if line.strip()]


def _state(client: redis.Redis) -> str:
    info: Any = client.execute_command("CLUSTER INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state", "?"))
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return "?"


def _replicas_seen(client: redis.Redis) -> int:
    raw: Any = client.execute_command("CLUSTER NODES")
    flags = [node["flags"] for node in raw.values()] if isinstance(raw, dict) else \
        [line.split()[2] for line in (raw.decode() if isinstance(raw, bytes) else str(raw))
         .splitlines() if line.strip()]
    return sum(1 for flag in flags if "slave" in flag)


def _synced(client: redis.Redis) -> bool:
    """A replica whose link to its primary is up (its first sync is done)."""
    info: Any = client.info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"
