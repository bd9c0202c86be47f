"""The serve app's answers other than 200: `HttpError` and the JSON body every error gets.

Every error, ours or FastAPI's/Starlette's (404, 405, query validation), answers
`{"error": ERRORS[status], "detail": "..."}` so clients parse one shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

log = logging.getLogger("ocrnet.serve")

#: HTTP status -> the `error` field of its JSON body.
ERRORS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
          408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type",
          422: "unprocessable",
          499: "client_closed_request", 500: "internal_error", 503: "unavailable",
          504: "timeout"}


class HttpError(Exception):
    """An answer other than 200: `{"error": ERRORS[status], "detail": detail}`."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def add_error_handlers(app: FastAPI) -> None:
    """Answer `HttpError`, Starlette's HTTP errors and validation errors as JSON."""
    app.add_exception_handler(HttpError, _error_response)
    app.add_exception_handler(HTTPException, _starlette_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)


def _json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": ERRORS.get(status, "error"), "detail": detail},
                        status_code=status, headers=headers)


async def _error_response(request: Request, err: Exception) -> Response:
    assert isinstance(err, HttpError)  # registered for HttpError only
    return _json_error(err.status, err.detail, err.headers)


async def _starlette_error(request: Request, err: Exception) -> Response:
    status = getattr(err, "status_code", 500)
    return _json_error(status, str(getattr(err, "detail", err)), getattr(err, "headers", None))


async def _internal_error(request: Request, err: Exception) -> Response:
    """A bug: logged with its traceback here, answered without a word of it (no exception text
    reaches a client)."""
    log.error("ocrnet serve: %s %s failed", request.method, request.url.path,
              exc_info=(type(err), err, err.__traceback__))
    return _json_error(500, "internal error; the server log has the details")


async def _validation_error(request: Request, err: Exception) -> Response:
    problems = []
    for e in getattr(err, "errors", list)():
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "query")
        problems.append(f"{where}: {e.get('msg', 'invalid')}")
    return _json_error(422, "; ".join(problems) or str(err))
