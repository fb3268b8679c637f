"""Consumer tuning Faust does not expose as a setting.

Faust creates its aiokafka consumer with fetch_max_wait_ms=1500. aiokafka keeps one fetch
request in flight per broker and leaves partitions that still have buffered records out of
it, so a fetch for quiet partitions can sit at the broker for 1.5 s while new beats wait on
the busy ones: end-to-end latency of a second or more at moderate load. A short wait bounds
that stall; when idle it costs one small fetch request per wait period.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.sensors import Sensor

log = logging.getLogger("voix.worker")


def _fetcher(app: Any) -> Any:
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    return getattr(consumer, "_fetcher", None)


def limit_fetch_wait(app: Any, max_wait_ms: int) -> None:
    """Set the worker consumer's fetch wait to `max_wait_ms` once it exists (after each
    rebalance, as the consumer may have been recreated)."""

    class _FetchWait(Sensor):  # type: ignore[misc]
        def on_rebalance_end(self, app_: Any, state: Any) -> None:
            fetcher = _fetcher(app)
            if fetcher is None:
                log.warning("cannot shorten the fetch wait: aiokafka internals changed")
                return
            fetcher._fetch_max_wait_ms = max_wait_ms

    app.sensors.add(_FetchWait())
