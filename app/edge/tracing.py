"""One request id end to end: accepted from `X-Request-Id` (or made), echoed on the answer,
set on every log line while the request is handled, and carried to Kafka as a header of the
submission (and from there into the worker's log lines and the job). A W3C `traceparent`
travels the same way when the client sends one."""

from __future__ import annotations

import os
import re

from aiohttp import web

from app.contracts.messages import REQUEST_ID_HEADER, TRACEPARENT_HEADER
from app.ops.logging import RequestContext

# What we accept from a client as its request id: short, and safe in a log line or a header.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/=+-]{1,128}$")
# W3C Trace Context, version 00: 00-<trace id>-<parent id>-<flags>, ids not all zero.
_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def request_context_of(request: web.Request) -> RequestContext:
    headers = request.headers
    offered = headers.get("X-Request-Id")
    # Made: 32 random hex digits (what uuid4().hex looked like, for less).
    request_id = offered if offered and _REQUEST_ID.match(offered) else os.urandom(16).hex()
    traceparent = headers.get("traceparent")
    if traceparent:
        traceparent = traceparent.strip().lower()
        if _TRACEPARENT.match(traceparent):
            return RequestContext(request_id, traceparent)
    return RequestContext(request_id)


def kafka_headers(context: RequestContext) -> list[tuple[str, bytes]]:
    headers = [(REQUEST_ID_HEADER, context.request_id.encode())]
    if context.traceparent:
        headers.append((TRACEPARENT_HEADER, context.traceparent.encode()))
    return headers
