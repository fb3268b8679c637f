"""Prometheus metrics of the edge and the worker, and the /metrics pages that expose them.

The edge may run as several processes (`python -m app edge --workers N`); the parent then sets
PROMETHEUS_MULTIPROC_DIR before the children import this module, so every process writes its
samples to that directory and any process's /metrics answers with the sum over all of them.
A single worker process exposes its own metrics on its Faust web port at /metrics.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from app.contracts.topics import TopicNames

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Buckets from 0.5 ms to 10 s: an acked produce takes a few ms; a 503 takes the full timeout.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)

EDGE_REQUESTS = Counter("voix_edge_requests", "HTTP requests answered by the edge, by status",
                        ["status"])
EDGE_REQUEST_SECONDS = Histogram("voix_edge_request_seconds",
                                 "Time from request start to response, POST /submit",
                                 buckets=_LATENCY_BUCKETS)
EDGE_PRODUCE_SECONDS = Histogram("voix_edge_produce_seconds",
                                 "Time from handing a record to the producer to the broker ack",
                                 buckets=_LATENCY_BUCKETS)
EDGE_QUEUE_FULL = Counter("voix_edge_produce_queue_full",
                          "Requests that found the produce queue full and had to wait")

WORKER_MERGES = Counter("voix_worker_merges",
                        "Submission records the worker finished (merged, or dead-lettered)")
WORKER_JOBS = Counter("voix_worker_jobs", "Transcription jobs acknowledged by the broker")
WORKER_RECORDS = Counter("voix_worker_records", "Merged call records acknowledged by the broker")
WORKER_DEADLETTERS = Counter("voix_worker_deadletters",
                             "Poison records acknowledged on the dead-letter topic")
WORKER_CONSUMER_LAG = Gauge("voix_worker_consumer_lag",
                            "Records on the submissions topic not yet read by this worker, "
                            "per assigned partition", ["partition"],
                            multiprocess_mode="livesum")


def render() -> tuple[bytes, str]:
    """The text exposition of every metric (summed over processes in multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


async def metrics_page(_request: web.Request) -> web.Response:
    body, content_type = render()
    return web.Response(body=body, headers={"Content-Type": content_type})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def edge_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every answer by status; time POST /submit. Runs outside the error middleware, so
    it sees the status the client gets."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        EDGE_REQUESTS.labels(str(exc.status)).inc()
        raise
    EDGE_REQUESTS.labels(str(response.status)).inc()
    if request.path == "/submit":
        EDGE_REQUEST_SECONDS.observe(time.perf_counter() - started)
    return response


def count_worker_outputs(sent: Mapping[str, int], topics: TopicNames) -> None:
    """Count records the worker sent and the broker acknowledged, by topic name."""
    WORKER_JOBS.inc(sent.get(topics.jobs, 0))
    WORKER_RECORDS.inc(sent.get(topics.records, 0))
    WORKER_DEADLETTERS.inc(sent.get(topics.deadletter, 0))


def install_worker_metrics(app: Any, submissions: str) -> None:
    """Count what the Faust worker finishes (a sensor), keep the consumer lag gauge current,
    and serve /metrics on the worker's web port. Sends are counted by count_worker_outputs."""
    from faust.sensors import Sensor

    class _WorkerSensor(Sensor):  # type: ignore[misc]
        """Remembers the last finished offset per partition."""

        def __init__(self) -> None:
            super().__init__()
            self.finished: dict[Any, int] = {}

        def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
            if tp.topic == submissions:
                WORKER_MERGES.inc()
                self.finished[tp] = offset

    sensor = _WorkerSensor()
    app.sensors.add(sensor)

    async def update_lag() -> None:
        """Lag = the partition's end offset (asked from the broker now) minus the next offset
        this worker has yet to finish; records fetched but still buffered count as lag."""
        consumer = app.consumer
        tps = [tp for tp in consumer.assignment() if tp.topic == submissions]
        if not tps:
            return
        ends = await consumer.highwaters(*tps)
        for tp in tps:
            if tp in sensor.finished:
                next_offset = sensor.finished[tp] + 1
            else:  # nothing finished here yet: where the consumer stands
                next_offset = await consumer.position(tp) or 0
            WORKER_CONSUMER_LAG.labels(str(tp.partition)).set(
                max(ends.get(tp, next_offset) - next_offset, 0))

    @app.page("/metrics")  # type: ignore[misc,untyped-decorator]
    async def metrics_view(web_: Any, request: Any) -> Any:
        await update_lag()
        body, content_type = render()
        return web_.bytes(body, content_type=content_type.split(";")[0])

    del metrics_view
