"""AG2 runs through the bus: the platform's UI payloads and a run forwarder.

``pip install 'mozaiks-bus[ag2]'`` (``ag2>=0.10.2,<1.0``: the classic ``autogen`` API the
platform pins; ag2 1.0 dropped those event classes). Neither module imports AG2 itself
(events are recognised by class name), so this package imports without it.

* :func:`build_ui_event_payload` (:mod:`.payloads`) - one AG2 event as the platform's
  ``{"kind": ...}`` payload, JSON-safe, read from the real event fields;
* :func:`forward_run` (:mod:`.forward`) - a run's events to ``bus.ui`` in order, its
  input requests answerable from any API worker, its end published durably; frames
  wait out a Redis outage (:mod:`.outbox`), and a UI given up stops the run cleanly.
"""

from mozaiks_bus.ag2.forward import RunOutcome, forward_run
from mozaiks_bus.ag2.payloads import EventBuildContext, build_ui_event_payload, json_safe

__all__ = ["EventBuildContext", "RunOutcome", "build_ui_event_payload", "forward_run",
           "json_safe"]
