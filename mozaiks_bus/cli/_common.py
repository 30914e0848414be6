"""What every ``mozaiks-bus`` command shares: settings, errors to exit codes, output.

Exit codes: 0 success, 1 failure of the command (a :class:`MozaiksBusError`), 2 bad
usage or configuration (a :class:`ConfigError`); the message goes to stderr as
``mozaiks-bus: <message>``, never a traceback or a raw Redis error.
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
from mozaiks_bus.settings import BusSettings, load_settings

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "command_settings",
    "console",
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


def load_cli_settings(ctx: click.Context, **overrides: Any) -> BusSettings:
    """Settings for a command; on a ConfigError print it and exit with status 2."""
    config_path: Path | None = ctx.find_root().params.get("config_path")
    try:
        return load_settings(config_path=config_path, **overrides)
    except ConfigError as exc:
        fail(exc, EXIT_CONFIG)


def fail(error: BaseException | str, code: int = EXIT_FAILED) -> NoReturn:
    """Print ``mozaiks-bus: <error>`` to stderr and exit with ``code``."""
    click.echo(f"mozaiks-bus: {error}", err=True)
    sys.exit(code)


def command_settings(ctx: click.Context) -> BusSettings:
    """The settings of the running command (exit 2 on a bad configuration)."""
    return load_cli_settings(ctx)


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
