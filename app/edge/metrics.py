"""The edge's Prometheus metrics: only the edge's series, in the edge's own registry.

Requests are labelled by route (the route's pattern, such as `/calls/{call_id}`: bounded, no
callIds in labels), method and status. Health probes and scrapes (/healthz, /readyz, /metrics)
are not traffic and are not counted. With `edge --workers N` (PROMETHEUS_MULTIPROC_DIR set by
the parent) a scrape of any edge process returns the sum over all of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from app.ops.metrics import LATENCY_BUCKETS, process_registry, render

REGISTRY: CollectorRegistry = process_registry()

REQUESTS = Counter("voix_edge_requests", "HTTP requests answered by the edge",
                   ["route", "method", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("voix_edge_request_seconds",
                            "Time from request start to response, by route",
                            ["route", "method"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
PRODUCE_SECONDS = Histogram("voix_edge_produce_seconds",
                            "Time from handing a record to the producer to the broker ack",
                            buckets=LATENCY_BUCKETS, registry=REGISTRY)
QUEUE_FULL = Counter("voix_edge_produce_queue_full",
                     "Requests that found the produce queue full and had to wait",
                     registry=REGISTRY)

# Not traffic: probes and scrapes.
UNCOUNTED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED = "(unmatched)"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answer; time it. Runs outside the error middleware, so it sees the status
    the client gets."""
    if request.path in UNCOUNTED_PATHS:
        return await handler(request)
    started = time.perf_counter()
    route, method = route_of(request), request.method
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        REQUESTS.labels(route, method, str(exc.status)).inc()
        raise
    REQUESTS.labels(route, method, str(response.status)).inc()
    REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)
    return response


async def metrics_page(_request: web.Request) -> web.Response:
    body, content_type = render(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": content_type})
