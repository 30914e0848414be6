"""The service commands: ``config``, ``schema``, ``serve`` and ``worker``."""

from __future__ import annotations

from pathlib import Path

import click

from mozaiks_bus.cli._common import EXIT_CONFIG, dump_json, fail, load_cli_settings
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.settings.env_names import find_misspellings, reported_by_caller

__all__ = ["config_command", "schema_command", "serve_command", "worker_command"]


@click.command("config")
@click.pass_context
def config_command(ctx: click.Context) -> None:
    """Print the effective settings as JSON (passwords masked); on stderr, the config
    file read and every variable that looks like a misspelled MOZAIKS_* one."""
    with reported_by_caller():
        settings = load_cli_settings(ctx)
    source = settings.config_file or "none (environment and defaults only)"
    click.echo(f"config file: {source}", err=True)
    for found in find_misspellings(settings):
        click.echo(f"warning: {found}", err=True)
    click.echo(dump_json(settings.redacted_dump()))


@click.command("schema")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default="-",
    show_default=True,
    help="Write the schema to this file ('-' for stdout).",
)
def schema_command(output: str) -> None:
    """Print the JSON Schema of the event catalog."""
    from mozaiks_bus.catalog import CATALOG  # noqa: PLC0415  (imported only when asked)

    with click.open_file(output, "w", encoding="utf-8") as stream:
        stream.write(dump_json(CATALOG.json_schema()) + "\n")


@click.command("worker")
@click.argument("app", required=False)
@click.option("--processes", "-p", type=click.IntRange(min=1), default=2, show_default=True,
              help="RQ worker processes (HTTP attempts run one at a time in each).")
@click.option("--check", is_flag=True,
              help="Do not run: exit 0 if a worker of this install runs on this host "
              "(its liveness key in Redis is fresh and its pid alive), else 1. For "
              "container health checks.")
@click.pass_context
def worker_command(ctx: click.Context, app: str | None, processes: int, check: bool) -> None:
    """Run the HTTP sink worker (dispatcher, RQ workers, scheduler) until SIGINT/SIGTERM.

    APP (module:attribute of a Bus with consumers) runs alongside, and the MassTransit
    bridge when MOZAIKS_AMQP_URL (amqp_url) is set.
    """
    from mozaiks_bus.errors import MozaiksBusError  # noqa: PLC0415
    from mozaiks_bus.sinks.worker import WorkerOptions, run_worker  # noqa: PLC0415

    settings = load_cli_settings(ctx)
    if check:
        _check_worker(ctx, settings)
    bus = None
    if app is not None:
        import importlib  # noqa: PLC0415
        import sys  # noqa: PLC0415

        from mozaiks_bus.bus import Bus  # noqa: PLC0415

        if "" not in sys.path:  # APP is looked up from the working directory, as uvicorn does
            sys.path.insert(0, "")
        module_name, _, attribute = app.partition(":")
        bus = getattr(importlib.import_module(module_name), attribute or "bus", None)
        if not isinstance(bus, Bus):
            raise click.BadParameter(f"{app} is not a mozaiks_bus.Bus", param_hint="APP")
    companions = None
    if settings.amqp_url:
        from mozaiks_bus.amqp import load_bridge, require_amqp  # noqa: PLC0415

        try:
            require_amqp()
        except ConfigError as exc:
            fail(exc, EXIT_CONFIG)
        companions = lambda: (load_bridge(settings),)  # noqa: E731  # built on the loop
    try:
        run_worker(settings, WorkerOptions(processes=processes), app=bus, companions=companions)
    except ConfigError as exc:
        fail(exc, EXIT_CONFIG)
    except MozaiksBusError as exc:
        fail(exc)


def _check_worker(ctx: click.Context, settings: BusSettings) -> None:
    from mozaiks_bus.ops.worker_check import check_worker  # noqa: PLC0415

    try:
        result = check_worker(settings)
    except ConfigError as exc:
        fail(exc, EXIT_CONFIG)
    click.echo(result.message, err=not result.alive)
    ctx.exit(0 if result.alive else 1)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (each runs its own Bus).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, workers: int,
                  log_level: str) -> None:
    """Run the HTTP and WebSocket API (uvicorn)."""
    from mozaiks_bus.server.serve import ServeRefused, serve  # noqa: PLC0415  (heavy)

    settings = load_cli_settings(ctx)
    config_path: Path | None = ctx.find_root().params.get("config_path")
    try:
        serve(settings, host=host, port=port, workers=workers, log_level=log_level,
              config_path=config_path, echo=lambda line: click.echo(line, err=True))
    except (ConfigError, ServeRefused) as exc:
        fail(exc, EXIT_CONFIG)
