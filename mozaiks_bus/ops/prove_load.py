"""The moving parts of one ``mozaiks-bus prove`` scenario: consumer processes, the
publisher, and the handler-call records read back from Redis.

* :class:`ConsumerProcess`: ``python -m mozaiks_bus.ops.prove_consumer`` (a real process:
  SIGKILL means SIGKILL), broker URL in its environment, stderr to a log file whose tail
  is shown if it fails to start.
* :func:`publish_all`: confirmed publishes (``await bus.publish(..., durable=True)``)
  from a few concurrent callers; a failed one is retried with the same event id, as a caller of a
  confirmed publish does, until the deadline. Only confirmed ids count as sent.
* :class:`Record` / :func:`read_records`: every handler call (see
  :mod:`mozaiks_bus.ops.prove_consumer`).

Every wait is bounded by the caller's deadline (``time.monotonic()``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.errors import BrokerUnavailable, MozaiksBusError
from mozaiks_bus.ops.prove_consumer import READY

__all__ = ["ConsumerProcess", "Record", "publish_all", "read_records"]

_STOP_WAIT_S = 15.0
_RETRY_PAUSE_S = 0.2
PUBLISHERS = 16


@dataclass(frozen=True, slots=True)
class Record:
    """One handler call: which event, which stream entry, by whom, which delivery, when."""

    event_id: str
    stream_id: str
    consumer: str
    deliveries: int
    at: float

    @classmethod
    def parse(cls, raw: object) -> Record:
        """A record as the consumer pushed it (``id entry consumer deliveries time``)."""
        event_id, stream_id, consumer, deliveries, at = text(raw).split(" ")
        return cls(event_id, stream_id, consumer, int(deliveries), float(at))


async def read_records(client: AsyncClient, key: str) -> list[Record]:
    """Every handler call recorded under ``key`` so far, in push order."""
    return [Record.parse(raw) for raw in await client.lrange(key, 0, -1)]


class ConsumerProcess:
    """One consumer process of the run's group (see the module docstring)."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    @classmethod
    async def start(cls, *, url: str, prefix: str, type_name: str, name: str,
                    min_idle_s: float, claim_s: float, workdir: Path) -> ConsumerProcess:
        """Start it (not yet ready: see :meth:`wait_ready`). It runs in ``workdir`` with
        no config file, so only the arguments and the broker URL shape it."""
        env = {k: v for k, v in os.environ.items() if k != "MOZAIKS_BUS_CONFIG"}
        env["MOZAIKS_BROKER_URL"] = url
        log = workdir / f"{name}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mozaiks_bus.ops.prove_consumer", prefix, type_name,
                name, repr(min_idle_s), repr(claim_s), cwd=workdir, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err)
        return cls(name, proc, log)

    async def wait_ready(self, deadline: float) -> None:
        """Until it printed ``ready``; BrokerUnavailable (with its last log lines) if it
        exits first or the deadline passes."""
        stdout = self.proc.stdout
        try:
            while stdout is not None:
                line = await asyncio.wait_for(stdout.readline(),
                                              max(0.1, deadline - time.monotonic()))
                if not line:
                    break
                if line.decode(errors="replace").strip() == READY:
                    return
        except TimeoutError:
            pass
        tail = " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])
        raise BrokerUnavailable(f"prove: consumer {self.name} did not start: "
                                f"{tail or 'no output'}")

    def kill(self) -> None:
        """SIGKILL, no goodbye: its held entries stay pending on it in Redis."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM and wait (bounded); SIGKILL if it does not exit in time."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), _STOP_WAIT_S)
                return
            except TimeoutError:
                self.kill()
        await self.proc.wait()


async def publish_all(bus: Bus, type_name: str, ids: list[str], sent: list[str],
                      deadline: float) -> None:
    """Publish ``ids`` from ``PUBLISHERS`` concurrent callers (so a backlog can build
    and consumers hold read-ahead when a fault strikes), appending each confirmed id to
    ``sent``; stops at the deadline (what is not in ``sent`` then was never confirmed)."""
    todo = iter(enumerate(ids))

    async def caller() -> None:
        for number, event_id in todo:
            if not await _publish_one(bus, type_name, number, event_id, deadline):
                return
            sent.append(event_id)

    await asyncio.gather(*(caller() for _ in range(PUBLISHERS)))


async def _publish_one(bus: Bus, type_name: str, number: int, event_id: str,
                       deadline: float) -> bool:
    """One confirmed publish, retried with the same id until the deadline."""
    while True:
        try:
            await bus.publish(type_name, {"n": number}, id=event_id, durable=True,
                              fanout=False)
            return True
        except MozaiksBusError:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(_RETRY_PAUSE_S)
