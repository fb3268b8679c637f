"""The worker's Prometheus metrics, in the worker's own registry, on its web port's /metrics."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from app.contracts.topics import TopicNames
from app.ops.metrics import LATENCY_BUCKETS, process_registry, render

REGISTRY = process_registry()

WORKER_MERGES = Counter("voix_worker_merges",
                        "Submission records the worker finished (merged, or dead-lettered)",
                        registry=REGISTRY)
WORKER_JOBS = Counter("voix_worker_jobs", "Transcription jobs acknowledged by the broker",
                      registry=REGISTRY)
WORKER_RECORDS = Counter("voix_worker_records", "Merged call records acknowledged by the broker",
                         registry=REGISTRY)
WORKER_DEADLETTERS = Counter("voix_worker_deadletters",
                             "Poison records acknowledged on the dead-letter topic",
                             registry=REGISTRY)
# Faust's own figures: commits, rebalances, assignment and send errors.
WORKER_COMMITS = Counter("voix_worker_commits", "Offset commits the worker's consumer made",
                         registry=REGISTRY)
WORKER_COMMIT_SECONDS = Histogram("voix_worker_commit_seconds", "Time an offset commit took",
                                  buckets=LATENCY_BUCKETS, registry=REGISTRY)
WORKER_REBALANCES = Counter("voix_worker_rebalances",
                            "Consumer group rebalances this worker went through",
                            registry=REGISTRY)
WORKER_REBALANCE_SECONDS = Histogram(
    "voix_worker_rebalance_seconds", "From a rebalance's start until the worker processes again",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=REGISTRY)
WORKER_ASSIGNMENT_ERRORS = Counter("voix_worker_assignment_errors",
                                   "Partition assignments that failed", registry=REGISTRY)
WORKER_SEND_ERRORS = Counter("voix_worker_send_errors",
                             "Sends of the worker's producer that failed", registry=REGISTRY)
WORKER_CONSUMER_LAG = Gauge("voix_worker_consumer_lag",
                            "Records on the submissions topic not yet read by this worker, "
                            "per assigned partition", ["partition"], registry=REGISTRY)


def count_worker_outputs(sent: Mapping[str, int], topics: TopicNames) -> None:
    """Count records the worker sent and the broker acknowledged, by topic name."""
    WORKER_JOBS.inc(sent.get(topics.jobs, 0))
    WORKER_RECORDS.inc(sent.get(topics.records, 0))
    WORKER_DEADLETTERS.inc(sent.get(topics.deadletter, 0))


def install_worker_metrics(app: Any, submissions: str) -> None:
    """Count what the Faust worker finishes (a sensor) and Faust's own figures, keep the
    consumer lag gauge current, and serve /metrics on the worker's web port. Sends are counted
    by count_worker_outputs."""
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
    app.sensors.add(_faust_figures_sensor())

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
        body, content_type = render(REGISTRY)
        return web_.bytes(body, content_type=content_type.split(";")[0])

    del metrics_view


def _faust_figures_sensor() -> Any:
    from faust.sensors import Sensor

    class FaustFigures(Sensor):  # type: ignore[misc]
        """Faust's commits, rebalances and errors as Prometheus series."""

        def on_commit_initiated(self, consumer: Any) -> Any:
            return time.monotonic()

        def on_commit_completed(self, consumer: Any, state: Any) -> None:
            WORKER_COMMITS.inc()
            WORKER_COMMIT_SECONDS.observe(time.monotonic() - state)

        def on_rebalance_start(self, app: Any) -> dict[str, Any]:
            WORKER_REBALANCES.inc()
            return {"started": time.monotonic()}

        def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
            WORKER_REBALANCE_SECONDS.observe(time.monotonic() - state["started"])

        def on_assignment_error(self, assignor: Any, state: Any, exc: BaseException) -> None:
            WORKER_ASSIGNMENT_ERRORS.inc()

        def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
            WORKER_SEND_ERRORS.inc()

    return FaustFigures()
