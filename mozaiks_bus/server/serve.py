"""``mozaiks-bus serve``: the API under uvicorn, safe by default.

Before anything binds: the settings are checked as the app will use them (a broker URL,
every token's environment variable set); with no token configured only a loopback
``host`` is accepted (and a notice says the API is open to loopback clients), any other
is refused with :class:`ServeRefused`. Each uvicorn worker builds its own app (and Bus)
from the same settings (``--config`` is passed on as ``MOZAIKS_BUS_CONFIG``). uvicorn's
access log is off (our metrics count requests) and its other lines are scrubbed of
``token=`` values; WebSocket messages are bounded by ``api_max_body_bytes``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.server.auth import Authenticator, install_secret_filter, is_loopback
from mozaiks_bus.settings import CONFIG_ENV, BusSettings

__all__ = ["ServeRefused", "check_bind", "serve"]


class ServeRefused(MozaiksBusError):
    """The server would be exposed without a token."""


def check_bind(settings: BusSettings, host: str) -> str | None:
    """None if ``host`` may be bound; else why not. Also checks broker and tokens."""
    from mozaiks_bus.server.app import create_app  # noqa: PLC0415

    create_app(settings=settings)  # raises ConfigError for a missing broker or token
    if settings.api_tokens:
        return None
    if is_loopback(host):
        return None
    return (f"refusing to bind {host}: no API token is configured (api_tokens), so the "
            "API would be open to anyone who can reach it; bind 127.0.0.1 or configure "
            "a token")


def serve(settings: BusSettings, *, host: str, port: int, workers: int, log_level: str,
          config_path: Path | None = None, echo: Callable[[str], None] = print) -> None:
    """Check, then run uvicorn until it is stopped."""
    import uvicorn  # noqa: PLC0415

    refusal = check_bind(settings, host)
    if refusal is not None:
        raise ServeRefused(refusal)
    if not Authenticator(settings).open:
        echo(f"mozaiks-bus: serving on http://{host}:{port} ({workers} worker(s)); "
             f"{len(settings.api_tokens)} token(s) configured")
    else:
        echo(f"mozaiks-bus: no API token configured: serving loopback only "
             f"(http://{host}:{port}); every local request is allowed")
    if config_path is not None:
        os.environ[CONFIG_ENV] = str(config_path)
    install_secret_filter()
    uvicorn.run(
        "mozaiks_bus.server:create_app", factory=True, host=host, port=port,
        workers=workers, log_level=log_level, access_log=False, server_header=False,
        ws_max_size=settings.api_max_body_bytes, lifespan="on",
    )
