"""The edge's Prometheus metrics: only the edge's series, in the edge's own registry.

Requests are labelled by route (the route's pattern, such as `/calls/{call_id}`: bounded, no
callIds in labels), method and status. Health probes and scrapes (/healthz, /readyz, /metrics)
are not traffic and are not counted. With `edge --workers N` (PROMETHEUS_MULTIPROC_DIR set by
the parent) a scrape of any edge process returns the sum over all of them.
"""

from __future__ import annotations

import time
from typing import Any

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

def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


# The labelled series, looked up once per route, method and status rather than per request.
_counted: dict[tuple[str, str, int], Any] = {}
_timed: dict[tuple[str, str], Any] = {}


def count_request(request: web.Request, status: int, started: float | None) -> None:
    """Count an answer and, when `started` (perf_counter) is given, time it. Called by the
    edge's middleware with the status the client gets; probes and scrapes are not traffic."""
    if request.path in UNCOUNTED_PATHS:
        return
    route, method = route_of(request), request.method
    counter = _counted.get((route, method, status))
    if counter is None:
        counter = _counted[(route, method, status)] = REQUESTS.labels(route, method, str(status))
    counter.inc()
    if started is not None:
        timer = _timed.get((route, method))
        if timer is None:
            timer = _timed[(route, method)] = REQUEST_SECONDS.labels(route, method)
        timer.observe(time.perf_counter() - started)


async def metrics_page(_request: web.Request) -> web.Response:
    body, content_type = render(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": content_type})
