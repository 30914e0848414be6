"""The ``mozaiks-bus`` command line.

Contract
--------
``mozaiks-bus [--config FILE] [--data-dir DIR] COMMAND``; ``--version`` prints
``mozaiks-bus <version>``. ``--config`` replaces ``$MOZAIKS_BUS_CONFIG`` /
``./mozaiks-bus.toml`` for every command. ``--data-dir`` replaces ``$MOZAIKS_BUS_HOME`` /
``./.mozaiks-bus``: the data directory of ``up``, and where every other command looks
for a running ``up`` whose broker it uses when ``MOZAIKS_BROKER_URL`` is unset (see
:mod:`mozaiks_bus.ops.stack`).

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

The operator commands (``up``, ``publish``, ``tail``, ``status``, ``replay``,
``doctor``, ``demo``, ``bench``) live in :mod:`mozaiks_bus.cli.ops`, ``dlq`` in
:mod:`mozaiks_bus.cli.dlq`, the service commands in :mod:`mozaiks_bus.cli.service`.

Exit codes: 0 success, 1 failure of the command, 2 bad usage or bad configuration (the
:class:`~mozaiks_bus.errors.ConfigError` message goes to stderr).

Each command is one small function in a leaf module that imports only
:mod:`mozaiks_bus.cli._common` (settings loading, errors to exit codes, JSON output);
this module makes the group and adds them, so no leaf imports it.
"""

from __future__ import annotations

from pathlib import Path

import click

from mozaiks_bus._version import __version__
from mozaiks_bus.cli import dlq, ops, prove, service
from mozaiks_bus.cli._common import EXIT_CONFIG, dump_json, load_cli_settings

__all__ = ["EXIT_CONFIG", "cli", "dump_json", "load_cli_settings", "main"]


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
@click.option(
    "--data-dir",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory of `up` (default: $MOZAIKS_BUS_HOME, else ./.mozaiks-bus); "
         "other commands use the broker of the `up` running there when "
         "MOZAIKS_BROKER_URL is unset.",
)
def cli(config_path: Path | None, data_dir: Path | None) -> None:
    """mozaiks-bus: local, fan-out, durable, HTTP and UI events on one Redis."""


def main() -> None:
    """Console-script entry point (``mozaiks-bus``)."""
    cli.main(prog_name="mozaiks-bus")


for _command in (
    service.config_command, service.schema_command, service.worker_command,
    service.serve_command, *ops.COMMANDS, dlq.dlq_group, prove.prove_command,
):
    cli.add_command(_command)
