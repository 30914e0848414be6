"""Prometheus figures of one API worker, built at scrape time.

``GET /metrics`` renders, in the Prometheus text format:

* the bus counters of this worker (``bus.stats``): ``mozaiks_bus_published_total``,
  ``..._delivered_total``, ``..._failed_total``, ``..._dropped_total{where=local|remote}``,
  ``..._retried_total``, ``..._dead_lettered_total``, ``..._reconnects_total`` and every
  other counter the bus keeps, plus ``mozaiks_bus_published_by_type_total{type}``;
* the durable streams, read from Redis at scrape time (shared by every worker):
  ``mozaiks_bus_stream_length{type}``, ``..._stream_dead_letters{type}``,
  ``..._group_lag{type,group}``, ``..._group_pending{type,group}``,
  ``..._group_oldest_pending_age_seconds{type,group}``; ``mozaiks_bus_streams_up`` is 0
  when Redis could not be read (the rest is then left out, never made up);
* HTTP: ``mozaiks_bus_http_requests_total{method,route,status}``,
  ``mozaiks_bus_http_request_duration_seconds{route}`` (summary),
  ``mozaiks_bus_http_events_total{outcome=accepted|duplicate}``;
* WebSocket: ``mozaiks_bus_ws_connections`` (open now), ``..._ws_accepted_total``,
  ``..._ws_refused_total{reason}``, ``..._ws_frames_sent_total``,
  ``..._ws_messages_received_total{type}``, ``..._ws_slow_consumer_closes_total``,
  ``..._ws_resumes_total``, ``mozaiks_bus_inputs_total{kind,status}``.

Each scrape builds a fresh registry: nothing global, so several apps can live in one
process (tests) and figures are always this worker's own.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mozaiks_bus.durable.streams import StreamInfo

__all__ = ["CONTENT_TYPE", "HttpMetrics", "ServerMetrics", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ALWAYS = ("published", "delivered", "failed", "retried", "dead_lettered", "reconnects")
_DROPPED = {"dropped_local": "local", "dropped_remote": "remote"}


class ServerMetrics:
    """Counters the API keeps itself (one event loop: no locking needed)."""

    def __init__(self) -> None:
        self.http_requests: Counter[tuple[str, str, str]] = Counter()
        self.http_seconds: dict[str, tuple[int, float]] = {}
        self.events: Counter[str] = Counter()
        self.ws_open = 0
        self.ws_total = 0
        self.ws_refused: Counter[str] = Counter()
        self.ws_frames_sent = 0
        self.ws_received: Counter[str] = Counter()
        self.ws_slow_closes = 0
        self.ws_resumes = 0
        self.inputs: Counter[tuple[str, str]] = Counter()

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request."""
        self.http_requests[(method, route, str(status))] += 1
        count, total = self.http_seconds.get(route, (0, 0.0))
        self.http_seconds[route] = (count + 1, total + seconds)


class HttpMetrics:
    """Raw ASGI middleware: counts HTTP requests by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and record its status (500 if the app raised)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_http(scope["method"], route, status,
                                      time.perf_counter() - started)


def _counter(name: str, doc: str, labels: list[str],
             samples: Iterable[tuple[list[str], float]]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(name: str, doc: str, labels: list[str],
           samples: Iterable[tuple[list[str], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _bus_families(stats: Mapping[str, Any]) -> Iterator[Metric]:
    counts = {k: v for k, v in stats.items() if isinstance(v, int) and k not in _DROPPED}
    for name in _ALWAYS:
        counts.setdefault(name, 0)
    for name in sorted(counts):
        yield _counter(f"mozaiks_bus_{name}", f"bus counter '{name}' of this worker", [],
                       [([], counts[name])])
    yield _counter("mozaiks_bus_dropped", "events dropped (local queue full, or not sent)",
                   ["where"], [([where], stats.get(key, 0)) for key, where in _DROPPED.items()])
    by_type = stats.get("by_type") or {}
    yield _counter("mozaiks_bus_published_by_type", "events published, by type", ["type"],
                   [([t], n) for t, n in sorted(by_type.items())])


def _stream_families(streams: list[StreamInfo] | None) -> Iterator[Metric]:
    yield _gauge("mozaiks_bus_streams_up", "1 if the durable streams could be read", [],
                 [([], 0 if streams is None else 1)])
    if streams is None:
        return
    yield _gauge("mozaiks_bus_stream_length", "entries in a durable stream", ["type"],
                 [([s.type], s.length) for s in streams])
    yield _gauge("mozaiks_bus_stream_dead_letters", "dead letters of a type", ["type"],
                 [([s.type], s.dead_letters) for s in streams])
    groups = [(s.type, g) for s in streams for g in s.groups]
    yield _gauge("mozaiks_bus_group_lag", "entries a group has not read yet", ["type", "group"],
                 [([t, g.name], g.lag) for t, g in groups if g.lag is not None])
    yield _gauge("mozaiks_bus_group_pending", "entries read but not acked", ["type", "group"],
                 [([t, g.name], g.pending) for t, g in groups])
    yield _gauge("mozaiks_bus_group_oldest_pending_age_seconds", "age of the oldest pending",
                 ["type", "group"], [([t, g.name], g.oldest_pending_age_s) for t, g in groups
                                     if g.oldest_pending_age_s is not None])


def _api_families(m: ServerMetrics) -> Iterator[Metric]:
    yield _counter("mozaiks_bus_http_requests", "HTTP requests", ["method", "route", "status"],
                   [(list(key), n) for key, n in sorted(m.http_requests.items())])
    summary = SummaryMetricFamily("mozaiks_bus_http_request_duration_seconds",
                                  "HTTP request time", labels=["route"])
    for route, (count, total) in sorted(m.http_seconds.items()):
        summary.add_metric([route], count_value=count, sum_value=total)
    yield summary
    yield _counter("mozaiks_bus_http_events", "events taken by POST /v1/events", ["outcome"],
                   [([o], m.events[o]) for o in ("accepted", "duplicate")])
    yield _gauge("mozaiks_bus_ws_connections", "WebSockets open now", [], [([], m.ws_open)])
    yield _counter("mozaiks_bus_ws_accepted", "WebSockets accepted", [], [([], m.ws_total)])
    yield _counter("mozaiks_bus_ws_refused", "WebSocket handshakes refused", ["reason"],
                   [([r], n) for r, n in sorted(m.ws_refused.items())])
    yield _counter("mozaiks_bus_ws_frames_sent", "frames sent to WebSockets", [],
                   [([], m.ws_frames_sent)])
    yield _counter("mozaiks_bus_ws_messages_received", "client messages, by type", ["type"],
                   [([t], n) for t, n in sorted(m.ws_received.items())])
    yield _counter("mozaiks_bus_ws_slow_consumer_closes", "sockets closed for not reading", [],
                   [([], m.ws_slow_closes)])
    yield _counter("mozaiks_bus_ws_resumes", "resumes from a last event id", [],
                   [([], m.ws_resumes)])
    yield _counter("mozaiks_bus_inputs", "user inputs and UI tool responses", ["kind", "status"],
                   [(list(key), n) for key, n in sorted(m.inputs.items())])


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _listener_families(health: Mapping[str, Any]) -> Iterator[Metric]:
    """Alive but deaf is the classic pub/sub failure: make it visible from outside."""
    yield _gauge("mozaiks_bus_listener_receiving",
                 "1 if this worker's pub/sub listener is receiving (or idle), else 0", [],
                 [([], 1 if health.get("receiving", True) else 0)])
    age = health.get("last_message_age_s")
    if isinstance(age, int | float):
        yield _gauge("mozaiks_bus_listener_silence_seconds",
                     "seconds since the pub/sub listener last read anything", [],
                     [([], float(age))])


def _sink_families(sinks: Sequence[Mapping[str, Any]] | None) -> Iterator[Metric]:
    """HTTP sinks as ``/v1/sinks`` shows them (None: not configured, or not readable)."""
    if sinks is None:
        return
    yield _gauge("mozaiks_bus_sink_circuit_open",
                 "1 while a sink's circuit is open or half-open (no normal traffic)", ["sink"],
                 [([s["name"]], 0 if s["circuit"]["state"] == "closed" else 1) for s in sinks])
    yield _gauge("mozaiks_bus_sink_queued", "deliveries queued for a sink", ["sink"],
                 [([s["name"]], s["queued"]) for s in sinks])
    yield _gauge("mozaiks_bus_sink_dead_letters", "dead letters of a sink", ["sink"],
                 [([s["name"]], s["dead_letters"]) for s in sinks])


def render(metrics: ServerMetrics, stats: Mapping[str, Any],
           streams: list[StreamInfo] | None,
           health: Mapping[str, Any] | None = None,
           sinks: Sequence[Mapping[str, Any]] | None = None) -> bytes:
    """The Prometheus text exposition of everything above."""
    families = [*_bus_families(stats), *_stream_families(streams), *_api_families(metrics),
                *_listener_families(health or {}), *_sink_families(sinks)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
