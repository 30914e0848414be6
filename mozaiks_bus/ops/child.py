"""The child processes of ``mozaiks-bus up``: started detached, watched, stopped in order.

A child is ``python -m mozaiks_bus.cli <args>`` in a session of its own (a Ctrl-C in the
terminal reaches ``up`` only, which stops the children itself, in order), killed by
Linux if ``up`` dies without stopping it (``PR_SET_PDEATHSIG``). Its stdout is the
terminal's; its stderr passes through a thread of ``up`` line by line, so ``up`` can
tell when a line it waits for (``ready_marker``) has been written while the user still
sees every line as it comes.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from mozaiks_bus._process import die_with_parent

__all__ = ["CHILD_STOP_TIMEOUT_S", "Child", "spawn_child", "stop_children"]

TAIL_LINES = 5
CHILD_STOP_TIMEOUT_S = 25.0
"""How long the children may drain after SIGTERM (both at once) before SIGKILL: short
enough that ``up`` exits within 30 s of a Ctrl-C."""


@dataclass
class Child:
    """A running child: its name in messages, its process, whether it said it is ready."""

    name: str
    proc: subprocess.Popen[bytes]
    ready: threading.Event = field(default_factory=threading.Event)
    relay: threading.Thread | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def last_lines(self) -> list[str]:
        """Its last lines of stderr (those with text), oldest first."""
        return [line for line in self.tail if line.strip()]


def spawn_child(name: str, args: Sequence[str], env: Mapping[str, str], *,
                ready_marker: bytes | None = None) -> Child:
    """Start ``mozaiks-bus <args>``; ready at once unless ``ready_marker`` is given (then
    when a line of its stderr contains it)."""
    proc = subprocess.Popen(  # noqa: S603  # our own command, no shell
        [sys.executable, "-m", "mozaiks_bus.cli", *args], env=dict(env),
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )
    child = Child(name, proc)
    if ready_marker is None:
        child.ready.set()
    assert proc.stderr is not None  # stderr=PIPE
    child.relay = threading.Thread(target=_relay, args=(proc.stderr, ready_marker, child),
                                   name=f"up-{name}-stderr", daemon=True)
    child.relay.start()
    return child


def _relay(stream: IO[bytes], marker: bytes | None, child: Child) -> None:
    """Copy ``stream`` to our stderr line by line until EOF, keeping the last lines and
    setting ``ready`` at the marker. Never stops reading early: a child blocked on a
    full pipe would hang."""
    out = getattr(sys.stderr, "buffer", None)
    for line in iter(stream.readline, b""):
        child.tail.append(line.decode(errors="replace").rstrip())
        if marker is not None and marker in line:
            child.ready.set()
        with contextlib.suppress(OSError, ValueError):  # our stderr closed: keep draining
            if out is not None:
                out.write(line)
                out.flush()
            else:
                sys.stderr.write(line.decode(errors="replace"))
    stream.close()


def stop_children(children: list[Child], echo: Callable[[str], None]) -> None:
    """SIGTERM to every live child, wait for all (bounded), SIGKILL the late ones, and
    let their last lines through."""
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
    for child in children:
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            echo(f"mozaiks-bus up: the {child.name} (pid {child.proc.pid}) did not stop "
                 f"within {CHILD_STOP_TIMEOUT_S:.0f} s: killed")
            child.proc.kill()
            child.proc.wait(5)
    for child in children:
        if child.relay is not None:
            child.relay.join(5)  # EOF once its last writer (its own children too) exits
