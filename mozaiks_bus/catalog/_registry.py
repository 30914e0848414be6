"""The catalog registry: event type name -> pydantic model of its ``data``.

Contract:

* :class:`Catalog` maps a type name to a pydantic v2 model. Names follow the bus rule
  (:data:`mozaiks_bus.event.TYPE_RULE`: CloudEvents-style, ``com.example.order-created``
  and ``Order.Created`` included) and are case-sensitive: ``Order.Created`` and
  ``order.created`` are two entries. :meth:`Catalog.validate`
  checks a ``data`` dict against the model of a known type and raises
  :class:`~mozaiks_bus.errors.InvalidEvent` (``field`` = ``data.<dotted.path>`` of the
  first problem, ``rule`` = pydantic's message plus the event type) when it fails.
  It never modifies, copies into or replaces the dict it is given: the in-process scope
  hands that very object to local subscribers. An unknown type accepts any JSON object.
* Models are validated in pydantic's lax mode (``"1"`` is a valid ``int``), and the
  built-in ones allow extra keys (see :class:`EventModel`).
* :meth:`Catalog.json_schema` exports every model as one JSON Schema (2020-12) document.
* :data:`CATALOG` is the default instance; ``mozaiks_bus.catalog`` fills it with the
  built-in models on import. :func:`register` adds a user model to it. Registering a
  different model under a name already taken raises :class:`ConfigError`;
  registering the same model again is a no-op.

Registration is thread-safe (copy-on-write); lookups take no lock.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import CoreSchema

from mozaiks_bus.errors import ConfigError, InvalidEvent
from mozaiks_bus.event import TYPE_RULE, validate_type

__all__ = [
    "CATALOG",
    "JSON_SCHEMA_DIALECT",
    "Catalog",
    "EventModel",
    "register",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_DEFAULT_TITLE = "mozaiks-bus event catalog"


class EventModel(BaseModel):
    """Base of the built-in catalog models (user models may be any ``BaseModel``).

    ``extra="allow"``: the platform's publishers are existing code that adds keys
    over time (``build_id``, ``cached_prompt_tokens``, ``error_code``...), and the
    consumers read the dict with ``.get``; rejecting an unknown key would break a
    working publisher for no gain. The catalog checks that the keys a consumer
    relies on are there and well-typed, nothing more.

    Class attributes: ``event_type`` (the bus type name the model is registered
    under) and ``local_only`` (True when the payload carries live objects and must
    never leave the process).
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    event_type: ClassVar[str] = ""
    local_only: ClassVar[bool] = False


class _LenientSchema(GenerateJsonSchema):
    """Schema generator that degrades a non-JSON type to ``{}`` instead of failing."""

    def handle_invalid_for_json_schema(
        self, schema: CoreSchema, error_info: str
    ) -> JsonSchemaValue:
        return {"description": f"not representable in JSON Schema ({error_info})"}


class Catalog:
    """A registry of event type name -> pydantic model of the event's ``data``."""

    def __init__(self, models: Mapping[str, type[BaseModel]] | None = None) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, type[BaseModel]] = {}
        for type_name, model in (models or {}).items():
            self.register(type_name, model)

    # -- registration -------------------------------------------------------------

    def register(self, type_name: str, model: type[BaseModel]) -> None:
        """Map ``type_name`` to ``model``.

        Raises ConfigError when the name is not a valid type name, ``model`` is not
        a pydantic model class, or the name is already mapped to a different model.
        """
        try:
            validate_type(type_name)
        except InvalidEvent:
            raise ConfigError("catalog", f"type name {type_name!r} {TYPE_RULE}") from None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(
                f"catalog[{type_name}]", f"must be a pydantic BaseModel subclass, got {model!r}"
            )
        with self._lock:
            existing = self._models.get(type_name)
            if existing is model:
                return
            if existing is not None:
                raise ConfigError(
                    f"catalog[{type_name}]",
                    f"already registered to {_qualname(existing)}; "
                    f"refusing to replace it with {_qualname(model)}",
                )
            updated = dict(self._models)
            updated[type_name] = model
            self._models = updated

    def register_all(self, models: Iterable[type[EventModel]]) -> None:
        """Register each model under its ``event_type`` class attribute."""
        for model in models:
            self.register(model.event_type, model)

    def copy(self) -> Catalog:
        """An independent catalog with the same registrations."""
        return Catalog(self._models)

    # -- lookup -------------------------------------------------------------------

    def get(self, type_name: str) -> type[BaseModel] | None:
        """The model registered for ``type_name``, or None for an unknown type."""
        return self._models.get(type_name)

    def types(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._models)

    def is_local_only(self, type_name: str) -> bool:
        """True when events of this type must stay in the process that emits them."""
        model = self._models.get(type_name)
        return model is not None and bool(getattr(model, "local_only", False))

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(self.types())

    def __len__(self) -> int:
        return len(self._models)

    # -- validation ---------------------------------------------------------------

    def validate(self, type_name: str, data: object) -> None:
        """Check ``data`` against the model of ``type_name``; raise InvalidEvent if bad.

        ``data`` must be a dict (any Mapping is accepted) whatever the type. It is
        only read: never modified, never replaced. Unknown types accept any dict.
        """
        if not isinstance(data, Mapping):
            raise InvalidEvent("data", "must be a JSON object", value=data)
        model = self._models.get(type_name)
        if model is None:
            return
        try:
            model.model_validate(data if isinstance(data, dict) else dict(data))
        except ValidationError as exc:
            raise _invalid_event(type_name, exc) from None

    # -- export -------------------------------------------------------------------

    def json_schema(self, *, title: str = _DEFAULT_TITLE) -> dict[str, Any]:
        """One JSON Schema (2020-12) document describing every registered type.

        ``$defs`` holds one schema per model (validation mode, camelCase names kept
        as the wire uses them); ``x-mozaiks-events`` maps each type name, sorted, to
        ``{"$ref", "description"}`` plus ``x-local-only``, ``x-dotnet-urn`` and
        ``x-dotnet-queue`` where they apply. The result is JSON-serialisable.
        """
        models = self._models
        names = sorted(models)
        unique: list[type[BaseModel]] = []
        for name in names:
            if models[name] not in unique:
                unique.append(models[name])
        inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
            (model, "validation") for model in unique
        ]
        refs, top = models_json_schema(
            inputs, ref_template="#/$defs/{model}", schema_generator=_LenientSchema
        )
        defs = top.get("$defs", {})
        events: dict[str, Any] = {}
        for name in names:
            model = models[name]
            entry: dict[str, Any] = {
                "$ref": refs[(model, "validation")]["$ref"],
                "description": _summary(model) or f"Data of {name} events.",
            }
            if getattr(model, "local_only", False):
                entry["x-local-only"] = True
            urn = getattr(model, "dotnet_urn", None)
            if isinstance(urn, str):
                entry["x-dotnet-urn"] = urn
            queue = getattr(model, "dotnet_queue", None)
            if isinstance(queue, str):
                entry["x-dotnet-queue"] = queue
            events[name] = entry
        return {
            "$schema": JSON_SCHEMA_DIALECT,
            "title": title,
            "description": (
                "Data (CloudEvents `data`) of every event type in the mozaiks-bus "
                "catalog. `x-mozaiks-events` maps each event type name to its schema."
            ),
            "$defs": {key: defs[key] for key in sorted(defs)},
            "x-mozaiks-events": events,
        }


def _invalid_event(type_name: str, exc: ValidationError) -> InvalidEvent:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    field = f"data.{loc}" if loc else "data"
    rule = f"{first['msg']} (catalog model for event type {type_name!r})"
    if len(errors) > 1:
        rule += f"; {len(errors) - 1} more problem(s)"
    value = None if first["type"] == "missing" else first.get("input")
    return InvalidEvent(field, rule, value=value)


def _qualname(model: type[BaseModel]) -> str:
    return f"{model.__module__}.{model.__qualname__}"


def _summary(model: type[BaseModel]) -> str:
    doc = model.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return ""
    return " ".join(inspect.cleandoc(doc).split("\n\n", 1)[0].split())


CATALOG = Catalog()
"""The default catalog; ``import mozaiks_bus.catalog`` fills it with the built-ins."""


def register(type_name: str, model: type[BaseModel]) -> None:
    """Add ``model`` for ``type_name`` to the default :data:`CATALOG`.

    Raises ConfigError when the name is taken by a different model.
    """
    CATALOG.register(type_name, model)
