"""Sink configuration at run time: lookup by name, secrets from the environment, checks.

Contract
--------
Secrets are read from the environment variables a :class:`~mozaiks_bus.settings.SinkConfig`
names, at the moment of each request (so job data never holds them and a restarted
worker picks up rotated values). :func:`check_sinks` is the worker's start-up check:
every sink's format exists and every variable it names is set (and a signing secret
decodes); the :class:`~mozaiks_bus.errors.ConfigError` names the field
(``sinks.<i>.<field>``) and the variable, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import BusSettings, SinkConfig
from mozaiks_bus.sinks.formats import FORMATS
from mozaiks_bus.sinks.signing import decode_secret

__all__ = ["SinkSecrets", "check_sinks", "find_sink", "sink_secrets"]


@dataclass(frozen=True, slots=True)
class SinkSecrets:
    """The secret values of one sink, read from the environment (never logged)."""

    bearer: str | None = None
    api_key: str | None = None
    signing_keys: tuple[bytes, ...] = ()
    values: tuple[str, ...] = ()  # every raw secret text, for redaction

    def __repr__(self) -> str:
        return "SinkSecrets(***)"


def find_sink(settings: BusSettings, name: str) -> SinkConfig | None:
    """The sink called ``name``, or None."""
    for sink in settings.sinks:
        if sink.name == name:
            return sink
    return None


def _read(environ: Mapping[str, str], var: str | None, field: str) -> str | None:
    if var is None:
        return None
    value = environ.get(var)
    if not value:
        raise ConfigError(field, f"environment variable {var} is not set (or is empty)")
    return value


def sink_secrets(
    sink: SinkConfig, environ: Mapping[str, str] | None = None, *, field: str | None = None
) -> SinkSecrets:
    """Read ``sink``'s secrets; ConfigError naming the field and variable if one is unset."""
    env = os.environ if environ is None else environ
    where = field or f"sinks.{sink.name}"
    bearer = _read(env, sink.auth_bearer_env, f"{where}.auth_bearer_env")
    api_key = _read(env, sink.api_key_env, f"{where}.api_key_env")
    signing = _read(env, sink.signing_secret_env, f"{where}.signing_secret_env")
    keys: tuple[bytes, ...] = ()
    values = [value for value in (bearer, api_key) if value]
    if signing is not None:
        parts = signing.split()
        keys = tuple(
            decode_secret(part, field=f"{where}.signing_secret_env ({sink.signing_secret_env})")
            for part in parts
        )
        values += [text for part in parts for text in (part, part.removeprefix("whsec_"))]
    return SinkSecrets(bearer, api_key, keys, tuple(values))


def check_sinks(settings: BusSettings, environ: Mapping[str, str] | None = None) -> None:
    """The worker's start-up check of every sink (see the module docstring)."""
    for index, sink in enumerate(settings.sinks):
        if sink.format not in FORMATS:
            known = ", ".join(sorted(FORMATS))
            raise ConfigError(f"sinks.{index}.format",
                              f"unknown format {sink.format!r}; known: {known}")
        sink_secrets(sink, environ, field=f"sinks.{index}")
