"""pydantic's ``ValidationError`` turned into one :class:`ConfigError`.

The error names the dotted field (``sinks.1.url``), the rule broken and where the value
came from; it never quotes a value (settings hold secrets).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings._sources import LoadState
from mozaiks_bus.settings._toml_lines import find_line
from mozaiks_bus.settings.api import ApiToken
from mozaiks_bus.settings.routes import RouteRule
from mozaiks_bus.settings.sinks import SinkConfig, is_secret_name

__all__ = ["translate"]


_REPEATS = {"duplicate_name": "name", "duplicate_type": "type",
            "duplicate_message_type": "message_type"}


def translate(exc: ValidationError, state: LoadState, settings_model: type[BaseModel]
              ) -> ConfigError:
    """The first problem of ``exc`` (and the names of up to five more)."""
    problems: list[tuple[str, str, str | None]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] in _REPEATS:  # point at the later entry's field
            loc = (*loc, ctx["index"], _REPEATS[error["type"]])
        path = ".".join(str(part) for part in loc) or "settings"
        problems.append((path, _reason(error["type"], error["msg"], loc, settings_model),
                         _source(loc, state)))
    path, reason, source = problems[0]
    if len(problems) > 1:
        others = ", ".join(f"{p} [{s}]" if s else p for p, _, s in problems[1:6])
        more = "" if len(problems) <= 6 else ", ..."
        reason = f"{reason} (also invalid: {others}{more})"
    return ConfigError(path, reason, source=source)


def _reason(kind: str, message: str, loc: tuple[Any, ...],
            settings_model: type[BaseModel]) -> str:
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        model: type[BaseModel] = settings_model
        if len(loc) > 1:
            nested: dict[Any, type[BaseModel]] = {"sinks": SinkConfig, "api_tokens": ApiToken}
            model = nested.get(loc[0], RouteRule)
        message = "unknown key; allowed: " + ", ".join(model.model_fields)
        if is_secret_name(key):
            message += "; secrets never go in the config"
            if f"{key}_env" in model.model_fields:
                message += f": set {key}_env to the name of the environment variable holding it"
    return message


def _source(loc: tuple[Any, ...], state: LoadState) -> str | None:
    top = str(loc[0]) if loc else ""
    if top in state.init_keys:
        return "argument"
    if top in state.env_vars:
        return f"env {state.env_vars[top]}"
    if top in state.file_keys and state.file_path is not None:
        line = find_line(state.file_text, loc)
        return f"{state.file_path}:{line}" if line else str(state.file_path)
    return None
