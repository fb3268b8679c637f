"""One frozen settings object, read from the environment once and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.contracts.topics import TopicNames

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """An environment variable has a value we cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    # An empty variable (e.g. exported but unset by make) means "use the default".
    return env.get(name) or default


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be > 0, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the edge, the worker and the CLI need to know about their environment.

    Each field maps to one environment variable (see `ENVIRONMENT` below and the README).
    """

    kafka_bootstrap: str = "127.0.0.1:9092"
    topics: TopicNames = field(default_factory=TopicNames)
    partitions: int = 6
    replication_factor: int = 1

    edge_host: str = "127.0.0.1"
    edge_port: int = 8080
    keys_file: Path = PROJECT_ROOT / "var" / "keys.json"
    max_body_bytes: int = 16 * 1024
    # How long /submit waits for the broker's acknowledgement before answering 503.
    produce_timeout_s: float = 5.0
    retry_after_s: int = 2
    producer_linger_ms: int = 2
    # Per API key and per edge process: sustained requests per second and burst (429 above).
    rate_limit_per_s: float = 100.0
    rate_limit_burst: int = 200
    # A client must send its body within this time (408), and an idle or half-sent-headers
    # connection is closed after it.
    client_timeout_s: float = 15.0
    # Records waiting for the producer, per edge process; when full, requests wait (backpressure).
    edge_max_pending: int = 4096
    # Kafka producers per edge process (aiokafka has one request in flight per producer).
    edge_producers: int = 1

    worker_id: str = "voix-worker"
    worker_store: str = "rocksdb://"
    worker_data_dir: Path = PROJECT_ROOT / "var" / "worker"
    worker_web_port: int = 6066
    processing_guarantee: str = "at_least_once"
    # A call's state is forgotten (tombstoned) this long after its last change.
    state_ttl_s: int = 7 * 24 * 60 * 60
    # How often each worker looks for expired calls.
    expiry_sweep_s: float = 60.0
    # Where the edge asks for a call's lifecycle (any worker; Faust forwards to the owner).
    worker_urls: tuple[str, ...] = ("http://127.0.0.1:6066",)
    lifecycle_timeout_s: float = 3.0
    # Longest a worker fetch waits at the broker for data (Faust's own default is 1500 ms).
    worker_fetch_wait_ms: int = 20
    # Static group membership (KIP-345): a restarted worker takes its partitions back at once
    # instead of waiting out its old session. Empty: derived from the host and the data dir.
    worker_instance_id: str = ""
    # More dead letters than this within a minute stop the worker (0: no limit).
    worker_max_deadletters: int = 1000

    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        prefix = _str(env, "VOIX_TOPIC_PREFIX", "")
        topics = TopicNames(
            submissions=prefix + _str(env, "VOIX_TOPIC_SUBMISSIONS", d.topics.submissions),
            records=prefix + _str(env, "VOIX_TOPIC_RECORDS", d.topics.records),
            jobs=prefix + _str(env, "VOIX_TOPIC_JOBS", d.topics.jobs),
            deadletter=prefix + _str(env, "VOIX_TOPIC_DEADLETTER", d.topics.deadletter),
            status=prefix + _str(env, "VOIX_TOPIC_STATUS", d.topics.status),
            commands=prefix + _str(env, "VOIX_TOPIC_COMMANDS", d.topics.commands),
        )
        worker_urls = tuple(u.strip().rstrip("/") for u in
                            _str(env, "VOIX_WORKER_URLS", ",".join(d.worker_urls)).split(",")
                            if u.strip())
        guarantee = _str(env, "VOIX_PROCESSING_GUARANTEE", d.processing_guarantee)
        if guarantee not in ("at_least_once", "exactly_once"):
            raise SettingsError(
                "VOIX_PROCESSING_GUARANTEE must be at_least_once or exactly_once, "
                f"got {guarantee!r}"
            )
        return cls(
            kafka_bootstrap=_str(env, "KAFKA_BOOTSTRAP", d.kafka_bootstrap),
            topics=topics,
            partitions=_int(env, "VOIX_PARTITIONS", d.partitions, minimum=1),
            replication_factor=_int(env, "VOIX_REPLICATION_FACTOR", d.replication_factor, 1),
            edge_host=_str(env, "VOIX_EDGE_HOST", d.edge_host),
            edge_port=_int(env, "VOIX_EDGE_PORT", d.edge_port),
            keys_file=Path(_str(env, "VOIX_KEYS_FILE", str(d.keys_file))),
            max_body_bytes=_int(env, "VOIX_MAX_BODY_BYTES", d.max_body_bytes, minimum=256),
            produce_timeout_s=_float(env, "VOIX_PRODUCE_TIMEOUT_S", d.produce_timeout_s),
            retry_after_s=_int(env, "VOIX_RETRY_AFTER_S", d.retry_after_s, minimum=1),
            producer_linger_ms=_int(env, "VOIX_PRODUCER_LINGER_MS", d.producer_linger_ms),
            rate_limit_per_s=_float(env, "VOIX_RATE_LIMIT_PER_S", d.rate_limit_per_s),
            rate_limit_burst=_int(env, "VOIX_RATE_LIMIT_BURST", d.rate_limit_burst, minimum=1),
            client_timeout_s=_float(env, "VOIX_CLIENT_TIMEOUT_S", d.client_timeout_s),
            edge_max_pending=_int(env, "VOIX_EDGE_MAX_PENDING", d.edge_max_pending, minimum=1),
            edge_producers=_int(env, "VOIX_EDGE_PRODUCERS", d.edge_producers, minimum=1),
            worker_id=_str(env, "VOIX_WORKER_ID", d.worker_id),
            worker_store=_str(env, "VOIX_WORKER_STORE", d.worker_store),
            worker_data_dir=Path(_str(env, "VOIX_WORKER_DATA_DIR", str(d.worker_data_dir))),
            worker_web_port=_int(env, "VOIX_WORKER_WEB_PORT", d.worker_web_port),
            processing_guarantee=guarantee,
            state_ttl_s=_int(env, "VOIX_STATE_TTL_S", d.state_ttl_s, minimum=1),
            expiry_sweep_s=_float(env, "VOIX_EXPIRY_SWEEP_S", d.expiry_sweep_s),
            worker_urls=worker_urls or d.worker_urls,
            lifecycle_timeout_s=_float(env, "VOIX_LIFECYCLE_TIMEOUT_S", d.lifecycle_timeout_s),
            worker_fetch_wait_ms=_int(env, "VOIX_WORKER_FETCH_WAIT_MS", d.worker_fetch_wait_ms, 1),
            worker_instance_id=_str(env, "VOIX_WORKER_INSTANCE_ID", d.worker_instance_id),
            worker_max_deadletters=_int(env, "VOIX_WORKER_MAX_DEADLETTERS",
                                        d.worker_max_deadletters),
            log_level=_str(env, "VOIX_LOG_LEVEL", d.log_level).upper(),
        )

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (used by CLI flags and tests)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise SettingsError(f"unknown settings: {sorted(unknown)}")
        return replace(self, **changes)


# Environment variables, for --help texts and the README.
ENVIRONMENT: dict[str, str] = {
    "KAFKA_BOOTSTRAP": "Kafka bootstrap servers (default 127.0.0.1:9092)",
    "VOIX_TOPIC_PREFIX": "prefix added to every topic name (default empty)",
    "VOIX_TOPIC_SUBMISSIONS": "submissions topic (default calls.submissions)",
    "VOIX_TOPIC_RECORDS": "compacted merged-call topic (default calls.records)",
    "VOIX_TOPIC_JOBS": "transcription jobs topic (default transcription.jobs)",
    "VOIX_TOPIC_DEADLETTER": "dead-letter topic (default calls.deadletter)",
    "VOIX_PARTITIONS": "partitions per topic (default 6)",
    "VOIX_REPLICATION_FACTOR": "replication factor for created topics (default 1)",
    "VOIX_EDGE_HOST / VOIX_EDGE_PORT": "edge listen address (default 127.0.0.1:8080)",
    "VOIX_KEYS_FILE": "API key store (default var/keys.json)",
    "VOIX_MAX_BODY_BYTES": "largest accepted /submit body (default 16384)",
    "VOIX_PRODUCE_TIMEOUT_S": "wait for the broker's ack before 503 (default 5)",
    "VOIX_RETRY_AFTER_S": "Retry-After on 503 (default 2)",
    "VOIX_RATE_LIMIT_PER_S": "requests per second per API key and edge process (default 100)",
    "VOIX_RATE_LIMIT_BURST": "burst per API key and edge process before 429 (default 200)",
    "VOIX_CLIENT_TIMEOUT_S": "body read limit (408) and idle-connection timeout (default 15)",
    "VOIX_PRODUCER_LINGER_MS": "edge producer linger before a batch is sent (default 2)",
    "VOIX_EDGE_MAX_PENDING": "records queued for the producer per edge process (default 4096)",
    "VOIX_EDGE_PRODUCERS": "Kafka producers per edge process, chosen by key (default 1)",
    "PROMETHEUS_MULTIPROC_DIR": "set by `edge --workers N` so /metrics sums all processes",
    "VOIX_WORKER_ID": "Faust app id = consumer group and table prefix (default voix-worker)",
    "VOIX_WORKER_STORE": "table store: rocksdb:// or memory:// (default rocksdb://)",
    "VOIX_WORKER_DATA_DIR": "worker state directory (default var/worker)",
    "VOIX_WORKER_WEB_PORT": "worker web port for health and views (default 6066)",
    "VOIX_WORKER_FETCH_WAIT_MS": "longest wait of a worker fetch at the broker (default 20)",
    "VOIX_WORKER_INSTANCE_ID": "static group member id, unique per worker (default: from the "
                               "host name and the data dir)",
    "VOIX_WORKER_MAX_DEADLETTERS": "more dead letters than this in a minute stop the worker "
                                   "(default 1000; 0: no limit)",
    "VOIX_PROCESSING_GUARANTEE": "at_least_once or exactly_once (default at_least_once; "
                                 "exactly_once is not loss-free here, see docs/reliability.md)",
    "VOIX_TOPIC_STATUS": "transcriber status topic (default transcription.status)",
    "VOIX_TOPIC_COMMANDS": "worker control topic: replay/reprocess/expire (default calls.commands)",
    "VOIX_STATE_TTL_S": "forget a call this long after its last change (default 604800 = 7 d)",
    "VOIX_EXPIRY_SWEEP_S": "how often a worker looks for expired calls (default 60)",
    "VOIX_WORKER_URLS": "comma-separated worker web URLs the edge asks for GET /calls "
                        "(default http://127.0.0.1:6066)",
    "VOIX_LIFECYCLE_TIMEOUT_S": "GET /calls waits this long for a worker before 503 (default 3)",
    "VOIX_LOG_LEVEL": "DEBUG, INFO, WARNING (default INFO)",
}
