"""The sinks of the configuration: ``[[sinks]]``.

Fields of :class:`~mozaiks_bus.settings.BusSettings`, kept here so the settings module
stays about loading. Secrets never go in a file: a sink names the *environment
variables* that hold them (``signing_secret_env``, ``auth_bearer_env``,
``api_key_env``), and headers that look like credentials are refused.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mozaiks_bus import names
from mozaiks_bus.settings.routes import check_pattern

__all__ = [
    "BUILTIN_SINK_FORMATS",
    "SinkConfig",
    "check_env_name",
    "is_secret_name",
    "unique_names",
]

BUILTIN_SINK_FORMATS = ("cloudevents", "data")

_SECRET_WORDS = ("secret", "token", "password", "key")
_OPTION_NAME_RE = re.compile(r"[a-z0-9_]{1,64}")
_FORMAT_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_RESERVED_HEADERS = frozenset(
    {
        "content-length",
        "content-type",
        "host",
        "idempotency-key",
        "webhook-id",
        "webhook-signature",
        "webhook-timestamp",
    }
)
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def check_env_name(value: str | None, *, holds: str = "secret") -> str | None:
    """``value`` if it names an environment variable, else ValueError (the config names
    the variable that holds a ``holds``, never the ``holds`` itself)."""
    if value is not None and not names.ENV_VAR.matches(value):
        raise ValueError(f"must be {names.ENV_VAR.rule}, at most 128 characters, never "
                         f"the {holds} itself")
    return value


def unique_names(items: list[Any]) -> list[Any]:
    """``items`` (models with a ``name``) if no name repeats; the error names the index
    of the repeat, so it points at ``<list>.<index>.name``."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in seen:
            raise PydanticCustomError(
                "duplicate_name",
                "name '{name}' is already used by entry {first}; names must be unique",
                {"name": item.name, "first": seen[item.name], "index": index},
            )
        seen[item.name] = index
    return items


def _check_env_name(value: str | None) -> str | None:
    return check_env_name(value)


class SinkConfig(BaseModel):
    """One ``[[sinks]]`` HTTP endpoint the worker POSTs matching events to.

    ``format`` is ``"cloudevents"`` (the whole envelope), ``"data"`` (the data object
    only) or the name of a named mapping (see :mod:`mozaiks_bus.sinks.formats`; the
    worker rejects an unknown name at start-up), which may read ``format_options``
    (plain, non-secret values such as ``app_id``). Secrets are never in the file: the
    ``*_env`` fields name the environment variables that hold them. ``accept_409``
    treats HTTP 409 as "already applied" (done); turn it off to dead-letter instead.
    ``method`` is the HTTP method (POST, PUT or PATCH). The circuit breaker opens after
    ``circuit_failures`` consecutive failed attempts (0 turns it off), stays open
    ``circuit_open_s`` before one probe, and after a good probe lets traffic back in
    over ``circuit_ramp_s``. First attempts travel in batches: one RQ job carries up to
    ``batch_max`` deliveries (gathered for at most ``batch_linger_ms``), sent up to
    ``batch_concurrency`` at once; ``batch_max = 1`` gives one job per delivery. Retries
    are single jobs. The name becomes the consumer group ``sink.<name>``, hence at most
    59 characters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str
    patterns: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    backoff_max_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    format: str = "cloudevents"
    signing_secret_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    auth_bearer_env: str | None = None
    api_key_header: str | None = None
    api_key_env: str | None = None
    accept_409: bool = True
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    format_options: dict[str, str] = Field(default_factory=dict)
    circuit_failures: int = Field(default=5, ge=0)
    circuit_open_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    circuit_ramp_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    batch_max: int = Field(default=32, ge=1, le=500)
    batch_linger_ms: float = Field(default=5.0, ge=0, le=1000, allow_inf_nan=False)
    batch_concurrency: int = Field(default=16, ge=1, le=64)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not names.SINK.matches(value):
            raise ValueError(f"must be {names.SINK.rule} (the consumer group is sink.<name>)")
        return value

    @field_validator("format_options")
    @classmethod
    def _check_format_options(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if _OPTION_NAME_RE.fullmatch(key) is None:
                raise ValueError("option names must be 1-64 characters of a-z 0-9 _")
            if is_secret_name(key):
                raise ValueError(
                    f"option {key!r} looks like a secret; secrets must not be in the config: "
                    "use auth_bearer_env, or api_key_header + api_key_env"
                )
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            raise ValueError("is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "must not embed credentials; use auth_bearer_env or api_key_header + "
                "api_key_env to name the environment variable holding them"
            )
        return value

    @field_validator("patterns")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        return [check_pattern(item) for item in value]

    @field_validator("format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        if value not in BUILTIN_SINK_FORMATS and _FORMAT_NAME_RE.fullmatch(value) is None:
            raise ValueError(
                "must be 'cloudevents', 'data' or a mapping name of 1-64 characters of "
                "A-Z a-z 0-9 _ . -"
            )
        return value

    _check_env_names = field_validator("signing_secret_env", "auth_bearer_env", "api_key_env")(
        _check_env_name
    )

    @field_validator("api_key_header")
    @classmethod
    def _check_api_key_header(cls, value: str | None) -> str | None:
        if value is not None and _HEADER_NAME_RE.fullmatch(value) is None:
            raise ValueError("must be an HTTP header name")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            lowered = name.lower()
            if _HEADER_NAME_RE.fullmatch(name) is None:
                raise ValueError("header names must be HTTP tokens")
            if lowered in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the worker and cannot be configured")
            if lowered in _CREDENTIAL_HEADERS or is_secret_name(lowered) or "auth" in lowered:
                raise ValueError(
                    f"header {name!r} looks like a credential; secrets must not be in the "
                    "config: use auth_bearer_env, or api_key_header + api_key_env"
                )
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> SinkConfig:
        if (self.api_key_header is None) != (self.api_key_env is None):
            raise ValueError("api_key_header and api_key_env must be set together")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be at least backoff_base_s")
        return self
