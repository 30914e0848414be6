"""Trace context across every hop: W3C ``traceparent`` in the event, OpenTelemetry spans.

The CloudEvents extension ``traceparent`` travels with an event through every scope
(it is part of the envelope on the wire, in streams and in sink bodies). With
``opentelemetry-api`` installed (``pip install mozaiks-bus[otel]``):

* an event created without a ``traceparent`` gets one from a ``publish <type>``
  producer span, a child of whatever span is current (so a trace started by the caller
  continues through the bus); the span ends at once: it marks where the event was made;
* a durable handler runs inside a ``consume <type>`` consumer span whose parent is the
  event's ``traceparent``;
* a sink attempt runs inside a ``deliver <sink>`` client span with the same parent, and
  its HTTP request carries that span's ``traceparent`` header.

Spans go wherever the application's OpenTelemetry SDK sends them. Spans are made only
while a tracer provider is configured (:func:`active`: the application called
``trace.set_tracer_provider``, or an auto-instrumentation did): with the API alone, no
span is started on the hot paths (they cost about 18 µs an event for no-op spans, as
the consume profile showed) and an event's own ``traceparent`` still travels and is
still sent on. Without the package nothing is imported and every helper here is a plain
pass-through (:data:`ENABLED` is False).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["ENABLED", "active", "new_traceparent", "span", "traceparent_headers"]

try:
    from opentelemetry import propagate, trace
except ImportError:  # the [otel] extra is not installed: no tracing, no cost
    ENABLED = False
else:
    ENABLED = True
    _TRACER = trace.get_tracer("mozaiks_bus")
    _KINDS = {"producer": trace.SpanKind.PRODUCER, "consumer": trace.SpanKind.CONSUMER,
              "client": trace.SpanKind.CLIENT}


_configured = False  # a real provider was seen (the API lets it be set once, for good)
_next_look = 0.0  # until then, "no provider" stands (looking reads os.environ: ~2 µs)
_LOOK_EVERY_S = 1.0


def active() -> bool:
    """Whether spans are made: the API is installed and a tracer provider is set (one
    set after start-up is seen within a second)."""
    global _configured, _next_look  # noqa: PLW0603  # a latch read on every event
    if _configured:
        return True
    if not ENABLED:
        return False
    now = time.monotonic()
    if now < _next_look:
        return False
    _next_look = now + _LOOK_EVERY_S
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    _configured = True
    return True


def _attributes(type_name: str, event_id: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"messaging.system": "mozaiks-bus",
                             "messaging.destination.name": type_name}
    if event_id is not None:
        attrs["messaging.message.id"] = event_id
    return attrs


def new_traceparent(type_name: str) -> str | None:
    """The ``traceparent`` of a new event: a ``publish`` span under the current one
    (None when tracing is off or there is no valid context)."""
    if not active():
        return None
    producer = _TRACER.start_span(f"publish {type_name}", kind=_KINDS["producer"],
                                  attributes=_attributes(type_name, None))
    producer.end()
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(producer))
    return carrier.get("traceparent")


@contextlib.contextmanager
def span(kind: str, name: str, type_name: str, event_id: str,
         traceparent: str | None) -> Iterator[None]:
    """Run the block inside a ``kind`` span (consumer, client) whose parent is
    ``traceparent``; a plain block when tracing is off."""
    if not active():
        yield
        return
    parent = propagate.extract({"traceparent": traceparent} if traceparent else {})
    with _TRACER.start_as_current_span(name, context=parent, kind=_KINDS[kind],
                                       attributes=_attributes(type_name, event_id)):
        yield


def traceparent_headers(traceparent: str | None) -> dict[str, str]:
    """The trace headers of an outbound request: the current span's context (inside a
    :func:`span`), else the event's own ``traceparent``, else none."""
    if active():
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier.get("traceparent"):
            return {"traceparent": carrier["traceparent"]}
    return {"traceparent": traceparent} if traceparent else {}
