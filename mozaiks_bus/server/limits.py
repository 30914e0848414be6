"""Request limits: body size (before the body is read), JSON nesting depth, JSON rules.

:class:`BodyLimit` is raw ASGI middleware. A declared ``Content-Length`` over the limit
is answered 413 at once, before the application runs or the body is read. A body
without a length (``Transfer-Encoding: chunked``) or one that lies about it is counted
as it arrives: the chunk that crosses the limit makes ``receive`` raise
:class:`~mozaiks_bus.server.errors.HttpError` 413, so no more of it is read. Only HTTP
requests are wrapped; WebSocket messages are bounded by the server's ``ws_max_size``
and checked again by the socket handler.

:func:`parse_json` rejects bodies that are not UTF-8 JSON (400), nest arrays/objects
deeper than the limit (400; checked on the raw bytes before parsing, so a hostile body
never reaches the recursive decoder), or use NaN/Infinity (400: not JSON).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mozaiks_bus.server.errors import HttpError
from mozaiks_bus.wire import try_fast_json

__all__ = ["BodyLimit", "json_depth_exceeds", "parse_json"]

_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte but brackets


def _too_large(limit: int) -> HttpError:
    return HttpError(413, "body_too_large", f"the request body is over the limit of "
                    f"{limit} bytes (api_max_body_bytes)")


class BodyLimit:
    """Reject HTTP bodies over ``limit`` bytes without reading them whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count what is read."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _send_error(send, _too_large(self.limit))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _too_large(self.limit)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(send: Send, error: HttpError) -> None:
    body = json.dumps(error.body()).encode()
    await send({
        "type": "http.response.start", "status": error.status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether arrays/objects in ``raw`` nest deeper than ``limit`` (strings ignored)."""
    brackets = _STRING_RE.sub(b"", raw).translate(None, _BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(raw: bytes, *, max_depth: int) -> Any:
    """Decode a JSON body or raise HttpError 400 saying why."""
    if not raw.strip():
        raise HttpError(400, "malformed_json", "the request body is empty; send JSON")
    if json_depth_exceeds(raw, max_depth):
        raise HttpError(400, "too_deep", f"the JSON nests arrays/objects deeper than "
                       f"{max_depth} levels (api_max_json_depth)")
    decoded, value = try_fast_json(raw)
    if decoded:
        return value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "malformed_json", "the request body is not UTF-8") from None
    try:
        return _DECODER.decode(text)
    except ValueError as exc:  # JSONDecodeError, or an over-long integer
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = (f" at line {exc.lineno} column {exc.colno}"
                 if isinstance(exc, json.JSONDecodeError) else "")
        raise HttpError(400, "malformed_json", f"the body is not valid JSON: {message}{where}")\
            from None
    except RecursionError:  # pragma: no cover - the depth check runs first
        raise HttpError(400, "too_deep", "the JSON nests too deeply") from None
