"""The redis-py members mozaiks-bus relies on below its public API are still there.

``mozaiks_bus.connection`` speaks to redis-py's connections directly (one RESP
exchange: :mod:`mozaiks_bus.connection.exchange`), routes cluster batches by its node
map (the cluster router, one-slot transactions) and mends its asyncio cluster client
(:mod:`mozaiks_bus.connection.clients`). None of that is redis-py's documented API, so
an upgrade may move it; this test names what moved before a user's batch does.
pyproject pins ``redis`` below its next major for the same reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool

from mozaiks_bus.connection import create_async_client


def _parameters(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(function).parameters)


def _has_method(owner: type, name: str, *params: str) -> None:
    member = getattr(owner, name, None)
    assert callable(member), f"redis-py: {owner.__qualname__}.{name} is gone"
    missing = [p for p in params if p not in _parameters(member)]
    assert not missing, f"redis-py: {owner.__qualname__}.{name} lost parameters {missing}"


# (owner, method, parameters the bus passes by name)
METHODS = [
    # the one RESP exchange (HeldConnection, the cluster router, transactions)
    (AbstractConnection, "send_packed_command", ("command", "check_health")),
    (AbstractConnection, "read_response", ("timeout",)),
    (AbstractConnection, "connect", ()),
    (AbstractConnection, "disconnect", ()),
    # HeldConnection holds one connection of the client's pool
    (ConnectionPool, "get_connection", ()),
    (ConnectionPool, "release", ("connection",)),
    # the cluster router and one-slot transactions pick nodes and their connections
    (ClusterNode, "acquire_connection", ()),
    (ClusterNode, "release", ("connection",)),
    (NodesManager, "get_node_from_slot", ("slot",)),
    (NodesManager, "get_node", ("host", "port", "node_name")),
    (NodesManager, "get_nodes_by_server_type", ("server_type",)),
    (NodesManager, "initialize", ()),
    # the mended asyncio cluster client (clients._AsyncCluster)
    (RedisCluster, "initialize", ()),
    (RedisCluster, "execute_command", ()),
    (RedisCluster, "_determine_slot", ("command", "args")),
    (RedisCluster, "get_primaries", ()),
    (RedisCluster, "keyslot", ("key",)),
]


@pytest.mark.parametrize(("owner", "name", "params"), METHODS,
                         ids=[f"{o.__name__}.{n}" for o, n, _ in METHODS])
def test_the_methods_the_bus_calls_keep_their_shape(owner: type, name: str,
                                                    params: tuple[str, ...]) -> None:
    _has_method(owner, name, *params)


def test_a_connection_reports_whether_it_is_connected_and_its_timeout() -> None:
    assert isinstance(inspect.getattr_static(AbstractConnection, "is_connected"), property)
    connection = Connection(host="127.0.0.1", port=1, socket_timeout=2.5)
    assert connection.is_connected is False
    assert connection.socket_timeout == 2.5


async def test_a_client_keeps_its_pool_where_held_connection_takes_it() -> None:
    client = create_async_client("redis://127.0.0.1:1/0")
    try:
        assert isinstance(client, Redis)
        assert isinstance(client.connection_pool, ConnectionPool)
        assert inspect.iscoroutinefunction(ConnectionPool.get_connection)
    finally:
        await client.aclose()


def test_a_cluster_node_has_a_name_and_a_server_type() -> None:
    node = ClusterNode("127.0.0.1", 7000, server_type="primary")
    assert (node.name, node.server_type) == ("127.0.0.1:7000", "primary")


def test_the_cluster_client_keeps_its_node_map_and_command_parser() -> None:
    # set in __init__ (no server is contacted before the first command)
    cluster = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", 1)])
    assert isinstance(cluster.nodes_manager, NodesManager)
    # clients._AsyncCluster points the parser at a live primary after a failover
    parser = type(cluster.commands_parser)
    assert "node" in _parameters(parser.initialize)
    assert "self.node = node" in inspect.getsource(parser.initialize)


def test_redirect_replies_parse_into_the_classes_the_policy_reads() -> None:
    moved = rexc.MovedError("3999 127.0.0.1:7001")
    ask = rexc.AskError("3999 127.0.0.1:7002")
    assert isinstance(moved, rexc.AskError)  # redirect_of tests MOVED first
    assert (moved.host, moved.port, ask.host, ask.port) == ("127.0.0.1", 7001,
                                                            "127.0.0.1", 7002)
    assert issubclass(rexc.TryAgainError, rexc.ResponseError)
    assert issubclass(rexc.ClusterDownError, rexc.ResponseError)
