"""HTTP sinks: durable events delivered at least once to HTTP endpoints by an RQ worker.

The pieces (each module's docstring states its contract):

* :mod:`.formats` - request bodies (``cloudevents``, ``data``, the platform's mappings);
* :mod:`.signing` - Standard Webhooks signatures (sign and verify);
* :mod:`.policy` - the retry table (what each outcome of an attempt leads to);
* :mod:`.circuit` - the per-sink circuit breaker shared through Redis;
* :mod:`.dispatcher` - one consumer group per sink, one RQ job per event and sink;
* :mod:`.job` - the RQ job (one attempt, httpx);
* :mod:`.reconcile` - worker-crash detection and recovery;
* :mod:`.state`, :mod:`.dead_letters` - the admin API (state, dead letters, replay);
* :mod:`.worker` - the service ``mozaiks-bus worker`` runs.

The admin functions take a sync redis-py client and the settings; open it with
:func:`~.admin.admin_client`, which translates Redis errors:
``with admin_client(settings) as client: sink_states(client, settings)``.
"""

from mozaiks_bus.sinks.admin import admin_client
from mozaiks_bus.sinks.circuit import CircuitBreaker, CircuitState
from mozaiks_bus.sinks.config import SinkSecrets, check_sinks, sink_secrets
from mozaiks_bus.sinks.dead_letters import (
    SinkDeadLetter,
    dead_letter,
    delete_dead_letter,
    find_dead_letters,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letter,
    replay_dead_letters,
)
from mozaiks_bus.sinks.dispatcher import (
    SinkDispatcher,
    enqueue_delivery,
    record_sink_starts,
    sink_queue,
)
from mozaiks_bus.sinks.formats import FORMATS, Body, FormatError, SkipDelivery, render
from mozaiks_bus.sinks.policy import Outcome, Verdict, classify_status, parse_retry_after, redact
from mozaiks_bus.sinks.reconcile import Reconciler, SweepReport
from mozaiks_bus.sinks.signing import SignatureError, sign_headers, verify
from mozaiks_bus.sinks.state import SinkState, reset_circuit, sink_state, sink_states
from mozaiks_bus.sinks.worker import SinkWorker, WorkerOptions, run_worker

__all__ = [
    "FORMATS",
    "Body",
    "CircuitBreaker",
    "CircuitState",
    "FormatError",
    "Outcome",
    "Reconciler",
    "SignatureError",
    "SinkDeadLetter",
    "SinkDispatcher",
    "SinkSecrets",
    "SinkState",
    "SinkWorker",
    "SkipDelivery",
    "SweepReport",
    "Verdict",
    "WorkerOptions",
    "admin_client",
    "check_sinks",
    "classify_status",
    "dead_letter",
    "delete_dead_letter",
    "enqueue_delivery",
    "find_dead_letters",
    "list_dead_letters",
    "parse_retry_after",
    "purge_dead_letters",
    "record_sink_starts",
    "redact",
    "render",
    "replay_dead_letter",
    "replay_dead_letters",
    "reset_circuit",
    "run_worker",
    "sign_headers",
    "sink_queue",
    "sink_secrets",
    "sink_state",
    "sink_states",
    "verify",
]
