"""The ``mozaiks-bus`` command line.

Contract
--------
``mozaiks-bus [--config FILE] COMMAND``; ``--version`` prints ``mozaiks-bus <version>``.
``--config`` replaces ``$MOZAIKS_BUS_CONFIG`` / ``./mozaiks-bus.toml`` for every command.

Commands:

``config``
    Load the settings (see :mod:`mozaiks_bus.settings`) and print them as JSON, with
    the broker password masked; the file they came from goes to stderr.
``schema [--output FILE]``
    Print the JSON Schema of the event catalog (sorted keys) to stdout or ``FILE``.
``serve [--host 127.0.0.1] [--port 8080] [--workers 1] [--log-level info]``
    Run the HTTP and WebSocket API (:mod:`mozaiks_bus.server`) under uvicorn, one Bus
    per worker process. With no ``api_tokens`` configured it serves loopback only and
    says so on stderr; a non-loopback ``--host`` without tokens is refused (exit 2), as
    is a missing broker URL or a token whose environment variable is unset.
``worker [APP] [--processes N]``
    The sink dispatcher, the RQ workers and scheduler (:mod:`mozaiks_bus.sinks`), and
    the durable consumers of APP (``module:attribute`` of a Bus), until SIGINT/SIGTERM.

The operator commands (``up``, ``publish``, ``tail``, ``status``, ``dlq``, ``replay``,
``doctor``, ``demo``, ``bench``) live in :mod:`mozaiks_bus.cli.ops`.

Exit codes: 0 success, 1 failure of the command, 2 bad usage or bad configuration (the
:class:`~mozaiks_bus.errors.ConfigError` message goes to stderr).

Each command is one small function registered on :func:`cli`; settings are loaded
through :func:`load_cli_settings` so every command reports configuration errors alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mozaiks_bus._version import __version__
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import BusSettings, load_settings

__all__ = ["EXIT_CONFIG", "cli", "dump_json", "load_cli_settings", "main"]

EXIT_CONFIG = 2


def dump_json(data: Any) -> str:
    """Pretty, stable JSON: two-space indent, sorted keys, non-ASCII kept."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def load_cli_settings(ctx: click.Context, **overrides: Any) -> BusSettings:
    """Settings for a command; on a ConfigError print it and exit with status 2."""
    config_path: Path | None = ctx.find_root().params.get("config_path")
    try:
        return load_settings(config_path=config_path, **overrides)
    except ConfigError as exc:
        click.echo(f"mozaiks-bus: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", prog_name="mozaiks-bus", message="%(prog)s %(version)s"
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML config file (default: $MOZAIKS_BUS_CONFIG, else ./mozaiks-bus.toml).",
)
def cli(config_path: Path | None) -> None:
    """mozaiks-bus: local, fan-out, durable, HTTP and UI events on one Redis."""


@cli.command("config")
@click.pass_context
def config_command(ctx: click.Context) -> None:
    """Print the effective settings as JSON (passwords masked)."""
    settings = load_cli_settings(ctx)
    source = settings.config_file or "none (environment and defaults only)"
    click.echo(f"config file: {source}", err=True)
    click.echo(dump_json(settings.redacted_dump()))


@cli.command("schema")
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


@cli.command("worker")
@click.argument("app", required=False)
@click.option("--processes", "-p", type=click.IntRange(min=1), default=2, show_default=True,
              help="RQ worker processes (HTTP attempts run one at a time in each).")
@click.pass_context
def worker_command(ctx: click.Context, app: str | None, processes: int) -> None:
    """Run the HTTP sink worker (dispatcher, RQ workers, scheduler) until SIGINT/SIGTERM.

    APP (module:attribute of a Bus with consumers) runs alongside.
    """
    from mozaiks_bus.errors import MozaiksBusError  # noqa: PLC0415
    from mozaiks_bus.sinks.worker import WorkerOptions, run_worker  # noqa: PLC0415

    settings = load_cli_settings(ctx)
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
    try:
        run_worker(settings, WorkerOptions(processes=processes), app=bus)
    except ConfigError as exc:
        click.echo(f"mozaiks-bus: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    except MozaiksBusError as exc:
        click.echo(f"mozaiks-bus: {exc}", err=True)
        ctx.exit(1)


@cli.command("serve")
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
        click.echo(f"mozaiks-bus: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)


def main() -> None:
    """Console-script entry point (``mozaiks-bus``)."""
    cli.main(prog_name="mozaiks-bus")


from mozaiks_bus.cli.ops import register as _register_operator_commands  # noqa: E402

_register_operator_commands(cli)

if __name__ == "__main__":  # pragma: no cover
    main()
