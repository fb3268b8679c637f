"""The edge's one Kafka producer: acks=all, idempotent, and bounded in time and memory.

`publish` returns only after the broker acknowledged the write; if that does not happen within
`produce_timeout_s` it raises BrokerUnavailable and the edge answers 503. A write that timed out
may still land later; that is safe because callId is the idempotency key downstream.

Requests do not call the producer themselves. They put their record on a bounded queue and
wait for the ack; one funnel task moves records from the queue into the producer's
accumulator without awaiting each delivery, so hundreds of concurrent requests become a few
large batches (many coroutines each awaiting `send()` + its delivery is a known aiokafka
slow path). The bounded queue is the backpressure: when it is full a request waits for room
(within the same timeout) instead of the edge buffering an unbounded burst in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from app.edge import metrics
from app.kafka_clients import (
    cause_of,
    client_kwargs,
    describe,
    first_time_said,
    said_recovered,
)
from app.ops.logging import kafka_reachable
from app.settings import Settings

log = logging.getLogger("voix.edge.publisher")


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time (or at all)."""


class Publisher(Protocol):
    @property
    def ready(self) -> bool: ...

    async def publish(self, topic: str, key: bytes, value: bytes,
                      headers: Sequence[tuple[str, bytes]] = ()) -> None: ...

    async def check(self) -> bool: ...


class KafkaPublisher:
    """Owns the producers. Starts in the background so the edge is up (and says "not ready")
    while the broker is still down.

    aiokafka keeps one produce request in flight per broker and producer, so under load the
    throughput of one producer is what fits in a batch per round trip. `edge_producers` > 1
    gives more requests in flight; a record's producer is chosen by its key, so the beats of
    one call keep their order.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producers: list[AIOKafkaProducer] = []
        self._connect_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(settings.edge_max_pending)
        self._funnel_task: asyncio.Task[None] | None = None

    def _new_producer(self) -> AIOKafkaProducer:
        s = self.settings
        return AIOKafkaProducer(
            **client_kwargs(s),
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
        self._funnel_task = asyncio.create_task(self._funnel(), name="kafka-funnel")

    @property
    def _producer(self) -> AIOKafkaProducer | None:
        """The first producer, once all of them are connected."""
        if len(self._producers) < self.settings.edge_producers:
            return None
        return self._producers[0]

    async def _connect_forever(self) -> None:
        delay = 0.25
        reported: str | None = None
        while not self._stopping and len(self._producers) < self.settings.edge_producers:
            producer = self._new_producer()
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await producer.stop()
                # One line naming the cause (wrong password, CA, mechanism, or a broker that
                # is down), and again only when the cause changes: not one per retry, and not
                # a second one when the key directory already said the same.
                cause = await cause_of(self.settings, exc)
                if cause != reported:
                    reported = cause
                    if first_time_said(cause):
                        log.error("edge cannot connect to Kafka at %s: %s; answering 503 and "
                                  "retrying", describe(self.settings), cause)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producers.append(producer)
            if reported is not None:
                said_recovered()
                log.info("edge connected to Kafka at %s", describe(self.settings))
                reported = None
            log.debug("kafka producer %d connected to %s", len(self._producers),
                      describe(self.settings))

    async def _funnel(self) -> None:
        """Move queued records into the producer, oldest first, without awaiting deliveries."""
        queue = self._queue
        producers = self._producers
        wanted = self.settings.edge_producers
        while True:
            item = await queue.get()
            producer = (producers[zlib.crc32(item.key) % wanted]
                        if len(producers) == wanted else None)
            if item.future.done():  # the request already gave up (timeout, disconnect)
                continue
            if producer is None:
                item.future.set_exception(BrokerUnavailable("not connected to Kafka"))
                continue
            try:
                delivery = await producer.send(item.topic, value=item.value, key=item.key,
                                               headers=item.headers or None)
            except KafkaError as exc:
                if not item.future.done():
                    item.future.set_exception(exc)
                continue
            except Exception as exc:  # the funnel must outlive any one record
                log.exception("producer.send failed")
                if not item.future.done():
                    item.future.set_exception(BrokerUnavailable(f"send failed: {exc!r}"))
                continue
            delivery.add_done_callback(item.settle)

    async def stop(self) -> None:
        self._stopping = True
        if self._funnel_task is not None:
            self._funnel_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._funnel_task
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        producers, self._producers = self._producers, []
        for producer in producers:
            # stop() flushes what is pending; bound it so shutdown never hangs.
            try:
                await asyncio.wait_for(producer.stop(), self.settings.produce_timeout_s * 2)
            except (TimeoutError, KafkaError) as exc:
                log.warning("producer did not stop cleanly: %r", exc)

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def publish(self, topic: str, key: bytes, value: bytes,
                      headers: Sequence[tuple[str, bytes]] = ()) -> None:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to Kafka yet")
        pending = _Pending(topic, key, value, list(headers),
                           asyncio.get_running_loop().create_future())
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.produce_timeout_s):
                if self._queue.full():
                    metrics.QUEUE_FULL.inc()
                await self._queue.put(pending)
                await pending.future
        except TimeoutError:
            raise BrokerUnavailable(
                f"no acknowledgement within {self.settings.produce_timeout_s}s") from None
        except KafkaError as exc:
            raise BrokerUnavailable(f"kafka error: {exc!r}") from exc
        finally:
            if not pending.future.done():
                pending.future.cancel()
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)

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


class _Pending:
    """One request's record on its way to the broker, and the future its request awaits."""

    __slots__ = ("future", "headers", "key", "topic", "value")

    def __init__(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]],
                 future: asyncio.Future[None]) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.future = future

    def settle(self, delivery: asyncio.Future[object]) -> None:
        """Pass the broker's answer on to the waiting request (if it still waits)."""
        if self.future.done():
            return
        if delivery.cancelled():
            self.future.set_exception(BrokerUnavailable("delivery cancelled"))
        elif (exc := delivery.exception()) is not None:
            self.future.set_exception(exc)
        else:
            self.future.set_result(None)
            kafka_reachable()
