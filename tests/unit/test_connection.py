"""The connection layer: broker URLs, client factories, error translation (no network)."""

from __future__ import annotations

import ssl

import pytest
import redis
import redis.asyncio as aioredis
import redis.exceptions as rexc

from mozaiks_bus import connection
from mozaiks_bus.connection import (
    SCHEMES,
    BrokerUrl,
    clients,
    cluster_node_urls,
    create_async_any_client,
    create_async_client,
    create_sync_any_client,
    create_sync_client,
    parse_broker_url,
    redact_url,
    release_memory_server,
)
from mozaiks_bus.connection.redis_errors import (
    is_busygroup,
    ping,
    redis_errors,
    translate_redis_error,
)
from mozaiks_bus.errors import (
    BrokerUnavailable,
    ConfigError,
    InvalidEvent,
    MozaiksBusError,
    TransportError,
)

SECRET = "hunter2-S3cret"


def test_exported_names_are_sorted_and_exist() -> None:
    # ruff RUF022 order: CONSTANTS, then Classes, then functions
    assert connection.__all__ == sorted(
        connection.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n)
    )
    assert all(hasattr(connection, name) for name in connection.__all__)


# -- parse_broker_url ---------------------------------------------------------------


def test_redis_url_defaults() -> None:
    url = parse_broker_url("redis://")
    assert (url.scheme, url.host, url.port, url.db) == ("redis", "localhost", 6379, 0)
    assert (url.username, url.password) == (None, None)


def test_redis_url_with_acl_user_port_and_db() -> None:
    url = parse_broker_url(f"redis://alice:{SECRET}@cache.internal:6380/3")
    assert (url.host, url.port, url.db) == ("cache.internal", 6380, 3)
    assert (url.username, url.password) == ("alice", SECRET)


def test_percent_encoded_credentials_are_decoded() -> None:
    url = parse_broker_url("redis://al%40ice:p%40ss%2Fw%3Ard@h")
    assert (url.username, url.password) == ("al@ice", "p@ss/w:rd")


def test_password_only_url() -> None:
    url = parse_broker_url(f"redis://:{SECRET}@127.0.0.1")
    assert (url.username, url.password, url.host) == (None, SECRET, "127.0.0.1")


def test_rediss_is_tls_and_keeps_redis_py_query_options() -> None:
    url = parse_broker_url("rediss://h:6390/1?ssl_cert_reqs=none&db=2")
    assert (url.scheme, url.host, url.port, url.db) == ("rediss", "h", 6390, 2)


def test_ipv6_host() -> None:
    url = parse_broker_url("redis://[::1]:7000")
    assert (url.host, url.port) == ("::1", 7000)


def test_unix_socket_url() -> None:
    url = parse_broker_url(f"unix://bob:{SECRET}@/var/run/redis/redis.sock?db=4")
    assert (url.scheme, url.path, url.db) == ("unix", "/var/run/redis/redis.sock", 4)
    assert (url.username, url.password, url.host) == ("bob", SECRET, None)


@pytest.mark.parametrize(
    ("text", "name", "db"), [("memory://", "", 0), ("memory://demo", "demo", 0),
                             ("memory://a.b-c_1?db=2", "a.b-c_1", 2)],
)  # fmt: skip
def test_memory_url(text: str, name: str, db: int) -> None:
    url = parse_broker_url(text)
    assert (url.scheme, url.name, url.db) == ("memory", name, db)


def test_sentinel_url() -> None:
    url = parse_broker_url(
        f"redis+sentinel://alice:{SECRET}@s1:26379,10.0.0.2:26380,[::1],s4/mymaster/2"
    )
    assert url.scheme == "redis+sentinel"
    assert url.service_name == "mymaster"
    assert url.db == 2
    assert url.sentinels == (("s1", 26379), ("10.0.0.2", 26380), ("::1", 26379), ("s4", 26379))
    assert (url.username, url.password) == ("alice", SECRET)


def test_sentinel_url_without_db_or_credentials() -> None:
    url = parse_broker_url("redis+sentinel://s1:5000/primary")
    assert (url.service_name, url.db, url.sentinels) == ("primary", 0, (("s1", 5000),))
    assert url.password is None


def test_cluster_url_lists_seed_nodes_and_keeps_credentials_for_each_node() -> None:
    url = parse_broker_url(f"redis+cluster://alice:{SECRET}@n1:7000,10.0.0.2,[::1]:7002")
    assert url.cluster
    assert url.scheme == "redis+cluster"
    assert url.nodes == (("n1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (url.username, url.password, url.db) == ("alice", SECRET, 0)
    assert cluster_node_urls(url) == [f"redis://alice:{SECRET}@n1:7000",
                                      f"redis://alice:{SECRET}@10.0.0.2:6379",
                                      f"redis://alice:{SECRET}@[::1]:7002"]
    assert cluster_node_urls(url, [("n9", 1)]) == [f"redis://alice:{SECRET}@n9:1"]


def test_tls_cluster_url_gives_tls_node_urls_with_the_same_options() -> None:
    url = parse_broker_url("rediss+cluster://n1:7000?ssl_cert_reqs=none")
    assert (url.scheme, url.query) == ("rediss+cluster", "ssl_cert_reqs=none")
    assert cluster_node_urls(url) == ["rediss://n1:7000?ssl_cert_reqs=none"]
    assert not parse_broker_url("redis://n1").cluster


def test_cluster_clients_are_cluster_clients_and_the_plain_factories_refuse_them() -> None:
    url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    assert isinstance(create_async_any_client(url), aioredis.RedisCluster)
    assert isinstance(create_sync_any_client("redis://h"), redis.Redis)
    for factory in (create_async_client, create_sync_client):
        with pytest.raises(ConfigError, match="Redis Cluster") as info:
            factory(url)
        assert info.value.field == "broker_url"


def test_scheme_is_case_insensitive() -> None:
    assert parse_broker_url("REDIS://h").scheme == "redis"


BAD_URLS = [
    "http://h",
    "redis-stream://h",
    "localhost:6379",
    "",
    "redis//h",
    "redis://h:notaport",
    "redis://h:99999",
    "redis://[::1",
    "redis://h/notadb",
    "redis://h/0/1",
    "redis://h?db=x",
    "redis://h/0#frag",
    "unix://relative/redis.sock",
    "unix://",
    "memory://a:1",
    "memory://x/y",
    "memory://u:p@x",
    "memory://x?decode=1",
    "memory://" + "n" * 65,
    "redis+sentinel://s1:1",
    "redis+sentinel://s1:1/",
    "redis+sentinel://s1:1,/svc",
    "redis+sentinel://s1:x/svc",
    "redis+sentinel://s1:1/svc/0/extra",
    "redis+sentinel://s1:1/svc/db",
    "redis+sentinel://s1:1/svc?ssl=true",
    "redis+cluster://",
    "redis+cluster://n1:1,/",
    "redis+cluster://n1:x",
    "redis+cluster://n1:1/0",
    "redis+cluster://n1:1?db=1",
    "rediss+cluster://n1:1/2",
]


@pytest.mark.parametrize("text", BAD_URLS)
def test_malformed_urls_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_broker_url(text, source="MOZAIKS_BROKER_URL")
    assert info.value.field == "broker_url"
    assert info.value.source == "MOZAIKS_BROKER_URL"
    assert "MOZAIKS_BROKER_URL" in str(info.value)


def test_an_unknown_scheme_error_names_every_accepted_scheme() -> None:
    with pytest.raises(ConfigError) as info:
        parse_broker_url("amqp://guest:guest@h")
    for scheme in SCHEMES:
        assert f"{scheme}://" in str(info.value)


def test_a_non_string_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_broker_url(None)  # type: ignore[arg-type]


SECRET_URLS = [
    f"amqp://u:{SECRET}@h",
    f"redis://u:{SECRET}@h:notaport",
    f"redis://u:{SECRET}@h:99999",
    f"redis://u:{SECRET}@h/notadb",
    f"redis://u:{SECRET}@[::1",
    f"redis://:{SECRET}@h/0#x",
    f"unix://u:{SECRET}@relative/sock",
    f"memory://u:{SECRET}@x",
    f"redis+sentinel://u:{SECRET}@s1:1",
    f"redis+cluster://u:{SECRET}@n1:1/3",
    f"redis://h?password={SECRET}&db=x",
    # reserved characters left unencoded in the password: urlsplit misreads the URL
    "redis://u:hunter2/S3cret@h",
    "redis://u:hunter2?S3cret@h",
    "redis://u:hunter2#S3cret@h",
    "redis://u:123?45@h",
    "redis://u:hunter:2S3cret@h:abc",
]


@pytest.mark.parametrize("text", SECRET_URLS)
def test_the_password_never_appears_in_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_broker_url(text)
    error = info.value
    shown = [str(error), repr(error), error.reason, repr(error.__cause__), repr(error.__context__)]
    for fragment in (SECRET, "hunter2", "S3cret", "123?45", "2S3cret"):
        assert all(fragment not in text for text in shown), shown


def test_broker_url_repr_hides_the_password() -> None:
    url = parse_broker_url(f"redis://alice:{SECRET}@h/1")
    assert SECRET not in repr(url)
    assert "alice" in repr(url)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (f"redis://alice:{SECRET}@h:1/0", "redis://alice:***@h:1/0"),
        (f"redis://:{SECRET}@h", "redis://:***@h"),
        (f"redis://{SECRET}@h", "redis://***@h"),
        ("redis://h:1/0", "redis://h:1/0"),
        (f"rediss://u:p%40{SECRET}@h", "rediss://u:***@h"),
        (f"unix://:{SECRET}@/tmp/r.sock?db=1", "unix://:***@/tmp/r.sock?db=1"),
        (f"redis+sentinel://u:{SECRET}@a:1,b:2/m", "redis+sentinel://u:***@a:1,b:2/m"),
        (f"redis://h/0?password={SECRET}&db=1", "redis://h/0?password=***&db=1"),
        (f"redis://h?sentinel_password={SECRET}", "redis://h?sentinel_password=***"),
        (f"u:{SECRET}@h", "u:***@h"),
        ("memory://demo", "memory://demo"),
    ],
)
def test_redact_url(text: str, redacted: str) -> None:
    assert redact_url(text) == redacted


# -- client factories -----------------------------------------------------------------


async def test_memory_url_is_shared_by_sync_and_async_clients(memory_url: str) -> None:
    sync_client = create_sync_client(memory_url)
    async_client = create_async_client(memory_url, decode_responses=True)
    try:
        sync_client.set("greeting", "hello")
        assert await async_client.get("greeting") == "hello"
        await async_client.xadd("s", {"f": "v"})
        assert sync_client.xlen("s") == 1
    finally:
        sync_client.close()
        await async_client.aclose()


async def test_memory_names_are_separate_servers_and_db_is_honoured(memory_url: str) -> None:
    first = create_async_client(memory_url)
    other = create_async_client(memory_url + "-other")
    db1 = create_async_client(memory_url + "?db=1")
    try:
        await first.set("k", "v")
        assert await other.get("k") is None
        assert await db1.get("k") is None
        assert await create_and_get(memory_url, "k") == b"v"
    finally:
        for client in (first, other, db1):
            await client.aclose()
        release_memory_server(memory_url.removeprefix("memory://") + "-other")


async def create_and_get(url: str, key: str) -> bytes | str | None:
    client = create_async_client(url)
    try:
        value: bytes | str | None = await client.get(key)
        return value
    finally:
        await client.aclose()


async def test_release_memory_server_starts_the_name_afresh(memory_url: str) -> None:
    client = create_async_client(memory_url)
    try:
        await client.set("k", "v")
    finally:
        await client.aclose()
    release_memory_server(memory_url.removeprefix("memory://"))
    assert await create_and_get(memory_url, "k") is None


async def test_redis_client_gets_every_setting_without_connecting() -> None:
    client = create_async_client(
        f"redis://alice:{SECRET}@127.0.0.1:6390/2",
        decode_responses=True,
        health_check_interval=15,
        socket_timeout=None,
        client_name="api-1",
    )
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 2)
        assert (kwargs["username"], kwargs["password"]) == ("alice", SECRET)
        assert kwargs["decode_responses"] is True
        assert kwargs["health_check_interval"] == 15
        assert kwargs["socket_timeout"] is None
        assert kwargs["socket_connect_timeout"] == 5.0
        assert kwargs["client_name"] == "api-1"
        assert kwargs["retry"].get_retries() == 3
    finally:
        await client.aclose()


async def test_rediss_client_uses_tls_and_unix_client_a_socket() -> None:
    tls = create_async_client("rediss://127.0.0.1:6390?ssl_cert_reqs=none")
    unix = create_async_client("unix:///tmp/mozaiks-test-none.sock?db=1", retries=0)
    try:
        assert issubclass(tls.connection_pool.connection_class, aioredis.SSLConnection)
        assert tls.connection_pool.connection_kwargs["ssl_cert_reqs"] in ("none", ssl.CERT_NONE)
        assert issubclass(
            unix.connection_pool.connection_class, aioredis.UnixDomainSocketConnection
        )
        assert unix.connection_pool.connection_kwargs["path"] == "/tmp/mozaiks-test-none.sock"
        assert unix.connection_pool.connection_kwargs["db"] == 1
    finally:
        await tls.aclose()
        await unix.aclose()


def test_sync_client_for_redis_url() -> None:
    client = create_sync_client("redis://127.0.0.1:6390/1", client_name="w")
    try:
        assert isinstance(client, redis.Redis)
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["port"], kwargs["db"], kwargs["client_name"]) == (6390, 1, "w")
    finally:
        client.close()


async def test_sentinel_url_builds_a_master_client_without_connecting() -> None:
    client = create_async_client(
        f"redis+sentinel://alice:{SECRET}@127.0.0.1:26379,127.0.0.1:26380/mymaster/1"
    )
    try:
        assert isinstance(client, aioredis.Redis)
        pool = client.connection_pool
        assert pool.service_name == "mymaster"  # type: ignore[attr-defined]
        nodes = pool.sentinel_manager.sentinels  # type: ignore[attr-defined]
        assert [n.connection_pool.connection_kwargs["port"] for n in nodes] == [26379, 26380]
        assert all(n.connection_pool.connection_kwargs.get("password") is None for n in nodes)
        kwargs = pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("alice", SECRET, 1)
    finally:
        await client.aclose()


def test_sync_sentinel_client() -> None:
    client = create_sync_client("redis+sentinel://127.0.0.1:26379/mymaster")
    try:
        assert isinstance(client, redis.Redis)
        assert client.connection_pool.service_name == "mymaster"  # type: ignore[attr-defined]
    finally:
        client.close()


def test_factories_reject_bad_urls_with_the_source() -> None:
    with pytest.raises(ConfigError) as info:
        create_async_client(f"mongodb://u:{SECRET}@h", source="settings.toml:3")
    assert info.value.source == "settings.toml:3"
    assert SECRET not in str(info.value)
    with pytest.raises(ConfigError):
        create_sync_client("nats://h")


# -- errors ---------------------------------------------------------------------------

URL = f"redis://alice:{SECRET}@127.0.0.1:6390/0"


@pytest.mark.parametrize(
    "exc",
    [
        rexc.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused."),
        rexc.TimeoutError("Timeout reading from socket"),
        rexc.BusyLoadingError("Redis is loading the dataset in memory"),
        rexc.AuthenticationError("invalid username-password pair"),
        rexc.ReadOnlyError("You can't write against a read only replica."),
        rexc.ClusterDownError("The cluster is down"),
        rexc.TryAgainError("Multiple keys request during rehashing of slot"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
    ],
)
def test_unreachable_or_not_serving_is_broker_unavailable(exc: BaseException) -> None:
    error = translate_redis_error(exc, action="publish chat.run_complete", url=URL)
    assert isinstance(error, BrokerUnavailable)
    assert "publish chat.run_complete" in str(error)
    assert "redis://alice:***@127.0.0.1:6390/0" in str(error)
    assert SECRET not in str(error)


@pytest.mark.parametrize(("exc", "code", "meaning"), [
    (rexc.MovedError("3999 127.0.0.1:6381"), "MOVED", "Cluster node"),
    (rexc.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "OOM",
     "out of memory"),
])
def test_a_reply_redis_py_parsed_into_its_own_class_keeps_its_code(
    exc: Exception, code: str, meaning: str,
) -> None:
    """redis-py strips the code from the replies it gives a class of their own."""
    error = translate_redis_error(exc, action="xadd")
    assert f"({code})" in str(error)
    assert meaning in str(error)


@pytest.mark.parametrize(("reply", "code", "meaning"), [
    ("WRONGTYPE Operation against a key holding the wrong kind of value", "WRONGTYPE",
     "another type of value"),
    ("OOM command not allowed when used memory > 'maxmemory'.", "OOM", "out of memory"),
    ("ERR Invalid stream ID specified as stream command argument", "ERR",
     "refused the command"),
    ("weird lower-case reply", "ERR", "refused the command"),
    ("MOVED 3999 127.0.0.1:6381", "MOVED", "redis+cluster://"),
    ("CLUSTERDOWN The cluster is down", "CLUSTERDOWN", "a slot has no primary"),
])
def test_a_refused_command_names_the_code_and_its_meaning_not_the_raw_reply(
    reply: str, code: str, meaning: str,
) -> None:
    error = translate_redis_error(rexc.ResponseError(reply), action="xadd")
    assert type(error) is TransportError
    assert f"({code})" in str(error)
    assert meaning in str(error)
    assert "xadd" in str(error)
    assert reply not in str(error)


@pytest.mark.parametrize(
    "exc", [rexc.DataError("Invalid input of type: 'dict'"), rexc.NoPermissionError("NOPERM")]
)
def test_other_redis_errors_are_transport_errors(exc: BaseException) -> None:
    error = translate_redis_error(exc, action="set")
    assert type(error) is TransportError


def test_a_secret_echoed_by_the_server_is_scrubbed() -> None:
    echoed = rexc.ResponseError(f"ERR unknown password {SECRET}")
    assert SECRET not in str(translate_redis_error(echoed, action="auth", url=URL))
    quoted = f"redis://:p%40{SECRET}@h"
    decoded = rexc.ConnectionError(f"bad p@{SECRET}")
    assert SECRET not in str(translate_redis_error(decoded, action="auth", url=quoted))


def test_mozaiks_errors_pass_through_translation() -> None:
    original = InvalidEvent("type", "bad")
    assert translate_redis_error(original, action="x") is original


async def test_redis_errors_context_manager_translates_and_chains() -> None:
    cause = rexc.ConnectionError("Connection closed by server.")
    with pytest.raises(BrokerUnavailable) as info:
        async with redis_errors("read durable events", URL):
            raise cause
    assert info.value.__cause__ is cause
    assert "read durable events" in str(info.value)
    assert SECRET not in str(info.value)


async def test_redis_errors_leaves_other_errors_alone() -> None:
    with pytest.raises(KeyError):
        async with redis_errors("x"):
            raise KeyError("k")
    already = BrokerUnavailable("already translated")
    with pytest.raises(BrokerUnavailable) as info:
        async with redis_errors("x"):
            raise already
    assert info.value is already
    async with redis_errors("x"):
        pass


async def test_redis_errors_as_a_decorator() -> None:
    @redis_errors("ack", URL)
    async def ack(fail: bool) -> str:
        if fail:
            raise rexc.ResponseError("NOGROUP No such key or consumer group")
        return "ok"

    assert await ack(False) == "ok"
    with pytest.raises(TransportError, match="NOGROUP"):
        await ack(True)
    with pytest.raises(TransportError):  # usable more than once
        await ack(True)


async def test_is_busygroup_on_a_real_reply(memory_url: str) -> None:
    client = create_async_client(memory_url)
    try:
        await client.xgroup_create("s", "g", id="0", mkstream=True)
        with pytest.raises(rexc.ResponseError) as info:
            await client.xgroup_create("s", "g", id="0", mkstream=True)
        assert is_busygroup(info.value)
        with pytest.raises(rexc.ResponseError) as other:
            await client.xgroup_createconsumer("missing", "g", "c")
        assert not is_busygroup(other.value)
        assert not is_busygroup(ValueError("BUSYGROUP"))
    finally:
        await client.aclose()


async def test_ping_returns_round_trip_seconds(memory_url: str) -> None:
    client = create_async_client(memory_url)
    try:
        rtt = await ping(client)
        assert isinstance(rtt, float)
        assert rtt >= 0
    finally:
        await client.aclose()


async def test_ping_on_a_disconnected_server_is_broker_unavailable(memory_url: str) -> None:
    client = create_async_client(memory_url, retries=0)
    server = clients._memory_server(memory_url.removeprefix("memory://"))
    server.connected = False
    try:
        with pytest.raises(BrokerUnavailable) as info:
            await ping(client, url=memory_url)
        assert isinstance(info.value, MozaiksBusError)
        assert "ping" in str(info.value)
        assert memory_url in str(info.value)
    finally:
        server.connected = True
        await client.aclose()


def test_broker_url_is_frozen() -> None:
    url = BrokerUrl(scheme="memory", url="memory://")
    with pytest.raises(AttributeError):
        url.db = 1  # type: ignore[misc]
