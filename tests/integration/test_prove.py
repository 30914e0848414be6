"""``mozaiks-bus prove`` as an operator runs it (the installed CLI, a fresh process)
against redis-servers the tests start: its table with lost 0 and exit 0 on a durable
Redis (one, Sentinel with --failover, the 3+3 cluster with --failover), the refusal of
an evicting or volatile Redis, and a keyspace left as it was found (a key outside its
prefix untouched, nothing under its prefix left)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import MakeRedisServer
from tests.integration.test_sentinel import MASTER
from tests.integration.test_sentinel import sentinel as sentinel  # noqa: PLC0414  # the fixture
from tests.support import clean_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTSIDE = "someone-else:order:1"
ROW = re.compile(r"^(?P<scenario>.+?)\s{2,}at least once: lost 0\s+(?P<sent>\d+)\s+"
                 r"(?P<delivered>\d+)\s+(?P<lost>\d+)\s+(?P<dup>\d+)\s+(?P<rec>\S+(?: s)?)\s+"
                 r"(?P<result>pass|FAIL)$", re.MULTILINE)


def prove(url: str, cwd: Path, *args: str, timeout: float = 85) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mozaiks_bus.cli", "prove", *args], cwd=cwd,
        env=clean_env({"MOZAIKS_BROKER_URL": url}), capture_output=True, text=True,
        timeout=timeout, check=False)


def rows(out: str) -> dict[str, dict[str, str]]:
    return {m["scenario"]: m.groupdict() for m in ROW.finditer(out)}


def prefix_of(out: str) -> str:
    found = re.search(r"every key is under ([A-Za-z0-9_-]+):", out)
    assert found, out
    return found[1]


def keys(client: Any, match: str) -> list[bytes]:
    return list(client.scan_iter(match=match, count=1000))


def assert_proved(result: subprocess.CompletedProcess[str], scenarios: set[str],
                  events: str = "300") -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    first, *_ = result.stdout.splitlines()
    assert first.startswith("prove: ")
    assert "deleted at the end" in first
    table = rows(result.stdout)
    assert set(table) == scenarios, result.stdout
    for row in table.values():
        assert row["lost"] == "0", result.stdout
        assert row["result"] == "pass", result.stdout
        assert row["sent"] == row["delivered"] == events, result.stdout
        assert row["rec"] != "-", result.stdout  # every fault recovered


def test_prove_passes_on_a_durable_redis_and_leaves_the_keyspace_as_it_was(
        make_redis_server: MakeRedisServer, tmp_path: Path) -> None:
    server = make_redis_server(appendonly=True)
    client = redis.Redis(port=server.port)
    client.set(OUTSIDE, "keep")
    result = prove(server.url, tmp_path, "--events", "1000", "--timeout", "80")
    assert_proved(result, {"consumer SIGKILL x2", "CLIENT KILL (own)"}, "1000")
    assert client.get(OUTSIDE) == b"keep"
    assert keys(client, prefix_of(result.stdout) + "*") == []
    assert keys(client, "*") == [OUTSIDE.encode()]
    client.close()


def test_prove_with_pause(make_redis_server: MakeRedisServer, tmp_path: Path) -> None:
    server = make_redis_server(appendonly=True)
    result = prove(server.url, tmp_path, "--events", "300", "--pause", "--timeout", "80")
    assert_proved(result, {"consumer SIGKILL x2", "CLIENT KILL (own)", "CLIENT PAUSE 3 s"})


def test_prove_refuses_an_evicting_or_volatile_redis(
        make_redis_server: MakeRedisServer, tmp_path: Path) -> None:
    lru = make_redis_server(appendonly=True, extra_args=("--maxmemory-policy", "allkeys-lru"))
    result = prove(lru.url, tmp_path, "--events", "10")
    assert result.returncode == 2
    assert result.stdout == ""  # refused before saying what it would do
    assert result.stderr.count("\n") == 1
    assert "allkeys-lru" in result.stderr
    assert "--allow-volatile" in result.stderr
    assert redis.Redis(port=lru.port).dbsize() == 0  # wrote nothing

    volatile = make_redis_server()  # no AOF, no RDB
    result = prove(volatile.url, tmp_path, "--events", "10")
    assert result.returncode == 2
    assert "persistence" in result.stderr
    assert "off" in result.stderr


def test_prove_without_a_broker_or_failover_on_one_redis_exits_2_in_one_line(
        make_redis_server: MakeRedisServer, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mozaiks_bus.cli", "--data-dir", str(tmp_path / "none"),
         "prove"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
        timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    server = make_redis_server(appendonly=True)
    result = prove(server.url, tmp_path, "--failover")
    assert result.returncode == 2
    assert "Sentinel" in result.stderr


def test_prove_with_failover_through_sentinel(
        make_redis_server: MakeRedisServer, sentinel: Any, tmp_path: Path) -> None:
    primary = make_redis_server(appendonly=True)
    replica = make_redis_server(
        appendonly=True, extra_args=("--replicaof", "127.0.0.1", str(primary.port)))
    admin = redis.Redis(port=replica.port)
    deadline = time.monotonic() + 10
    while admin.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)
    port = sentinel(primary.port)
    result = prove(f"redis+sentinel://127.0.0.1:{port}/{MASTER}", tmp_path,
                   "--events", "300", "--failover", "--timeout", "80")
    assert_proved(result, {"consumer SIGKILL x2", "CLIENT KILL (own)", "failover"})
    assert admin.info("replication")["role"] == "master"  # the failover happened
    prefix = prefix_of(result.stdout)
    assert keys(admin, prefix + "*") == []
    admin.close()


def test_prove_with_failover_on_the_cluster(cluster_url: str, tmp_path: Path) -> None:
    result = prove(cluster_url, tmp_path, "--events", "300", "--failover", "--timeout", "80")
    assert_proved(result, {"consumer SIGKILL x2", "CLIENT KILL (own)", "failover"})
    assert "CLUSTER FAILOVER on replica" in result.stdout
    prefix = prefix_of(result.stdout)
    seeds = cluster_url.removeprefix("redis+cluster://").split(",")
    client = redis.RedisCluster(host="127.0.0.1", port=int(seeds[0].split(":")[1]))
    assert keys(client, prefix + "*") == []
    client.close()
