"""``mozaiks-bus dlq``: dead letters of the durable streams and of the HTTP sinks.

``list`` (newest first), ``replay`` (a stream's dead letter goes back for the group that
failed it only; a sink's goes back to the sink worker with the same idempotency key) and
``purge``. Sink dead letters are addressed with ``--sink``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.table import Table

from mozaiks_bus.bus import Bus
from mozaiks_bus.cli._common import command_settings, console, run_command, with_bus
from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.settings import BusSettings

__all__ = ["dlq_group"]

T = TypeVar("T")


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters of the durable streams: list, replay, purge."""


def _with_sinks(settings: BusSettings, work: Callable[[Any], T]) -> T:
    """Run ``work(sync_client)`` against the broker (the sink admin API is sync)."""
    from mozaiks_bus.sinks import admin_client  # noqa: PLC0415  # RQ is imported only when asked

    try:
        with admin_client(settings, "sink dead letters") as client:
            return work(client)
    except MozaiksBusError as exc:
        raise click.ClickException(str(exc)) from None


@dlq_group.command("list")
@click.option("--type", "type_name", default=None, help="Only this event type.")
@click.option("--sink", default=None, help="Dead letters of this HTTP sink instead.")
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, type_name: str | None, sink: str | None, limit: int,
             as_json: bool) -> None:
    """List dead letters, newest first (of the durable streams, or of an HTTP sink)."""
    settings = command_settings(ctx)
    if sink is not None:
        from mozaiks_bus.sinks import list_dead_letters  # noqa: PLC0415

        rows = _with_sinks(settings, lambda client: [
            dl.to_dict() for dl in list_dead_letters(client, settings, sink, limit=limit)])
        if as_json:
            click.echo(json.dumps(rows, indent=2, sort_keys=True))
            return
        table = Table("id", "sink", "status", "attempts", "error", title=f"{sink} dead letters")
        for row in rows:
            table.add_row(str(row["id"]), sink, str(row["status"]), str(row["attempts"]),
                          str(row["error"])[:80])
        console.print(table)
        return

    async def work(bus: Bus) -> list[dict[str, object]]:
        types = [type_name] if type_name else None
        return [dl.to_dict() for dl in await bus.streams.dead_letters(types, limit=limit)]

    letters = run_command(with_bus(settings, work))
    if as_json:
        click.echo(json.dumps(letters, indent=2, sort_keys=True))
        return
    table = Table("id", "type", "group", "deliveries", "error", title="dead letters")
    for letter in letters:
        table.add_row(str(letter["id"]), str(letter["type"]), str(letter["group"]),
                      str(letter["deliveries"]), str(letter["error"])[:80])
    console.print(table)


@dlq_group.command("replay")
@click.argument("type_name", metavar="TYPE_OR_SINK")
@click.argument("ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Every dead letter of it.")
@click.option("--sink", "is_sink", is_flag=True, help="TYPE_OR_SINK names an HTTP sink.")
@click.pass_context
def dlq_replay(ctx: click.Context, type_name: str, ids: tuple[str, ...],
               replay_all: bool, is_sink: bool) -> None:
    """Put dead letters back: on their stream for the group that failed them, or (with
    --sink) back to the sink's worker, with the same idempotency key."""
    if not ids and not replay_all:
        raise click.UsageError("give dead-letter ids, or --all")
    settings = command_settings(ctx)
    if is_sink:
        from mozaiks_bus.sinks import replay_dead_letter, replay_dead_letters  # noqa: PLC0415

        done = _with_sinks(settings, lambda client: (
            [replay_dead_letter(client, settings, type_name, dl_id) for dl_id in ids]
            if ids else replay_dead_letters(client, settings, type_name)))
        click.echo(f"replayed {len(done)} dead letter(s) of sink {type_name}")
        return

    async def work(bus: Bus) -> list[str]:
        chosen = list(ids) or [dl.id for dl in
                               await bus.streams.dead_letters([type_name], limit=10_000)]
        return [await bus.streams.replay_dead_letter(type_name, dl_id) for dl_id in chosen]

    replayed = run_command(with_bus(settings, work))
    click.echo(f"replayed {len(replayed)} dead letter(s) of {type_name}")


@dlq_group.command("purge")
@click.argument("type_name", metavar="TYPE_OR_SINK")
@click.option("--sink", "is_sink", is_flag=True, help="TYPE_OR_SINK names an HTTP sink.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def dlq_purge(ctx: click.Context, type_name: str, is_sink: bool, yes: bool) -> None:
    """Delete every dead letter of an event type (or, with --sink, of an HTTP sink)."""
    if not yes:
        click.confirm(f"Delete every dead letter of {type_name}?", abort=True)
    settings = command_settings(ctx)
    if is_sink:
        from mozaiks_bus.sinks import purge_dead_letters  # noqa: PLC0415

        count = _with_sinks(settings, lambda client: purge_dead_letters(client, settings,
                                                                         type_name))
        click.echo(f"deleted {count} dead letter(s) of sink {type_name}")
        return

    async def work(bus: Bus) -> int:
        letters = await bus.streams.dead_letters([type_name], limit=100_000)
        return sum([await bus.streams.delete_dead_letter(type_name, dl.id) for dl in letters])

    click.echo(f"deleted {run_command(with_bus(settings, work))} dead letter(s) of {type_name}")
