"""A per-sink circuit breaker shared by every worker through one Redis hash.

Contract
--------
States (hash ``keys.sink_circuit(name)``, changed only by one Lua script, so workers on
any host agree):

* **closed**: attempts go through. ``circuit_failures`` consecutive failed attempts
  (retryable outcomes, see :mod:`mozaiks_bus.sinks.policy`) across all workers open it;
  any non-retryable answer resets the count.
* **open** for ``circuit_open_s``: no attempt is made. A job that finds it open is put
  back (RQ scheduler) to wake a little after the circuit's end, spread by jitter, and
  **does not use up one of its attempts**.
* **half-open**: after the open period, exactly one job gets to probe (a lease of
  ``timeout_s + 5`` seconds, so a probe whose worker died is replaced); the others look
  again after half to all of ``circuit_open_s``. A failed probe reopens the circuit; a
  good one closes it.
* **ramp**: for ``circuit_ramp_s`` after closing, only a growing share of jobs (from
  10 % to 100 %, chosen at random) is let through; the others wait a random part of the
  rest of the ramp, so a backlog comes back gradually instead of all at once.

``circuit_failures = 0`` turns the breaker off (no Redis round trip at all). A worker
that just saw a healthy closed circuit (no failure, no ramp) trusts it for
``HEALTHY_CACHE_S`` without asking Redis again, so a circuit opened by other workers is
noticed within that time; its own failures always go to Redis at once.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from mozaiks_bus.connection import text
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import SinkConfig

__all__ = ["CircuitBreaker", "CircuitState", "Gate"]

PROBE_LEASE_EXTRA_S = 5.0
HEALTHY_CACHE_S = 0.5

# KEYS[1] = circuit hash. ARGV: op, now, threshold, open_s, ramp_s, lease_s, r1, r2.
# acquire -> {allowed, wait_ms, state, failures}; success/failure -> {1, 0, state, failures}
_SCRIPT = """
local key, op, now = KEYS[1], ARGV[1], tonumber(ARGV[2])
local threshold, open_s = tonumber(ARGV[3]), tonumber(ARGV[4])
local ramp_s, lease_s = tonumber(ARGV[5]), tonumber(ARGV[6])
local r1, r2 = tonumber(ARGV[7]), tonumber(ARGV[8])
local state = redis.call('HGET', key, 'state') or 'closed'
local failures = tonumber(redis.call('HGET', key, 'failures') or '0')
local function ms(s) return math.floor(s * 1000) end
if op == 'acquire' then
  if state == 'open' then
    local open_until = tonumber(redis.call('HGET', key, 'open_until') or '0')
    if now < open_until then
      return {0, ms(open_until - now + r1 * open_s / 2), state, failures}
    end
    redis.call('HSET', key, 'state', 'half_open', 'probe_until', now + lease_s)
    return {1, 0, 'half_open', failures}
  elseif state == 'half_open' then
    local probe_until = tonumber(redis.call('HGET', key, 'probe_until') or '0')
    if now < probe_until then
      return {0, ms(math.min(probe_until - now, open_s) * (0.5 + r1 / 2)), state, failures}
    end
    redis.call('HSET', key, 'probe_until', now + lease_s)
    return {1, 0, state, failures}
  end
  local ramp_start = tonumber(redis.call('HGET', key, 'ramp_start') or '0')
  if ramp_s > 0 and now < ramp_start + ramp_s then
    local share = math.max(0.1, (now - ramp_start) / ramp_s)
    if r2 > share then
      return {0, ms(r1 * (ramp_start + ramp_s - now)), 'ramp', failures}
    end
    return {1, 0, 'ramp', failures}
  end
  return {1, 0, state, failures}
elseif op == 'success' then
  if failures > 0 then redis.call('HSET', key, 'failures', 0) end
  if state ~= 'closed' then
    redis.call('HSET', key, 'state', 'closed', 'ramp_start', now, 'closed_at', now)
    redis.call('HDEL', key, 'probe_until', 'open_until')
  end
  return {1, 0, 'closed', 0}
else
  failures = redis.call('HINCRBY', key, 'failures', 1)
  if state == 'half_open' or (state == 'closed' and threshold > 0 and failures >= threshold) then
    redis.call('HSET', key, 'state', 'open', 'open_until', now + open_s, 'opened_at', now)
    redis.call('HDEL', key, 'probe_until')
    redis.call('HINCRBY', key, 'opened', 1)
    state = 'open'
  end
  return {1, 0, state, failures}
end
"""


@dataclass(frozen=True, slots=True)
class Gate:
    """The breaker's answer before an attempt: go ahead, or wait ``wait_s``."""

    allowed: bool
    wait_s: float = 0.0
    state: str = "closed"
    failures: int = 0


@dataclass(frozen=True, slots=True)
class CircuitState:
    """A sink's breaker as the admin API shows it."""

    state: str
    consecutive_failures: int
    open_until: float | None
    opened_at: float | None
    times_opened: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {field: getattr(self, field) for field in self.__slots__}


class CircuitBreaker:
    """The breaker operations on a sync Redis client (used inside RQ jobs)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._script = client.register_script(_SCRIPT)
        self._healthy_until: dict[str, float] = {}

    def _call(self, sink: SinkConfig, op: str) -> Gate:
        args: list[str | float] = [
            op, time.time(), sink.circuit_failures, sink.circuit_open_s, sink.circuit_ramp_s,
            sink.timeout_s + PROBE_LEASE_EXTRA_S,
            random.random(), random.random(),  # noqa: S311  (jitter, not cryptography)
        ]
        reply: Any = self._script(keys=[self.keys.sink_circuit(sink.name)], args=args)
        allowed, wait_ms, state, failures = reply
        state_text = text(state)
        return Gate(bool(allowed), int(wait_ms) / 1000, state_text, int(failures))

    def acquire(self, sink: SinkConfig) -> Gate:
        """May an attempt go to ``sink`` now? (Always yes when the breaker is off.)"""
        if sink.circuit_failures == 0:
            return Gate(True)
        if time.monotonic() < self._healthy_until.get(sink.name, 0.0):
            return Gate(True)
        gate = self._call(sink, "acquire")
        if gate.allowed and gate.state == "closed" and gate.failures == 0:
            self._healthy_until[sink.name] = time.monotonic() + HEALTHY_CACHE_S
        return gate

    def record(self, sink: SinkConfig, *, failure: bool, gate: Gate) -> None:
        """Report an attempt's outcome (skipped when it cannot change anything)."""
        if sink.circuit_failures == 0:
            return
        if not failure and gate.state == "closed" and gate.failures == 0:
            return  # the common case: healthy endpoint, nothing to reset
        if failure:
            self._healthy_until.pop(sink.name, None)
        self._call(sink, "failure" if failure else "success")

    def state(self, sink_name: str) -> CircuitState:
        """The breaker of ``sink_name`` as stored."""
        raw: Any = self.client.hgetall(self.keys.sink_circuit(sink_name))
        data = {text(k): text(v) for k, v in raw.items()}
        state = data.get("state", "closed")
        open_until = float(data["open_until"]) if "open_until" in data else None
        return CircuitState(
            state=state, consecutive_failures=int(data.get("failures", 0)),
            open_until=open_until,
            opened_at=float(data["opened_at"]) if "opened_at" in data else None,
            times_opened=int(data.get("opened", 0)),
        )

    def reset(self, sink_name: str) -> None:
        """Forget the breaker's state (closed, no failures): an operator's override."""
        self.client.delete(self.keys.sink_circuit(sink_name))
