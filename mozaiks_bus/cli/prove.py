"""``mozaiks-bus prove``: the faults the bus can cause, run against this deployment.

``mozaiks-bus prove [--events N] [--timeout S] [--pause] [--failover] [--defaults]
[--allow-volatile]`` (see :mod:`mozaiks_bus.ops.prove`). It refuses, exit 2 with the
reason in one line: no broker, ``memory://``, ``--failover`` on one Redis, a Redis the
doctor fails for other than durability (too old, a plain URL at a cluster), and, unless
``--allow-volatile``, an evicting ``maxmemory-policy`` or no persistence at all on any
node. An unreachable Redis exits 1. Otherwise it prints one line saying what it will do
(stdout), progress on stderr, then the table (stdout); exit 1 when a confirmed event
was lost or a scenario did not finish within ``--timeout``, else 0.
"""

from __future__ import annotations

import asyncio

import click

from mozaiks_bus.cli._common import EXIT_CONFIG, EXIT_FAILED, command_settings, fail, run_command
from mozaiks_bus.connection import parse_broker_url
from mozaiks_bus.ops.prove import (
    DEFAULT_EVENTS,
    DEFAULT_TIMEOUT_S,
    PROVE_CLAIM_INTERVAL_S,
    PROVE_MIN_IDLE_S,
    ProveOptions,
    format_table,
    plan_line,
    run_prefix,
    run_prove,
)
from mozaiks_bus.ops.prove_redis import preflight
from mozaiks_bus.settings import BusSettings

__all__ = ["prove_command"]


@click.command("prove")
@click.option("--events", type=click.IntRange(1, 1_000_000), default=DEFAULT_EVENTS,
              show_default=True, help="Confirmed durable events per scenario.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=10), default=DEFAULT_TIMEOUT_S,
              show_default=True, help="Seconds the whole run may take (every wait is bounded "
                                      "by it).")
@click.option("--pause", is_flag=True,
              help="Also CLIENT PAUSE every primary for 3 s: every client of it waits.")
@click.option("--failover", is_flag=True,
              help="Also a manual failover (SENTINEL FAILOVER or CLUSTER FAILOVER).")
@click.option("--defaults", is_flag=True,
              help=f"Consumers reclaim on your consumer_min_idle_s / "
                   f"consumer_claim_interval_s instead of {PROVE_MIN_IDLE_S:g} s / "
                   f"{PROVE_CLAIM_INTERVAL_S:g} s.")
@click.option("--allow-volatile", is_flag=True,
              help="Run against a Redis that may evict or has no persistence.")
@click.pass_context
def prove_command(ctx: click.Context, events: int, timeout_s: float, pause: bool,
                  failover: bool, defaults: bool, allow_volatile: bool) -> None:
    """Run SIGKILL, CLIENT KILL (and opt-in pause, failover) faults under a load, count
    lost and duplicated events, delete everything it wrote; exit 1 on any loss."""
    settings = command_settings(ctx, without_broker="there is no deployment to prove")
    _refuse(settings, failover=failover, allow_volatile=allow_volatile)
    options = ProveOptions(events=events, timeout_s=timeout_s, pause=pause,
                           failover=failover, defaults=defaults)
    prefix = run_prefix(settings)
    click.echo(plan_line(settings, options, prefix))
    try:
        rows = run_command(run_prove(settings, options, prefix,
                                     lambda line: click.echo(line, err=True)))
    except (asyncio.CancelledError, KeyboardInterrupt):
        fail("prove was interrupted: its consumers were stopped and its keys deleted")
    click.echo(format_table(rows))
    if not all(row.passed for row in rows):
        ctx.exit(EXIT_FAILED)


def _refuse(settings: BusSettings, *, failover: bool, allow_volatile: bool) -> None:
    """Exit (one line) when this broker cannot or must not be proved."""
    url = settings.broker_url or ""
    broker = parse_broker_url(url)
    if broker.scheme == "memory":
        fail("prove needs a Redis server: memory:// lives in one process, and prove "
             "kills consumer processes", EXIT_CONFIG)
    if failover and not (broker.cluster or broker.scheme == "redis+sentinel"):
        fail("--failover needs a Sentinel (redis+sentinel://) or Cluster "
             "(redis+cluster://) broker: one Redis has nothing to fail over to", EXIT_CONFIG)
    found = preflight(settings)
    if found.unreachable:
        fail(f"prove: {found.unreachable[0]}", EXIT_FAILED)
    if found.broken:
        fail(f"prove refuses this Redis: {'; '.join(found.broken)}", EXIT_CONFIG)
    if found.volatile and not allow_volatile:
        fail(f"prove refuses a Redis that can lose events: {'; '.join(found.volatile)}; "
             "--allow-volatile runs it anyway", EXIT_CONFIG)
