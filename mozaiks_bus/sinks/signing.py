"""Standard Webhooks signatures (v1, HMAC-SHA256), written from the specification.

Contract
--------
A secret is ``whsec_`` + base64 of the key bytes (a bare base64 string is accepted
too). For a message ``id``, a ``timestamp`` (integer seconds since the epoch, UTC) and
the raw ``body`` bytes, the signature is ``v1,`` + base64(HMAC-SHA256(key,
``{id}.{timestamp}.{body}``)). :func:`sign_headers` returns the three headers
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``; with several secrets
(key rotation: the environment variable holds them separated by spaces) the signature
header carries one space-separated ``v1,...`` per secret.

:func:`verify` is the receiving side: it checks the raw bytes with a constant-time
comparison and rejects a timestamp more than ``tolerance_s`` (default 300 s) away from
now, in either direction. It raises :class:`SignatureError`, never returns False.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from mozaiks_bus.errors import ConfigError, MozaiksBusError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SECRET_PREFIX",
    "SignatureError",
    "decode_secret",
    "sign",
    "sign_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105  (the spec's prefix, not a secret)
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(MozaiksBusError, ValueError):
    """A webhook failed verification (missing header, stale timestamp, bad signature)."""


def decode_secret(secret: str, *, field: str = "signing secret") -> bytes:
    """The key bytes of a ``whsec_...`` (or bare base64) secret; ConfigError if invalid.

    The message names ``field`` (say, the environment variable), never the value.
    """
    text = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(field, "must be whsec_ followed by base64 (Standard Webhooks)") from None
    if len(key) < 16:
        raise ConfigError(field, "must decode to at least 16 bytes (Standard Webhooks)")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>``."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(
    keys: Sequence[bytes], msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (one signature per key)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": " ".join(sign(key, msg_id, stamp, body) for key in keys),
    }


def verify(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise :class:`SignatureError` unless it is valid."""
    key = secret if isinstance(secret, bytes) else decode_secret(secret)
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp_text = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and stamp_text and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        stamp = int(stamp_text)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance_s:
        raise SignatureError(f"webhook-timestamp is more than {tolerance_s:g}s from now")
    expected = sign(key, msg_id, stamp, body).encode()
    for candidate in signatures.split(" "):
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("no matching v1 signature")
