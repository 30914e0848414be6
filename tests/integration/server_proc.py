"""A third process on the ui scope, driven by the server tests.

``python -m tests.integration.server_proc URL PREFIX send CHAT START COUNT``: send
frames ``{"kind": "text", "n": START..}`` to CHAT with ``bus.ui.send``, print ``sent``.

``python -m tests.integration.server_proc URL PREFIX inputs CHAT REQUEST_ID TOOL_ID``:
register an input request and wait for a UI tool response; print ``ready`` once both
claims are in Redis, ``input <text>`` per callback call, ``tool <json>`` when the tool
response arrives; after both (or 30 s) wait 1 s more for strays, print ``calls <n>``
and exit.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from mozaiks_bus import Bus, load_settings


def _bus(url: str, prefix: str) -> Bus:
    return Bus(config=load_settings(broker_url=url, prefix=prefix, health_check_interval_s=0.5))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def send(url: str, prefix: str, chat: str, start: int, count: int) -> None:
    async with _bus(url, prefix) as bus:
        for n in range(start, start + count):
            await bus.ui.send(chat, {"kind": "text", "content": f"frame {n}", "n": n})
    _say("sent")


async def inputs(url: str, prefix: str, chat: str, request_id: str, tool_id: str) -> None:
    async with _bus(url, prefix) as bus:
        calls = 0
        got_input = asyncio.Event()

        def on_input(text: str) -> None:
            nonlocal calls
            calls += 1
            _say(f"input {text}")
            got_input.set()

        bus.ui.register_input_request(chat, request_id, on_input)
        waiter = asyncio.create_task(bus.ui.wait_for_response(tool_id, 30))
        keys = bus.ui.keys
        client = bus.streams.client
        deadline = time.monotonic() + 10
        names = (keys.input_request(f"input:{request_id}"), keys.input_request(f"tool:{tool_id}"))
        while not all([await client.exists(name) for name in names]):
            if time.monotonic() > deadline:
                raise SystemExit("claims never appeared")
            await asyncio.sleep(0.02)
        _say("ready")
        response = await waiter
        _say(f"tool {json.dumps(response)}")
        await asyncio.wait_for(got_input.wait(), 30)
        await asyncio.sleep(1.0)
        _say(f"calls {calls}")


def main() -> None:
    url, prefix, command, *args = sys.argv[1:]
    if command == "send":
        asyncio.run(send(url, prefix, args[0], int(args[1]), int(args[2])))
    elif command == "inputs":
        asyncio.run(inputs(url, prefix, *args))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
