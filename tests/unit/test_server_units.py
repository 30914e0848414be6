"""Server building blocks without a server: settings, tokens, limits, log scrubbing."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from starlette.requests import Request

from mozaiks_bus.errors import ConfigError
from mozaiks_bus.server.auth import (
    Authenticator,
    SecretFilter,
    bearer,
    is_loopback,
    origin_allowed,
)
from mozaiks_bus.server.errors import HttpError
from mozaiks_bus.server.limits import BodyLimit, json_depth_exceeds, parse_json
from mozaiks_bus.settings import load_settings
from mozaiks_bus.settings.api import DEFAULT_API_MAX_BODY_BYTES
from tests.integration.server_harness import TOKEN_CONFIG, TOKENS

# -- settings ------------------------------------------------------------------------------


def test_api_settings_defaults_and_environment() -> None:
    settings = load_settings()
    assert settings.api_tokens == []
    assert settings.api_max_body_bytes == DEFAULT_API_MAX_BODY_BYTES
    env = {"MOZAIKS_BUS_API_TOKENS": json.dumps(TOKEN_CONFIG),
           "MOZAIKS_BUS_API_ALLOWED_ORIGINS": '["https://App.Example:8443/"]',
           "MOZAIKS_BUS_API_MAX_BATCH": "7"}
    settings = load_settings(env=env)
    assert [t.name for t in settings.api_tokens] == ["all", "pub", "admin", "ui"]
    assert settings.api_tokens[1].publish_patterns == ["chat.*", "notification.*", "bench.*"]
    assert settings.api_tokens[0].publish_patterns == ["*"]
    assert settings.api_allowed_origins == ["https://app.example:8443"]
    assert settings.api_max_batch == 7


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"api_tokens": [{"name": "a", "token": "s3cret", "token_env": "X", "scopes": ["ui"]}]},
     "api_tokens.0.token", "set token_env"),
    ({"api_tokens": [{"name": "a", "token_env": "my-token!", "scopes": ["ui"]}]},
     "api_tokens.0.token_env", "never the token itself"),
    ({"api_tokens": [{"name": "a", "token_env": "X", "scopes": ["root"]}]},
     "api_tokens.0.scopes.0", "'publish', 'admin' or 'ui'"),
    ({"api_tokens": [{"name": "a", "token_env": "X", "scopes": []}]},
     "api_tokens.0.scopes", "at least 1"),
    ({"api_tokens": [{"name": "a", "token_env": "X", "scopes": ["ui"],
                      "publish_patterns": ["Bad Pattern"]}]},
     "api_tokens.0.publish_patterns", "pattern must match"),
    ({"api_tokens": [{"name": "a", "token_env": "X", "scopes": ["ui"]}] * 2},
     "api_tokens.1.name", "already used by entry 0"),
    ({"api_allowed_origins": ["https://app.example/path"]}, "api_allowed_origins", "no path"),
    ({"api_max_json_depth": 1000}, "api_max_json_depth", "less than or equal to 64"),
    ({"api_max_body_bytes": 10}, "api_max_body_bytes", "greater than or equal to 1024"),
])
def test_bad_api_settings_name_the_field_and_the_rule(
    values: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(**values)
    assert info.value.field == field
    assert words in info.value.reason
    assert "s3cret" not in str(info.value)


# -- tokens ----------------------------------------------------------------------------------


def _request(headers: dict[str, str] | None = None, query: str = "",
             client: str = "127.0.0.1") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw,
                    "query_string": query.encode(), "client": (client, 1234)})


def test_tokens_are_read_from_the_environment_and_checked() -> None:
    settings = load_settings(api_tokens=TOKEN_CONFIG)
    with pytest.raises(ConfigError) as info:
        Authenticator(settings, env={})
    assert info.value.field == "api_tokens.0.token_env"
    assert "TEST_TOKEN_ALL" in info.value.reason
    with pytest.raises(ConfigError) as info:
        Authenticator(settings, env={**TOKENS, "TEST_TOKEN_UI": "short"})
    assert "at least 16 characters" in info.value.reason
    assert "short" not in str(info.value)


def test_identify_scopes_and_patterns() -> None:
    auth = Authenticator(load_settings(api_tokens=TOKEN_CONFIG), env=TOKENS)
    assert not auth.open
    pub = auth.identify(TOKENS["TEST_TOKEN_PUB"])
    assert pub is not None
    assert pub.name == "pub"
    assert pub.may_publish("chat.text")
    assert not pub.may_publish("settings_updated")
    assert auth.identify("nope") is None
    assert auth.identify(TOKENS["TEST_TOKEN_PUB"] + "x") is None
    request = _request({"Authorization": f"bearer  {TOKENS['TEST_TOKEN_ADMIN']} "})
    assert auth.require(request, "admin").name == "admin"
    with pytest.raises(HttpError) as info:
        auth.require(request, "publish")
    assert (info.value.status, info.value.code) == (403, "forbidden")
    with pytest.raises(HttpError) as info:
        auth.require(_request(), "admin")
    assert info.value.status == 401
    assert info.value.headers == {"WWW-Authenticate": "Bearer"}
    query = _request(query=f"token={TOKENS['TEST_TOKEN_UI']}")
    with pytest.raises(HttpError):
        auth.require(query, "ui")  # a query token only counts on a WebSocket handshake
    assert auth.require(query, "ui", allow_query=True).name == "ui"


def test_open_mode_serves_loopback_clients_only() -> None:
    auth = Authenticator(load_settings(), env={})
    assert auth.open
    assert auth.require(_request(client="127.0.0.1"), "admin").name == "anonymous"
    assert auth.require(_request(client="::1"), "publish").name == "anonymous"
    with pytest.raises(HttpError) as info:
        auth.require(_request(client="10.1.2.3"), "publish")
    assert info.value.status == 401
    assert "loopback" in info.value.message


def test_small_helpers() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("Basic abc") is None
    assert bearer(None) is None
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.5")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("example.com")
    assert origin_allowed(None, [])
    assert origin_allowed("http://App.example/", ["http://app.example"])
    assert not origin_allowed("http://evil.example", ["http://app.example"])
    assert origin_allowed("http://evil.example", ["*"])


def test_secret_filter_masks_tokens_in_log_records() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1,
                               '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5", "/v1/ws/c?last_event_id=0&token=s3cr3t-value"),
                               None)
    assert SecretFilter().filter(record)
    text = record.getMessage()
    assert "s3cr3t" not in text
    assert "token=***" in text
    header = logging.LogRecord("x", logging.INFO, __file__, 1, "Authorization: Bearer abc.def",
                               None, None)
    SecretFilter().filter(header)
    assert header.getMessage() == "Authorization: Bearer ***"


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "limit", "deep"), [
    (b'{"a": [1, {"b": 2}]}', 3, False),
    (b'{"a": [1, {"b": 2}]}', 2, True),
    (b'["[[[[[[[[", "{{{{{{"]', 1, False),  # brackets inside strings do not count
    (b'["\\"[[[[", 1]', 1, False),  # nor after an escaped quote
    (b"[" * 100_000, 32, True),
    (b"[]" * 100_000, 1, False),
])
def test_json_depth(raw: bytes, limit: int, deep: bool) -> None:
    assert json_depth_exceeds(raw, limit) is deep


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "malformed_json"), (b"  ", "malformed_json"), (b"{", "malformed_json"),
    (b'{"a": NaN}', "malformed_json"), (b'{"a": Infinity}', "malformed_json"),
    (b"\xff\xfe", "malformed_json"), (b"1" * 5000, "malformed_json"),
    (b"[" * 40 + b"]" * 40, "too_deep"),
])
def test_parse_json_rejects_with_a_reason(raw: bytes, code: str) -> None:
    with pytest.raises(HttpError) as info:
        parse_json(raw, max_depth=32)
    assert (info.value.status, info.value.code) == (400, code)


def test_parse_json_accepts_json() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}', max_depth=3) == {
        "a": [1, 2.5, "x", None, True]}


class _App:
    def __init__(self) -> None:
        self.called = False
        self.read = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        while True:
            message = await receive()
            self.read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_body_limit_answers_413_before_reading_a_declared_length() -> None:
    app = _App()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body must not be read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"5000")]}
    await BodyLimit(app, 4096)(scope, receive, send)
    assert not app.called
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "body_too_large"


async def test_body_limit_stops_a_chunked_body_at_the_limit() -> None:
    app = _App()
    chunks = 0

    async def receive() -> dict[str, Any]:
        nonlocal chunks
        chunks += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": chunks < 100}

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("the app must not answer")

    with pytest.raises(HttpError) as info:
        await BodyLimit(app, 4096)({"type": "http", "headers": []}, receive, send)
    assert info.value.status == 413
    assert chunks == 5  # the fifth chunk crossed 4096 bytes; nothing after it was read
