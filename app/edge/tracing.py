"""One request id end to end: accepted from `X-Request-Id` (or made), echoed on the answer,
set on every log line while the request is handled, and carried to Kafka as a header of the
submission (and from there into the worker's log lines and the job). A W3C `traceparent`
travels the same way when the client sends one."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from app.contracts.messages import REQUEST_ID_HEADER, TRACEPARENT_HEADER
from app.edge.typedefs import REQUEST
from app.ops.logging import RequestContext, handling

# What we accept from a client as its request id: short, and safe in a log line or a header.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/=+-]{1,128}$")
# W3C Trace Context, version 00: 00-<trace id>-<parent id>-<flags>, ids not all zero.
_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_context_of(request: web.Request) -> RequestContext:
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
    traceparent = request.headers.get("traceparent", "").strip().lower()
    return RequestContext(request_id, traceparent if _TRACEPARENT.match(traceparent) else None)


def kafka_headers(context: RequestContext) -> list[tuple[str, bytes]]:
    headers = [(REQUEST_ID_HEADER, context.request_id.encode())]
    if context.traceparent:
        headers.append((TRACEPARENT_HEADER, context.traceparent.encode()))
    return headers


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every answer, errors included, carries the request id."""
    context = request_context_of(request)
    request[REQUEST] = context
    with handling(context):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Request-Id"] = context.request_id
            raise
    response.headers["X-Request-Id"] = context.request_id
    return response
