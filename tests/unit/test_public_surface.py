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
    "ConfigError", "Event", "InvalidEvent", "MozaiksBusError", "PublishFailed", "Route",
    "RoutingTable", "Scope", "TransportError", "__version__", "load_settings",
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


def test_every_error_is_rooted_in_one_exception_tree() -> None:
    from mozaiks_bus import errors  # noqa: PLC0415

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), mozaiks_bus.MozaiksBusError)
