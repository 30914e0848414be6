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

Spans go wherever the application's OpenTelemetry SDK sends them; with the API alone
they cost next to nothing but still carry the context. Without the package nothing is
imported and every helper here is a plain pass-through (:data:`ENABLED` is False).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["ENABLED", "new_traceparent", "span", "traceparent_headers"]

try:
    from opentelemetry import propagate, trace
except ImportError:  # the [otel] extra is not installed: no tracing, no cost
    ENABLED = False
else:
    ENABLED = True
    _TRACER = trace.get_tracer("mozaiks_bus")
    _KINDS = {"producer": trace.SpanKind.PRODUCER, "consumer": trace.SpanKind.CONSUMER,
              "client": trace.SpanKind.CLIENT}


def _attributes(type_name: str, event_id: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"messaging.system": "mozaiks-bus",
                             "messaging.destination.name": type_name}
    if event_id is not None:
        attrs["messaging.message.id"] = event_id
    return attrs


def new_traceparent(type_name: str) -> str | None:
    """The ``traceparent`` of a new event: a ``publish`` span under the current one
    (None when tracing is off or there is no valid context)."""
    if not ENABLED:
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
    if not ENABLED:
        yield
        return
    parent = propagate.extract({"traceparent": traceparent} if traceparent else {})
    with _TRACER.start_as_current_span(name, context=parent, kind=_KINDS[kind],
                                       attributes=_attributes(type_name, event_id)):
        yield


def traceparent_headers(traceparent: str | None) -> dict[str, str]:
    """The trace headers of an outbound request: the current span's context (inside a
    :func:`span`), else the event's own ``traceparent``, else none."""
    if ENABLED:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier.get("traceparent"):
            return {"traceparent": carrier["traceparent"]}
    return {"traceparent": traceparent} if traceparent else {}
