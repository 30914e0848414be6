"""The RQ job's pure parts: retry timing (whole seconds, never early) and the headers."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import pytest

from mozaiks_bus import Event
from mozaiks_bus.settings import SinkConfig
from mozaiks_bus.sinks import render, sink_secrets, verify
from mozaiks_bus.sinks.job import request_headers, retry_in

SECRET = "whsec_" + base64.b64encode(b"z" * 32).decode()


@pytest.mark.parametrize(("delay", "whole"), [(0.0, 0), (0.01, 2), (0.5, 2), (1.0, 2),
                                              (2.0, 3), (2.5, 4), (60.0, 61)])
def test_retry_waits_are_rounded_up_past_rqs_whole_second_clock(delay: float, whole: int
                                                                ) -> None:
    job: Any = SimpleNamespace(number_of_retries=3)
    retry = retry_in(job, delay)
    assert retry.intervals == [whole]
    assert retry.max == 4  # RQ never fails it on its own: the sink's policy decides


def test_headers_carry_the_idempotency_key_auth_and_signature() -> None:
    sink = SinkConfig(name="s", url="http://127.0.0.1:9/x", patterns=["a.b"],
                      auth_bearer_env="T", api_key_header="X-Key", api_key_env="K",
                      signing_secret_env="S", headers={"X-Tenant": "acme"},
                      format="insights-events", format_options={"app_id": "app"})
    event = Event.create("a.b", {"n": 1}, source="t", correlationid="c-1")
    body = render(sink.format, event, sink.format_options)
    headers = request_headers(sink, event, body,
                              sink_secrets(sink, {"T": "tok", "K": "key", "S": SECRET}))
    assert headers["Idempotency-Key"] == headers["webhook-id"] == event.id
    assert headers["Authorization"] == "Bearer tok"
    assert headers["X-Key"] == "key"
    assert headers["X-Tenant"] == "acme"
    assert headers["X-Correlation-Id"] == "c-1"
    assert headers["Content-Type"] == "application/json"
    verify(SECRET, body.content, headers)


def test_no_auth_headers_without_secrets() -> None:
    sink = SinkConfig(name="s", url="http://127.0.0.1:9/x", patterns=["a.b"])
    event = Event.create("a.b", {}, source="t")
    headers = request_headers(sink, event, render("data", event), sink_secrets(sink, {}))
    assert not {"Authorization", "webhook-signature"} & set(headers)
