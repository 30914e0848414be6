"""The connection layer against a real redis-server the tests start, stop, kill, restart."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
import redis.exceptions as rexc

from mozaiks_bus.connection import create_async_client, create_sync_client
from mozaiks_bus.connection.redis_errors import ping, redis_errors
from mozaiks_bus.errors import BrokerUnavailable
from mozaiks_bus.keys import Keys
from tests.conftest import NO_REDIS_SERVER, MakeRedisServer
from tests.redis_server import RedisServer, redis_server_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

PASSWORD = "alice-S3cret-pw"
ACL_ALICE = ("--user", "alice", "on", f">{PASSWORD}", "~*", "&*", "+@all")


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


async def test_ping_through_create_async_client(redis_url: str, key_prefix: str) -> None:
    client = create_async_client(redis_url, decode_responses=True, client_name=key_prefix)
    try:
        rtt = await ping(client, url=redis_url)
        assert isinstance(rtt, float)
        assert rtt > 0
        key = Keys(key_prefix).meta()
        await client.hset(key, "schema", "1")
        assert await client.hget(key, "schema") == "1"
        assert await client.client_getname() == key_prefix
        await client.delete(key)
    finally:
        await client.aclose()


async def test_sync_and_async_clients_share_the_server(redis_url: str, key_prefix: str) -> None:
    key = Keys(key_prefix).dedupe("event-1")
    sync_client = create_sync_client(redis_url)
    async_client = create_async_client(redis_url)
    try:
        assert sync_client.set(key, "1", nx=True, ex=60)
        assert not await async_client.set(key, "1", nx=True, ex=60)
    finally:
        sync_client.delete(key)
        sync_client.close()
        await async_client.aclose()


async def test_a_stopped_server_is_broker_unavailable(make_redis_server: MakeRedisServer) -> None:
    server = make_redis_server(extra_args=("--requirepass", PASSWORD))
    url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}"
    client = create_async_client(url, socket_connect_timeout=1, socket_timeout=1, retries=1)
    try:
        await client.set("k", "v")
        server.stop()
        assert not server.running
        assert refuses_connections(int(server.port or 0))
        with pytest.raises(BrokerUnavailable) as info:
            async with asyncio.timeout(10), redis_errors("read k", url):
                await client.get("k")
        message = str(info.value)
        assert "read k" in message
        assert f"redis://:***@127.0.0.1:{server.port}" in message
        assert PASSWORD not in message
        assert isinstance(info.value.__cause__, rexc.ConnectionError)
    finally:
        await client.aclose()


async def test_acl_user_and_wrong_password(make_redis_server: MakeRedisServer) -> None:
    server = make_redis_server(extra_args=ACL_ALICE)
    good = create_async_client(f"redis://alice:{PASSWORD}@127.0.0.1:{server.port}")
    wrong_url = f"redis://alice:not-{PASSWORD}@127.0.0.1:{server.port}"
    wrong = create_async_client(wrong_url, retries=0)
    try:
        assert await good.acl_whoami() in (b"alice", "alice")
        with pytest.raises(BrokerUnavailable) as info:
            await ping(wrong, url=wrong_url)
        assert PASSWORD not in str(info.value)
        assert "alice:***@" in str(info.value)
    finally:
        await good.aclose()
        await wrong.aclose()


async def test_restart_with_appendonly_keeps_acknowledged_writes(
    make_redis_server: MakeRedisServer,
) -> None:
    server = make_redis_server(appendonly=True)
    port, directory = server.port, server.dir
    client = create_async_client(server.url, retries=5)
    try:
        await client.set("before-restart", "kept")
        await client.xadd("stream", {"n": "1"})
        server.restart()
        assert (server.port, server.dir) == (port, directory)
        # the same client reconnects by itself after the restart
        assert await client.get("before-restart") == b"kept"
        await client.set("before-kill", "kept too")
        server.kill()  # appendfsync always: an acknowledged write survives a crash
        server.start()
        assert await client.get("before-kill") == b"kept too"
        assert await client.xlen("stream") == 1
    finally:
        await client.aclose()


async def test_without_appendonly_a_restart_loses_data(redis_server: RedisServer) -> None:
    client = create_async_client(redis_server.url, retries=5)
    try:
        await client.set("k", "v")
        redis_server.restart()
        assert await client.get("k") is None
    finally:
        await client.aclose()


async def test_extra_args_reach_the_server(make_redis_server: MakeRedisServer) -> None:
    server = make_redis_server(extra_args=("--maxmemory-policy", "allkeys-lru"))
    client = create_async_client(server.url, decode_responses=True)
    try:
        assert await client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        assert await client.config_get("appendonly") == {"appendonly": "no"}
        assert await client.config_get("save") == {"save": ""}
        assert await client.config_get("bind") == {"bind": "127.0.0.1"}
        assert await client.config_get("protected-mode") == {"protected-mode": "yes"}
    finally:
        await client.aclose()


async def test_rediss_to_a_plain_port_is_broker_unavailable(redis_server: RedisServer) -> None:
    url = f"rediss://127.0.0.1:{redis_server.port}?ssl_cert_reqs=none"
    client = create_async_client(url, socket_connect_timeout=1, socket_timeout=1, retries=0)
    try:
        with pytest.raises(BrokerUnavailable) as info:
            async with asyncio.timeout(8):
                await ping(client, url=url)
        assert "ping" in str(info.value)
    finally:
        await client.aclose()


@pytest.mark.skipif(redis_server_binary() is None, reason=NO_REDIS_SERVER)
def test_close_leaves_no_process_and_no_directory() -> None:
    server = RedisServer().start()
    pid, port, directory = server.pid, int(server.port or 0), server.dir
    assert pid is not None
    assert refuses_connections(port) is False
    server.close()
    assert not server.running
    assert refuses_connections(port)
    assert not directory.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
