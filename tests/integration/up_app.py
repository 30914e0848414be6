"""The app `mozaiks-bus up` runs in the up test: consumers that record what they got.

Each consumer appends ``<group> <event type> <event id>`` to the file named by
``UP_TEST_OUT``. The ``audit.*`` consumer exists only when ``UP_TEST_AUDIT`` is set,
so a first run can leave ``audit.*`` events unconsumed for a second run to find.
"""

from __future__ import annotations

import os

from mozaiks_bus import Bus, Event

bus = Bus()


def _record(group: str, event: Event) -> None:
    with open(os.environ["UP_TEST_OUT"], "a", encoding="utf-8") as out:
        out.write(f"{group} {event.type} {event.id}\n")


@bus.consumer("orders.*", group="app")
def on_order(event: Event) -> None:
    _record("app", event)


if os.environ.get("UP_TEST_AUDIT"):

    @bus.consumer("audit.*", group="audit")
    def on_audit(event: Event) -> None:
        _record("audit", event)
