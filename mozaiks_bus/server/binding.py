"""The CloudEvents HTTP protocol binding (1.0.2) of ``POST /v1/events``: request -> events.

Which mode a request is in is decided by its ``Content-Type`` and headers, as the
binding specifies:

* **structured** (``application/cloudevents+json``): the body is one CloudEvent object;
* **batched** (``application/cloudevents-batch+json``): the body is an array of them
  (possibly of one; an empty array is refused);
* **binary** (any other ``Content-Type`` and a ``ce-*`` header): the attributes are the
  ``ce-*`` headers (percent-decoded; ``ce-specversion``, ``ce-id``, ``ce-source`` and
  ``ce-type`` are required, a missing one answers 422 naming the header), the body is
  ``data`` and its media type, ``Content-Type``, is ``datacontenttype``; ``data`` must be
  a JSON object (a JSON ``Content-Type``: ``application/json`` or ``*+json``, or none,
  as the SDKs send it; 415 otherwise); an empty body is ``{}``; any other ``ce-<name>``
  header is the extension ``<name>``;
* **plain JSON** (what the API accepted before the binding, kept): an object is one
  event, an array a batch.

Each mode gives the same structured-mode dicts, so the checks, the dedupe digest and
the answers that follow are those of :mod:`.events` whatever the mode: the same event
sent in binary mode and then in structured mode is a duplicate, not a conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, NamedTuple
from urllib.parse import unquote

from mozaiks_bus.server.errors import HttpError
from mozaiks_bus.server.limits import parse_json

__all__ = ["BATCH_MEDIA_TYPE", "STRUCTURED_MEDIA_TYPE", "Mode", "Received", "read_events"]

STRUCTURED_MEDIA_TYPE = "application/cloudevents+json"
BATCH_MEDIA_TYPE = "application/cloudevents-batch+json"
_CE_PREFIX = "ce-"
_BINARY_REQUIRED = ("specversion", "id", "source", "type")


class Mode(Enum):
    """How a request carried its events."""

    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"
    JSON = "json"


class Received(NamedTuple):
    """What a request carried: the items, whether they came as an array, and how."""

    items: list[Any]
    batch: bool
    mode: Mode


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def read_events(headers: Mapping[str, str], body: bytes, *, max_depth: int,
                max_batch: int) -> Received:
    """The request's events as structured-mode items (not yet validated), and its mode.

    ``headers`` must be case-insensitive (Starlette's are). Raises :class:`HttpError`:
    400 malformed JSON, 413 a batch over ``max_batch``, 415 binary data that is not JSON,
    422 a missing binary header or a body of the wrong shape for its mode.
    """
    content_type = headers.get("content-type")
    media = _media_type(content_type)
    if media == STRUCTURED_MEDIA_TYPE:
        parsed = parse_json(body, max_depth=max_depth)
        if not isinstance(parsed, dict):
            raise _shape("a structured-mode body (application/cloudevents+json) must be one "
                         "CloudEvent object; send a batch as " + BATCH_MEDIA_TYPE)
        return Received([parsed], False, Mode.STRUCTURED)
    if media == BATCH_MEDIA_TYPE:
        parsed = parse_json(body, max_depth=max_depth)
        if not isinstance(parsed, list):
            raise _shape("a batched-mode body (application/cloudevents-batch+json) must be an "
                         "array of CloudEvent objects")
        return Received(_bounded(parsed, max_batch), True, Mode.BATCH)
    if any(name.lower().startswith(_CE_PREFIX) for name in headers):
        return Received([_binary(headers, body, content_type, media, max_depth)], False,
                        Mode.BINARY)
    parsed = parse_json(body, max_depth=max_depth)
    if isinstance(parsed, dict):
        return Received([parsed], False, Mode.JSON)
    if isinstance(parsed, list):
        return Received(_bounded(parsed, max_batch), True, Mode.JSON)
    raise _shape("must be a CloudEvent object or an array of them")


def _binary(headers: Mapping[str, str], body: bytes, content_type: str | None, media: str,
            max_depth: int) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(_CE_PREFIX):
            item[lowered[len(_CE_PREFIX):]] = unquote(value)
    for attribute in _BINARY_REQUIRED:
        if attribute not in item:
            header = _CE_PREFIX + attribute
            raise HttpError(422, "invalid_event", f"{header}: is required (CloudEvents HTTP "
                            "binary mode)", field=header, rule="is required (CloudEvents HTTP "
                            "binary mode)")
    if "datacontenttype" in item:
        raise HttpError(422, "invalid_event", "ce-datacontenttype: must not be sent in binary "
                        "mode; the body's media type is Content-Type", field="ce-datacontenttype",
                        rule="not allowed in binary mode (use Content-Type)")
    if not body.strip():
        item["data"] = {}
        return item
    if media and not _is_json(media):  # no Content-Type: JSON, as the CloudEvents JSON format
        raise HttpError(415, "unsupported_media_type", f"Content-Type {content_type or '(none)'!r}"
                        ": event data must be a JSON object (application/json or *+json)",
                        field="Content-Type", rule="must be application/json or *+json")
    data = parse_json(body, max_depth=max_depth, root="data")
    if not isinstance(data, dict):
        raise HttpError(422, "invalid_event", "data: must be a JSON object (the request body "
                        "in binary mode)", field="data", rule="must be a JSON object")
    item["data"] = data
    if media and media != "application/json":
        assert content_type is not None  # a JSON media type was read from it
        item["datacontenttype"] = content_type
    return item


def _bounded(items: list[Any], limit: int) -> list[Any]:
    if not items:
        raise HttpError(422, "invalid_event", "body: the array holds no event", field="body",
                        rule="must hold at least one event")
    if len(items) > limit:
        raise HttpError(413, "batch_too_large", f"the batch holds {len(items)} events, over "
                        f"the limit of {limit} (api_max_batch)")
    return items


def _shape(message: str) -> HttpError:
    return HttpError(422, "invalid_event", f"body: {message}", field="body",
                     rule="must be an object or an array, as its Content-Type says")
