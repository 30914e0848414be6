"""One HTTP attempt (``attempt_request``) against a real local target, without Redis."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from mozaiks_bus import Event
from mozaiks_bus.settings import SinkConfig
from mozaiks_bus.sinks import Outcome, Verdict, render, sink_secrets, verify
from mozaiks_bus.sinks.job import USER_AGENT, attempt_request
from tests.integration.sink_target import Reply, Target

pytestmark = pytest.mark.integration
SECRET = "whsec_" + base64.b64encode(b"q" * 32).decode()
ENV = {"TOKEN": "tok-123", "KEY": "key-456", "SECRET": SECRET}



@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, trust_env=False,
                      headers={"User-Agent": USER_AGENT}) as client:
        yield client


def attempt(http: httpx.Client, target: Target, path: str = "/x",
            **fields: object) -> tuple[Outcome, Event]:
    sink = SinkConfig.model_validate({"name": "s", "url": target.url(path),
                                      "patterns": ["a.b"], "timeout_s": 1.0, **fields})
    event = Event.create("orders.created", {"n": 1}, source="test")
    body = render(sink.format, event)
    return attempt_request(http, sink, event, body, sink_secrets(sink, ENV)), event


def test_headers_auth_signature_and_method(http: httpx.Client, target: Target) -> None:
    outcome, event = attempt(http, target, method="PUT", auth_bearer_env="TOKEN",
                             api_key_header="X-Api-Key", api_key_env="KEY",
                             signing_secret_env="SECRET", headers={"X-Tenant": "acme"})
    assert outcome.verdict is Verdict.DELIVERED
    assert outcome.status == 200
    [call] = target.received()
    assert call.method == "PUT"
    assert call.headers["idempotency-key"] == event.id
    assert call.headers["authorization"] == "Bearer tok-123"
    assert call.headers["x-api-key"] == "key-456"
    assert call.headers["x-tenant"] == "acme"
    assert call.headers["user-agent"].startswith("mozaiks-bus/")
    assert call.headers["content-type"] == "application/cloudevents+json"
    verify(SECRET, call.body, call.headers)


def test_redirects_are_not_followed(http: httpx.Client, target: Target) -> None:
    target.script("/x", [Reply(302, {"Location": target.url("/elsewhere")})])
    outcome, _ = attempt(http, target)
    assert outcome.verdict is Verdict.RETRY
    assert outcome.status == 302
    assert [call.path for call in target.received()] == ["/x"]


def test_a_hanging_target_is_cut_off_at_the_timeout(http: httpx.Client, target: Target) -> None:
    target.script("/x", [Reply(200, hang=True, hang_s=10)])
    started = time.monotonic()
    outcome, _ = attempt(http, target)
    elapsed = time.monotonic() - started
    target.release()
    assert outcome.verdict is Verdict.RETRY
    assert "ReadTimeout" in outcome.error
    assert 0.9 <= elapsed < 3.0


def test_409_is_done_unless_turned_off(http: httpx.Client, target: Target) -> None:
    target.script("/x", [Reply(409), Reply(409)])
    assert attempt(http, target)[0].verdict is Verdict.DELIVERED
    assert attempt(http, target, accept_409=False)[0].verdict is Verdict.DEAD


def test_error_excerpts_are_redacted_and_retry_after_read(
    http: httpx.Client, target: Target
) -> None:
    target.script("/x", [Reply(429, {"Retry-After": "7"}, echo=("authorization", "x-api-key"))])
    outcome, _ = attempt(http, target, auth_bearer_env="TOKEN", api_key_header="X-Api-Key",
                         api_key_env="KEY")
    assert outcome.verdict is Verdict.RETRY
    assert outcome.retry_after_s == 7.0
    assert "tok-123" not in outcome.error
    assert "key-456" not in outcome.error
    assert outcome.error.startswith("HTTP 429: ")


def test_connection_refused_is_retried(http: httpx.Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = SinkConfig(name="s", url=f"http://127.0.0.1:{port}/x", patterns=["a.b"],
                      timeout_s=1.0)
    event = Event.create("orders.created", {}, source="test")
    outcome = attempt_request(http, sink, event, render("data", event), sink_secrets(sink, {}))
    assert outcome.verdict is Verdict.RETRY
    assert "ConnectError" in outcome.error
