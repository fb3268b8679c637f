"""Every error the edge answers, as JSON, and the one place that logs server errors.

Body: {"error": "<code>", "message": "<sentence>", "fields": [{"field", "problem"}]?}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from app.contracts.submission import FieldProblem

log = logging.getLogger("voix.edge")


class ApiError(Exception):
    """Raised anywhere in a handler; the middleware turns it into the JSON response."""

    def __init__(self, status: int, code: str, message: str,
                 fields: Iterable[FieldProblem] = (), headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.headers = headers or {}

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields:
            body["fields"] = [f.as_dict() for f in self.fields]
        return json_response(body, status=self.status, headers=self.headers)


def json_response(body: dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def invalid_body(problems: list[FieldProblem]) -> ApiError:
    n = len(problems)
    summary = "; ".join(f"{p.field} {p.problem}" for p in problems[:5])
    return ApiError(400, "invalid_body",
                    f"The request body has {n} problem{'s' if n != 1 else ''}: {summary}",
                    problems)


# aiohttp's own HTTP errors (404, 405, 413 from client_max_size, ...) get our JSON shape too.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
               415: "unsupported_media_type"}

def error_answer(request: web.Request, exc: Exception, max_body_bytes: int) -> web.Response:
    """The one place that turns exceptions into answers and logs server errors. An
    HTTPException below 400 (a redirect) is not an error: it is raised again."""
    if isinstance(exc, ApiError):
        if exc.status >= 500:
            log.error("%s %s -> %d %s: %s", request.method, request.path, exc.status,
                      exc.code, exc.message)
        return exc.response()
    if isinstance(exc, web.HTTPException):
        if exc.status >= 500:
            log.error("%s %s -> %d", request.method, request.path, exc.status)
        if exc.status < 400:
            raise exc
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else (
            f"The request body is larger than {max_body_bytes} bytes.")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return json_response({"error": code, "message": message}, exc.status, headers)
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return json_response({"error": "internal", "message": "Internal server error."}, 500)
