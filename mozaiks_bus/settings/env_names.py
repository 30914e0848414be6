"""Misspelled environment variables: ``MOZAIKS_BROKR_URL`` is reported, not ignored.

Contract
--------
A variable whose name starts with ``MOZAIKS_`` (any case), that is not one mozaiks-bus
reads (:func:`known_env_names`: ``MOZAIKS_BROKER_URL``, ``MOZAIKS_BUS_<FIELD>`` for every
setting, ``MOZAIKS_AMQP_URL``, ``MOZAIKS_BUS_CONFIG``, ``MOZAIKS_BUS_HOME``), that the
settings do not name themselves (an API token's ``token_env``, a sink's ``*_env``), that
is not empty (an empty variable counts as unset) and whose name is a close match
(:mod:`difflib`, ratio >= :data:`CUTOFF` on the part after ``MOZAIKS_``) of a known one is
a :class:`Misspelling`. Unrelated ``MOZAIKS_*`` variables (other components') are left
alone. Values are never read into a message: only names.

:func:`~mozaiks_bus.settings.load_settings` logs each one once per process as a warning
(logger ``mozaiks_bus.settings``), so ``serve``, ``worker``, ``up``, every CLI command and
``Bus.from_env`` say it at start; ``mozaiks-bus config`` and ``doctor`` list them with
:func:`find_misspellings` (inside :func:`reported_by_caller`, so the line is not printed
twice).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from mozaiks_bus.settings._sources import AMQP_URL_ENV, CONFIG_ENV, env_var_for

__all__ = [
    "CUTOFF",
    "HOME_ENV",
    "Misspelling",
    "find_misspellings",
    "known_env_names",
    "reported_by_caller",
    "warn_misspellings",
]

logger = logging.getLogger("mozaiks_bus.settings")

CUTOFF = 0.8
HOME_ENV = "MOZAIKS_BUS_HOME"  # read by mozaiks_bus.ops.stack (a higher layer)
_PREFIX = "MOZAIKS_"
_OTHER_KNOWN = frozenset({CONFIG_ENV, AMQP_URL_ENV, HOME_ENV})
_SINK_SECRET_FIELDS = ("signing_secret_env", "auth_bearer_env", "api_key_env")
_warned: set[str] = set()
_quiet: ContextVar[bool] = ContextVar("mozaiks_bus_env_names_quiet", default=False)


@dataclass(frozen=True)
class Misspelling:
    """``name`` is set but not read; ``suggestion`` is the variable it likely meant."""

    name: str
    suggestion: str

    def __str__(self) -> str:
        return (f"{self.name} is not a mozaiks-bus variable and is ignored; "
                f"did you mean {self.suggestion}?")


def known_env_names(fields: Iterable[str]) -> frozenset[str]:
    """Every variable mozaiks-bus reads, given the settings' field names."""
    return frozenset(env_var_for(name) for name in fields) | _OTHER_KNOWN


def _named_by(settings: BaseModel) -> set[str]:
    tokens: Iterable[Any] = getattr(settings, "api_tokens", ())
    sinks: Iterable[Any] = getattr(settings, "sinks", ())
    named = {str(token.token_env) for token in tokens}
    for sink in sinks:
        named.update(str(getattr(sink, key)) for key in _SINK_SECRET_FIELDS
                     if getattr(sink, key, None))
    return named


def find_misspellings(settings: BaseModel | type[BaseModel],
                      env: Mapping[str, str] | None = None) -> list[Misspelling]:
    """The likely misspellings in ``env`` (default ``os.environ``), sorted by name.

    ``settings`` is the loaded :class:`~mozaiks_bus.settings.BusSettings` (the variables
    it names itself, tokens and sink secrets, are never reported) or, when loading
    failed, the class (its fields are what is known)."""
    environ = os.environ if env is None else env
    model = settings if isinstance(settings, type) else type(settings)
    known = known_env_names(model.model_fields)
    skip = known | (set() if isinstance(settings, type) else _named_by(settings))
    tails = {name[len(_PREFIX):]: name for name in known}
    found: list[Misspelling] = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(_PREFIX) or name in skip or not environ[name]:
            continue
        match = difflib.get_close_matches(upper[len(_PREFIX):], list(tails), n=1,
                                          cutoff=CUTOFF)
        if match:
            found.append(Misspelling(name, tails[match[0]]))
    return found


def warn_misspellings(settings: BaseModel | type[BaseModel],
                      env: Mapping[str, str] | None = None) -> list[Misspelling]:
    """Log each misspelling once per process (a warning), unless a caller reports them
    itself (:func:`reported_by_caller`); returns them all."""
    found = find_misspellings(settings, env)
    if not _quiet.get():
        for problem in found:
            if problem.name not in _warned:
                _warned.add(problem.name)
                logger.warning("%s", problem)
    return found


@contextlib.contextmanager
def reported_by_caller() -> Iterator[None]:
    """Settings loaded inside this block log no misspelling: the caller lists them."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)
