"""Watching the durable streams without consuming: new entries of every matching stream.

:func:`tail_streams` XREADs (no consumer group, so nothing is acked or taken from
anyone) each stream whose type matches ``pattern``, from the moment it was called;
streams that appear later are included. One stream per call (no multi-slot reads); each
read blocks ``block_ms`` at most, so ``done`` is noticed within about that time per
stream. Used by ``mozaiks-bus tail`` and the console's live tail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from mozaiks_bus.durable.streams import StreamInspector
from mozaiks_bus.event import Event
from mozaiks_bus.partitions import base_type
from mozaiks_bus.patterns import compile_pattern

__all__ = ["tail_streams"]


async def tail_streams(inspector: StreamInspector, pattern: str, show: Callable[[Event], None],
                       done: asyncio.Event, *, block_ms: int = 200) -> None:
    """Call ``show`` with every new event of the matching streams until ``done`` is set."""
    matcher = compile_pattern(pattern)
    client, keys = inspector.client, inspector.keys
    started = f"{int(time.time() * 1000)}-0"
    positions: dict[str, str] = {}
    while not done.is_set():
        for type_name in await inspector.types():
            if matcher.matches(base_type(type_name)) and keys.stream(type_name) not in positions:
                positions[keys.stream(type_name)] = started
        if not positions:
            await asyncio.sleep(block_ms / 1000)
            continue
        for key in list(positions):
            reply: Any = await client.xread({key: positions[key]}, count=100, block=block_ms)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    positions[key] = entry_id.decode()
                    show(Event.from_wire(fields[b"e"]))
