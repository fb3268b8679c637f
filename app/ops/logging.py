"""One log format for every process (edge, worker, CLI): JSON objects a line by default, or
text on a terminal (VOIX_LOG_FORMAT), with the request id of the request or record being
handled on every line about it.

- JSON lines carry `time`, `level`, `logger`, `message`, the structured fields a call passes
  with `extra=` (`call_id`, `team_id`, `key_id`, `topic`, `partition`, `offset`, ...) and,
  while a request or record is handled, `request_id` and `trace_id` from `request_context`.
- aiokafka logs every failed reconnect at WARNING or ERROR, many a second while Kafka is down.
  Those lines are folded: the first says "Kafka became unreachable", the rest are counted, and
  one line says when it is back (`kafka_reachable()`, called on the next acknowledged write).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# Set while a request (edge) or a record (worker) is handled; every log line then names it.
request_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "voix_request_context", default=None)


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    traceparent: str | None = None

    @property
    def trace_id(self) -> str | None:
        # W3C traceparent: version-traceid-parentid-flags
        return self.traceparent.split("-")[1] if self.traceparent else None


@contextmanager
def handling(context: RequestContext | None) -> Iterator[None]:
    """Log lines inside the block carry `context`'s ids."""
    token = request_context.set(context)
    try:
        yield
    finally:
        request_context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = request_context.get()
        if context is not None:
            record.request_id = context.request_id
            if context.traceparent:
                record.trace_id = context.trace_id
        return True


# ---- Kafka outage noise ----------------------------------------------------------------------

# aiokafka's messages for a broker it cannot reach (conn, client, sender, fetcher, coordinator).
_CONNECTION_NOISE = ("Unable connect", "Unable to update metadata", "Unable to request metadata",
                     "KafkaConnectionError", "NodeNotReady", "Connection", "connection",
                     "RequestTimedOut", "Coordinator", "coordinator", "Heartbeat failed",
                     "Failed fetch messages", "NotLeaderForPartition", "LeaderNotAvailable",
                     "Got error produce response")


class _KafkaOutage:
    """The folding state, shared by every thread that logs (Faust's consumer has its own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down_since: float | None = None
        self.suppressed = 0

    def fold(self, record: logging.LogRecord) -> bool:
        """Whether to emit `record`; the first line of an outage is rewritten to say so."""
        if not record.name.startswith("aiokafka") or record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not any(marker in message for marker in _CONNECTION_NOISE):
            return True
        with self.lock:
            if self.down_since is not None:
                self.suppressed += 1
                return False
            self.down_since = time.monotonic()
            self.suppressed = 0
        record.msg = ("Kafka became unreachable: %s (further connection errors are counted, "
                      "not logged, until a write is acknowledged again)")
        record.args = (message,)
        record.name, record.levelno, record.levelname = "voix.kafka", logging.WARNING, "WARNING"
        return True

    def reachable(self) -> None:
        if self.down_since is None:  # the common case, checked without the lock
            return
        with self.lock:
            if self.down_since is None:
                return
            down_for, suppressed = time.monotonic() - self.down_since, self.suppressed
            self.down_since = None
        logging.getLogger("voix.kafka").warning(
            "Kafka is reachable again after %.1f s (%d connection errors not logged)",
            down_for, suppressed, extra={"down_s": round(down_for, 1), "suppressed": suppressed})


_OUTAGE = _KafkaOutage()


def kafka_reachable() -> None:
    """Call when a write was acknowledged: ends a folded outage with one line."""
    _OUTAGE.reachable()


class _OutageFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _OUTAGE.fold(record)


# ---- formats ---------------------------------------------------------------------------------

class _Json(JsonFormatter):
    """time, level, logger, message first; then the record's own fields."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data.pop("levelname", None)
        log_data.pop("name", None)
        ordered = {"time": self.formatTime(record), "level": record.levelname,
                   "logger": record.name, "message": record.getMessage()}
        ordered.update((k, v) for k, v in log_data.items() if k not in ordered)
        log_data.clear()
        log_data.update(ordered)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


class _Text(logging.Formatter):
    """The text format, with the request id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request {request_id}]" if request_id else line


def resolve_format(log_format: str) -> str:
    """auto: text on a terminal, JSON otherwise (a container, a log shipper, a file)."""
    if log_format != "auto":
        return log_format
    return "text" if sys.stderr.isatty() else "json"


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if resolve_format(log_format) == "json":
        handler.setFormatter(_Json("%(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(_Text("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_ContextFilter())
    handler.addFilter(_OutageFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # aiokafka logs at INFO what we do not need (group joins, every reconnect attempt).
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
