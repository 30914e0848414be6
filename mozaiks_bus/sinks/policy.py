"""What an HTTP sink does with each outcome of an attempt: the retry table.

=====================================  ==============================================
outcome of one attempt                 what happens
=====================================  ==============================================
2xx                                    delivered (done)
409                                    delivered: "already applied" (``accept_409``,
                                       the default); with ``accept_409 = false`` a
                                       409 is like any other 4xx
408, 425, 429, 5xx                     retried after exponential backoff with full
                                       jitter; a ``Retry-After`` (seconds or HTTP
                                       date) asking for longer wins, capped at
                                       2 x ``backoff_max_s``
3xx (redirects are never followed)     retried like a 5xx
connection error, timeout, a worker    retried like a 5xx (the same idempotency key,
lost mid-call                          so the server can drop a duplicate)
any other 4xx                          dead letter at once, with a redacted excerpt
                                       of the response
the event cannot be mapped to the      dead letter at once
sink's format
any retryable outcome on the last      dead letter
attempt (``attempts``)
=====================================  ==============================================

A retryable outcome also counts as a failure for the sink's circuit breaker (see
:mod:`mozaiks_bus.sinks.circuit`); any answer that is not retryable shows the endpoint is
up. Pure functions only: :mod:`mozaiks_bus.sinks.job` applies them.
"""

from __future__ import annotations

import email.utils
import enum
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "EXCERPT_LIMIT",
    "Outcome",
    "Verdict",
    "classify_error",
    "classify_status",
    "parse_retry_after",
    "redact",
]

EXCERPT_LIMIT = 300
RETRY_STATUSES = frozenset({408, 425, 429})
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_SIGNATURE_RE = re.compile(r"v1,[A-Za-z0-9+/=]{16,}")


class Verdict(enum.Enum):
    """What to do after an attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The classified result of one attempt (``error`` is already redacted)."""

    verdict: Verdict
    error: str = ""
    status: int | None = None
    retry_after_s: float | None = None

    @property
    def breaker_failure(self) -> bool:
        """Whether the circuit breaker counts this attempt as a failure."""
        return self.verdict is Verdict.RETRY


def classify_status(status: int, *, accept_409: bool = True) -> Verdict:
    """The verdict for an HTTP status code (see the table in the module docstring)."""
    if 200 <= status < 300 or (status == 409 and accept_409):
        return Verdict.DELIVERED
    if status in RETRY_STATUSES or status >= 500 or 300 <= status < 400:
        return Verdict.RETRY
    return Verdict.DEAD


def classify_error(exc: BaseException) -> Outcome:
    """A network-level failure (connect, read, write, timeout...): always retried."""
    return Outcome(Verdict.RETRY, error=f"{type(exc).__name__}: {exc}"[:EXCERPT_LIMIT])


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date).

    None when absent or unreadable; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


def redact(text: str, secrets: Iterable[str] = (), *, limit: int = EXCERPT_LIMIT) -> str:
    """``text`` without the given secret values, bearer tokens or v1 signatures, cut to
    ``limit`` characters (for error messages, dead letters and admin output)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _BEARER_RE.sub(r"\1***", text)
    text = _SIGNATURE_RE.sub("v1,***", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
