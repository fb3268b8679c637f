"""The edge's one middleware, around every handler: the request id (app/edge/tracing.py), the
JSON error answers (app/edge/errors.py) and the request metrics (app/edge/metrics.py).

One coroutine layer per request instead of one per concern. In this order, as three
middlewares did before: the request id is set first, so every log line of the request (the
server errors logged by the error answers among them) carries it, and every answer (errors
included) echoes it; the metrics count the status the client gets, after the error answers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from app.edge.errors import error_answer
from app.edge.metrics import count_request
from app.edge.tracing import request_context_of
from app.edge.typedefs import REQUEST
from app.ops.logging import request_context

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def edge_middleware(max_body_bytes: int) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        context = request_context_of(request)
        request[REQUEST] = context
        token = request_context.set(context)  # log lines of this request carry its ids
        started = time.perf_counter()
        try:
            try:
                response = await handler(request)
            except Exception as exc:
                response = error_answer(request, exc, max_body_bytes)
        except web.HTTPException as exc:  # not an error (a redirect): it goes out as raised
            exc.headers["X-Request-Id"] = context.request_id
            count_request(request, exc.status, None)
            raise
        finally:
            request_context.reset(token)
        response.headers["X-Request-Id"] = context.request_id
        count_request(request, response.status, started)
        return response

    return middleware
