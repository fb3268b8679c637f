"""The worker's Prometheus metrics, in the worker's own registry, on its web port's /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

from app.ops.metrics import process_registry, render

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
WORKER_CONSUMER_LAG = Gauge("voix_worker_consumer_lag",
                            "Records on the submissions topic not yet read by this worker, "
                            "per assigned partition", ["partition"], registry=REGISTRY)


def install_worker_metrics(app: Any, submissions: str, jobs: str, records: str,
                           deadletter: str) -> None:
    """Count what the Faust worker does (a sensor, so the agent code stays untouched), keep the
    consumer lag gauge current, and serve /metrics on the worker's web port."""
    from faust.sensors import Sensor

    class _WorkerSensor(Sensor):  # type: ignore[misc]
        """Counts sends by topic, and remembers the last finished offset per partition."""

        def __init__(self) -> None:
            super().__init__()
            self.finished: dict[Any, int] = {}

        def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
            if tp.topic == submissions:
                WORKER_MERGES.inc()
                self.finished[tp] = offset

        def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int,
                              valsize: int) -> Any:
            return topic

        def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
            if state == jobs:
                WORKER_JOBS.inc()
            elif state == records:
                WORKER_RECORDS.inc()
            elif state == deadletter:
                WORKER_DEADLETTERS.inc()

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
        body, content_type = render(REGISTRY)
        return web_.bytes(body, content_type=content_type.split(";")[0])

    del metrics_view
