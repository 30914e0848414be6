"""API errors: one JSON shape for every 4xx/5xx the service answers.

``{"error": CODE, "message": TEXT}``, plus ``field`` and ``rule`` when an event or a
parameter broke a rule (taken from :class:`~mozaiks_bus.errors.InvalidEvent`). Messages
never echo a token or a whole body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mozaiks_bus.errors import InvalidEvent, MozaiksBusError

__all__ = ["HttpError", "error_body", "install_error_handlers", "invalid"]


class HttpError(MozaiksBusError):
    """An answer other than success: raised anywhere in a handler, rendered as JSON."""

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None,
        rule: str | None = None, headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.rule = rule
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return error_body(self.code, self.message, field=self.field, rule=self.rule)

    def response(self) -> JSONResponse:
        """The response to send."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(
    code: str, message: str, *, field: str | None = None, rule: str | None = None
) -> dict[str, Any]:
    """``{"error", "message"[, "field", "rule"]}``."""
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    if rule is not None:
        body["rule"] = rule
    return body


def invalid(exc: InvalidEvent, *, where: str = "", status: int = 422) -> HttpError:
    """A 422 naming the field (prefixed by ``where``, e.g. ``[2].``) and the rule."""
    field = f"{where}{exc.field}"
    return HttpError(status, "invalid_event", f"{field}: {exc.rule}", field=field, rule=exc.rule)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HttpError)
    return exc.response()


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "request"
    rule = str(first.get("msg", "is invalid"))
    return HttpError(422, "invalid_request", f"{loc}: {rule}", field=loc, rule=rule).response()


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                        headers=dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    """Render HttpError, request validation and routing errors in the one shape."""
    app.add_exception_handler(HttpError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
