"""The edge's Kafka producers: acks=all, idempotent, and bounded in time and memory.

`publish` returns only after the broker acknowledged the write of that very record; if that
does not happen within `produce_timeout_s` it raises BrokerUnavailable and the edge answers
503. A write that timed out may still land later; that is safe because callId is the
idempotency key downstream.

Requests do not call the producer themselves, and no record gets a send() of its own. A
request computes its record's partition (Kafka's default partitioner, the same murmur2 as the
Java client, in C), appends the record to that partition's lane and waits for its own future.
Each producer has one task that works in rounds: it hands the records waiting in all of its
lanes to the producer at once, one batch per partition (`create_batch()`/`send_batch()`), so
they leave in one produce request; when the broker acknowledged a batch it settles the futures
of its records in one pass; when the round's batches are all answered the next round takes
what collected meanwhile. So one produce request carries everything that arrived during the
previous round trip (a produce request costs the edge and the broker far more than a record
in it), and a partition has at most one batch outstanding: its records (the beats of one call
among them) reach the broker in the order they came, through the same producer.

The lanes together hold at most `edge_max_pending` records that no batch has taken yet: when
they are full a request waits for room (within the same timeout) instead of the edge
buffering an unbounded burst. A batch is at most `MAX_BATCH_BYTES` (a larger record goes
alone) and a partition has one batch outstanding, so what is in flight is bounded too.

Deadlines cost no timer per request: every record waits in one deque, oldest first (they all
have the same timeout), and one timer, armed at the oldest deadline, fails the records whose
time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from murmurhash2 import murmurhash2

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

# Kafka's murmur2 seed (org.apache.kafka.common.utils.Utils.murmur2).
MURMUR2_SEED = 0x9747B28C
# The largest produce request (aiokafka's max_request_size default), and one batch's size.
MAX_REQUEST_BYTES = 1024 * 1024
MAX_BATCH_BYTES = 256 * 1024
# A value this small cannot make a record too large for a request (keys and headers are small).
_SMALL_VALUE = MAX_REQUEST_BYTES // 2
# A deadline this close counts as reached (the event loop may run a timer a hair early).
_DEADLINE_SLACK_S = 0.001


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (Java) partitioner picks for a keyed record:
    toPositive(murmur2(key)) % partitions, as aiokafka's DefaultPartitioner does."""
    return int(murmurhash2(key, MURMUR2_SEED) & 0x7FFFFFFF) % partitions


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time (or at all)."""


class Publisher(Protocol):
    @property
    def ready(self) -> bool: ...

    async def publish(self, topic: str, key: bytes, value: bytes,
                      headers: Sequence[tuple[str, bytes]] = ()) -> None: ...

    async def check(self) -> bool: ...


class _Pending:
    """One request's record on its way to the broker, and the future its request awaits."""

    __slots__ = ("deadline", "future", "headers", "key", "queued_at", "value")

    def __init__(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]],
                 future: asyncio.Future[None], queued_at: float, deadline: float) -> None:
        self.key = key
        self.value = value
        self.headers = headers
        self.future = future
        self.queued_at = queued_at
        self.deadline = deadline


class _Rounds:
    """One producer's lanes and the task that sends them in rounds."""

    __slots__ = ("lanes", "task", "wakeup")

    def __init__(self) -> None:
        self.lanes: list[_Lane] = []
        self.wakeup: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None


class _Lane:
    """The records of one topic partition that no batch has taken yet."""

    __slots__ = ("items", "partition", "rounds", "topic")

    def __init__(self, topic: str, partition: int, rounds: _Rounds) -> None:
        self.topic = topic
        self.partition = partition
        self.rounds = rounds  # of the producer that sends this partition
        self.items: deque[_Pending] = deque()


class KafkaPublisher:
    """Owns the producers. Starts in the background so the edge is up (and says "not ready")
    while the broker is still down.

    aiokafka keeps one produce request in flight per broker and producer. `edge_producers` > 1
    gives more requests in flight: partition p is sent by producer p % edge_producers, so a
    partition (and every beat of a call) always goes through the same producer, in order.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producers: list[AIOKafkaProducer] = []
        self._connect_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wanted = settings.edge_producers
        self._timeout_s = settings.produce_timeout_s
        self._linger_s = settings.producer_linger_ms / 1000
        self._max_pending = settings.edge_max_pending
        # topic -> partition count the records are spread over (from the producers' metadata)
        self._partitions: dict[str, int] = {}
        # topic -> its lanes by partition (None: no record for that partition yet)
        self._lanes: dict[str, list[_Lane | None]] = {}
        self._rounds: list[_Rounds] = []  # one per producer, by index
        self._waiting = 0  # records in the lanes that no batch has taken yet
        self._room: deque[asyncio.Future[None]] = deque()  # requests waiting for room
        self._expiry: deque[_Pending] = deque()  # every record not yet answered, oldest first
        self._expiry_timer: asyncio.TimerHandle | None = None

    def _new_producer(self) -> AIOKafkaProducer:
        s = self.settings
        return AIOKafkaProducer(
            **client_kwargs(s),
            client_id="voix-edge",
            acks="all",
            enable_idempotence=True,
            # The lanes linger (VOIX_PRODUCER_LINGER_MS) before they make a batch; a batch
            # handed over is complete and should go at once.
            linger_ms=0,
            # Expire undeliverable batches instead of holding them for the default 40 s.
            request_timeout_ms=max(int(s.produce_timeout_s * 1000) * 2, 10_000),
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_REQUEST_BYTES,
        )

    async def start(self) -> None:
        self._connect_task = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    @property
    def _producer(self) -> AIOKafkaProducer | None:
        """The first producer, once all of them are connected."""
        if len(self._producers) < self._wanted:
            return None
        return self._producers[0]

    async def _connect_forever(self) -> None:
        delay = 0.25
        reported: str | None = None
        while not self._stopping and len(self._producers) < self._wanted:
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
            self.add_producer(producer)
            if reported is not None:
                said_recovered()
                log.info("edge connected to Kafka at %s", describe(self.settings))
                reported = None
            log.debug("kafka producer %d connected to %s", len(self._producers),
                      describe(self.settings))

    def add_producer(self, producer: AIOKafkaProducer) -> None:
        """A started producer joins; its metadata updates keep the partition counts current."""
        self._producers.append(producer)
        self._rounds.append(_Rounds())
        producer.client.cluster.add_listener(self._metadata_updated)

    # ---- partitions ----------------------------------------------------------------------

    def _known_partitions(self, topic: str) -> int | None:
        """The topic's partition count as every producer that knows the topic has it: the
        smallest, so that no producer is handed a partition it does not know yet (a topic's
        partitions only ever grow)."""
        counts = [len(found) for p in self._producers
                  if (found := p.client.cluster.partitions_for_topic(topic))]
        return min(counts) if counts else None

    def _metadata_updated(self, _cluster: Any) -> None:
        for topic in list(self._partitions):
            count = self._known_partitions(topic)
            if count is not None and count != self._partitions[topic]:
                log.info("topic %s now has %d partitions (was %d)", topic, count,
                         self._partitions[topic])
                self._partitions[topic] = count

    async def _learn_partitions(self, topic: str, deadline: float) -> int:
        """The first record for a topic: wait (within the deadline) for its metadata."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._producers[0].partitions_for(topic)
        except TimeoutError:
            raise BrokerUnavailable(f"no metadata for {topic} within "
                                    f"{self._timeout_s}s") from None
        except KafkaError as exc:
            raise BrokerUnavailable(f"kafka error: {exc!r}") from exc
        count = self._known_partitions(topic)
        if not count:
            raise BrokerUnavailable(f"topic {topic} has no partitions")
        self._partitions[topic] = count
        return count

    # ---- publishing ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def publish(self, topic: str, key: bytes, value: bytes,
                      headers: Sequence[tuple[str, bytes]] = ()) -> None:
        if len(self._producers) < self._wanted or self._stopping:
            raise BrokerUnavailable("not connected to Kafka yet")
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeout_s
        header_list = headers if isinstance(headers, list) else list(headers)
        if len(value) > _SMALL_VALUE and DefaultRecordBatchBuilder.estimate_size_in_bytes(
                key, value, header_list) > MAX_REQUEST_BYTES:
            raise BrokerUnavailable(f"the record is larger than {MAX_REQUEST_BYTES} bytes")
        count = self._partitions.get(topic)
        if count is None:
            count = await self._learn_partitions(topic, deadline)
        if self._waiting >= self._max_pending:
            await self._wait_for_room(deadline)
        # default_partition(key, count), inline: this runs once per request
        partition = (murmurhash2(key, MURMUR2_SEED) & 0x7FFFFFFF) % count
        lanes = self._lanes.get(topic)
        lane = lanes[partition] if lanes is not None and partition < len(lanes) else None
        if lane is None:
            lane = self._open_lane(topic, partition)
        item = _Pending(key, value, header_list, loop.create_future(), started, deadline)
        lane.items.append(item)
        self._waiting += 1
        wakeup = lane.rounds.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        self._expiry.append(item)
        if self._expiry_timer is None:
            self._expiry_timer = loop.call_at(deadline, self._expire)
        try:
            await item.future  # BrokerUnavailable unless the broker acknowledged the record
        finally:
            if not item.future.done():  # the request was cancelled: its lane skips it
                item.future.cancel()
        metrics.PRODUCE_SECONDS.observe(loop.time() - started)

    async def _wait_for_room(self, deadline: float) -> None:
        metrics.QUEUE_FULL.inc()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                while self._waiting >= self._max_pending:
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._room.append(waiter)
                    try:
                        await waiter
                    except BaseException:
                        if waiter.done() and not waiter.cancelled():
                            self._make_room()  # pass on the room this request was given
                        raise
        except TimeoutError:
            raise BrokerUnavailable(
                f"no acknowledgement within {self._timeout_s}s (queue full)") from None

    def _make_room(self) -> None:
        free = self._max_pending - self._waiting
        while free > 0 and self._room:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _expire(self) -> None:
        """Fail the records whose deadline passed; re-arm for the oldest one still waiting."""
        self._expiry_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time() + _DEADLINE_SLACK_S
        expiry = self._expiry
        while expiry:
            item = expiry[0]
            if not item.future.done():
                if item.deadline > now:
                    self._expiry_timer = loop.call_at(item.deadline, self._expire)
                    return
                item.future.set_exception(
                    BrokerUnavailable(f"no acknowledgement within {self._timeout_s}s"))
            expiry.popleft()

    def _forget_answered(self) -> None:
        expiry = self._expiry
        while expiry and expiry[0].future.done():
            expiry.popleft()

    # ---- lanes ---------------------------------------------------------------------------

    def _open_lane(self, topic: str, partition: int) -> _Lane:
        """Partition p goes through producer p % edge_producers, always."""
        index = partition % len(self._producers)
        rounds = self._rounds[index]
        lane = _Lane(topic, partition, rounds)
        lanes = self._lanes.setdefault(topic, [])
        lanes.extend([None] * (partition + 1 - len(lanes)))
        lanes[partition] = lane
        rounds.lanes.append(lane)
        if rounds.task is None:
            rounds.task = asyncio.create_task(self._send_rounds(index),
                                              name=f"kafka-producer-{index}")
        return lane

    def _take(self, producer: AIOKafkaProducer, lane: _Lane) -> tuple[Any, list[_Pending]]:
        """A batch of the lane's records, oldest first, as many as fit."""
        items = lane.items
        batch = producer.create_batch()
        taken: list[_Pending] = []
        while items:
            item = items[0]
            if not item.future.done():  # else its request gave up (timeout, disconnect)
                if batch.append(key=item.key, value=item.value, timestamp=None,
                                headers=item.headers) is None:
                    break  # full (an empty batch takes any record)
                item.value = b""  # the batch has the bytes; the deadline deque keeps the item
                taken.append(item)
            items.popleft()
            self._waiting -= 1
        return batch, taken

    async def _send_rounds(self, index: int) -> None:
        """Producer `index`'s rounds: every lane's waiting records, a batch per partition,
        handed over together; the next round once all of them are answered."""
        loop = asyncio.get_running_loop()
        producer = self._producers[index]
        rounds = self._rounds[index]
        linger = self._linger_s
        sent: list[tuple[list[_Pending], asyncio.Future[Any]]] = []
        try:
            while True:
                waiting = [lane for lane in rounds.lanes if lane.items]
                if not waiting:
                    rounds.wakeup = loop.create_future()
                    await rounds.wakeup
                    rounds.wakeup = None
                    continue
                if linger:
                    oldest = min(lane.items[0].queued_at for lane in waiting)
                    if oldest + linger > loop.time():
                        await asyncio.sleep(oldest + linger - loop.time())
                        waiting = [lane for lane in rounds.lanes if lane.items]
                for lane in waiting:
                    batch, taken = self._take(producer, lane)
                    if taken:
                        delivery = await self._hand_over(producer, lane, batch, taken)
                        if delivery is not None:
                            delivery.add_done_callback(partial(_settle, taken))
                            sent.append((taken, delivery))
                if self._room:
                    self._make_room()
                if sent:
                    await asyncio.wait([delivery for _, delivery in sent])
                    sent.clear()
                self._forget_answered()
        except asyncio.CancelledError:
            for taken, _ in sent:
                _fail(taken, "the edge is stopping")
            raise

    async def _hand_over(self, producer: AIOKafkaProducer, lane: _Lane, batch: Any,
                         taken: list[_Pending]) -> asyncio.Future[Any] | None:
        """Give a batch to the producer; its delivery future, or None (its records failed)."""
        try:
            delivery: asyncio.Future[Any] = await producer.send_batch(
                batch, lane.topic, partition=lane.partition)
        except KafkaError as exc:
            _fail(taken, exc)
        except asyncio.CancelledError:
            _fail(taken, "the edge is stopping")
            raise
        except Exception as exc:  # the rounds must outlive any one batch
            log.exception("handing a batch for %s[%d] to the producer failed", lane.topic,
                          lane.partition)
            _fail(taken, f"send failed: {exc!r}")
        else:
            return delivery
        return None

    async def stop(self) -> None:
        self._stopping = True
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        for rounds in self._rounds:
            if rounds.task is not None:
                rounds.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rounds.task
        rounds_list, self._lanes, self._rounds = self._rounds, {}, []
        for rounds in rounds_list:
            for lane in rounds.lanes:
                _fail(lane.items, "the edge is stopping")
                lane.items.clear()
        self._waiting = 0
        for waiter in self._room:
            if not waiter.done():
                waiter.set_exception(BrokerUnavailable("the edge is stopping"))
        self._room.clear()
        _fail(self._expiry, "the edge is stopping")
        self._expiry.clear()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        producers, self._producers = self._producers, []
        for producer in producers:
            # stop() flushes what is pending; bound it so shutdown never hangs.
            try:
                await asyncio.wait_for(producer.stop(), self._timeout_s * 2)
            except (TimeoutError, KafkaError) as exc:
                log.warning("producer did not stop cleanly: %r", exc)

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


def _settle(taken: list[_Pending], delivery: asyncio.Future[Any]) -> None:
    """A batch's delivery is done: answer each of its records' requests (still waiting)."""
    if delivery.cancelled():
        _fail(taken, "the delivery was cancelled")
    elif (exc := delivery.exception()) is not None:
        _fail(taken, exc if isinstance(exc, KafkaError) else f"send failed: {exc!r}")
    else:
        for item in taken:
            if not item.future.done():
                item.future.set_result(None)
        kafka_reachable()


def _fail(items: Sequence[_Pending] | deque[_Pending], reason: str | KafkaError) -> None:
    """Answer the records' requests (those still waiting) with BrokerUnavailable, each its
    own exception (one instance raised in many tasks would collect all their tracebacks)."""
    for item in items:
        if not item.future.done():
            if isinstance(reason, KafkaError):
                exc = BrokerUnavailable(f"kafka error: {reason!r}")
                exc.__cause__ = reason
            else:
                exc = BrokerUnavailable(reason)
            item.future.set_exception(exc)
