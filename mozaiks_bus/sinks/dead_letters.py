"""Sink dead letters: written by the RQ job, listed and replayed by operators.

Contract
--------
Each sink has one dead-letter stream (``keys.sink_dead_letters(name)``); an entry holds
``e`` (the CloudEvent JSON), ``error`` (redacted, at most 300 characters: the HTTP status
and an excerpt of the response, or the network error), ``status`` (HTTP status or
empty), ``attempts``, ``dead_at`` (ms), ``job`` (the RQ job id) and ``replay_of`` (the dead
letter this delivery replayed, if any). Nothing else: no header, no secret.

:func:`replay_dead_letter` enqueues a fresh delivery of the same event (same event id,
so the same ``Idempotency-Key``, and a full set of attempts) with a job id derived from
the dead letter's id, then deletes the dead letter. Replaying the same dead letter
twice, even concurrently or after a crash between the two steps, queues one job: a
replay that succeeds is delivered once. :func:`replay_dead_letters` does it for every
dead letter of a sink.

All functions take a sync redis-py client (the admin API can call them through
``asyncio.to_thread``) and the settings (prefix, sinks).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from mozaiks_bus.connection import text
from mozaiks_bus.durable.streams import SCAN_PAGE, is_entry_id, scan_page
from mozaiks_bus.errors import ConfigError, MozaiksBusError
from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import BusSettings, SinkConfig
from mozaiks_bus.sinks.config import find_sink
from mozaiks_bus.sinks.dispatcher import enqueue_delivery, sink_queue

__all__ = [
    "SinkDeadLetter",
    "dead_letter",
    "delete_dead_letter",
    "find_dead_letters",
    "list_dead_letters",
    "purge_dead_letters",
    "record_dead",
    "replay_dead_letter",
    "replay_dead_letters",
]


@dataclass(frozen=True, slots=True)
class SinkDeadLetter:
    """One delivery a sink gave up on, and why."""

    id: str
    sink: str
    event: dict[str, Any]
    error: str
    status: int | None
    attempts: int
    dead_at_ms: int
    job_id: str
    replay_of: str | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {field: getattr(self, field) for field in self.__slots__}


def record_dead(pipe: Pipeline, keys: Keys, sink: str, *, job_id: str, event_json: str,
                error: str, status: int | None, attempts: int,
                replay_of: str | None = None) -> None:
    """Add the dead letter and close the delivery (in the caller's MULTI)."""
    pipe.xadd(keys.sink_dead_letters(sink), {
        "e": event_json, "error": error, "status": "" if status is None else status,
        "attempts": attempts, "dead_at": int(time.time() * 1000), "job": job_id,
        "replay_of": replay_of or "",
    })
    pipe.hincrby(keys.sink_state(sink), "dead", 1)
    pipe.zrem(keys.sink_pending(sink), job_id)



def _decode(sink: str, entry_id: Any, fields: dict[Any, Any]) -> SinkDeadLetter:
    data = {text(k): text(v) for k, v in fields.items()}
    return SinkDeadLetter(
        id=text(entry_id), sink=sink, event=json.loads(data.get("e", "{}")),
        error=data.get("error", ""),
        status=int(data["status"]) if data.get("status") else None,
        attempts=int(data.get("attempts", 0)), dead_at_ms=int(data.get("dead_at", 0)),
        job_id=data.get("job", ""), replay_of=data.get("replay_of") or None,
    )


def _sink(settings: BusSettings, name: str) -> SinkConfig:
    sink = find_sink(settings, name)
    if sink is None:
        raise ConfigError("sink", f"no sink named {name!r} is configured")
    return sink


def list_dead_letters(client: redis.Redis, settings: BusSettings, sink: str | None = None,
                      *, limit: int = 100) -> list[SinkDeadLetter]:
    """Dead letters, newest first, of ``sink`` (default: every configured sink)."""
    keys = settings.keys
    names = [_sink(settings, sink).name] if sink else [s.name for s in settings.sinks]
    found: list[SinkDeadLetter] = []
    for name in names:
        rows: Any = client.xrevrange(keys.sink_dead_letters(name), count=limit)
        found.extend(_decode(name, entry_id, fields) for entry_id, fields in rows)
    found.sort(key=lambda letter: letter.dead_at_ms, reverse=True)
    return found[:limit]


def dead_letter(client: redis.Redis, settings: BusSettings, sink: str,
                entry_id: str) -> SinkDeadLetter | None:
    """One dead letter of ``sink`` by its entry id, or None (also for a non-entry id)."""
    key = settings.keys.sink_dead_letters(_sink(settings, sink).name)
    if not is_entry_id(entry_id):
        return None
    rows: Any = client.xrange(key, min=entry_id, max=entry_id)
    return _decode(sink, *rows[0]) if rows else None


def find_dead_letters(client: redis.Redis, settings: BusSettings, sink: str,
                      wanted: str) -> list[SinkDeadLetter]:
    """The dead letters of ``sink`` named by ``wanted``: the entry id, or the event id
    (the ``Idempotency-Key`` the endpoint saw). Raises :class:`MozaiksBusError` naming
    both when there is none."""
    letter = dead_letter(client, settings, sink, wanted)
    if letter is not None:
        return [letter]
    key = settings.keys.sink_dead_letters(_sink(settings, sink).name)
    found: list[SinkDeadLetter] = []
    end: str | None = "+"
    while end is not None:
        rows: Any = client.xrevrange(key, max=end, count=SCAN_PAGE)
        page, end = scan_page(rows, wanted, lambda i, f: _decode(sink, i, f))
        found.extend(page)
    if not found:
        raise MozaiksBusError(f"sink {sink} has no dead letter with entry id or event id "
                              f"{wanted!r}")
    return found


def replay_dead_letter(client: redis.Redis, settings: BusSettings, sink: str,
                       entry_id: str) -> str:
    """Deliver a dead letter again (see the module docstring); returns the RQ job id."""
    config = _sink(settings, sink)
    letter = dead_letter(client, settings, sink, entry_id)
    if letter is None:
        raise MozaiksBusError(f"sink {sink} has no dead letter with entry id {entry_id!r}")
    keys = settings.keys
    event = Event.from_dict(letter.event)
    job_id, _ = enqueue_delivery(sink_queue(client, keys), keys, config, event,
                                 replay_of=entry_id)
    client.xdel(keys.sink_dead_letters(sink), entry_id)
    return job_id


def replay_dead_letters(client: redis.Redis, settings: BusSettings, sink: str) -> list[str]:
    """Replay every dead letter of ``sink``, oldest first; returns the RQ job ids."""
    key = settings.keys.sink_dead_letters(_sink(settings, sink).name)
    rows: Any = client.xrange(key)
    return [replay_dead_letter(client, settings, sink, text(entry_id)) for entry_id, _ in rows]


def delete_dead_letter(client: redis.Redis, settings: BusSettings, sink: str,
                       entry_id: str) -> bool:
    """Delete one dead letter; False if it was not there."""
    key = settings.keys.sink_dead_letters(_sink(settings, sink).name)
    return is_entry_id(entry_id) and bool(client.xdel(key, entry_id))


def purge_dead_letters(client: redis.Redis, settings: BusSettings, sink: str) -> int:
    """Delete every dead letter of ``sink``; returns how many there were."""
    key = settings.keys.sink_dead_letters(_sink(settings, sink).name)
    count = int(client.xlen(key))
    client.delete(key)
    return count
