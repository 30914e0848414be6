"""Store-if-new in one round trip: the HTTP API's dedupe check, store and mark in one
script (``Transport.publish_once``).

Each event comes with a :class:`~mozaiks_bus.keys.KeyMark` (its dedupe key and the
"done" value). The script reads every mark key first. If any holds a value other than
its own mark's (another body's mark, or a claim still pending), it writes nothing and
returns what it found; otherwise it runs the commands of each event whose key is empty
(what the sender would have sent for it: XADD, index SADD, PUBLISH) and sets its mark,
and returns ``1`` there and the found mark elsewhere (a duplicate). A script runs
atomically; if a command fails inside it (WRONGTYPE), the events before it stay stored
and marked and the rest is not run.

The ui scope's own script cannot run inside this one: events with the ui scope take
the claim-then-store path. The keys the commands touch are passed as arguments, not
declared, so this runs on one Redis (or Sentinel); the cluster transport claims each
mark key first instead (:mod:`mozaiks_bus.transports.cluster`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mozaiks_bus.keys import KeyMark
from mozaiks_bus.transports.redis.commands import CommandBuilder
from mozaiks_bus.transports.redis.items import EventItem

__all__ = ["STORE_IF_NEW", "store_if_new_command"]

STORE_IF_NEW = """
local unpack = unpack or table.unpack
local n = tonumber(ARGV[1])
local pos = 2
local found, plans = {}, {}
for i = 1, n do
  local mark, ttl, ncmd = ARGV[pos], ARGV[pos + 1], tonumber(ARGV[pos + 2])
  pos = pos + 3
  local cmds = {}
  for c = 1, ncmd do
    local nargs = tonumber(ARGV[pos])
    cmds[c] = {unpack(ARGV, pos + 1, pos + nargs)}
    pos = pos + nargs + 1
  end
  plans[i] = {mark, ttl, cmds}
  found[i] = redis.call('GET', KEYS[i])
  if found[i] and found[i] ~= mark then return found end
end
for i = 1, n do
  if not found[i] then
    for _, cmd in ipairs(plans[i][3]) do redis.call(unpack(cmd)) end
    redis.call('SET', KEYS[i], plans[i][1], 'EX', plans[i][2])
    found[i] = 1
  end
end
return found
"""


def store_if_new_command(builder: CommandBuilder, items: Sequence[EventItem],
                         marks: Sequence[KeyMark]) -> tuple[Any, ...]:
    """The one EVAL that stores ``items`` (one mark each, same order) if new."""
    if len(items) != len(marks):
        raise ValueError("store_if_new needs exactly one mark per event")
    args: list[Any] = [len(items)]
    for item, mark in zip(items, marks, strict=True):
        commands: list[tuple[Any, ...]] = []
        builder.add(commands, item)
        args += (mark.value, mark.ttl_s, len(commands))
        for command in commands:
            if command[0] == "EVAL":
                raise ValueError("an event with the ui scope cannot be stored if new in "
                                 "one script")
            args.append(len(command))
            args.extend(command)
    return ("EVAL", STORE_IF_NEW, len(marks), *(mark.key for mark in marks), *args)
