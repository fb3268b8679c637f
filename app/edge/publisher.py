"""The edge's one Kafka producer: acks=all, idempotent, and bounded in time.

`publish` returns only after the broker acknowledged the write; if that does not happen within
`produce_timeout_s` it raises BrokerUnavailable and the edge answers 503. A write that timed out
may still land later; that is safe because callId is the idempotency key downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from app.settings import Settings

log = logging.getLogger("voix.edge.publisher")


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time (or at all)."""


class Publisher(Protocol):
    @property
    def ready(self) -> bool: ...

    async def publish(self, topic: str, key: bytes, value: bytes) -> None: ...

    async def check(self) -> bool: ...


class KafkaPublisher:
    """Owns the producer. Starts in the background so the edge is up (and says "not ready")
    while the broker is still down."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._stopping = False

    def _new_producer(self) -> AIOKafkaProducer:
        s = self.settings
        return AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            client_id="voix-edge",
            acks="all",
            enable_idempotence=True,
            linger_ms=s.producer_linger_ms,
            # Expire undeliverable batches instead of holding them for the default 40 s.
            request_timeout_ms=max(int(s.produce_timeout_s * 1000) * 2, 10_000),
            max_batch_size=256 * 1024,
        )

    async def start(self) -> None:
        self._connect_task = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def _connect_forever(self) -> None:
        delay = 0.25
        while not self._stopping:
            producer = self._new_producer()
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                log.warning("kafka not reachable at %s (%s); retrying in %.1fs",
                            self.settings.kafka_bootstrap, exc, delay)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            log.info("kafka producer connected to %s", self.settings.kafka_bootstrap)
            return

    async def stop(self) -> None:
        self._stopping = True
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._producer is not None:
            # stop() flushes what is pending; bound it so shutdown never hangs.
            try:
                await asyncio.wait_for(self._producer.stop(), self.settings.produce_timeout_s * 2)
            except (TimeoutError, KafkaError) as exc:
                log.warning("producer did not stop cleanly: %r", exc)
            self._producer = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to Kafka yet")
        try:
            async with asyncio.timeout(self.settings.produce_timeout_s):
                delivery = await producer.send(topic, value=value, key=key)
                await delivery
        except TimeoutError:
            raise BrokerUnavailable(
                f"no acknowledgement within {self.settings.produce_timeout_s}s") from None
        except KafkaError as exc:
            raise BrokerUnavailable(f"kafka error: {exc!r}") from exc

    async def check(self) -> bool:
        """Readiness: connected, and the cluster answers a metadata request within a second."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(1.0):
                return bool(await producer.client.fetch_all_metadata())
        except (TimeoutError, KafkaError, OSError):
            return False
