"""Operator commands against real redis-servers: doctor, publish, status, dlq, replay,
tail, and the embedded Redis of ``up``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from mozaiks_bus import Bus, Event, MozaiksBusError, load_settings
from mozaiks_bus.cli import cli
from mozaiks_bus.keys import Keys
from mozaiks_bus.ops.doctor import run_checks
from mozaiks_bus.ops.redis_server import start_embedded_redis
from mozaiks_bus.sinks.dead_letters import record_dead
from tests.conftest import MakeRedisServer
from tests.integration.cluster import LoopbackCluster
from tests.support import clean_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(isolated_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return isolated_env


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_doctor_fails_on_eviction_and_missing_persistence_and_passes_a_good_redis(
    make_redis_server: MakeRedisServer, env: pytest.MonkeyPatch
) -> None:
    lru = make_redis_server(extra_args=("--maxmemory-policy", "allkeys-lru", "--appendonly", "yes"))
    env.setenv("MOZAIKS_BROKER_URL", lru.url)
    code, out = invoke("doctor")
    assert code == 1
    assert "allkeys-lru" in out
    assert "noeviction" in out

    volatile = make_redis_server()  # no AOF, no RDB: a restart loses everything
    env.setenv("MOZAIKS_BROKER_URL", volatile.url)
    code, out = invoke("doctor")
    assert code == 1
    assert "persistence" in out
    assert "off" in out

    good = make_redis_server(appendonly=True)
    env.setenv("MOZAIKS_BROKER_URL", good.url)
    code, out = invoke("doctor")
    assert code == 0, out
    assert "AOF on" in out

    env.setenv("MOZAIKS_BROKER_URL", "redis://127.0.0.1:1/0")
    code, out = invoke("doctor")
    assert code == 1
    assert "reachable" in out


def test_doctor_checks_the_bridges_rabbitmq(
    make_redis_server: MakeRedisServer, env: pytest.MonkeyPatch
) -> None:
    from tests.integration.rabbitmq import HOST, PORT, require_rabbitmq  # noqa: PLC0415

    require_rabbitmq()
    good = make_redis_server(appendonly=True)
    env.setenv("MOZAIKS_BROKER_URL", good.url)
    env.setenv("MOZAIKS_AMQP_URL", f"amqp://guest:guest@{HOST}:{PORT}/")  # the default vhost
    code, out = invoke("doctor")
    assert code == 0, out
    assert "RabbitMQ" in out
    env.setenv("MOZAIKS_AMQP_URL", "amqp://guest:not-the-password@127.0.0.1:1/")
    code, out = invoke("doctor")
    assert code == 1
    assert "rabbitmq" in out
    assert "not-the-password" not in out


def test_publish_status_dlq_and_replay(
    redis_url: str, key_prefix: str, env: pytest.MonkeyPatch
) -> None:
    env.setenv("MOZAIKS_BROKER_URL", redis_url)
    env.setenv("MOZAIKS_BUS_PREFIX", key_prefix)
    code, out = invoke("publish", "orders.created", '{"n": 1}', "--durable")
    assert code == 0, out
    event_id = out.strip()

    async def fail_once_then_succeed() -> list[str]:
        seen: list[str] = []
        broken = True
        bus = Bus(
            config=load_settings(
                broker_url=redis_url,
                prefix=key_prefix,
                consumer_block_ms=100,
                consumer_claim_interval_s=0.2,
            )
        )

        @bus.consumer("orders.created", group="billing", max_deliveries=1)
        async def bill(event: Event) -> None:
            seen.append(event.id)
            if broken:
                raise RuntimeError("billing is down")

        async with bus:
            for _ in range(100):
                if (await bus.streams.stream("orders.created")).dead_letters:
                    break
                await asyncio.sleep(0.05)
            code, out = await asyncio.to_thread(invoke, "dlq", "list", "--json")
            letters = json.loads(out)
            assert [letter["event"]["id"] for letter in letters] == [event_id]
            assert letters[0]["error"] == "RuntimeError: billing is down"
            code, out = await asyncio.to_thread(invoke, "status", "--json")
            status = json.loads(out)
            stream = status["streams"][0]
            assert stream["type"] == "orders.created"
            assert stream["dead_letters"] == 1
            assert stream["groups"][0]["name"] == "billing"
            assert [(row["pattern"], row["group"]) for row in status["interest"]] == [
                ("orders.created", "billing")]  # the consumer's declared interest
            code, out = await asyncio.to_thread(invoke, "status")
            assert "declared interest" in out, out
            broken = False
            code, out = await asyncio.to_thread(invoke, "dlq", "replay", "orders.created", "--all")
            assert code == 0, out
            for _ in range(100):
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.05)
            code, out = await asyncio.to_thread(
                invoke, "replay", "orders.created", "billing", "--from-id", "0"
            )
            assert code == 0, out
            for _ in range(100):
                if len(seen) == 3:
                    break
                await asyncio.sleep(0.05)
        return seen

    seen = asyncio.run(fail_once_then_succeed())
    assert seen == [event_id] * 4  # failed, replayed, then both entries re-read
    code, out = invoke("dlq", "list", "--json")
    assert json.loads(out) == []


def test_publish_rejects_bad_input_with_the_field(
    redis_url: str, key_prefix: str, env: pytest.MonkeyPatch
) -> None:
    env.setenv("MOZAIKS_BROKER_URL", redis_url)
    env.setenv("MOZAIKS_BUS_PREFIX", key_prefix)
    result = CliRunner().invoke(cli, ["publish", "Bad Type", "{}"])
    assert result.exit_code != 0
    assert "type" in (result.output + str(result.exception))
    result = CliRunner().invoke(cli, ["publish", "a.b", "[1"])
    assert result.exit_code == 2
    assert "DATA" in result.output


def test_tail_prints_events_from_another_process(redis_url: str, key_prefix: str) -> None:
    env = clean_env()
    env.update(MOZAIKS_BROKER_URL=redis_url, MOZAIKS_BUS_PREFIX=key_prefix)
    tail = subprocess.Popen(
        [sys.executable, "-m", "mozaiks_bus.cli", "tail", "*", "--count", "2", "--timeout", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.5)  # the tail subscribes

        async def publish() -> None:
            bus = Bus(config=load_settings(broker_url=redis_url, prefix=key_prefix))
            async with bus:
                await bus.publish("theme_changed", {"user_id": "u", "theme": "dark"})
                await bus.publish("orders.created", {"n": 2}, durable=True, fanout=False)

        asyncio.run(publish())
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0, err
    types = sorted(json.loads(line)["type"] for line in out.splitlines())
    assert types == ["orders.created", "theme_changed"]


def test_embedded_redis_keeps_confirmed_data_across_restarts(tmp_path: Path) -> None:
    first = start_embedded_redis(tmp_path / "data")
    if not first.persistent:
        pytest.skip("needs redis-server on PATH")
    try:
        client = redis.Redis.from_url(first.url)
        client.xadd("mozaiks:stream:{x}", {"e": "1"})
        client.close()
    finally:
        first.stop()
    second = start_embedded_redis(tmp_path / "data")
    try:
        client = redis.Redis.from_url(second.url)
        assert client.xlen("mozaiks:stream:{x}") == 1
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
    finally:
        second.stop()


def test_sink_dead_letters_and_state_through_the_cli(
    redis_url: str, key_prefix: str, env: pytest.MonkeyPatch
) -> None:
    env.setenv("MOZAIKS_BROKER_URL", redis_url)
    env.setenv("MOZAIKS_BUS_PREFIX", key_prefix)
    env.setenv("MOZAIKS_BUS_SINKS", json.dumps([
        {"name": "email", "url": "http://127.0.0.1:9/send", "patterns": ["notification.*"]}]))
    event = Event.create("notification.created", {"x": 1}, source="t")
    client = redis.Redis.from_url(redis_url)
    try:
        for n in range(2):
            pipe = client.pipeline(transaction=True)
            record_dead(pipe, Keys(key_prefix), "email", job_id=f"job-{n}",
                        event_json=event.to_json(), error="HTTP 400: bad recipient",
                        status=400, attempts=1)
            pipe.execute()
    finally:
        client.close()
    code, out = invoke("dlq", "list", "--sink", "email", "--json")
    assert code == 0, out
    letters = json.loads(out)
    assert [letter["status"] for letter in letters] == [400, 400]
    assert letters[0]["event"]["id"] == event.id
    code, out = invoke("status", "--json")
    assert code == 0, out
    sink = json.loads(out)["sinks"][0]
    assert sink["name"] == "email"
    assert sink["dead_letters"] == 2
    code, out = invoke("dlq", "replay", "email", letters[0]["id"], "--sink")
    assert code == 0, out
    assert "replayed 1" in out
    code, out = invoke("dlq", "purge", "email", "--sink", "--yes")
    assert code == 0, out
    assert "deleted 1" in out
    code, out = invoke("dlq", "list", "--sink", "email", "--json")
    assert json.loads(out) == []


def test_dlq_takes_the_event_id_for_streams_and_sinks_and_names_a_wrong_id(
    redis_url: str, key_prefix: str, env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "bus.toml"
    config.write_text(f'broker_url = "{redis_url}"\nprefix = "{key_prefix}"\n[[sinks]]\n'
                      'name = "email"\nurl = "https://mail.example/hook"\n'
                      'patterns = ["notification.*"]\n')
    env.setenv("MOZAIKS_BUS_CONFIG", str(config))
    keys = Keys(key_prefix)
    event = Event.create("notification.created", {"x": 1}, source="t")
    client = redis.Redis.from_url(redis_url)
    try:
        client.sadd(keys.stream_index(), "notification.created")
        for group in ("email", "audit"):  # one event dead-lettered by two groups
            client.xadd(keys.dead_letter_stream("notification.created"), {
                "e": event.to_json(), "error": "boom", "group": group, "deliveries": 5,
                "dead_at": int(time.time() * 1000), "source_id": "1-0", "consumer": "c"})
        pipe = client.pipeline(transaction=True)
        record_dead(pipe, keys, "email", job_id="job-1", event_json=event.to_json(),
                    error="HTTP 400", status=400, attempts=1)
        pipe.execute()

        code, out = invoke("dlq", "list", "--type", "notification.created", event.id, "--json")
        assert code == 0, out
        assert sorted(dl["group"] for dl in json.loads(out)) == ["audit", "email"]
        code, out = invoke("dlq", "replay", "notification.created", event.id)
        assert (code, "replayed 2" in out) == (0, True), out
        replayed = client.xrange(keys.stream("notification.created"))
        assert sorted(fields[b"g"] for _, fields in replayed) == [b"audit", b"email"]
        code, out = invoke("dlq", "replay", "email", event.id, "--sink")
        assert (code, "replayed 1" in out) == (0, True), out

        for args in (("notification.created", event.id), ("email", "no-such-id", "--sink"),
                     ("notification.created", "12-34")):
            code, out = invoke("dlq", "replay", *args)
            assert code != 0
            lines = [line for line in out.splitlines() if line.strip()]
            assert len(lines) == 1, out
            assert args[1] in lines[0]
            assert "entry id or event id" in lines[0]
            assert "Invalid stream ID" not in out
    finally:
        client.close()


@pytest.mark.slow
def test_doctor_on_a_redis_cluster_checks_every_node_by_address_and_role(
    env: pytest.MonkeyPatch,
) -> None:
    """Three primaries and three replicas on loopback; one replica has no persistence
    and one primary an evicting policy: doctor names each of them, by address and role.
    The cluster check passes for a redis+cluster:// URL and fails for a plain URL at a
    node (it would meet MOVED)."""
    no_aof = ("--appendonly", "no")
    lru = ("--maxmemory-policy", "allkeys-lru")
    with LoopbackCluster(node_args=[(), lru, (), (), (), no_aof]) as cluster:
        env.setenv("MOZAIKS_BROKER_URL", cluster.cluster_url)
        code, _ = invoke("doctor")
        checks = {check.name: check for check in run_checks(load_settings())}
        env.setenv("MOZAIKS_BROKER_URL", cluster.url)
        plain = {check.name: check for check in run_checks(load_settings())}
    assert code == 1  # the two bad nodes
    assert checks["cluster"].status == "ok"
    assert checks["cluster"].found == "Redis Cluster: 3 primaries, 3 replicas, every slot served"
    assert plain["cluster"].status == "fail"
    assert "redis+cluster://" in plain["cluster"].hint
    lru_node = f"127.0.0.1:{cluster.nodes[1].port} (primary)"
    volatile_node = f"127.0.0.1:{cluster.nodes[5].port} (replica)"
    assert checks[f"maxmemory-policy {lru_node}"].status == "fail"
    assert checks[f"maxmemory-policy {lru_node}"].found == "allkeys-lru"
    assert checks[f"persistence {volatile_node}"].status == "fail"
    every_node = [name for name in checks if name.startswith("persistence ")]
    assert len(every_node) == 6
    healthy = [checks[name] for name in every_node if volatile_node not in name]
    assert all(check.status == "ok" for check in healthy)


@pytest.mark.slow
def test_doctor_warns_of_a_primary_whose_replica_is_gone(
    env: pytest.MonkeyPatch,
) -> None:
    with LoopbackCluster() as cluster:
        env.setenv("MOZAIKS_BROKER_URL", cluster.cluster_url)
        cluster.nodes[4].kill()  # the replica of the second primary
        deadline = time.monotonic() + 15
        while (found := {c.name: c for c in run_checks(load_settings())})["cluster"].status \
                == "ok" and time.monotonic() < deadline:
            time.sleep(0.2)  # until the others mark the replica failed
        assert found["cluster"].status == "warn"
        assert f"no replica for 127.0.0.1:{cluster.nodes[1].port}" in found["cluster"].found
        assert found[f"reachable 127.0.0.1:{cluster.nodes[4].port} (replica)"].status == "fail"


def test_status_on_a_cluster_shows_each_node_its_role_slots_and_durability(
    cluster_url: str, env: pytest.MonkeyPatch,
) -> None:
    env.setenv("MOZAIKS_BROKER_URL", cluster_url)
    code, out = invoke("status", "--json")
    assert code == 0, out
    nodes = json.loads(out)["cluster"]
    assert sorted(node["role"] for node in nodes) == ["primary"] * 3 + ["replica"] * 3
    assert sum(node["slots"] for node in nodes if node["role"] == "primary") == 16384
    assert all(node["maxmemory_policy"] == "noeviction" for node in nodes)
    assert all(node["persistence"].startswith("AOF on") for node in nodes)
    code, out = invoke("status")
    assert code == 0
    assert "Redis Cluster" in out


@pytest.mark.slow
async def test_a_bus_pointed_at_a_cluster_node_fails_its_publish_saying_so() -> None:
    """A plain redis:// URL at one node: a durable publish whose stream lives on another
    node gets MOVED, and the caller learns to use redis+cluster://, not a bare redirect."""
    with LoopbackCluster() as cluster:
        bus = Bus(config=load_settings(broker_url=cluster.url, service="c", prefix="c",
                                       publish_timeout_s=5.0))
        async with bus:
            errors: list[str] = []
            for n in range(20):  # some stream keys hash to the first node's slots
                try:
                    await bus.publish(f"orders.t{n}", {"n": n}, durable=True)
                except MozaiksBusError as exc:
                    errors.append(str(exc))
                    break
        assert errors, "every one of 20 streams hashed to the first node"
        assert "Cluster node" in errors[0]
        assert "redis+cluster://" in errors[0]
