"""Operator commands of ``mozaiks-bus``: publish, tail, status, replay, doctor, up, demo,
bench (``dlq`` is in :mod:`mozaiks_bus.cli.dlq`).

Each command loads the settings like every other command (a bad configuration exits
2), talks to the configured broker, prints readable tables (``--json`` for scripts)
and exits 1 when what it was asked to do failed. Registered on the CLI group by
:func:`register`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mozaiks_bus.bus import Bus
from mozaiks_bus.cli._common import (
    command_settings,
    console,
    data_dir_of,
    fail,
    load_cli_settings,
    run_command,
    with_bus,
)
from mozaiks_bus.durable.tail import tail_streams
from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.event import Event
from mozaiks_bus.ops.doctor import cluster_nodes, run_checks
from mozaiks_bus.ops.stack import resolve_data_dir
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.settings import BusSettings

__all__ = ["COMMANDS"]

T = TypeVar("T")
NO_STREAMS = "there are no durable streams to read"


@click.command("publish")
@click.argument("type_name", metavar="TYPE")
@click.argument("data", required=False, default="{}")
@click.option("--subject", default=None, help="CloudEvents subject (a chat id for ui).")
@click.option("--durable/--no-durable", default=None, help="Override the route.")
@click.option("--fanout/--no-fanout", default=None, help="Override the route.")
@click.pass_context
def publish_command(ctx: click.Context, type_name: str, data: str, subject: str | None,
                    durable: bool | None, fanout: bool | None) -> None:
    """Publish one event (DATA is a JSON object) and wait until Redis took it."""
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"must be a JSON object: {exc}", param_hint="DATA") from None
    settings = command_settings(ctx, without_broker="this event would reach no one")

    async def work(bus: Bus) -> Event:
        return await bus.publish(type_name, payload, subject=subject, durable=durable,
                                 fanout=fanout)

    event = run_command(with_bus(settings, work))
    click.echo(event.id)


@click.command("tail")
@click.argument("pattern", default="*")
@click.option("--count", type=int, default=None, help="Exit after this many events.")
@click.option("--timeout", type=float, default=None, help="Exit after this many seconds.")
@click.pass_context
def tail_command(ctx: click.Context, pattern: str, count: int | None,
                 timeout: float | None) -> None:
    """Print events matching PATTERN as JSON lines, live, from every process: fan-out
    events as they are published and new entries of the durable streams."""
    compile_pattern(pattern)
    settings = command_settings(ctx, without_broker="no other process could be seen")

    async def work(bus: Bus) -> None:
        done = asyncio.Event()
        seen: set[str] = set()
        printed = 0

        def show(event: Event) -> None:
            nonlocal printed
            if event.id in seen or done.is_set():
                return
            seen.add(event.id)
            click.echo(event.to_json())
            printed += 1
            if count is not None and printed >= count:
                done.set()

        bus.subscribe_remote(pattern, show)
        reader = asyncio.create_task(tail_streams(bus.streams, pattern, show, done))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        done.set()
        # The reader stops at its next turn (reads block 200 ms at most).
        await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 5)

    run_command(with_bus(settings, work))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Streams (length, groups, lag, pending, oldest pending age), dead letters, declared
    interest, sinks."""
    settings = command_settings(ctx, without_broker=NO_STREAMS)

    async def work(bus: Bus) -> dict[str, Any]:
        streams = [info.to_dict() for info in await bus.streams.streams()]
        interest = [d._asdict() for d in await bus.streams.interest()]
        return {"broker": bus.health(), "streams": streams, "interest": interest}

    report = run_command(with_bus(settings, work))
    report["cluster"] = cluster_nodes(settings.broker_url) if settings.broker_url else None
    report["sinks"] = _sink_report(settings)
    report["bridge"] = _bridge_report(settings)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True, default=str))
        return
    table = Table("stream", "length", "dead letters", "group", "consumers", "pending",
                  "lag", "oldest pending (s)", title="durable streams")
    for stream in report["streams"]:
        groups = stream["groups"] or [{}]
        for group in groups:
            table.add_row(stream["type"], str(stream["length"]), str(stream["dead_letters"]),
                          str(group.get("name", "-")), str(group.get("consumers", "-")),
                          str(group.get("pending", "-")), str(group.get("lag", "-")),
                          str(group.get("oldest_pending_age_s") or "-"))
    console.print(table)
    interest = Table("pattern", "consumer group", "declared", title="declared interest "
                     "(every publisher stores these types)")
    for row in report["interest"]:
        interest.add_row(row["pattern"], row["group"], time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(row["since"])))
    console.print(interest)
    if report["cluster"] is not None:
        _print_cluster(report["cluster"])
    sinks = Table("sink", "circuit", "queued (RQ)", "oldest queued (s)", "dead letters",
                  "last status", "last error", title="HTTP sinks")
    for sink in report["sinks"]:
        circuit = sink["circuit"]
        sinks.add_row(sink["name"], str(circuit.get("state", circuit)), str(sink["queued"]),
                      str(sink["oldest_queued_age_s"] or "-"), str(sink["dead_letters"]),
                      str(sink["last_status"] or "-"), str(sink["last_error"] or "-")[:60])
    console.print(sinks)
    if report["bridge"] is not None:
        _print_bridge(report["bridge"])
    console.print(f"fan-out listener: {report['broker'].get('listener')}")


def _print_cluster(nodes: list[dict[str, Any]]) -> None:
    table = Table("node", "role", "slots", "flags", "persistence", "maxmemory-policy",
                  "error", title="Redis Cluster")
    for node in nodes:
        table.add_row(node["node"], str(node.get("role", "-")), str(node.get("slots", "-")),
                      str(node.get("flags", "-")), str(node.get("persistence", "-")),
                      str(node.get("maxmemory_policy", "-")), str(node.get("error") or "-")[:60])
    console.print(table)


def _print_bridge(bridge: dict[str, Any]) -> None:
    instances = Table("instance", "connected", "published", "received", "rejected", "skipped",
                      "reconnects", "last error", title=f"MassTransit bridge (queue "
                      f"{bridge['queue']})")
    for item in bridge["instances"] or [{"instance": "none running"}]:
        instances.add_row(item["instance"], str(item.get("connected", "-")),
                          *(str(item.get(name, "-")) for name in
                            ("published", "received", "rejected", "skipped", "reconnects")),
                          str(item.get("last_error") or "-")[:60])
    console.print(instances)
    outbound = Table("outbound type", "exchange", "lag", "pending", "dead letters",
                     title="bridge outbound")
    for item in bridge["outbound"]:
        outbound.add_row(item["type"], item["exchange"], str(item["lag"]), str(item["pending"]),
                         str(item["dead_letters"]))
    console.print(outbound)


def _bridge_report(settings: BusSettings) -> dict[str, Any] | None:
    """The MassTransit bridge's report from Redis, or None without ``amqp_url``."""
    if not settings.amqp_url or not settings.broker_url:
        return None
    from mozaiks_bus.amqp import bridge_report  # noqa: PLC0415
    from mozaiks_bus.sinks import admin_client  # noqa: PLC0415

    try:
        with admin_client(settings, "read the bridge", on="broker") as client:
            return bridge_report(client, settings)
    except MozaiksBusError as exc:
        fail(exc)


def _sink_report(settings: BusSettings) -> list[dict[str, Any]]:
    """Sink states (circuit, RQ queue, dead letters) from Redis."""
    if not settings.sinks or not settings.broker_url:
        return []
    from mozaiks_bus.sinks import admin_client, sink_states  # noqa: PLC0415  # RQ: when asked

    try:
        with admin_client(settings) as client:
            return [state.to_dict() for state in sink_states(client, settings)]
    except MozaiksBusError as exc:
        fail(exc)


@click.command("replay")
@click.argument("type_name", metavar="TYPE")
@click.argument("group")
@click.option("--from-id", default=None, help="Re-deliver from this stream id on.")
@click.option("--from-time", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]), default=None,
              help="Re-deliver from this time on (e.g. 2026-11-27T10:00:00+00:00).")
@click.pass_context
def replay_command(ctx: click.Context, type_name: str, group: str, from_id: str | None,
                   from_time: datetime | None) -> None:
    """Move GROUP's position on TYPE's stream back (or forward) to an id or a time."""
    settings = command_settings(ctx, without_broker=NO_STREAMS)

    async def work(bus: Bus) -> str:
        return await bus.streams.replay_group(type_name, group, from_id=from_id,
                                              from_time=from_time)

    click.echo(f"{group} on {type_name} reads again after {run_command(with_bus(settings, work))}")


@click.command("doctor")
@click.pass_context
def doctor_command(ctx: click.Context) -> None:
    """Check Redis: reachable, version, persistence, noeviction, TLS/ACL hints."""
    settings = command_settings(ctx)
    checks = run_checks(settings)
    table = Table("check", "result", "found", "what to do", title="mozaiks-bus doctor")
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for check in checks:
        table.add_row(check.name, f"[{colours[check.status]}]{check.status}[/]",
                      check.found, check.hint)
    console.print(table)
    if any(check.status == "fail" for check in checks):
        ctx.exit(1)


@click.command("up")
@click.argument("app", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="API address.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where the stack keeps its data (the embedded Redis's AOF, "
              "its port, stack.json); default: the global --data-dir, else "
              "$MOZAIKS_BUS_HOME, else ./.mozaiks-bus.")
@click.option("--redis-port", type=click.IntRange(1, 65535), default=None,
              help="Port of the embedded Redis (default: the one this data directory "
              "remembers, else a free one; remembered from then on).")
@click.option("--worker-processes", default=1, show_default=True,
              type=click.IntRange(1, 32), help="RQ worker processes for HTTP sinks.")
@click.pass_context
def up_command(ctx: click.Context, app: str | None, host: str, port: int,
               data_dir: Path | None, redis_port: int | None, worker_processes: int) -> None:
    """Run everything on this host: Redis (embedded unless MOZAIKS_BROKER_URL is set), the
    API, the durable consumers of APP (module:attribute of a Bus) and the sink worker.

    Other commands run in this directory (or given the same --data-dir) use its broker."""
    from mozaiks_bus.ops.up import UpOptions, run_up  # noqa: PLC0415  # imports the server stack

    settings = load_cli_settings(ctx, discover=False)
    options = UpOptions(app=app, host=host, port=port,
                        data_dir=resolve_data_dir(data_dir) if data_dir is not None
                        else data_dir_of(ctx),
                        redis_port=redis_port, worker_processes=worker_processes,
                        config_path=ctx.find_root().params.get("config_path"))
    try:
        status = run_up(settings, options, echo=lambda line: click.echo(line, err=True))
    except MozaiksBusError as exc:
        fail(exc)
    ctx.exit(status)


@click.command("demo")
def demo_command() -> None:
    """A guided tour: every scope at work on an embedded stack, each step checked."""
    from mozaiks_bus.ops.demo import run_demo  # noqa: PLC0415

    status = run_demo(click.echo)
    if status:
        sys.exit(status)


BENCHES = ("bench_fanout", "bench_durable", "bench_sinks", "bench_server")


@click.command("bench")
@click.argument("names", nargs=-1, type=click.Choice([b.removeprefix("bench_")
                                                     for b in BENCHES]))
@click.option("--timeout", type=float, default=900.0, show_default=True,
              help="Seconds each benchmark may take.")
def bench_command(names: tuple[str, ...], timeout: float) -> None:
    """Run the bench/ suite (each against raw redis-py / httpx in the same run, printed
    as ratios). Needs a source checkout: the benchmarks are not installed."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / "__init__.py").exists():
        raise click.ClickException("bench/ not found: run from a source checkout "
                                   "(git clone ...; pip install -e .)")
    chosen = [f"bench_{name}" for name in names] or list(BENCHES)
    failed = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        overall = progress.add_task("benchmarks", total=len(chosen))
        for module in chosen:
            progress.update(overall, description=f"running {module}")
            result = subprocess.run(  # noqa: S603  # our own module, no shell
                [sys.executable, "-m", f"bench.{module}"], cwd=root, capture_output=True,
                text=True, timeout=timeout, check=False,
            )
            progress.console.print(result.stdout)
            if result.returncode != 0:
                failed.append(module)
                progress.console.print(f"[red]{module} failed[/]\n{result.stderr[-2000:]}")
            progress.advance(overall)
    if failed:
        raise click.ClickException(f"failed: {', '.join(failed)}")


COMMANDS: tuple[click.Command, ...] = (
    publish_command, tail_command, status_command, replay_command, doctor_command,
    up_command, bench_command, demo_command,
)
