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
   :mod:`mozaiks_bus.settings.api`, the ``amqp_*`` settings of the MassTransit bridge,
   described in :mod:`mozaiks_bus.settings.amqp`, tunables);
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

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mozaiks_bus import names
from mozaiks_bus.connection import is_cluster_url, parse_broker_url, redact_url
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.event import DEFAULT_SOURCE
from mozaiks_bus.keys import Keys
from mozaiks_bus.partitions import Partitions
from mozaiks_bus.settings._errors import translate
from mozaiks_bus.settings._sources import (
    AMQP_URL_ENV,
    BROKER_URL_ENV,
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    STATE,
    EnvSource,
    LoadState,
    TomlSource,
)
from mozaiks_bus.settings.amqp import (
    DEFAULT_AMQP_CONCURRENCY,
    DEFAULT_AMQP_MAX_DELIVERIES,
    AmqpContract,
    check_amqp_url,
    check_contracts,
    check_queue_name,
)
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
)
from mozaiks_bus.settings.env_names import warn_misspellings
from mozaiks_bus.settings.routes import RouteRule, RouteScope
from mozaiks_bus.settings.sinks import BUILTIN_SINK_FORMATS, SinkConfig, unique_names

__all__ = [
    "AMQP_URL_ENV",
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
    "AmqpContract",
    "ApiToken",
    "BusSettings",
    "RouteRule",
    "RouteScope",
    "SinkConfig",
    "load_settings",
    "redact_url",
    "settings_for",
]

DEFAULT_SERVICE = DEFAULT_SOURCE
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




# --------------------------------------------------------------------------- settings


class BusSettings(BaseSettings):
    """Every setting of mozaiks-bus; see the module docstring for sources and errors."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    broker_url: str | None = None
    queue_url: str | None = None  # RQ and the sinks' ledger; None: on the broker
    service: str = DEFAULT_SERVICE
    prefix: str = DEFAULT_PREFIX
    routes: list[RouteRule] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=list)
    emit_buffer_size: int = Field(default=DEFAULT_EMIT_BUFFER_SIZE, gt=0)
    emit_drop_policy: Literal["drop_oldest", "drop_newest"] = DEFAULT_EMIT_DROP_POLICY
    subscriber_queue_size: int = Field(default=DEFAULT_SUBSCRIBER_QUEUE_SIZE, gt=0)
    publish_timeout_s: float = Field(default=DEFAULT_PUBLISH_TIMEOUT_S, gt=0, allow_inf_nan=False)
    # a confirmed publish (and an HTTP 202) waits until this many replicas have it (WAIT)
    durable_min_replicas: int = Field(default=0, ge=0, le=64)
    health_check_interval_s: float = Field(
        default=DEFAULT_HEALTH_CHECK_INTERVAL_S, gt=0, allow_inf_nan=False
    )
    # durable streams (see mozaiks_bus.durable.consumer and mozaiks_bus.durable.retention)
    consumer_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    stream_max_len: int = Field(default=DEFAULT_STREAM_MAX_LEN, gt=0)
    stream_max_age_s: float = Field(default=DEFAULT_STREAM_MAX_AGE_S, gt=0, allow_inf_nan=False)
    stream_hard_max_len: int = Field(default=DEFAULT_STREAM_HARD_MAX_LEN, gt=0)
    # hot types split over N streams by subject (mozaiks_bus.partitions)
    stream_partitions: dict[str, int] = Field(default_factory=dict)
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
    # the MassTransit bridge (mozaiks_bus.settings.amqp)
    amqp_url: str | None = None
    amqp_queue: str | None = None
    amqp_contracts: list[AmqpContract] = Field(default_factory=list)
    amqp_declare_endpoints: bool = True
    amqp_max_deliveries: int = Field(default=DEFAULT_AMQP_MAX_DELIVERIES, ge=1)
    amqp_concurrency: int = Field(default=DEFAULT_AMQP_CONCURRENCY, ge=1, le=1024)

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
        state = LoadState(
            env=os.environ if _env is None else _env,
            config_path=_config_path,
            init_keys=frozenset(values),
        )
        token = STATE.set(state)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise translate(exc, state, type(self)) from None  # the original carries input values
        finally:
            STATE.reset(token)
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
        return init_settings, EnvSource(settings_cls), TomlSource(settings_cls)

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_broker_url(value)  # the one rule for broker URLs
            except ConfigError as exc:
                raise ValueError(exc.reason) from None
        return value

    @field_validator("queue_url")
    @classmethod
    def _check_queue_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if is_cluster_url(value):
            raise ValueError("RQ (the sink worker's queue) does not run on Redis Cluster: "
                             "point queue_url at a standalone or Sentinel Redis")
        try:
            parsed = parse_broker_url(value, field="queue_url")
        except ConfigError as exc:
            raise ValueError(exc.reason) from None
        if parsed.scheme == "memory":
            raise ValueError("must be a Redis server (redis://, rediss://, unix:// or "
                             "redis+sentinel://): RQ workers are processes")
        return value

    @field_validator("stream_partitions")
    @classmethod
    def _check_partitions(cls, value: dict[str, int]) -> dict[str, int]:
        try:
            return Partitions.check(value)
        except ConfigError as exc:
            raise ValueError(exc.reason) from None

    @field_validator("service")
    @classmethod
    def _check_service(cls, value: str) -> str:
        if not names.SERVICE.matches(value):
            raise ValueError(f"must be {names.SERVICE.rule}")
        return value

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not names.PREFIX.matches(value):
            raise ValueError(f"must be {names.PREFIX.rule} (it starts every Redis key, "
                             "so no '{', '}' or ':')")
        return value

    _check_amqp_url = field_validator("amqp_url")(check_amqp_url)
    _check_amqp_queue = field_validator("amqp_queue")(check_queue_name)
    _check_amqp_contracts = field_validator("amqp_contracts")(check_contracts)
    _unique_sinks = field_validator("sinks")(unique_names)
    _unique_api_tokens = field_validator("api_tokens")(unique_names)
    _check_api_origins = field_validator("api_allowed_origins")(check_origins)

    @property
    def keys(self) -> Keys:
        """Every Redis name of this install (under ``prefix``). Not cached: a
        ``model_copy(update={"prefix": ...})`` must not inherit the old one."""
        return Keys(self.prefix)

    @property
    def partitions(self) -> Partitions:
        """The partitioned types (``stream_partitions``)."""
        return Partitions(self.stream_partitions)

    @property
    def redacted_broker_url(self) -> str | None:
        """``broker_url`` with its password masked, for logs and display."""
        return None if self.broker_url is None else redact_url(self.broker_url)

    @property
    def queue_redis_url(self) -> str | None:
        """Where RQ and the sinks' ledger live: ``queue_url``, else the broker (never a
        Redis Cluster: a cluster broker needs ``queue_url``, ConfigError names it)."""
        if self.queue_url is None and self.broker_url and is_cluster_url(self.broker_url):
            raise ConfigError("queue_url", "the broker is a Redis Cluster and RQ (the HTTP "
                              "sink worker's queue) does not run on one: set queue_url "
                              "(MOZAIKS_BUS_QUEUE_URL) to a standalone or Sentinel Redis")
        return self.queue_url or self.broker_url

    @property
    def redacted_queue_url(self) -> str | None:
        """``queue_url`` with its password masked."""
        return None if self.queue_url is None else redact_url(self.queue_url)

    @property
    def redacted_amqp_url(self) -> str | None:
        """``amqp_url`` with its password masked."""
        return None if self.amqp_url is None else redact_url(self.amqp_url)

    @property
    def config_file(self) -> Path | None:
        """The TOML file these settings were read from, if any."""
        return self._config_file

    def redacted_dump(self) -> dict[str, Any]:
        """The settings as JSON-ready data, with the broker password masked."""
        data = self.model_dump(mode="json")
        data["broker_url"] = self.redacted_broker_url
        data["amqp_url"] = self.redacted_amqp_url
        data["queue_url"] = self.redacted_queue_url
        return data

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        masked = {self._REPR_MASKED: self.redacted_broker_url, "amqp_url": self.redacted_amqp_url,
                  "queue_url": self.redacted_queue_url}
        for name, value in super().__repr_args__():
            yield name, masked.get(name or "", value)


def load_settings(
    *,
    config_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> BusSettings:
    """Load the settings: ``overrides`` > ``env`` (default ``os.environ``) > TOML > defaults.

    ``config_path`` replaces ``$MOZAIKS_BUS_CONFIG`` / ``./mozaiks-bus.toml`` and must
    exist. Raises :class:`~mozaiks_bus.errors.ConfigError` for any problem. A variable
    that looks like a misspelled one of ours (``MOZAIKS_BROKR_URL``) is logged as a
    warning naming the likely intended variable (:mod:`mozaiks_bus.settings.env_names`),
    even when loading fails.
    """
    try:
        settings = BusSettings(_env=env, _config_path=config_path, **overrides)
    except ConfigError:
        warn_misspellings(BusSettings, env)
        raise
    warn_misspellings(settings, env)
    return settings


def settings_for(config: BusSettings | None, **overrides: Any) -> BusSettings:
    """``config`` (default: :func:`load_settings`) with the non-None ``overrides``."""
    given = {name: value for name, value in overrides.items() if value is not None}
    if config is None:
        return load_settings(**given)
    return config.model_copy(update=given) if given else config
