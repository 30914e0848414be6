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
NO_DEAD_LETTERS = "there are no dead letters to read"


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters of the durable streams (or, with --sink, of an HTTP sink): list,
    replay, purge, by entry id or by event id."""


def _with_sinks(settings: BusSettings, work: Callable[[Any], T]) -> T:
    """Run ``work(sync_client)`` against the broker (the sink admin API is sync)."""
    from mozaiks_bus.sinks import admin_client  # noqa: PLC0415  # RQ is imported only when asked

    try:
        with admin_client(settings, "sink dead letters") as client:
            return work(client)
    except MozaiksBusError as exc:
        raise click.ClickException(str(exc)) from None


@dlq_group.command("list")
@click.argument("ids", nargs=-1)
@click.option("--type", "type_name", default=None, help="Only this event type.")
@click.option("--sink", default=None, help="Dead letters of this HTTP sink instead.")
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, ids: tuple[str, ...], type_name: str | None,
             sink: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, newest first (of the durable streams, or of an HTTP sink);
    IDS (entry ids or event ids) show only those."""
    settings = command_settings(ctx, without_broker=NO_DEAD_LETTERS)
    if sink is not None:
        from mozaiks_bus.sinks import find_dead_letters, list_dead_letters  # noqa: PLC0415

        rows = _with_sinks(settings, lambda client: [dl.to_dict() for dl in (
            [found for wanted in ids for found in
             find_dead_letters(client, settings, sink, wanted)] if ids
            else list_dead_letters(client, settings, sink, limit=limit))])
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
        if ids:
            if not type_name:
                raise click.UsageError("give --type TYPE with dead-letter ids")
            return [dl.to_dict() for wanted in ids
                    for dl in await bus.streams.find_dead_letters(type_name, wanted)]
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
    --sink) back to the sink's worker, with the same idempotency key. IDS are entry ids
    or event ids (an event id replays every dead letter of that event)."""
    if not ids and not replay_all:
        raise click.UsageError("give dead-letter ids (entry or event ids), or --all")
    settings = command_settings(ctx, without_broker=NO_DEAD_LETTERS)
    if is_sink:
        from mozaiks_bus.sinks import (  # noqa: PLC0415
            find_dead_letters,
            replay_dead_letter,
            replay_dead_letters,
        )

        def replay(client: Any) -> list[str]:
            if not ids:
                return replay_dead_letters(client, settings, type_name)
            chosen = [dl.id for wanted in ids
                      for dl in find_dead_letters(client, settings, type_name, wanted)]
            return [replay_dead_letter(client, settings, type_name, dl_id) for dl_id in chosen]

        done = _with_sinks(settings, replay)
        click.echo(f"replayed {len(done)} dead letter(s) of sink {type_name}")
        return

    async def work(bus: Bus) -> list[str]:
        streams = bus.streams
        chosen = [dl.id for wanted in ids
                  for dl in await streams.find_dead_letters(type_name, wanted)] if ids else \
            [dl.id for dl in await streams.dead_letters([type_name], limit=10_000)]
        return [await streams.replay_dead_letter(type_name, dl_id) for dl_id in chosen]

    replayed = run_command(with_bus(settings, work))
    click.echo(f"replayed {len(replayed)} dead letter(s) of {type_name}")


@dlq_group.command("purge")
@click.argument("type_name", metavar="TYPE_OR_SINK")
@click.argument("ids", nargs=-1)
@click.option("--sink", "is_sink", is_flag=True, help="TYPE_OR_SINK names an HTTP sink.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def dlq_purge(ctx: click.Context, type_name: str, ids: tuple[str, ...], is_sink: bool,
              yes: bool) -> None:
    """Delete dead letters of an event type (or, with --sink, of an HTTP sink): the
    ones IDS name (entry or event ids), else every one."""
    settings = command_settings(ctx, without_broker=NO_DEAD_LETTERS)  # before asking
    if not yes:
        what = ", ".join(ids) if ids else "every dead letter"
        click.confirm(f"Delete {what} of {type_name}?", abort=True)
    if is_sink:
        from mozaiks_bus.sinks import (  # noqa: PLC0415
            delete_dead_letter,
            find_dead_letters,
            purge_dead_letters,
        )

        def purge(client: Any) -> int:
            if not ids:
                return purge_dead_letters(client, settings, type_name)
            chosen = [dl.id for wanted in ids
                      for dl in find_dead_letters(client, settings, type_name, wanted)]
            return sum(delete_dead_letter(client, settings, type_name, dl_id)
                       for dl_id in chosen)

        count = _with_sinks(settings, purge)
        click.echo(f"deleted {count} dead letter(s) of sink {type_name}")
        return

    async def work(bus: Bus) -> int:
        streams = bus.streams
        letters = [dl for wanted in ids
                   for dl in await streams.find_dead_letters(type_name, wanted)] if ids else \
            await streams.dead_letters([type_name], limit=100_000)
        return sum([await streams.delete_dead_letter(type_name, dl.id) for dl in letters])

    click.echo(f"deleted {run_command(with_bus(settings, work))} dead letter(s) of {type_name}")
