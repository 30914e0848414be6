"""What every ``mozaiks-bus`` command shares: settings, errors to exit codes, output.

Exit codes: 0 success, 1 failure of the command (a :class:`MozaiksBusError`), 2 bad
usage or configuration (a :class:`ConfigError`); the message goes to stderr as
``mozaiks-bus: <message>``, never a traceback or a raw Redis error.

The broker: ``MOZAIKS_BROKER_URL`` (or ``broker_url`` in the TOML) when set; else the one
of the ``mozaiks-bus up`` running in the data directory (``--data-dir``, else
``$MOZAIKS_BUS_HOME``, else ``./.mozaiks-bus``; see :mod:`mozaiks_bus.ops.stack`). A
command that needs a broker and has none exits 2 with one line saying what would be
lost and how to fix it, instead of publishing to nobody.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from mozaiks_bus.bus import Bus
from mozaiks_bus.errors import ConfigError, MozaiksBusError
from mozaiks_bus.ops.stack import discovered_broker, no_broker_message, resolve_data_dir
from mozaiks_bus.settings import BusSettings, load_settings

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "command_settings",
    "console",
    "data_dir_of",
    "dump_json",
    "fail",
    "load_cli_settings",
    "run_command",
    "with_bus",
]

T = TypeVar("T")
EXIT_FAILED = 1
console = Console()

EXIT_CONFIG = 2


def dump_json(data: Any) -> str:
    """Pretty, stable JSON: two-space indent, sorted keys, non-ASCII kept."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def data_dir_of(ctx: click.Context) -> Path:
    """The data directory of the stack this command talks to (absolute)."""
    return resolve_data_dir(ctx.find_root().params.get("data_dir"))


def load_cli_settings(ctx: click.Context, *, discover: bool = True,
                      **overrides: Any) -> BusSettings:
    """Settings for a command; on a ConfigError print it and exit with status 2.

    With no broker configured and ``discover``, the broker of the live ``up`` in the
    data directory fills in (``up`` itself passes ``discover=False``)."""
    config_path: Path | None = ctx.find_root().params.get("config_path")
    try:
        settings = load_settings(config_path=config_path, **overrides)
    except ConfigError as exc:
        fail(exc, EXIT_CONFIG)
    if settings.broker_url is None and discover:
        found = discovered_broker(data_dir_of(ctx))
        if found is not None:  # written by `up` (a URL it started); no re-validation needed
            settings = settings.model_copy(update={"broker_url": found})
    return settings


def fail(error: BaseException | str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``mozaiks-bus: <error>`` to stderr and exit with ``code``."""
    click.echo(f"mozaiks-bus: {error}", err=True)
    sys.exit(code)


def command_settings(ctx: click.Context, *, without_broker: str | None = None
                     ) -> BusSettings:
    """The settings of the running command (exit 2 on a bad configuration).

    ``without_broker`` says what would happen with no broker (``"this event would reach
    no one"``): given, a command left with no broker exits 2 with that in one line."""
    settings = load_cli_settings(ctx)
    if settings.broker_url is None and without_broker is not None:
        fail(no_broker_message(data_dir_of(ctx), without_broker), EXIT_CONFIG)
    return settings


def run_command(coro: Awaitable[T]) -> T:
    """Run a command's coroutine; a MozaiksBusError becomes exit 1 with its message."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except ConfigError as exc:
        fail(exc, EXIT_CONFIG)
    except MozaiksBusError as exc:
        fail(exc)


async def with_bus(settings: BusSettings, work: Callable[[Bus], Awaitable[T]]) -> T:
    """Run ``work`` with a started bus, stopped afterwards."""
    bus = Bus(config=settings)
    async with bus:
        return await work(bus)
