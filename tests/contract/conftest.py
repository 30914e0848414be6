"""The transports the behavioural suite runs against, and what each can do.

Every test in ``tests/contract/`` takes ``backend`` and runs once per transport (in the
manner of watermill's ``pubsub/tests`` with its ``Features``): ``local`` (no broker),
``memory`` (``memory://``, fakeredis in this process), ``redis`` (a real private
``redis-server``) and ``cluster`` (``redis+cluster://``, a 3+3 Redis Cluster on
loopback). A test that needs a capability skips where it is missing, saying
which. Fault tests that kill processes stay in ``tests/integration/``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mozaiks_bus import Bus, load_settings
from tests.support import FAST


@dataclass(frozen=True)
class Capabilities:
    """What a transport offers; tests skip on what it lacks."""

    remote: bool  # events reach other Bus instances on the same broker (fan-out, ui)
    durable: bool  # consumer groups: ack, retry, dead letter, reclaim, replay


CAPABILITIES = {
    "local": Capabilities(remote=False, durable=False),
    "memory": Capabilities(remote=True, durable=True),
    "redis": Capabilities(remote=True, durable=True),
    "cluster": Capabilities(remote=True, durable=True),
}


@dataclass
class Backend:
    """One transport under test: ``make_bus()`` builds buses on the same broker."""

    name: str
    can: Capabilities
    url: str | None
    prefix: str

    def make_bus(self, **settings: Any) -> Bus:
        """A new bus on this backend (same broker and prefix as every other one)."""
        values = {**FAST, "prefix": self.prefix, **settings}
        return Bus(config=load_settings(broker_url=self.url, **values))

    def require(self, capability: str) -> None:
        """Skip the calling test unless this backend has ``capability``."""
        if not getattr(self.can, capability):
            pytest.skip(f"the {self.name} transport has no {capability} capability")


@pytest.fixture(params=sorted(CAPABILITIES))
def backend(request: pytest.FixtureRequest, key_prefix: str, isolated_env: pytest.MonkeyPatch
            ) -> Backend:
    """Each contract test once per transport."""
    name: str = request.param
    if name == "local":
        url = None
    elif name == "memory":
        url = request.getfixturevalue("memory_url")
    elif name == "cluster":
        url = request.getfixturevalue("cluster_url")
    else:
        url = request.getfixturevalue("redis_url")
    return Backend(name, CAPABILITIES[name], url, key_prefix)


MakeBus = Callable[..., Bus]
