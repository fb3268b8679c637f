"""What the edge's and the worker's metrics share: the latency buckets, a registry per process
kind, and the text exposition. Each process kind declares its own metrics in its own registry
(app/edge/metrics.py, app/worker/metrics.py), so a process exports only its own series.

The edge may run as several processes (`python -m app edge --workers N`); the parent then sets
PROMETHEUS_MULTIPROC_DIR before the children start, so every edge process writes its samples
to that directory and any of them answers a scrape with the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Buckets from 0.5 ms to 10 s: an acked produce takes a few ms; a 503 takes the full timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


def process_registry() -> CollectorRegistry:
    """A registry with the process's own CPU, memory and start time (restarts show as a new
    process_start_time_seconds)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of a registry; in multiprocess mode the sum over the processes."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        summed = CollectorRegistry()
        multiprocess.MultiProcessCollector(summed)  # type: ignore[no-untyped-call]
        return generate_latest(summed), CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST
