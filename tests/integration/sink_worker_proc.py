"""Run the sink worker service as a real process, for tests/integration/test_sinks*.py.

``python -m tests.integration.sink_worker_proc CONFIG.toml '{"processes": 2, ...}'``
loads the settings from CONFIG (secrets come from the environment, as in production)
and runs :func:`mozaiks_bus.sinks.worker.run_worker` with those :class:`WorkerOptions`
(small heartbeat and dead-after times make crash detection fast in tests).
"""

from __future__ import annotations

import json
import sys

from mozaiks_bus.settings import load_settings
from mozaiks_bus.sinks.worker import WorkerOptions, run_worker


def main(argv: list[str]) -> None:
    settings = load_settings(config_path=argv[0])
    options = WorkerOptions(**json.loads(argv[1] if len(argv) > 1 else "{}"))
    run_worker(settings, options)


if __name__ == "__main__":
    main(sys.argv[1:])
