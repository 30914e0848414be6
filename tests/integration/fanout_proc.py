"""A real OS process on the fan-out scope, driven by the integration tests.

``python -m tests.integration.fanout_proc subscribe URL PREFIX``: subscribe to
``settings_updated``, print ``ready`` once the listener receives, then print each
received ``n`` as one line; exit after ``count`` events or on SIGTERM.

``python -m tests.integration.fanout_proc emit URL PREFIX COUNT``: subscribe locally too,
emit COUNT events from plain sync code, then print ``own <n>,<n>,...`` (what its own
subscriber got) and exit.
"""

from __future__ import annotations

import asyncio
import sys
import time

from mozaiks_bus import Bus, Event, load_settings


def _bus(url: str, prefix: str) -> Bus:
    return Bus(config=load_settings(broker_url=url, prefix=prefix, health_check_interval_s=0.5))


async def subscribe(url: str, prefix: str, count: int) -> None:
    bus = _bus(url, prefix)
    done = asyncio.Event()
    seen = 0

    def on_event(event: Event) -> None:
        nonlocal seen
        seen += 1
        sys.stdout.write(f"{event.data['n']}\n")
        if seen >= count:
            done.set()

    bus.subscribe("settings_updated", on_event)
    await bus.start()
    deadline = time.monotonic() + 10
    while bus.health()["listener"] != "receiving" and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        sys.stdout.flush()
        await bus.stop()


def emit(url: str, prefix: str, count: int) -> None:
    bus = _bus(url, prefix)
    own: list[int] = []
    bus.subscribe("settings_updated", lambda event: own.append(event.data["n"]))
    for n in range(count):  # plain sync code: no running loop in this thread
        bus.emit("settings_updated", {"user_id": "u", "plugin": "p", "n": n})
    deadline = time.monotonic() + 20
    while bus.transport.health()["buffered"] and time.monotonic() < deadline:
        time.sleep(0.01)
    asyncio.run(bus.stop())
    print("own " + ",".join(map(str, own)), flush=True)


def main(argv: list[str]) -> None:
    command, url, prefix, count = argv[0], argv[1], argv[2], int(argv[3])
    if command == "subscribe":
        asyncio.run(subscribe(url, prefix, count))
    else:
        emit(url, prefix, count)


if __name__ == "__main__":
    main(sys.argv[1:])
