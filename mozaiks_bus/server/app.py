"""The app factory: ``create_app(bus=None, settings=None) -> FastAPI``.

One :class:`~mozaiks_bus.Bus` per worker process: created from ``settings`` (default:
the environment and the TOML file) in the lifespan and started on the app's event loop,
stopped (drained) at shutdown. An injected ``bus`` is started on the app's loop too
(it must not be bound to another loop) and is left running at shutdown: its owner stops
it. The API needs a broker (``redis://...``; ``memory://`` serves one process only):
without one, :class:`~mozaiks_bus.errors.ConfigError` is raised at once, as it is for a
token whose environment variable is unset.

``uvicorn mozaiks_bus.server:create_app --factory`` works as well as ``mozaiks-bus
serve``; in both, uvicorn's log lines are scrubbed of ``token=`` values.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and style sheets from this
server (``/docs-assets/``, the files the ``fastapi-offline`` package installs), never
from a CDN: they work on an offline host, and no third-party script runs on the
console's origin.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from mozaiks_bus._version import __version__
from mozaiks_bus.bus import Bus
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.event import Event
from mozaiks_bus.routing import RECONNECTED_EVENT
from mozaiks_bus.server import admin, console, events, health, inputs, sink_admin, websocket
from mozaiks_bus.server.auth import Authenticator, install_secret_filter
from mozaiks_bus.server.dedupe import DedupeClaims
from mozaiks_bus.server.errors import install_error_handlers
from mozaiks_bus.server.limits import BodyLimit
from mozaiks_bus.server.metrics import HttpMetrics, ServerMetrics
from mozaiks_bus.server.state import ServerState, redis_client
from mozaiks_bus.settings import BusSettings, load_settings

__all__ = ["DOCS_ASSETS_URL", "create_app"]

logger = logging.getLogger("mozaiks_bus.server")
DOCS_ASSETS_URL = "/docs-assets"  # Swagger UI's and ReDoc's files, served from the package
DESCRIPTION = """\
Publish CloudEvents over HTTP (deduped by id, all or nothing), administer durable
streams, dead letters and sinks, and follow a chat over a WebSocket.

**Auth**: `Authorization: Bearer <token>`; each token has scopes (`publish`, `admin`,
`ui`) and publish patterns. `/healthz`, `/readyz` and `/metrics` need none.

**WebSocket** `GET /v1/ws/{chat_id}` (not listed below: OpenAPI has no WebSocket):
token as a header or `?token=`; `?last_event_id=` to resume. Frames are the platform's
UI envelope plus `id`; send `user.input.submit`, `ui_tool_response`, `client.resume`.
"""


def _pending_s(settings: BusSettings) -> float:
    return math.ceil(settings.publish_timeout_s) + 10.0


def _noop(_event: Event) -> None:
    """Keeps the pub/sub listener subscribed, so readiness reflects a live link."""


async def _record_sink_starts(state: ServerState) -> None:
    """Before this API is ready, fix where the configured sinks (and the MassTransit
    bridge, with ``amqp_url``) start, waiting for Redis if need be: an event it accepts
    once ready is never older than their start."""
    from mozaiks_bus.amqp.status import record_bridge_start  # noqa: PLC0415
    from mozaiks_bus.sinks import admin_client, record_sink_starts  # noqa: PLC0415  # RQ

    def record() -> None:
        with admin_client(state.settings, "record the sinks' start positions",
                          on="broker") as client:
            record_sink_starts(client, state.settings)
            if state.settings.amqp_url:
                record_bridge_start(client, state.settings)

    await state.bus.transport.availability.retry(
        lambda: asyncio.to_thread(record), what="the sinks' start positions")
    state.sinks_ready = True


def create_app(bus: Bus | None = None, settings: BusSettings | None = None) -> FastAPI:
    """The HTTP and WebSocket service (see the module docstring)."""
    if settings is None:
        settings = bus.config if bus is not None else load_settings()
    if (bus is not None and not bus.transport.remote) or (bus is None and not settings.broker_url):
        raise ConfigError("broker_url", "the HTTP API needs a broker: set MOZAIKS_BROKER_URL "
                          "(redis://...; memory:// for a single process)")
    auth = Authenticator(settings)
    metrics = ServerMetrics()
    install_secret_filter()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_bus = bus if bus is not None else Bus(config=settings)
        await the_bus.start()
        the_bus.subscribe_remote(RECONNECTED_EVENT, _noop)
        dedupe = DedupeClaims(redis_client(the_bus), settings.keys,
                              window_s=settings.api_dedupe_window_s,
                              pending_s=_pending_s(settings), send=the_bus.transport.execute)
        state = app.state.mozaiks = ServerState(
            the_bus, settings, auth, metrics, dedupe, owns_bus=bus is None,
            sinks_ready=not (settings.sinks or settings.amqp_url))
        starts = (asyncio.create_task(_record_sink_starts(state))
                  if settings.sinks or settings.amqp_url else None)
        if auth.open:
            logger.warning("no API token configured: every request from loopback is "
                           "allowed, and only loopback clients are served")
        try:
            yield
        finally:
            if starts is not None:
                starts.cancel()
                await asyncio.gather(starts, return_exceptions=True)
            the_bus.unsubscribe(RECONNECTED_EVENT, _noop)
            if bus is None:
                await the_bus.stop()

    app = FastAPIOffline(title="mozaiks-bus", version=__version__, description=DESCRIPTION,
                         lifespan=lifespan, static_url=DOCS_ASSETS_URL)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=metrics)
    app.include_router(health.router)
    app.include_router(events.build_router(settings.api_max_batch))
    app.include_router(inputs.router)
    app.include_router(admin.router)
    app.include_router(sink_admin.router)
    app.include_router(websocket.router)
    app.include_router(console.router)
    return app
