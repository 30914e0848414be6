"""The HTTP and WebSocket service of mozaiks-bus (FastAPI; OpenAPI at ``/docs``).

``create_app(bus=None, settings=None)`` builds the app; ``mozaiks-bus serve`` runs it
under uvicorn. Endpoints (each module's docstring is its contract):

=============================================  =======  ====================
endpoint                                       scope    module
=============================================  =======  ====================
``POST /v1/events``                            publish  :mod:`.events`
``POST /v1/input``                             ui       :mod:`.input`
``WS /v1/ws/{chat_id}``                        ui       :mod:`.websocket`
``GET /v1/streams``                            admin    :mod:`.admin`
``GET /v1/dead-letters``                       admin    :mod:`.admin`
``POST /v1/dead-letters/{type}/{id}/replay``   admin    :mod:`.admin`
``DELETE /v1/dead-letters/{type}/{id}``        admin    :mod:`.admin`
``GET /v1/sinks``                              admin    :mod:`.admin`
``GET /healthz``, ``/readyz``, ``/metrics``    none     :mod:`.health`
=============================================  =======  ====================

Errors are ``{"error", "message"[, "field", "rule"]}`` (:mod:`.errors`); tokens,
scopes and the loopback-only open mode are in :mod:`.auth`; limits in :mod:`.limits`.
"""

from mozaiks_bus.server.app import create_app

__all__ = ["create_app"]
