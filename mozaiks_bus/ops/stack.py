"""Where a running ``mozaiks-bus up`` is: one data directory, two small files in it.

Decisions
---------
* **The data directory names a stack.** It is ``--data-dir`` (the global option, or
  ``up``'s own), else ``$MOZAIKS_BUS_HOME``, else ``./.mozaiks-bus`` under the current
  directory (not searched for in parent directories: a stack belongs to the directory it
  was started in, as ``./mozaiks-bus.toml`` does).
* ``<data-dir>/stack.json`` says where the stack's broker and API are
  (``{"broker_url", "api_url", "pid", "data_dir"}``). ``up`` writes it atomically (a
  temporary file renamed over it) once the API answers ``/readyz`` and the worker is
  ready, and removes it first thing when it stops, so a command never finds a stack
  that is not serving. A file whose ``pid`` is no longer alive (``up`` was killed) is
  stale: ignored by readers, replaced by the next ``up``.
* ``<data-dir>/redis-port`` remembers the embedded Redis's port: chosen free the first
  time, reused on every restart (a restarted stack is found at the same URL by clients
  that kept it), replaced when ``up --redis-port N`` asks for another.
* A CLI command with no broker configured (``MOZAIKS_BROKER_URL`` or ``broker_url`` in
  the TOML always win) uses the broker of the live stack of its data directory
  (:func:`discovered_broker`); without one, commands that need a broker refuse in one
  line (:func:`no_broker_message`) rather than publish to nobody.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from mozaiks_bus.settings.env_names import HOME_ENV

__all__ = [
    "DEFAULT_DATA_DIR",
    "HOME_ENV",
    "PORT_FILE",
    "STACK_FILE",
    "Stack",
    "discovered_broker",
    "find_stack",
    "no_broker_message",
    "pid_alive",
    "read_port",
    "remove_stack",
    "resolve_data_dir",
    "write_port",
    "write_stack",
]

DEFAULT_DATA_DIR = ".mozaiks-bus"
STACK_FILE = "stack.json"
PORT_FILE = "redis-port"


@dataclass(frozen=True, slots=True)
class Stack:
    """A running ``up``: its broker, its API's base URL, its pid and data directory."""

    broker_url: str
    api_url: str
    pid: int
    data_dir: str


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None,
                     env: Mapping[str, str] | None = None) -> Path:
    """``explicit``, else ``$MOZAIKS_BUS_HOME``, else ``./.mozaiks-bus`` (absolute)."""
    environ = os.environ if env is None else env
    chosen = explicit if explicit is not None else environ.get(HOME_ENV) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_stack(data_dir: Path) -> Stack | None:
    """The live stack recorded in ``data_dir``, or None (no file, unreadable, or stale)."""
    stack = _read_stack(data_dir)
    return stack if stack is not None and pid_alive(stack.pid) else None


def _read_stack(data_dir: Path) -> Stack | None:
    try:
        data = json.loads((data_dir / STACK_FILE).read_text(encoding="utf-8"))
        return Stack(broker_url=str(data["broker_url"]), api_url=str(data["api_url"]),
                     pid=int(data["pid"]), data_dir=str(data.get("data_dir", data_dir)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_stack(stack: Stack) -> None:
    """Record ``stack`` in its data directory, atomically."""
    _write_atomic(Path(stack.data_dir) / STACK_FILE, json.dumps(asdict(stack), indent=2) + "\n")


def remove_stack(data_dir: Path, pid: int) -> None:
    """Remove the record if it is ``pid``'s (never another live ``up``'s)."""
    stack = _read_stack(data_dir)
    if stack is not None and stack.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / STACK_FILE).unlink()


def read_port(data_dir: Path) -> int | None:
    """The remembered embedded Redis port, or None (none yet, or not a port)."""
    try:
        port = int((data_dir / PORT_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def write_port(data_dir: Path, port: int) -> None:
    """Remember ``port`` for the next start."""
    _write_atomic(data_dir / PORT_FILE, f"{port}\n")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def discovered_broker(data_dir: Path) -> str | None:
    """The broker URL of the live stack in ``data_dir``, or None."""
    stack = find_stack(data_dir)
    return stack.broker_url if stack is not None else None


def no_broker_message(data_dir: Path, consequence: str) -> str:
    """One line: no broker configured and no live stack, what that means, what to do."""
    stale = _read_stack(data_dir)
    found = f"the `mozaiks-bus up` recorded in {data_dir} (pid {stale.pid}) is gone" \
        if stale is not None else f"no `mozaiks-bus up` runs with the data directory {data_dir}"
    return (f"no broker: {consequence}. MOZAIKS_BROKER_URL is not set and {found}. Set "
            "MOZAIKS_BROKER_URL=redis://HOST:6379/0, or start `mozaiks-bus up` in this "
            f"directory, or point --data-dir (or {HOME_ENV}) at the data directory of a "
            "running one")
