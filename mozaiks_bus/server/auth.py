"""Bearer tokens with scopes, the WebSocket Origin allow-list, and secret-free logs.

* A request carries ``Authorization: Bearer <token>``; a WebSocket handshake may carry
  it as ``?token=`` instead (browsers cannot set headers on a WebSocket). The token is
  compared with every configured one in constant time (``hmac.compare_digest`` of
  SHA-256 digests, all tokens compared, no early exit).
* No token configured = open mode: every request is allowed with every scope, but only
  from a loopback client (the CLI also refuses to bind anywhere but loopback then).
* 401 = no token or an unknown one (``WWW-Authenticate: Bearer``); 403 = a known token
  without the scope, or (``publish``) a type outside its ``publish_patterns``.
* :class:`SecretFilter` scrubs ``token=...`` and bearer values from log records
  (uvicorn logs WebSocket paths with their query string). It also drops uvicorn's
  "ASGI callable returned without completing handshake" error after a handshake we
  refused on purpose with an HTTP answer (uvicorn's sans-I/O WebSocket protocol logs it
  for every denial response), and only then.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import ip_address

from starlette.requests import HTTPConnection

from mozaiks_bus.errors import ConfigError
from mozaiks_bus.patterns import Pattern
from mozaiks_bus.server.errors import HttpError
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.settings.api import API_SCOPES, MIN_TOKEN_LENGTH, ApiScope

__all__ = [
    "Authenticator",
    "Principal",
    "SecretFilter",
    "bearer",
    "install_secret_filter",
    "is_loopback",
    "mark_denied",
    "origin_allowed",
]

_BEARER_RE = re.compile(r"\s*bearer\s+(\S+)\s*", re.IGNORECASE)
_SECRET_RE = re.compile(r"((?:token|access_token)=)[^&\s\"']*|(bearer\s+)\S+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name, its scopes and publish patterns."""

    name: str
    scopes: frozenset[str]
    patterns: tuple[Pattern, ...]

    def may_publish(self, type_name: str) -> bool:
        """Whether this token may publish ``type_name``."""
        return any(pattern.matches(type_name) for pattern in self.patterns)


_OPEN = Principal("anonymous", frozenset(API_SCOPES), (Pattern("*"),))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    """The configured tokens, resolved from the environment once, at app creation."""

    def __init__(self, settings: BusSettings, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._tokens: list[tuple[bytes, Principal]] = []
        for index, token in enumerate(settings.api_tokens):
            field = f"api_tokens.{index}.token_env"
            secret = env.get(token.token_env, "")
            if not secret:
                raise ConfigError(field, f"names ${token.token_env}, which is not set or empty",
                                  source=f"token {token.name}")
            if len(secret) < MIN_TOKEN_LENGTH or secret != secret.strip():
                raise ConfigError(field, f"the token in ${token.token_env} must be at least "
                                  f"{MIN_TOKEN_LENGTH} characters, with no surrounding spaces",
                                  source=f"token {token.name}")
            principal = Principal(token.name, frozenset(token.scopes),
                                  tuple(Pattern(p) for p in token.publish_patterns))
            self._tokens.append((_digest(secret), principal))

    @property
    def open(self) -> bool:
        """No token configured: loopback clients get every scope."""
        return not self._tokens

    def identify(self, token: str | None) -> Principal | None:
        """The principal of ``token`` (constant time over every configured token)."""
        if token is None:
            return None
        given = _digest(token)
        found: Principal | None = None
        for digest, principal in self._tokens:
            if hmac.compare_digest(given, digest):
                found = principal
        return found

    def authenticate(self, conn: HTTPConnection, *, allow_query: bool = False) -> Principal:
        """The caller of ``conn`` or HttpError 401."""
        if self.open:
            client = conn.client.host if conn.client else None
            if client is not None and not is_loopback(client, unknown=True):
                raise HttpError(401, "unauthorized", "no API token is configured, so only "
                               "loopback clients are served", headers=_CHALLENGE)
            return _OPEN
        token = bearer(conn.headers.get("authorization"))
        if token is None and allow_query:
            token = conn.query_params.get("token") or None
        if token is None:
            raise HttpError(401, "unauthorized", "missing bearer token (Authorization: "
                           "Bearer <token>)", headers=_CHALLENGE)
        principal = self.identify(token)
        if principal is None:
            raise HttpError(401, "unauthorized", "unknown or revoked token", headers=_CHALLENGE)
        return principal

    def require(self, conn: HTTPConnection, scope: ApiScope, *,
                allow_query: bool = False) -> Principal:
        """The caller, who must hold ``scope`` (401 / 403 otherwise)."""
        principal = self.authenticate(conn, allow_query=allow_query)
        if scope not in principal.scopes:
            raise HttpError(403, "forbidden", f"token '{principal.name}' lacks the "
                           f"'{scope}' scope")
        return principal


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, else None."""
    if not header:
        return None
    match = _BEARER_RE.fullmatch(header)
    return match.group(1) if match else None


def is_loopback(host: str, *, unknown: bool = False) -> bool:
    """Whether ``host`` is a loopback address (``unknown`` for non-IP names)."""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return unknown


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """No Origin (not a browser) passes; else it must be listed (or ``*`` listed)."""
    if origin is None:
        return True
    return "*" in allowed or origin.lower().rstrip("/") in allowed


_DENIED: ContextVar[bool] = ContextVar("mozaiks_bus_ws_denied", default=False)
_HANDSHAKE_NOISE = "ASGI callable returned without completing handshake"


def mark_denied() -> None:
    """This connection's handshake is refused with an HTTP answer on purpose."""
    _DENIED.set(True)


class SecretFilter(logging.Filter):
    """Masks ``token=...`` and ``Bearer ...`` in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub; drop only uvicorn's false alarm after a deliberate denial."""
        if _DENIED.get() and str(record.msg).startswith(_HANDSHAKE_NOISE):
            return False
        if isinstance(record.msg, str):
            record.msg = _SECRET_RE.sub(_mask, record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_RE.sub(_mask, arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def _mask(match: re.Match[str]) -> str:
    return f"{match.group(1) or match.group(2)}***"


def install_secret_filter(names: tuple[str, ...] = ("uvicorn.error", "uvicorn.access")) -> None:
    """Add a :class:`SecretFilter` to uvicorn's loggers (once)."""
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, SecretFilter) for f in target.filters):
            target.addFilter(SecretFilter())
