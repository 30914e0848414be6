"""``mozaiks-bus prove``: an operator's check of their own deployment, counted.

Against the configured broker (one Redis, Sentinel or Cluster) and under a disposable
key prefix ``<prefix>-prove-<random>`` (also the service name, so every connection it
opens is named ``mozaiks-bus:<that prefix>:...``), it runs the faults the bus can cause
without root on the Redis hosts, each against a bounded load of confirmed durable
publishes read by real consumer processes (:mod:`mozaiks_bus.ops.prove_scenario`):

=========================  =====================================================
scenario                   fault
=========================  =====================================================
``consumer SIGKILL x2``    at 1/3 and 2/3 of the load, the consumer process
                           holding the most entries is SIGKILLed and a
                           replacement started; the entries
                           pending on it are reclaimed by the survivors
``CLIENT KILL``            at 1/2, ``CLIENT KILL`` of every connection named with
                           the run's prefix (publisher and consumers), no other
``CLIENT PAUSE`` (opt-in)  at 1/2, ``CLIENT PAUSE 3000 ALL`` of every primary
                           (``--pause``: every client of that Redis waits too)
``failover`` (opt-in)      at 1/2, ``SENTINEL FAILOVER`` or ``CLUSTER FAILOVER``
                           (``--failover``)
=========================  =====================================================

The guarantee checked is the durable scope's: every confirmed event is handled at
least once (lost 0; duplicates are counted, not failed). The consumers reclaim after
``PROVE_MIN_IDLE_S`` idle, claiming every ``PROVE_CLAIM_INTERVAL_S`` (``defaults``: the
user's ``consumer_min_idle_s`` / ``consumer_claim_interval_s``). Every wait is bounded by
one overall deadline; whatever happens, the consumer processes are stopped and every
key under the run's prefix is deleted (SCAN on every primary; nothing else is touched).
The refusals (an evicting or volatile Redis) are :mod:`mozaiks_bus.ops.prove_redis`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import create_async_any_client, parse_broker_url, redact_url
from mozaiks_bus.ops.prove_redis import (
    delete_prefix,
    failover,
    kill_own_clients,
    pause_primaries,
)
from mozaiks_bus.ops.prove_scenario import Affected, Fault, Outcome, Stage
from mozaiks_bus.settings import BusSettings

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_TIMEOUT_S",
    "GUARANTEE",
    "PROVE_CLAIM_INTERVAL_S",
    "PROVE_MIN_IDLE_S",
    "ProveOptions",
    "Row",
    "format_table",
    "plan_line",
    "run_prefix",
    "run_prove",
]

DEFAULT_EVENTS = 2000
DEFAULT_TIMEOUT_S = 300.0
PROVE_MIN_IDLE_S = 5.0
PROVE_CLAIM_INTERVAL_S = 1.0
PAUSE_S = 3.0
GUARANTEE = "at least once: lost 0"
_KILL_WAIT_S = 10.0
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ProveOptions:
    """What to run: events per scenario, the overall deadline, the opt-in faults, and
    whether the consumers keep the user's reclaim timing (``defaults``)."""

    events: int = DEFAULT_EVENTS
    timeout_s: float = DEFAULT_TIMEOUT_S
    pause: bool = False
    failover: bool = False
    defaults: bool = False

    def reclaim(self, settings: BusSettings) -> tuple[float, float]:
        """(min idle, claim interval) of the run's consumers, in seconds."""
        if self.defaults:
            return settings.consumer_min_idle_s, settings.consumer_claim_interval_s
        return PROVE_MIN_IDLE_S, PROVE_CLAIM_INTERVAL_S


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named list of faults struck at set points of one load."""

    slug: str
    title: str
    faults: tuple[Fault, ...]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a scenario, its guarantee and its count."""

    scenario: str
    outcome: Outcome

    @property
    def passed(self) -> bool:
        """Nothing lost, and the whole load was confirmed within the deadline."""
        return self.outcome.lost == 0 and self.outcome.complete


async def _kill_consumer(stage: Stage) -> Affected:
    """SIGKILL the live consumer holding the most entries, then start a replacement."""
    alive = [c for c in stage.consumers if c.proc.returncode is None]
    held = [len(await stage.pending_on(c.name)) for c in alive]
    victim = alive[held.index(max(held))]
    victim.kill()
    await asyncio.wait_for(victim.proc.wait(), _KILL_WAIT_S)
    at = time.time()
    pending = await stage.pending_on(victim.name)
    seen = await stage.seen()  # the dead write nothing more: later calls are others'
    await stage.add_consumer()  # what a supervisor does
    return Affected(at, seen, f"SIGKILL {victim.name}: {len(pending)} entries pending on it",
                    entries=pending)


async def _client_kill(stage: Stage) -> Affected:
    killed = await asyncio.to_thread(kill_own_clients, stage.url, stage.prefix)
    at = time.time()
    seen, outstanding = await stage.outstanding()
    return Affected(at, seen, f"CLIENT KILL: {killed} connections named {stage.prefix}",
                    events=outstanding)


async def _pause(stage: Stage) -> Affected:
    await asyncio.to_thread(pause_primaries, stage.url, PAUSE_S)
    at = time.time()
    seen, outstanding = await stage.outstanding()
    return Affected(at, seen, f"CLIENT PAUSE {PAUSE_S:g} s ALL on every primary",
                    events=outstanding)


async def _failover(stage: Stage) -> Affected:
    at = time.time()  # asked for; it returns once the failover happened
    what = await asyncio.to_thread(failover, stage.url,
                                   stage.bus.config.keys.stream(stage.type_name))
    seen, outstanding = await stage.outstanding()
    return Affected(at, seen, what, events=outstanding)


def scenarios(options: ProveOptions) -> list[Scenario]:
    """The scenarios ``options`` asks for, in the order they run."""
    chosen = [Scenario("sigkill", "consumer SIGKILL x2",
                       (Fault(1 / 3, _kill_consumer), Fault(2 / 3, _kill_consumer))),
              Scenario("clientkill", "CLIENT KILL (own)", (Fault(1 / 2, _client_kill),))]
    if options.pause:
        chosen.append(Scenario("pause", f"CLIENT PAUSE {PAUSE_S:g} s", (Fault(1 / 2, _pause),)))
    if options.failover:
        chosen.append(Scenario("failover", "failover", (Fault(1 / 2, _failover),)))
    return chosen


def run_prefix(settings: BusSettings) -> str:
    """A fresh disposable prefix: ``<prefix>-prove-<8 hex>`` (within the 64-character
    prefix rule)."""
    return f"{settings.prefix[:46]}-prove-{secrets.token_hex(4)}"


def _broker_kind(url: str) -> str:
    broker = parse_broker_url(url)
    if broker.cluster:
        return "Redis Cluster"
    return "Sentinel" if broker.scheme == "redis+sentinel" else "one Redis"


def plan_line(settings: BusSettings, options: ProveOptions, prefix: str) -> str:
    """The one line saying what the run will do, printed before it does anything."""
    url = settings.broker_url or ""
    idle, claim = options.reclaim(settings)
    titles = [s.title for s in scenarios(options)]
    if options.pause:
        titles[titles.index(f"CLIENT PAUSE {PAUSE_S:g} s")] += " (every client of it waits)"
    timing = "your settings" if options.defaults else "not yours: --defaults uses yours"
    return (f"prove: {options.events:,} confirmed durable events per scenario, read by "
            f"consumer processes, at {redact_url(url)} ({_broker_kind(url)}); faults: "
            f"{', '.join(titles)}; consumers reclaim after {idle:g} s idle, claiming every "
            f"{claim:g} s ({timing}); every key is under {prefix}: and deleted at the end "
            f"(SCAN MATCH {prefix}:* on every primary; nothing else is touched); at most "
            f"{options.timeout_s:g} s")


async def run_prove(settings: BusSettings, options: ProveOptions, prefix: str,
                    say: Say) -> list[Row]:
    """Run every scenario under ``prefix`` and return the table's rows; the keys under
    ``prefix`` are deleted afterwards whatever happened (``say`` reports progress)."""
    url = settings.broker_url or ""
    idle, claim = options.reclaim(settings)
    config = settings.model_copy(update={
        "prefix": prefix, "service": prefix, "routes": [], "sinks": [],
        "stream_partitions": {}, "amqp_url": None,
        "consumer_min_idle_s": idle, "consumer_claim_interval_s": claim})
    deadline = time.monotonic() + options.timeout_s
    client = create_async_any_client(url, client_name=f"mozaiks-bus:{prefix}:count")
    _cancel_on_sigterm()
    try:
        with tempfile.TemporaryDirectory(prefix="mozaiks-prove-") as workdir:
            async with Bus(config=config) as bus:
                rows = []
                for scenario in scenarios(options):
                    stage = Stage(scenario.slug, bus, client, url, prefix, options.events,
                                  (idle, claim), Path(workdir), deadline)
                    rows.append(await _run_one(stage, scenario, say))
                return rows
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
        deleted = await asyncio.to_thread(delete_prefix, url, prefix)
        say(f"prove: deleted {deleted} keys under {prefix}:")


def _cancel_on_sigterm() -> None:
    """SIGTERM cancels the run like Ctrl-C does, so the clean-up still runs."""
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def _run_one(stage: Stage, scenario: Scenario, say: Say) -> Row:
    if time.monotonic() >= stage.deadline:
        return Row(scenario.title, Outcome(0, stage.events, 0, 0, None,
                                           ["not run: the deadline had passed"]))
    say(f"prove: {scenario.title} ...")
    started = time.monotonic()
    outcome = await stage.run(list(scenario.faults))
    say(f"prove: {scenario.title}: {outcome.delivered}/{outcome.sent} delivered in "
        f"{time.monotonic() - started:.1f} s")
    return Row(scenario.title, outcome)


def format_table(rows: list[Row]) -> str:
    """The table (fixed-width text), then one note line per fault and problem."""
    head = ("scenario", "guarantee", "sent", "delivered", "lost", "duplicated",
            "recovered in", "result")
    lines = [head]
    for row in rows:
        out = row.outcome
        recovered = "-" if out.recovered_s is None else f"{out.recovered_s:.1f} s"
        lines.append((row.scenario, GUARANTEE, str(out.sent), str(out.delivered),
                      str(out.lost), str(out.duplicated), recovered,
                      "pass" if row.passed else "FAIL"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            .rstrip() for line in lines]
    text += [f"  {row.scenario}: {note}" for row in rows for note in row.outcome.notes]
    return "\n".join(text)
