"""Processes started while Redis is down: they wait, say so, and work once it returns.

A consumer process, a ``mozaiks-bus worker`` with an HTTP sink and a ``mozaiks-bus
serve`` are started against a Redis that is down for ten seconds. Meanwhile each must
stay alive, say in its log what it waits for, and ``serve`` must answer ``/readyz`` 503
naming the Redis check. Once Redis is back on the same port, an event published through
the API and one published through a bus each reach the consumer and the sink.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from mozaiks_bus import Bus, load_settings
from tests.conftest import MakeRedisServer
from tests.integration.durable_proc import calls_key
from tests.integration.server_harness import ALL, ROOT, ServeProcess, auth
from tests.integration.sink_support import WorkerProcess, write_config
from tests.integration.sink_target import Target
from tests.support import clean_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TYPE = "notification.created"
DOWN_S = 10.0


def notification(n: int) -> dict[str, str]:
    return {"notification_id": f"n{n}", "user_id": "u", "notification_type": "info",
            "subject": "s", "message": f"m{n}"}


def test_consumer_worker_and_serve_started_with_redis_down_come_up_when_it_returns(
    make_redis_server: MakeRedisServer, target: Target, tmp_path: Path, key_prefix: str,
) -> None:
    server = make_redis_server()
    url = server.url
    server.stop()  # the port is known; nothing answers on it
    consumer_log = tmp_path / "consumer.log"
    with consumer_log.open("wb") as log:
        consumer = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.durable_proc", url, key_prefix, TYPE,
             "--mode", "list", "--group", "svc"],
            cwd=ROOT, env=clean_env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    sink = {"name": "hook", "url": target.url("/hook"), "patterns": [TYPE], "attempts": 5,
            "backoff_base_s": 0.2, "backoff_max_s": 1.0, "timeout_s": 5.0}
    config = write_config(tmp_path / "bus.toml", url=url, prefix=key_prefix, sinks=[sink])
    worker = WorkerProcess(config, tmp_path / "worker.log", cli=True,
                           options={"processes": 1}).launch()
    api = ServeProcess(url, key_prefix).start()
    try:
        started = time.monotonic()
        saw_not_ready = False
        while time.monotonic() - started < DOWN_S:
            for name, proc in (("consumer", consumer), ("worker", worker.proc),
                               ("serve", api.proc)):
                assert proc is not None
                assert proc.poll() is None, f"{name} exited with {proc.returncode}"
            try:
                ready = httpx.get(api.url + "/readyz", timeout=2)
            except httpx.HTTPError:
                pass  # uvicorn not listening yet
            else:
                assert ready.status_code == 503
                assert ready.json()["checks"]["redis"]["ok"] is False
                saw_not_ready = True
            time.sleep(0.5)
        assert saw_not_ready, "serve never answered /readyz while Redis was down"
        assert "waiting for Redis" in consumer_log.read_text()
        assert "waiting for Redis" in worker.log()
        assert "mozaiks-bus worker ready" not in worker.log()

        server.start()  # back, on the same port
        api.wait_ready()
        worker.wait_ready(60)
        wait_until(lambda: "ready" in consumer_log.read_text().splitlines(), 30,
                   "the consumer's ready line")
        posted = httpx.post(api.url + "/v1/events", headers=auth(ALL), timeout=10, json={
            "specversion": "1.0", "id": "from-http", "type": TYPE, "source": "test",
            "data": notification(1)})
        assert posted.status_code == 202, posted.text

        async def publish() -> str:
            async with Bus(config=load_settings(broker_url=url, prefix=key_prefix)) as bus:
                return (await bus.publish(TYPE, notification(2))).id

        from_bus = asyncio.run(publish())
        client = redis.Redis.from_url(url)
        try:
            wait_until(lambda: set(client.lrange(calls_key(key_prefix, TYPE), 0, -1))
                       >= {b"from-http", from_bus.encode()}, 30, "the consumer's calls")
        finally:
            client.close()
        target.wait_for(lambda: {r.headers["idempotency-key"] for r in target.received()}
                        >= {"from-http", from_bus}, 30, "both events at the sink")
        for name, proc in (("consumer", consumer), ("worker", worker.proc),
                           ("serve", api.proc)):
            assert proc is not None
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"
    finally:
        consumer.terminate()
        consumer.wait(20)
        worker.stop()
        api.stop()
    assert consumer.returncode == 0
