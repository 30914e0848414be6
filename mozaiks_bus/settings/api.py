"""Settings of the HTTP and WebSocket service (``mozaiks-bus serve``).

They are fields of :class:`~mozaiks_bus.settings.BusSettings` (``api_*``), read like
every other setting: ``MOZAIKS_BUS_API_<FIELD>`` (lists as JSON) or the TOML file. The
models and defaults live here so ``settings.py`` stays about the bus.

Tokens
------
``api_tokens`` is a list of :class:`ApiToken`: a ``name`` (shown in logs and metrics),
``token_env`` (the *name* of the environment variable holding the secret; the secret
itself is never in the file, and is read when the app is created), ``scopes`` among
``publish`` (``POST /v1/events``), ``admin`` (streams, dead letters, sinks) and ``ui``
(the WebSocket and ``POST /v1/input``), and ``publish_patterns`` (the event type patterns
the token may publish; default every type). With no token configured every request is
allowed, so the server binds to loopback only (the CLI enforces it) and serves loopback
clients only.

Limits
------
``api_max_body_bytes`` (request bodies and WebSocket messages), ``api_max_batch``
(events in one ``POST /v1/events``), ``api_max_json_depth`` (nesting of arrays and
objects, the whole body counted), ``api_dedupe_window_s`` (how long an event id is
remembered: a retry within the window is answered as a duplicate and stored once),
``api_allowed_origins`` (the ``Origin`` values a browser WebSocket may come from:
``scheme://host[:port]``, or ``*``; a handshake without ``Origin`` is a non-browser client
and needs only its token), ``api_ws_queue_size`` (frames buffered per socket before the
client counts as slow and is closed), ``api_ws_send_timeout_s`` (a send blocked longer
than this also counts as slow), ``api_ws_heartbeat_s`` (ping frames), and
``api_retry_after_s`` (the ``Retry-After`` of a 503).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mozaiks_bus import names
from mozaiks_bus.settings.routes import check_pattern
from mozaiks_bus.settings.sinks import check_env_name

__all__ = [
    "API_SCOPES",
    "DEFAULT_API_DEDUPE_WINDOW_S",
    "DEFAULT_API_MAX_BATCH",
    "DEFAULT_API_MAX_BODY_BYTES",
    "DEFAULT_API_MAX_JSON_DEPTH",
    "DEFAULT_API_RETRY_AFTER_S",
    "DEFAULT_API_WS_HEARTBEAT_S",
    "DEFAULT_API_WS_QUEUE_SIZE",
    "DEFAULT_API_WS_SEND_TIMEOUT_S",
    "MIN_TOKEN_LENGTH",
    "ApiScope",
    "ApiToken",
    "check_origins",
]

ApiScope = Literal["publish", "admin", "ui"]
API_SCOPES: tuple[ApiScope, ...] = ("publish", "admin", "ui")
MIN_TOKEN_LENGTH = 16

DEFAULT_API_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_API_MAX_BATCH = 100
DEFAULT_API_MAX_JSON_DEPTH = 32
DEFAULT_API_DEDUPE_WINDOW_S = 3600.0
DEFAULT_API_WS_QUEUE_SIZE = 1000
DEFAULT_API_WS_SEND_TIMEOUT_S = 10.0
DEFAULT_API_WS_HEARTBEAT_S = 30.0
DEFAULT_API_RETRY_AFTER_S = 1



class ApiToken(BaseModel):
    """One ``[[api_tokens]]`` entry: who may call the API, and for what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    token_env: str
    scopes: list[ApiScope] = Field(min_length=1)
    publish_patterns: list[str] = Field(default_factory=lambda: ["*"], min_length=1)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not names.TOKEN_NAME.matches(value):
            raise ValueError(f"must be {names.TOKEN_NAME.rule}")
        return value

    @field_validator("token_env")
    @classmethod
    def _check_token_env(cls, value: str) -> str:
        check_env_name(value, holds="token")
        return value

    @field_validator("scopes")
    @classmethod
    def _dedupe_scopes(cls, value: list[ApiScope]) -> list[ApiScope]:
        return list(dict.fromkeys(value))

    @field_validator("publish_patterns")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        return [check_pattern(item) for item in value]


def check_origins(value: list[str]) -> list[str]:
    """Each origin is ``*`` or ``http(s)://host[:port]`` (no path, query or credentials)."""
    out: list[str] = []
    for origin in value:
        if origin == "*":
            out.append(origin)
            continue
        try:
            parts = urlsplit(origin)
            _ = parts.port
        except ValueError:
            raise ValueError("origins must be '*' or scheme://host[:port]") from None
        if (
            parts.scheme not in ("http", "https") or not parts.hostname
            or parts.path not in ("", "/") or parts.query or parts.fragment
            or parts.username is not None
        ):
            raise ValueError("origins must be '*' or http(s)://host[:port] with no path")
        out.append(f"{parts.scheme}://{parts.netloc}".lower())
    return out
