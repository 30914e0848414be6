"""``mozaiks-bus worker --check``: is a sink worker service running on this host?

Contract
--------
A running worker's supervisor refreshes its liveness key (``keys.sink_process(name)``,
``name = <prefix>.sinkworker.<hostname>.<pid>``, TTL ``dead_after_s``, 10 s by default)
every ``heartbeat_s`` (2 s) once it is ready, and deletes it when it stops. The check
passes when such a key exists for this host name (``socket.gethostname()``, the
container's own in docker) with role ``supervisor`` and a pid that is alive here. So it
fails when the worker was never started, is still starting (docker's ``start_period``
covers that), stopped, crashed or hung for ``dead_after_s``, or cannot be told from here
(the queue's Redis does not answer: the worker cannot work either).

It reads the same settings as the worker (``MOZAIKS_BROKER_URL``, ``MOZAIKS_BUS_QUEUE_URL``,
``MOZAIKS_BUS_PREFIX``) and writes nothing. Candidate pids come from ``/proc`` where
there is one (a handful of reads in a container); elsewhere the keys are found with SCAN.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from mozaiks_bus.connection import create_sync_client, redact_url
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import BusSettings

__all__ = ["WorkerCheck", "check_worker"]

_PROC = "/proc"
_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class WorkerCheck:
    """The outcome: ``alive``, and one line saying what was found."""

    alive: bool
    message: str


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _local_pids(proc: str) -> list[int] | None:
    try:
        return [int(entry) for entry in os.listdir(proc) if entry.isdigit()]
    except OSError:
        return None


def _names_by_scan(client: redis.Redis, settings: BusSettings, stem: str) -> list[str]:
    # the pid ends the name and is left as is by the key's escaping: split a sample there
    head, _, tail = settings.keys.sink_process(stem + "9").rpartition("9")
    pattern = re.sub(r"([\\*?\[\]])", r"\\\1", head) + "*" + tail
    found: list[str] = []
    for key in client.scan_iter(match=pattern, count=1000):
        text = key.decode() if isinstance(key, bytes) else str(key)
        pid = text[len(head):len(text) - len(tail)]
        if pid.isdigit():
            found.append(stem + pid)
    return found


def _alive_supervisors(client: redis.Redis, settings: BusSettings, names: Iterable[str]
                       ) -> list[tuple[str, int]]:
    unique = sorted(set(names))
    pipe = client.pipeline(transaction=False)
    for name in unique:
        pipe.get(settings.keys.sink_process(name))
    alive: list[tuple[str, int]] = []
    for name, raw in zip(unique, pipe.execute(), strict=True):
        try:
            info = json.loads(raw) if raw else None
        except ValueError:
            info = None
        if isinstance(info, dict) and info.get("role") == "supervisor" \
                and isinstance(info.get("pid"), int) and _pid_alive(info["pid"]):
            alive.append((name, info["pid"]))
    return alive


def check_worker(settings: BusSettings, *, hostname: str | None = None,
                 proc: str = _PROC) -> WorkerCheck:
    """Whether a worker supervisor of ``settings``' install runs on ``hostname``
    (default: this host); see the module docstring. Raises ConfigError only for
    settings that name no Redis server."""
    url = settings.queue_redis_url
    if not url or url.startswith("memory://"):
        raise ConfigError("broker_url", "the sink worker needs a Redis server "
                          "(redis://, rediss:// or unix://): set MOZAIKS_BROKER_URL")
    host = hostname or socket.gethostname()
    stem = f"{settings.keys.sink_worker_prefix()}{host}."
    client = create_sync_client(url, socket_timeout=_TIMEOUT_S, retries=0,
                                client_name="mozaiks-bus:worker-check")
    try:
        pids = _local_pids(proc)
        names = ([f"{stem}{pid}" for pid in pids] if pids is not None
                 else _names_by_scan(client, settings, stem))
        alive = _alive_supervisors(client, settings, names)
    except REDIS_ERRORS as exc:
        return WorkerCheck(False, f"cannot read the worker's liveness from "
                                  f"{redact_url(url)}: {type(exc).__name__}: {exc}")
    finally:
        client.close()
    if not alive:
        return WorkerCheck(False, f"no sink worker is running on {host} (no live "
                                  f"supervisor {stem}<pid> on {redact_url(url)})")
    name, pid = alive[0]
    return WorkerCheck(True, f"worker {name} is alive (pid {pid})")
