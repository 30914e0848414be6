"""Trace context through the bus: a trace the caller started reaches the consumer's span
and the sink's HTTP request (OpenTelemetry SDK with an in-memory exporter)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mozaiks_bus import Event, testing, tracing
from mozaiks_bus.settings import SinkConfig
from mozaiks_bus.sinks.config import SinkSecrets
from mozaiks_bus.sinks.formats import render
from mozaiks_bus.sinks.job import request_headers
from tests.support import clean_env

EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_PROVIDER)  # once per process, as an application does


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def trace_id_of(traceparent: str) -> int:
    return int(traceparent.split("-")[1], 16)


async def test_a_trace_set_on_publish_reaches_the_consumer_span(
    spans: InMemorySpanExporter,
) -> None:
    assert tracing.ENABLED
    bus = testing.memory_bus()
    got: list[Event] = []

    @bus.consumer("orders.created", group="billing")
    async def bill(event: Event) -> None:
        got.append(event)

    tracer = trace.get_tracer("caller")
    async with bus:
        with tracer.start_as_current_span("checkout") as caller:
            await bus.publish("orders.created", {"n": 1}, durable=True)
        await testing.drain(bus)
    trace_id = caller.get_span_context().trace_id
    assert got[0].traceparent is not None
    assert trace_id_of(got[0].traceparent) == trace_id
    by_name = {s.name: s for s in spans.get_finished_spans()}
    publish, consume = by_name["publish orders.created"], by_name["consume orders.created"]
    assert publish.context.trace_id == consume.context.trace_id == trace_id
    assert consume.parent is not None
    assert consume.parent.span_id == publish.context.span_id
    assert consume.kind is trace.SpanKind.CONSUMER
    assert consume.attributes is not None
    assert consume.attributes["messaging.message.id"] == got[0].id


def test_the_sink_request_carries_the_trace(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("caller")
    with tracer.start_as_current_span("checkout") as caller:
        event = Event.create("orders.created", {"n": 1},
                             traceparent=tracing.new_traceparent("orders.created"))
    sink = SinkConfig(name="hook", url="https://h.example/x", patterns=["orders.*"])
    body = render(sink.format, event)
    secrets = SinkSecrets()
    assert trace_id_of(request_headers(sink, event, body, secrets)["traceparent"]) == \
        caller.get_span_context().trace_id
    with tracing.span("client", "deliver hook", event.type, event.id, event.traceparent):
        inside = request_headers(sink, event, body, secrets)["traceparent"]
    deliver = next(s for s in spans.get_finished_spans() if s.name == "deliver hook")
    assert inside.split("-")[2] == format(deliver.context.span_id, "016x")  # this span
    assert deliver.context.trace_id == caller.get_span_context().trace_id


def test_an_event_without_a_trace_sends_no_trace_header() -> None:
    event = Event.create("orders.created", {"n": 1})
    sink = SinkConfig(name="hook", url="https://h.example/x", patterns=["orders.*"])
    assert "traceparent" not in request_headers(sink, event, render(sink.format, event),
                                                SinkSecrets())


def run_script(script: str) -> None:
    """Run ``script`` in a fresh interpreter (tracing state is per process); it prints ok."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_without_opentelemetry_nothing_is_traced_and_everything_works() -> None:
    script = (
        "import sys, asyncio\n"
        "sys.modules['opentelemetry'] = None  # as if the [otel] extra were not installed\n"
        "from mozaiks_bus import Bus, tracing\n"
        "assert not tracing.ENABLED\n"
        "seen = []\n"
        "bus = Bus()\n"
        "bus.subscribe('a.b', seen.append)\n"
        "event = asyncio.run(bus.publish('a.b', {'n': 1}))\n"
        "assert event.traceparent is None and seen == [event]\n"
        "with tracing.span('consumer', 'x', 'a.b', event.id, None):\n"
        "    pass\n"
        "assert tracing.traceparent_headers(None) == {}\n"
        "print('ok')\n"
    )
    run_script(script)


def test_with_the_api_but_no_provider_no_span_is_made_and_the_context_still_travels() -> None:
    script = (
        "import asyncio\n"
        "from opentelemetry import trace\n"
        "from mozaiks_bus import Bus, tracing\n"
        "assert tracing.ENABLED and not tracing.active()\n"
        "seen = []\n"
        "bus = Bus()\n"
        "bus.subscribe('a.b', seen.append)\n"
        "parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'\n"
        "event = asyncio.run(bus.publish('a.b', {'n': 1}, traceparent=parent))\n"
        "assert seen[0].traceparent == parent\n"
        "assert tracing.traceparent_headers(parent) == {'traceparent': parent}\n"
        "assert asyncio.run(bus.publish('a.b', {'n': 2})).traceparent is None\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "trace.set_tracer_provider(TracerProvider())  # configured later, as apps do\n"
        "import time\n"
        "deadline = time.monotonic() + 3\n"
        "while not tracing.active() and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "assert tracing.active(), 'a provider set later is seen within a second'\n"
        "assert tracing.new_traceparent('a.b') is not None\n"
        "print('ok')\n"
    )
    run_script(script)
