"""``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` (no token needed).

* ``/healthz``: 200 while the process serves HTTP (liveness; touches nothing).
* ``/readyz``: 200 when Redis answers PING within ``READY_PING_TIMEOUT_S`` *and* this
  worker's pub/sub listener (which carries fan-out, chat frames and input routing) is
  connected and receiving; else 503 + Retry-After, with the failing check named.
* ``/metrics``: Prometheus text (see :mod:`.metrics`); stream figures are read from
  Redis at scrape time, bounded by ``METRICS_STREAMS_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mozaiks_bus.connection.redis_errors import ping
from mozaiks_bus.durable.streams import StreamInfo
from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.server.admin import sink_states_of
from mozaiks_bus.server.metrics import CONTENT_TYPE, render
from mozaiks_bus.server.state import get_state

__all__ = ["METRICS_STREAMS_TIMEOUT_S", "READY_PING_TIMEOUT_S", "router"]

READY_PING_TIMEOUT_S = 1.0
METRICS_STREAMS_TIMEOUT_S = 2.0
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves HTTP")
async def healthz() -> dict[str, str]:
    """Always ``{"status": "ok"}``."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Redis answers and the listener receives",
            responses={503: {"description": "not ready (see checks)"}})
async def readyz(request: Request) -> JSONResponse:
    """200 ``{"status": "ready", "checks": {...}}`` or 503 naming what failed."""
    state = get_state(request)
    checks: dict[str, Any] = {}
    try:
        rtt = await asyncio.wait_for(ping(state.redis), READY_PING_TIMEOUT_S)
        checks["redis"] = {"ok": True, "rtt_ms": round(rtt * 1000, 3)}
    except (MozaiksBusError, TimeoutError) as exc:
        checks["redis"] = {"ok": False, "error": str(exc) or "PING timed out"}
    if state.settings.sinks:
        checks["sinks"] = {"ok": state.sinks_ready}  # start positions fixed (see app.py)
    health = state.bus.health()
    listener = health.get("listener")
    checks["listener"] = {"ok": listener == "receiving" and not health.get("closed"),
                          "status": listener}
    ready = all(check["ok"] for check in checks.values())
    if ready:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse({"status": "not_ready", "checks": checks}, status_code=503,
                        headers={"Retry-After": str(state.settings.api_retry_after_s)})


@router.get("/metrics", summary="Prometheus metrics of this worker",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "exposition"}})
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition."""
    state = get_state(request)
    streams: list[StreamInfo] | None
    try:
        streams = await asyncio.wait_for(state.bus.streams.streams(), METRICS_STREAMS_TIMEOUT_S)
    except (MozaiksBusError, TimeoutError):
        streams = None
    sinks: list[dict[str, Any]] | None = None
    if state.settings.sinks:
        try:
            sinks = await asyncio.wait_for(asyncio.to_thread(sink_states_of, state),
                                           METRICS_STREAMS_TIMEOUT_S)
        except (MozaiksBusError, TimeoutError):
            sinks = None
    body = render(state.metrics, state.bus.stats.snapshot(), streams, state.bus.health(),
                  sinks)
    return Response(body, media_type=CONTENT_TYPE)
