"""A sink's ledger in Redis: counters, last outcome, unfinished deliveries; and its state.

Contract
--------
Writers (the dispatcher and the RQ job) add commands to a pipeline the caller executes,
so an outcome and its bookkeeping land together (all keys carry the sink's hash tag).
``keys.sink_pending(name)`` holds the RQ job id of every delivery that is queued, waiting
for a retry or the circuit, or in flight; it is emptied when the delivery ends
(delivered, skipped or dead-lettered). Stored errors are already redacted.

:func:`sink_state` / :func:`sink_states` are the read side for the admin API and CLI
(``GET /v1/sinks``): circuit, queued, dead letters (failed), counters and last error.
They never show a secret: the configuration part is the URL (which cannot hold
credentials), the patterns, the format and the *names* of the variables.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.client import Pipeline

from mozaiks_bus.connection import text
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import BusSettings, SinkConfig
from mozaiks_bus.sinks.circuit import CircuitBreaker, CircuitState
from mozaiks_bus.sinks.config import find_sink

__all__ = [
    "SinkState",
    "record_attempt",
    "record_delivered",
    "record_pending",
    "record_skipped",
    "reset_circuit",
    "sink_state",
    "sink_states",
]

COUNTERS = ("delivered", "skipped", "dead", "attempts", "failed_attempts", "circuit_waits",
            "lost_attempts")


@dataclass(frozen=True, slots=True)
class SinkState:
    """One sink as the admin API shows it."""

    name: str
    url: str
    method: str
    format: str
    patterns: tuple[str, ...]
    secrets_from: tuple[str, ...]  # environment variable names only
    circuit: CircuitState
    queued: int
    oldest_queued_age_s: float | None
    dead_letters: int
    counters: dict[str, int]
    last_status: int | None
    last_error: str | None
    last_error_at: float | None
    last_delivered_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out = asdict(self)
        out["patterns"] = list(self.patterns)
        out["secrets_from"] = list(self.secrets_from)
        return out


def record_pending(pipe: Pipeline, keys: Keys, sink: str, job_id: str) -> None:
    """A delivery was queued (idempotent: the first enqueue time is kept)."""
    pipe.zadd(keys.sink_pending(sink), {job_id: time.time()}, nx=True)


def record_attempt(pipe: Pipeline, keys: Keys, sink: str, *, status: int | None,
                   error: str | None, lost: bool = False, count: int = 1) -> None:
    """``count`` attempts that did not deliver (``error`` set) or any attempt's status
    (``count`` > 1: the deliveries of a batch cut off together)."""
    key = keys.sink_state(sink)
    pipe.hincrby(key, "attempts", count)
    pipe.hset(key, "last_status", "" if status is None else status)
    if error is not None:
        pipe.hincrby(key, "lost_attempts" if lost else "failed_attempts", count)
        pipe.hset(key, mapping={"last_error": error, "last_error_at": time.time()})


def record_delivered(pipe: Pipeline, keys: Keys, sink: str, job_id: str, status: int) -> None:
    """The delivery succeeded (counts its last attempt too)."""
    key = keys.sink_state(sink)
    pipe.hincrby(key, "attempts", 1)
    pipe.hincrby(key, "delivered", 1)
    pipe.hset(key, mapping={"last_status": status, "last_delivered_at": time.time()})
    pipe.zrem(keys.sink_pending(sink), job_id)


def record_skipped(pipe: Pipeline, keys: Keys, sink: str, job_id: str) -> None:
    """The sink's format does not send this event."""
    pipe.hincrby(keys.sink_state(sink), "skipped", 1)
    pipe.zrem(keys.sink_pending(sink), job_id)



def _state(client: redis.Redis, keys: Keys, sink: SinkConfig) -> SinkState:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.sink_state(sink.name))
    pipe.zcard(keys.sink_pending(sink.name))
    pipe.zrange(keys.sink_pending(sink.name), 0, 0, withscores=True)
    pipe.xlen(keys.sink_dead_letters(sink.name))
    raw, queued, oldest, dead = pipe.execute()
    data = {text(k): text(v) for k, v in raw.items()}
    counters = {name: int(data.get(name, 0)) for name in COUNTERS}

    def number(name: str) -> float | None:
        return float(data[name]) if data.get(name) else None

    env_names = (sink.auth_bearer_env, sink.api_key_env, sink.signing_secret_env)
    return SinkState(
        name=sink.name, url=sink.url, method=sink.method, format=sink.format,
        patterns=tuple(sink.patterns),
        secrets_from=tuple(name for name in env_names if name),
        circuit=CircuitBreaker(client, keys).state(sink.name),
        queued=int(queued),
        oldest_queued_age_s=round(time.time() - oldest[0][1], 3) if oldest else None,
        dead_letters=int(dead), counters=counters,
        last_status=int(data["last_status"]) if data.get("last_status") else None,
        last_error=data.get("last_error") or None, last_error_at=number("last_error_at"),
        last_delivered_at=number("last_delivered_at"),
    )


def sink_state(client: redis.Redis, settings: BusSettings, name: str) -> SinkState:
    """The state of the configured sink ``name``; ConfigError if there is none."""
    sink = find_sink(settings, name)
    if sink is None:
        raise ConfigError("sink", f"no sink named {name!r} is configured")
    return _state(client, settings.keys, sink)


def sink_states(client: redis.Redis, settings: BusSettings) -> list[SinkState]:
    """The state of every configured sink, in configuration order."""
    keys = settings.keys
    return [_state(client, keys, sink) for sink in settings.sinks]


def reset_circuit(client: redis.Redis, settings: BusSettings, name: str) -> None:
    """Close the circuit of sink ``name`` now (an operator who fixed the endpoint)."""
    if find_sink(settings, name) is None:
        raise ConfigError("sink", f"no sink named {name!r} is configured")
    CircuitBreaker(client, settings.keys).reset(name)
