"""Where settings come from: the environment and the TOML file (pydantic-settings sources).

A settings build records what it read in a :class:`LoadState` (held in a context
variable for the length of one ``BusSettings(...)`` call), so an error can name the
environment variable or the ``file:line`` a bad value came from.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

from mozaiks_bus.errors import ConfigError

__all__ = [
    "AMQP_URL_ENV",
    "BROKER_URL_ENV",
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "STATE",
    "EnvSource",
    "LoadState",
    "TomlSource",
    "current_state",
    "env_var_for",
]

BROKER_URL_ENV = "MOZAIKS_BROKER_URL"
AMQP_URL_ENV = "MOZAIKS_AMQP_URL"
ENV_PREFIX = "MOZAIKS_BUS_"
CONFIG_ENV = "MOZAIKS_BUS_CONFIG"
DEFAULT_CONFIG_FILE = "mozaiks-bus.toml"


def env_var_for(field_name: str) -> str:
    """The environment variable of a setting: ``MOZAIKS_BROKER_URL`` for ``broker_url``,
    ``MOZAIKS_BUS_<FIELD>`` for every other field."""
    return BROKER_URL_ENV if field_name == "broker_url" else ENV_PREFIX + field_name.upper()




@dataclass
class LoadState:
    """What one settings build read, so errors can name where a value came from."""

    env: Mapping[str, str]
    config_path: str | os.PathLike[str] | None
    init_keys: frozenset[str] = frozenset()
    env_vars: dict[str, str] = field(default_factory=dict)
    file_path: Path | None = None
    file_text: str = ""
    file_keys: frozenset[str] = frozenset()


STATE: ContextVar[LoadState | None] = ContextVar("mozaiks_bus_settings_load", default=None)


def current_state() -> LoadState:
    state = STATE.get()
    if state is None:  # built without BusSettings.__init__: read the real process
        state = LoadState(env=os.environ, config_path=None)
    return state


class EnvSource(PydanticBaseSettingsSource):
    """``MOZAIKS_BROKER_URL``, ``MOZAIKS_AMQP_URL`` (after ``MOZAIKS_BUS_AMQP_URL``) and
    ``MOZAIKS_BUS_<FIELD>``; list fields are JSON."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def __call__(self) -> dict[str, Any]:
        state = current_state()
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            var = env_var_for(name)
            raw = state.env.get(var)
            if not raw and name == "amqp_url":
                var = AMQP_URL_ENV
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


class TomlSource(PydanticBaseSettingsSource):
    """The TOML file named by ``config_path``, ``$MOZAIKS_BUS_CONFIG`` or the default."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def __call__(self) -> dict[str, Any]:
        state = current_state()
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


def _config_file(state: LoadState) -> Path | None:
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
