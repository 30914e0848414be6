"""``python -m mozaiks_bus.cli``: the same as the ``mozaiks-bus`` command."""

from mozaiks_bus.cli import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
