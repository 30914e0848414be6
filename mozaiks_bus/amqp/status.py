"""What a running bridge reports (read by ``status`` and ``/v1/sinks``), and where it starts.

The bridge starts where it was first seen, like a sink: :func:`record_bridge_start`
fixes that stream id once (first caller wins; the bridge, or an API configured with
``amqp_url`` before it reports ready), so it does not send the streams' history to
RabbitMQ, yet every event a ready API accepted reaches it.

Each bridge instance writes a hash (``keys.bridge_state``) every ``report_interval_s``,
with a TTL of a few intervals, and its name into ``keys.bridges`` (a zset scored by
report time): a stopped or dead bridge disappears by itself. :func:`bridge_report`
reads them with a sync client, plus, per outbound type, the bridge group's lag and
pending count on the stream and the dead letters it left (``dlq`` replays them).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from mozaiks_bus.amqp.contracts import bridge_queue, contracts_for
from mozaiks_bus.connection import text
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import BusSettings

__all__ = ["COUNTERS", "bridge_report", "record_bridge_start", "state_ttl_s"]

COUNTERS = ("published", "received", "rejected", "skipped", "own_returned",
            "bridged_not_returned", "reconnects")
_DEAD_LETTER_SCAN = 1000  # entries of one dead-letter stream looked at, newest first


def record_bridge_start(client: redis.Redis, settings: BusSettings) -> str:
    """Fix (once) and return the stream id the bridge's group starts at (blocking)."""
    key = settings.keys.bridge_since()
    seconds, micros = client.time()  # Redis's clock: the one stream ids are made of
    client.set(key, f"{seconds * 1000 + micros // 1000}-0", nx=True)
    value: Any = client.get(key)
    return text(value)


def state_ttl_s(report_interval_s: float) -> int:
    """How long a report stays when no newer one comes."""
    return int(report_interval_s * 3 + 5)


def _group_info(client: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no stream yet
        return {"lag": 0, "pending": 0}
    for info in groups:
        if text(info.get("name")) == group:
            lag = info.get("lag")
            return {"lag": None if lag is None else int(lag), "pending": int(info["pending"])}
    return {"lag": None, "pending": 0}


def _dead_letters(client: redis.Redis, stream: str, group: str) -> int:
    rows: list[Any] = client.xrevrange(stream, count=_DEAD_LETTER_SCAN) or []
    count = 0
    for _, fields in rows:
        if text(fields.get(b"group")) == group:
            count += 1
    return count


def bridge_report(client: redis.Redis, settings: BusSettings) -> dict[str, Any]:
    """``{"configured", "instances": [...], "outbound": [{type, exchange, lag, pending,
    dead_letters}], "inbound": [{type, exchange}], "queue"}`` (blocking)."""
    keys: Keys = settings.keys
    now = time.time()
    instances: list[dict[str, Any]] = []
    names: list[Any] = client.zrange(keys.bridges(), 0, -1)
    for name in names:
        instance = text(name)
        state = {text(k): text(v) for k, v in client.hgetall(keys.bridge_state(instance)).items()}
        if not state:
            client.zrem(keys.bridges(), name)  # expired: it stopped reporting
            continue
        report: dict[str, Any] = {"instance": instance,
                                  "connected": state.get("connected") == "1",
                                  "rabbitmq": state.get("rabbitmq"),
                                  "last_error": state.get("last_error") or None,
                                  "reported_s_ago": round(
                                      now - float(state.get("updated", now)), 1)}
        report.update({name: int(state.get(name, 0)) for name in COUNTERS})
        instances.append(report)
    group = keys.bridge_group()
    outbound, inbound = [], []
    for contract in contracts_for(settings):
        if contract.outbound:
            stream = keys.stream(contract.type)
            outbound.append({"type": contract.type, "exchange": contract.exchange,
                             **_group_info(client, stream, group),
                             "dead_letters": _dead_letters(
                                 client, keys.dead_letter_stream(contract.type), group)})
        if contract.inbound:
            inbound.append({"type": contract.type, "exchange": contract.exchange})
    return {"configured": settings.amqp_url is not None,
            "queue": bridge_queue(settings),
            "instances": instances, "outbound": outbound, "inbound": inbound}
