"""Entry of the sink worker service: the same as ``mozaiks-bus worker [APP] [--processes N]``.

``python worker/main.py`` (or the container's command). Configuration: the environment
(``MOZAIKS_BROKER_URL``, the secrets each sink names) and ``MOZAIKS_BUS_CONFIG`` (see
``worker/mozaiks-bus.example.toml``). This folder is not a Python package on purpose:
nothing named ``worker`` is installed into site-packages.
"""

from __future__ import annotations

import sys

from mozaiks_bus.cli import cli

if __name__ == "__main__":
    cli.main(args=["worker", *sys.argv[1:]], prog_name="mozaiks-bus")
