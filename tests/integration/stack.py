"""A real stack for broker tests: the edge and the worker as processes (the same CLI users run),
on unique topics and a unique consumer group, and a reader for what landed downstream."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.contracts.topics import TopicNames
from app.kafka_clients import client_kwargs
from app.ops.keys import KeyAdmin
from app.ops.tail import topic_partitions
from app.settings import Settings
from tests import harness
from tests.harness import DEFAULT_BOOTSTRAP, broker_reachable, free_port, kafka_bootstrap

__all__ = ["DEFAULT_BOOTSTRAP", "Record", "Stack", "broker_reachable", "free_port",
           "kafka_bootstrap", "new_call_id", "read_topic"]


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]  # {} for a tombstone or a value that is not JSON
    tombstone: bool = False
    not_json: bool = False
    raw: bytes | None = None  # the value's bytes, as they are on the topic
    headers: dict[str, str] = field(default_factory=dict)  # as UTF-8 text

    @property
    def dead_letter(self) -> tuple[str, int, int, str]:
        """A dead letter's (topic, partition, offset, reason), from its headers."""
        h = self.headers
        return (h["voix.dlq.topic"], int(h["voix.dlq.partition"]), int(h["voix.dlq.offset"]),
                h["voix.dlq.reason"])


def _record(r: Any) -> Record:
    headers = {k: v.decode("utf-8", "replace") for k, v in (r.headers or ())}
    if r.value is None:
        return Record(r.topic, r.partition, r.offset, r.key, {}, tombstone=True,
                      headers=headers)
    try:
        value = orjson.loads(r.value)
    except orjson.JSONDecodeError:  # e.g. a poison record (or its dead letter)
        return Record(r.topic, r.partition, r.offset, r.key, {}, not_json=True, raw=r.value,
                      headers=headers)
    if not isinstance(value, dict):
        return Record(r.topic, r.partition, r.offset, r.key, {}, not_json=True, raw=r.value,
                      headers=headers)
    return Record(r.topic, r.partition, r.offset, r.key, value, raw=r.value, headers=headers)


@dataclass
class Stack:
    """Names and processes of one isolated pipeline on the shared broker."""

    bootstrap: str
    prefix: str
    workdir: Path
    edge_port: int = field(default_factory=free_port)
    worker_ports: dict[str, int] = field(default_factory=dict)
    # Set: the processes reach Kafka ONLY through these KAFKA_* settings (a secured broker's
    # client.env); every other KAFKA_* variable of this process is left out.
    kafka_env: dict[str, str] = field(default_factory=dict)
    processes: harness.Processes = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processes = harness.Processes(self.workdir)

    @property
    def procs(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.processes.procs

    @property
    def topics(self) -> TopicNames:
        return self.settings.topics

    @property
    def settings(self) -> Settings:
        """The settings the stack's processes run with (for in-process clients of tests)."""
        return Settings.from_env(self.env())

    async def create_key(self, workspace_id: str, team_id: str | None,
                         **limits: Any) -> str:
        """A new API key on this stack's keys topic; the full key."""
        presented, _ = await KeyAdmin(self.settings).create(
            workspace_id=workspace_id, team_id=team_id, **limits)
        return presented

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def env(self, **extra: str) -> dict[str, str]:
        base = harness.app_env(self.bootstrap, self.prefix)
        if self.kafka_env:
            base = {**harness.without_kafka_settings(base), **self.kafka_env}
        return {**base, **{
            "VOIX_WORKER_STORE": "memory://",
            "VOIX_WORKER_DATA_DIR": str(self.workdir / "worker"),
            "VOIX_PRODUCE_TIMEOUT_S": "3",
            "VOIX_LOG_LEVEL": "INFO",
            **extra}}

    def cli(self, *args: str, **env: str) -> str:
        return harness.run(harness.app_argv(*args), self.env(**env), timeout_s=60)

    def start(self, name: str, args: Sequence[str], **env: str) -> subprocess.Popen[bytes]:
        return self.processes.start(name, harness.app_argv(*args), self.env(**env))

    @property
    def worker_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.worker_ports.values()]

    def start_edge(self, name: str = "edge", port: int | None = None,
                   **env: str) -> subprocess.Popen[bytes]:
        """An edge that asks the workers started so far for GET /calls (unless env says)."""
        env.setdefault("VOIX_WORKER_URLS", ",".join(self.worker_urls))
        return self.start(name, ["edge", "--port", str(port or self.edge_port)], **env)

    def start_worker(self, name: str = "worker", web_port: int | None = None,
                     **env: str) -> subprocess.Popen[bytes]:
        port = self.worker_ports.setdefault(name, web_port or free_port())
        return self.start(name, ["worker", "--web-port", str(port),
                                 "--data-dir", str(self.workdir / name)], **env)

    def wait_http(self, url: str, timeout_s: float = 30.0) -> None:
        harness.wait_http(url, timeout_s, hint=f"; logs in {self.workdir}")

    def stop(self, name: str, timeout_s: float = 20.0) -> int | None:
        return self.processes.stop(name, timeout_s)

    def kill(self, name: str) -> int | None:
        """SIGKILL, as a crash or the OOM killer would: no shutdown code runs."""
        return self.processes.kill(name)

    @contextlib.contextmanager
    def running(self, worker: str = "worker", **worker_env: str) -> Iterator[Stack]:
        """Topics, one worker and the edge, up and ready for the block; stopped after it."""
        self.cli("topics", "create")
        self.start_worker(worker, None, **worker_env)
        self.start_edge()
        try:
            self.wait_http(f"{self.url}/readyz")
            yield self
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        self.processes.stop_all()

    def log_of(self, name: str) -> str:
        return self.processes.log_of(name)


async def read_topic(bootstrap: str, topic: str,
                     until: Callable[[list[Record]], bool] = lambda _: False,
                     timeout_s: float = 30.0, settings: Settings | None = None) -> list[Record]:
    """Everything on `topic` from the beginning, read until `until(records)` holds or the
    timeout passes; then also up to the end offsets seen at that moment. With `settings`, the
    consumer connects as the app does (client_kwargs: TLS, SASL) instead of to `bootstrap`."""
    connection = (client_kwargs(settings) if settings is not None
                  else {"bootstrap_servers": bootstrap})
    consumer = AIOKafkaConsumer(**connection, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records: list[Record] = []
    try:
        partitions = await topic_partitions(consumer, topic)
        if not partitions:
            raise AssertionError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=200)
            for tp_records in batch.values():
                records.extend(_record(r) for r in tp_records)
        ends = await consumer.end_offsets(tps)

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for tp_records in batch.values():
                records.extend(_record(r) for r in tp_records)
    finally:
        await consumer.stop()
    return records


def new_call_id() -> str:
    return str(uuid.uuid4())
