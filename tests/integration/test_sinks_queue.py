"""RQ on a Redis of its own (``queue_url``, ``MOZAIKS_BUS_QUEUE_URL``), never a Cluster.

Real redis-servers: the broker (streams) and the queue (RQ, the sinks' ledger) are two
processes; a worker service delivers through both. A queue Redis that is a Cluster node
is refused by name; a Cluster broker works with a standalone queue.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from mozaiks_bus.errors import ConfigError
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import load_settings
from mozaiks_bus.sinks import sink_state
from mozaiks_bus.sinks.admin import admin_client, refuse_cluster
from tests.conftest import MakeRedisServer
from tests.integration.cluster import LoopbackCluster
from tests.integration.sink_support import (
    WorkerProcess,
    publish,
    settings_for,
    sync_client,
    write_config,
)
from tests.integration.sink_target import Target
from tests.support import wait_until

pytestmark = [pytest.mark.integration]
TYPE = "orders.created"




def test_rq_and_the_sink_ledger_live_on_the_queue_redis_the_streams_on_the_broker(
    make_redis_server: MakeRedisServer, tmp_path: Path, target: Target,
    workers: list[WorkerProcess],
) -> None:
    broker, queue = make_redis_server(), make_redis_server()
    prefix = "qsplit"
    path = write_config(tmp_path / "bus.toml", url=broker.url, prefix=prefix,
                        queue_url=queue.url, sinks=[{
                            "name": "hooks", "url": target.url("/q"), "patterns": [TYPE],
                            "attempts": 3, "backoff_base_s": 0.2, "timeout_s": 5.0}])
    workers.append(WorkerProcess(path, tmp_path / "w.log").start())
    settings = settings_for(broker.url, prefix, path)
    assert settings.queue_url == queue.url
    events = publish(settings, TYPE, [{"n": n} for n in range(20)])
    with admin_client(settings) as ledger:
        wait_until(lambda: sink_state(ledger, settings, "hooks").counters["delivered"] == 20,
                   20, "20 deliveries")
    assert sorted(c.headers["idempotency-key"] for c in target.received("/q")) == \
        sorted(event.id for event in events)
    keys = Keys(prefix)
    on_broker, on_queue = sync_client(broker.url), sync_client(queue.url)
    try:
        assert on_broker.exists(keys.stream(TYPE)) == 1
        assert on_broker.exists(keys.sink_since("hooks")) == 1  # compared with stream ids
        assert not list(on_broker.scan_iter("rq:*"))
        # the only sink key on the broker is its start position
        assert list(on_broker.scan_iter(f"{prefix}:sink:*")) == \
            [keys.sink_since("hooks").encode()]
        assert list(on_queue.scan_iter("rq:*"))
        assert on_queue.exists(keys.sink_state("hooks")) == 1
        assert not list(on_queue.scan_iter(f"{prefix}:stream:*"))
    finally:
        on_broker.close()
        on_queue.close()


def test_sinks_on_a_cluster_broker_deliver_through_a_standalone_queue(
    cluster_url: str, make_redis_server: MakeRedisServer, tmp_path: Path, target: Target,
    workers: list[WorkerProcess],
) -> None:
    """The broker is a Redis Cluster (streams, start positions), RQ and the ledger on a
    standalone Redis: every event delivered once, with its id as Idempotency-Key."""
    queue = make_redis_server()
    prefix = f"qc{uuid.uuid4().hex[:6]}"
    path = write_config(tmp_path / "bus.toml", url=cluster_url, prefix=prefix,
                        queue_url=queue.url, sinks=[{
                            "name": "hooks", "url": target.url("/c"), "patterns": [TYPE],
                            "attempts": 3, "backoff_base_s": 0.2, "timeout_s": 5.0}])
    workers.append(WorkerProcess(path, tmp_path / "w.log").start())
    settings = settings_for(cluster_url, prefix, path)
    events = publish(settings, TYPE, [{"n": n} for n in range(20)])
    with admin_client(settings) as ledger:
        wait_until(lambda: sink_state(ledger, settings, "hooks").counters["delivered"] == 20,
                   30, "20 deliveries")
    assert sorted(c.headers["idempotency-key"] for c in target.received("/c")) == \
        sorted(event.id for event in events)
    with admin_client(settings, on="broker") as broker:
        assert broker.exists(Keys(prefix).sink_since("hooks")) == 1


def test_a_cluster_broker_without_queue_url_is_refused_naming_it() -> None:
    settings = load_settings(broker_url="redis+cluster://127.0.0.1:1")
    with pytest.raises(ConfigError) as caught:
        _ = settings.queue_redis_url
    assert caught.value.field == "queue_url"
    assert "MOZAIKS_BUS_QUEUE_URL" in str(caught.value)


def test_a_queue_url_for_a_cluster_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(broker_url="redis://127.0.0.1:6379", queue_url="redis+cluster://h:1")
    assert caught.value.field == "queue_url"
    assert "Cluster" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(broker_url="redis://127.0.0.1:6379", queue_url="memory://x")
    assert caught.value.field == "queue_url"


@pytest.mark.slow
def test_a_queue_redis_that_is_a_cluster_node_is_refused_at_start() -> None:
    with LoopbackCluster() as cluster:
        settings = load_settings(broker_url="redis://127.0.0.1:1", queue_url=cluster.url)
        client = sync_client(cluster.url)
        try:
            with pytest.raises(ConfigError) as caught:
                refuse_cluster(client, settings)
        finally:
            client.close()
    assert caught.value.field == "queue_url"
    assert "MOZAIKS_BUS_QUEUE_URL" in str(caught.value)
