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
never reaches the recursive decoder), use NaN/Infinity (400: not JSON), or hold a string
or key with an escaped lone surrogate such as ``"\ud800"`` (400 naming the field: such a
string is not Unicode text, cannot be written as UTF-8 and is refused by I-JSON, RFC 7493
section 2.1). Every JSON body of the API is decoded here, so nothing after it meets one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mozaiks_bus.server.errors import HttpError
from mozaiks_bus.wire import json_depth_exceeds, try_fast_json

__all__ = ["SURROGATE_RULE", "BodyLimit", "json_depth_exceeds", "lone_surrogate_at",
           "parse_json"]

SURROGATE_RULE = ("must be valid Unicode text: an escaped lone surrogate (\\ud800-\\udfff "
                  "not in a high-low pair) is not a character (I-JSON, RFC 7493)")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def lone_surrogate_at(value: Any, root: str = "") -> str | None:
    """The field path (``data.items[2]``, ``[0].id``) of the first string in ``value``
    holding a lone surrogate, the path of the object when it is a key that holds one
    (``body`` at the top), or None when every string is Unicode text. Iterative, so any
    depth is safe."""
    stack: list[tuple[str, Any]] = [(root, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE_RE.search(item) is not None:
                return path or "body"
        elif isinstance(item, dict):
            for key in item:
                if _SURROGATE_RE.search(key) is not None:
                    return path or "body"
            stack.extend((_child(path, key), child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child)
                         for index, child in reversed(list(enumerate(item))))
    return None


def parse_json(raw: bytes, *, max_depth: int, root: str = "") -> Any:
    """Decode a JSON body or raise HttpError 400 saying why (``root`` prefixes the field
    named for a lone surrogate: ``"data"`` when the body is an event's data)."""
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
        value = _DECODER.decode(text)
    except ValueError as exc:  # JSONDecodeError, or an over-long integer
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = (f" at line {exc.lineno} column {exc.colno}"
                 if isinstance(exc, json.JSONDecodeError) else "")
        raise HttpError(400, "malformed_json", f"the body is not valid JSON: {message}{where}")\
            from None
    except RecursionError:  # pragma: no cover - the depth check runs first
        raise HttpError(400, "too_deep", "the JSON nests too deeply") from None
    # msgspec refuses lone surrogate escapes, so only this path can have decoded one
    field = lone_surrogate_at(value, root)
    if field is not None:
        raise HttpError(400, "malformed_json", f"{field}: {SURROGATE_RULE}", field=field,
                        rule=SURROGATE_RULE)
    return value
