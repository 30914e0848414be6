"""The public surface is explicit: every module declares an ``__all__`` of names it
really has (ruff's RUF022 keeps each one sorted), and the top-level package exports
exactly the documented API."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import mozaiks_bus

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(mozaiks_bus.__path__, "mozaiks_bus.")
)

TOP_LEVEL = {
    "CATALOG", "BrokerUnavailable", "Bus", "BusClosed", "BusSettings", "Catalog",
    "ConfigError", "Delivery", "Event", "InvalidEvent", "MozaiksBusError", "PublishFailed",
    "RetryPolicy", "Route", "RoutingTable", "Scope", "SlowConsumer", "TransportError",
    "Unprocessable",
    "__version__", "load_settings",
}


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_an_all_of_real_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_the_top_level_package_exports_the_documented_api() -> None:
    assert set(mozaiks_bus.__all__) == TOP_LEVEL


def _exception_classes() -> list[type[BaseException]]:
    found = []
    for name in MODULES:
        for obj in vars(importlib.import_module(name)).values():
            if isinstance(obj, type) and issubclass(obj, BaseException) \
                    and obj.__module__ == name:
                found.append(obj)
    return found


def test_every_exception_class_of_the_package_is_in_the_one_tree() -> None:
    classes = _exception_classes()
    assert len(classes) >= 14  # the walk found the package's classes, not nothing
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes
               if not issubclass(c, mozaiks_bus.MozaiksBusError)]
    assert not outside, f"exception classes outside MozaiksBusError: {outside}"


def test_the_tree_drawn_in_errors_names_every_exception_class() -> None:
    from mozaiks_bus import errors  # noqa: PLC0415

    drawing = errors.__doc__ or ""
    undrawn = [c.__qualname__ for c in _exception_classes()
               if f" {c.__qualname__} " not in drawing and f"    {c.__qualname__}\n" not in drawing]
    assert not undrawn, f"errors.py's tree does not draw: {undrawn}"
