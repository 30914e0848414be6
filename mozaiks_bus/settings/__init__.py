"""Typed settings of mozaiks-bus: environment, then an optional TOML file, then defaults.

Contract
--------
:class:`BusSettings` is a pydantic-settings model. Sources, highest priority first:

1. keyword arguments (``load_settings(**overrides)`` / ``BusSettings(**values)``);
2. the environment: ``MOZAIKS_BROKER_URL`` for ``broker_url``, ``MOZAIKS_BUS_<FIELD>``
   (upper case) for every other field. List fields (``routes``, ``sinks``) take JSON.
   An empty variable counts as unset. Other ``MOZAIKS_BUS_*`` variables are ignored
   (``MOZAIKS_BUS_CONFIG`` and variables of other components live there too);
3. a TOML file: ``config_path`` when given, else ``$MOZAIKS_BUS_CONFIG`` (which must
   exist), else ``./mozaiks-bus.toml`` when it exists. Its keys are the field names
   (``broker_url``, ``service``, ``prefix``, ``[[routes]]``, ``[[sinks]]``,
   ``[[api_tokens]]`` and the other ``api_*`` settings of the HTTP service, described in
   :mod:`mozaiks_bus.settings.api`, tunables);
   an unknown key is an error;
4. the defaults below (each defined once, as a ``DEFAULT_*`` constant).

Every problem raises :class:`~mozaiks_bus.errors.ConfigError` with ``field`` (the dotted
path, e.g. ``sinks.1.url``), ``reason`` (the rule broken) and ``source``
(``"env MOZAIKS_BUS_PREFIX"``, ``"path/to/file.toml:LINE"`` or ``"argument"``). Pydantic's
``ValidationError`` never leaks, and no message ever carries a value: settings hold
secrets (a broker password), and sinks may only name the environment variables that
hold theirs (``signing_secret_env``, ``auth_bearer_env``, ``api_key_env``), never the
secret itself. ``repr()`` and :meth:`BusSettings.redacted_dump` mask the broker password.

The models are frozen; derive a changed copy with ``model_copy(update=...)``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_origin
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings._toml_lines import find_line
from mozaiks_bus.settings.api import (
    DEFAULT_API_DEDUPE_WINDOW_S,
    DEFAULT_API_MAX_BATCH,
    DEFAULT_API_MAX_BODY_BYTES,
    DEFAULT_API_MAX_JSON_DEPTH,
    DEFAULT_API_RETRY_AFTER_S,
    DEFAULT_API_WS_HEARTBEAT_S,
    DEFAULT_API_WS_QUEUE_SIZE,
    DEFAULT_API_WS_SEND_TIMEOUT_S,
    ApiToken,
    check_origins,
    check_unique_token_names,
)
from mozaiks_bus.settings.sinks import (
    BUILTIN_SINK_FORMATS,
    RouteRule,
    RouteScope,
    SinkConfig,
    is_secret_name,
)

__all__ = [
    "BROKER_URL_ENV",
    "BUILTIN_SINK_FORMATS",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_CONSUMER_BLOCK_MS",
    "DEFAULT_CONSUMER_CLAIM_INTERVAL_S",
    "DEFAULT_CONSUMER_MIN_IDLE_S",
    "DEFAULT_EMIT_BUFFER_SIZE",
    "DEFAULT_EMIT_DROP_POLICY",
    "DEFAULT_HEALTH_CHECK_INTERVAL_S",
    "DEFAULT_INPUT_REQUEST_TTL_S",
    "DEFAULT_PREFIX",
    "DEFAULT_PROCESSED_TTL_S",
    "DEFAULT_PUBLISH_TIMEOUT_S",
    "DEFAULT_RETENTION_INTERVAL_S",
    "DEFAULT_SERVICE",
    "DEFAULT_STREAM_HARD_MAX_LEN",
    "DEFAULT_STREAM_MAX_AGE_S",
    "DEFAULT_STREAM_MAX_LEN",
    "DEFAULT_SUBSCRIBER_QUEUE_SIZE",
    "DEFAULT_UI_HISTORY_MAX_LEN",
    "DEFAULT_UI_HISTORY_TTL_S",
    "ENV_PREFIX",
    "ApiToken",
    "BusSettings",
    "RouteRule",
    "RouteScope",
    "SinkConfig",
    "load_settings",
    "redact_url",
]

BROKER_URL_ENV = "MOZAIKS_BROKER_URL"
ENV_PREFIX = "MOZAIKS_BUS_"
CONFIG_ENV = "MOZAIKS_BUS_CONFIG"
DEFAULT_CONFIG_FILE = "mozaiks-bus.toml"

DEFAULT_SERVICE = "mozaiks"
DEFAULT_PREFIX = "mozaiks"
DEFAULT_EMIT_BUFFER_SIZE = 10_000
DEFAULT_EMIT_DROP_POLICY: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
DEFAULT_SUBSCRIBER_QUEUE_SIZE = 10_000
DEFAULT_PUBLISH_TIMEOUT_S = 5.0
DEFAULT_HEALTH_CHECK_INTERVAL_S = 5.0
DEFAULT_STREAM_MAX_LEN = 100_000
DEFAULT_STREAM_MAX_AGE_S = 7 * 24 * 3600.0
DEFAULT_STREAM_HARD_MAX_LEN = 1_000_000
DEFAULT_RETENTION_INTERVAL_S = 30.0
DEFAULT_CONSUMER_BLOCK_MS = 1000
DEFAULT_CONSUMER_MIN_IDLE_S = 30.0
DEFAULT_CONSUMER_CLAIM_INTERVAL_S = 5.0
DEFAULT_PROCESSED_TTL_S = 24 * 3600.0
DEFAULT_UI_HISTORY_MAX_LEN = 1000
DEFAULT_UI_HISTORY_TTL_S = 3600.0
DEFAULT_INPUT_REQUEST_TTL_S = 3600.0

BROKER_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "memory")


_SERVICE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")



def redact_url(url: str | None) -> str | None:
    """``url`` with its password (and secret-looking query values) replaced by ``***``.

    Errs on the side of masking: everything between the first ``:`` of the user info
    and the last ``@`` before the query is hidden, even if not percent-encoded.
    """
    if not url:
        return url
    base, mark, query = url.partition("?")
    scheme, sep, rest = base.partition("://")
    if sep and "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        if ":" in userinfo:
            rest = f"{userinfo.partition(':')[0]}:***@{host}"
        base = f"{scheme}{sep}{rest}"
    if query:
        query, hash_mark, fragment = query.partition("#")
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if is_secret_name(k) else v) for k, v in pairs]
        query = urlencode(masked, safe="*/:") + hash_mark + fragment
    return base + mark + query


# --------------------------------------------------------------------------- loading


@dataclass
class _LoadState:
    """What one settings build read, so errors can name where a value came from."""

    env: Mapping[str, str]
    config_path: str | os.PathLike[str] | None
    init_keys: frozenset[str] = frozenset()
    env_vars: dict[str, str] = field(default_factory=dict)
    file_path: Path | None = None
    file_text: str = ""
    file_keys: frozenset[str] = frozenset()


_STATE: ContextVar[_LoadState | None] = ContextVar("mozaiks_bus_settings_load", default=None)


def _current_state() -> _LoadState:
    state = _STATE.get()
    if state is None:  # built without BusSettings.__init__: read the real process
        state = _LoadState(env=os.environ, config_path=None)
    return state


class _EnvSource(PydanticBaseSettingsSource):
    """``MOZAIKS_BROKER_URL`` and ``MOZAIKS_BUS_<FIELD>``; list fields are JSON."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def __call__(self) -> dict[str, Any]:
        state = _current_state()
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            var = BROKER_URL_ENV if name == "broker_url" else ENV_PREFIX + name.upper()
            raw = state.env.get(var)
            if not raw:
                continue
            state.env_vars[name] = var
            if get_origin(info.annotation) in (list, dict):
                try:
                    values[name] = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise ConfigError(
                        name,
                        f"must be JSON ({exc.msg} at column {exc.colno})",
                        source=f"env {var}",
                    ) from None
            else:
                values[name] = raw
        return values


class _TomlSource(PydanticBaseSettingsSource):
    """The TOML file named by ``config_path``, ``$MOZAIKS_BUS_CONFIG`` or the default."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def __call__(self) -> dict[str, Any]:
        state = _current_state()
        path = _config_file(state)
        if path is None:
            return {}
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(
                "config file", f"cannot read it: {exc.strerror or exc}", source=str(path)
            ) from None
        except UnicodeDecodeError:
            raise ConfigError("config file", "is not UTF-8 text", source=str(path)) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            match = re.search(r"at line (\d+)", message)
            line = match.group(1) if match else str(text.count("\n") + 1)
            raise ConfigError("config file", message, source=f"{path}:{line}") from None
        state.file_path, state.file_text, state.file_keys = path, text, frozenset(data)
        return data


def _config_file(state: _LoadState) -> Path | None:
    if state.config_path is not None:
        path, origin = Path(state.config_path), "argument config_path"
    elif state.env.get(CONFIG_ENV):
        path, origin = Path(state.env[CONFIG_ENV]), f"env {CONFIG_ENV}"
    else:
        default = Path(DEFAULT_CONFIG_FILE)
        return default if default.is_file() else None
    if not path.is_file():
        raise ConfigError("config file", f"{path} does not exist or is not a file", source=origin)
    return path


# --------------------------------------------------------------------------- settings


class BusSettings(BaseSettings):
    """Every setting of mozaiks-bus; see the module docstring for sources and errors."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    broker_url: str | None = None
    service: str = DEFAULT_SERVICE
    prefix: str = DEFAULT_PREFIX
    routes: list[RouteRule] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=list)
    emit_buffer_size: int = Field(default=DEFAULT_EMIT_BUFFER_SIZE, gt=0)
    emit_drop_policy: Literal["drop_oldest", "drop_newest"] = DEFAULT_EMIT_DROP_POLICY
    subscriber_queue_size: int = Field(default=DEFAULT_SUBSCRIBER_QUEUE_SIZE, gt=0)
    publish_timeout_s: float = Field(default=DEFAULT_PUBLISH_TIMEOUT_S, gt=0, allow_inf_nan=False)
    health_check_interval_s: float = Field(
        default=DEFAULT_HEALTH_CHECK_INTERVAL_S, gt=0, allow_inf_nan=False
    )
    # durable streams (see mozaiks_bus.durable.consumer and mozaiks_bus.durable.retention)
    consumer_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    stream_max_len: int = Field(default=DEFAULT_STREAM_MAX_LEN, gt=0)
    stream_max_age_s: float = Field(default=DEFAULT_STREAM_MAX_AGE_S, gt=0, allow_inf_nan=False)
    stream_hard_max_len: int = Field(default=DEFAULT_STREAM_HARD_MAX_LEN, gt=0)
    retention_interval_s: float = Field(
        default=DEFAULT_RETENTION_INTERVAL_S, gt=0, allow_inf_nan=False
    )
    consumer_block_ms: int = Field(default=DEFAULT_CONSUMER_BLOCK_MS, ge=10)
    consumer_min_idle_s: float = Field(
        default=DEFAULT_CONSUMER_MIN_IDLE_S, gt=0, allow_inf_nan=False
    )
    consumer_claim_interval_s: float = Field(
        default=DEFAULT_CONSUMER_CLAIM_INTERVAL_S, gt=0, allow_inf_nan=False
    )
    processed_ttl_s: float = Field(default=DEFAULT_PROCESSED_TTL_S, gt=0, allow_inf_nan=False)
    # the ui scope (see mozaiks_bus.ui)
    ui_history_max_len: int = Field(default=DEFAULT_UI_HISTORY_MAX_LEN, gt=0)
    ui_history_ttl_s: float = Field(default=DEFAULT_UI_HISTORY_TTL_S, ge=1, allow_inf_nan=False)
    input_request_ttl_s: float = Field(
        default=DEFAULT_INPUT_REQUEST_TTL_S, ge=1, allow_inf_nan=False
    )
    # the HTTP and WebSocket service (see mozaiks_bus.settings.api)
    api_tokens: list[ApiToken] = Field(default_factory=list)
    api_allowed_origins: list[str] = Field(default_factory=list)
    api_max_body_bytes: int = Field(default=DEFAULT_API_MAX_BODY_BYTES, ge=1024)
    api_max_batch: int = Field(default=DEFAULT_API_MAX_BATCH, ge=1, le=10_000)
    api_max_json_depth: int = Field(default=DEFAULT_API_MAX_JSON_DEPTH, ge=4, le=64)
    api_dedupe_window_s: float = Field(
        default=DEFAULT_API_DEDUPE_WINDOW_S, ge=1, allow_inf_nan=False
    )
    api_ws_queue_size: int = Field(default=DEFAULT_API_WS_QUEUE_SIZE, ge=1)
    api_ws_send_timeout_s: float = Field(
        default=DEFAULT_API_WS_SEND_TIMEOUT_S, gt=0, allow_inf_nan=False
    )
    api_ws_heartbeat_s: float = Field(
        default=DEFAULT_API_WS_HEARTBEAT_S, gt=0, allow_inf_nan=False
    )
    api_retry_after_s: int = Field(default=DEFAULT_API_RETRY_AFTER_S, ge=1)

    _config_file: Path | None = PrivateAttr(default=None)
    _REPR_MASKED: ClassVar[str] = "broker_url"

    def __init__(
        self,
        *,
        _env: Mapping[str, str] | None = None,
        _config_path: str | os.PathLike[str] | None = None,
        **values: Any,
    ) -> None:
        """Build from ``values`` > environment (``_env``, default ``os.environ``) > file."""
        state = _LoadState(
            env=os.environ if _env is None else _env,
            config_path=_config_path,
            init_keys=frozenset(values),
        )
        token = _STATE.set(state)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _translate(exc, state) from None  # the original carries input values
        finally:
            _STATE.reset(token)
        self._config_file = state.file_path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the TOML file."""
        return init_settings, _EnvSource(settings_cls), _TomlSource(settings_cls)

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError:
            raise ValueError("is not a valid URL (check the host and port)") from None
        if parts.scheme not in BROKER_SCHEMES:
            schemes = ", ".join(f"{scheme}://" for scheme in BROKER_SCHEMES)
            raise ValueError(f"must be a URL with one of the schemes {schemes}")
        return value

    @field_validator("service")
    @classmethod
    def _check_service(cls, value: str) -> str:
        if _SERVICE_RE.fullmatch(value) is None:
            raise ValueError("must be 1-64 characters of A-Z a-z 0-9 _ . -")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if _PREFIX_RE.fullmatch(value) is None:
            raise ValueError(
                "must be 1-64 characters of A-Z a-z 0-9 _ - (it starts every Redis key, "
                "so no '{', '}' or ':')"
            )
        return value

    @field_validator("sinks")
    @classmethod
    def _unique_sink_names(cls, value: list[SinkConfig]) -> list[SinkConfig]:
        seen: dict[str, int] = {}
        for index, sink in enumerate(value):
            if sink.name in seen:
                raise PydanticCustomError(
                    "duplicate_sink_name",
                    "sink name '{name}' is already used by sinks.{first}; names must be unique",
                    {"name": sink.name, "first": seen[sink.name], "index": index},
                )
            seen[sink.name] = index
        return value

    _check_api_tokens = field_validator("api_tokens")(check_unique_token_names)
    _check_api_origins = field_validator("api_allowed_origins")(check_origins)

    @property
    def redacted_broker_url(self) -> str | None:
        """``broker_url`` with its password masked, for logs and display."""
        return redact_url(self.broker_url)

    @property
    def config_file(self) -> Path | None:
        """The TOML file these settings were read from, if any."""
        return self._config_file

    def redacted_dump(self) -> dict[str, Any]:
        """The settings as JSON-ready data, with the broker password masked."""
        data = self.model_dump(mode="json")
        data["broker_url"] = self.redacted_broker_url
        return data

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (self.redacted_broker_url if name == self._REPR_MASKED else value)


def load_settings(
    *,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> BusSettings:
    """Load the settings: ``overrides`` > ``env`` (default ``os.environ``) > TOML > defaults.

    ``config_path`` replaces ``$MOZAIKS_BUS_CONFIG`` / ``./mozaiks-bus.toml`` and must
    exist. Raises :class:`~mozaiks_bus.errors.ConfigError` for any problem.
    """
    return BusSettings(_env=env, _config_path=config_path, **overrides)


# --------------------------------------------------------------------------- errors


def _translate(exc: ValidationError, state: _LoadState) -> ConfigError:
    problems: list[tuple[str, str, str | None]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == "duplicate_sink_name":
            loc = (*loc, ctx["index"], "name")
        path = ".".join(str(part) for part in loc) or "settings"
        problems.append((path, _reason(error["type"], error["msg"], loc), _source(loc, state)))
    path, reason, source = problems[0]
    if len(problems) > 1:
        others = ", ".join(f"{p} [{s}]" if s else p for p, _, s in problems[1:6])
        more = "" if len(problems) <= 6 else ", ..."
        reason = f"{reason} (also invalid: {others}{more})"
    return ConfigError(path, reason, source=source)


def _reason(kind: str, message: str, loc: tuple[Any, ...]) -> str:
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        model: type[BaseModel] = BusSettings
        if len(loc) > 1:
            nested: dict[Any, type[BaseModel]] = {"sinks": SinkConfig, "api_tokens": ApiToken}
            model = nested.get(loc[0], RouteRule)
        message = "unknown key; allowed: " + ", ".join(model.model_fields)
        if is_secret_name(key):
            message += "; secrets never go in the config"
            if f"{key}_env" in model.model_fields:
                message += f": set {key}_env to the name of the environment variable holding it"
    return message


def _source(loc: tuple[Any, ...], state: _LoadState) -> str | None:
    top = str(loc[0]) if loc else ""
    if top in state.init_keys:
        return "argument"
    if top in state.env_vars:
        return f"env {state.env_vars[top]}"
    if top in state.file_keys and state.file_path is not None:
        line = find_line(state.file_text, loc)
        return f"{state.file_path}:{line}" if line else str(state.file_path)
    return None
