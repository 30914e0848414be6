"""Shared fixtures: private redis-server processes, unique key prefixes, memory:// URLs.

Integration tests never touch a Redis they did not start, except the one named by
``MOZAIKS_TEST_REDIS_URL`` when ``redis-server`` is not on PATH (it must be on loopback).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from ipaddress import ip_address
from pathlib import Path

import pytest

from mozaiks_bus.connection import parse_broker_url, release_memory_server
from tests.integration.sink_target import Target
from tests.redis_server import RedisServer, redis_server_binary

NO_REDIS_SERVER = "needs redis-server on PATH (it starts, stops and kills its own server)"
NO_REDIS = "integration tests need redis-server on PATH or MOZAIKS_TEST_REDIS_URL"

MakeRedisServer = Callable[..., RedisServer]


@pytest.fixture
def make_redis_server() -> Iterator[MakeRedisServer]:
    """A factory of started private servers: ``make_redis_server(appendonly=True,
    extra_args=("--maxmemory-policy", "allkeys-lru"))``. All are closed after the test."""
    if redis_server_binary() is None:
        pytest.skip(NO_REDIS_SERVER)
    servers: list[RedisServer] = []

    def make(*, appendonly: bool = False, extra_args: Sequence[str] = ()) -> RedisServer:
        server = RedisServer(appendonly=appendonly, extra_args=extra_args)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def redis_server(make_redis_server: MakeRedisServer) -> RedisServer:
    """A fresh private server this test may stop, kill or restart."""
    return make_redis_server()


def _loopback_only(url: str) -> str:
    broker = parse_broker_url(url, source="MOZAIKS_TEST_REDIS_URL")
    hosts = [broker.host] if broker.host else [host for host, _ in broker.sentinels]
    for host in hosts:
        try:
            loopback = host == "localhost" or ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            pytest.fail("MOZAIKS_TEST_REDIS_URL must name a loopback address", pytrace=False)
    return url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis shared by the whole session: tests must not break it; isolate by key_prefix."""
    if redis_server_binary() is not None:
        with RedisServer() as server:
            yield server.url
        return
    url = os.environ.get("MOZAIKS_TEST_REDIS_URL")
    if not url:
        pytest.skip(NO_REDIS)
    yield _loopback_only(url)


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A 3+3 Redis Cluster on loopback shared by the whole session (isolate by
    key_prefix; tests that kill or reshard nodes start their own)."""
    if redis_server_binary() is None:
        pytest.skip(NO_REDIS_SERVER)
    from tests.integration.cluster import LoopbackCluster  # noqa: PLC0415

    with LoopbackCluster() as cluster:
        yield cluster.cluster_url


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No MOZAIKS_* variable and a fresh working directory (no ./mozaiks-bus.toml);
    returns ``monkeypatch`` for the test to set what it needs."""
    for name in list(os.environ):
        if name.startswith("MOZAIKS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def target() -> Iterator[Target]:
    """A real local HTTP server that fails on cue (see :mod:`tests.integration.sink_target`)."""
    server = Target()
    yield server
    server.close()


@pytest.fixture
def key_prefix() -> str:
    """A prefix unique to this test, valid for ``Keys(prefix=...)``."""
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A ``memory://`` URL whose fake server only this test uses."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield f"memory://{name}"
    release_memory_server(name)
