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

from ._version import __version__
from .errors import ConfigError
from .settings import BusSettings, load_settings

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


def main() -> None:
    """Console-script entry point (``mozaiks-bus``)."""
    cli.main(prog_name="mozaiks-bus")


if __name__ == "__main__":  # pragma: no cover
    main()
