"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import signal

__all__ = ["die_with_parent"]


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``).

    Meant as ``preexec_fn`` of a child process (it runs between fork and exec), or as
    the first call of a multiprocessing child; a no-op where prctl is missing. Linux
    sends the signal when the *thread* that forked the child exits: fork from the main
    thread (or a thread that lives as long as the child should)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
