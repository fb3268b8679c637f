"""The edge's produce lanes, with stand-in producers (no broker): a request is answered only
after its own batch is acknowledged, a full queue pushes back, one key always goes to the same
producer and partition (Kafka's default partitioner), records keep their order, and a
partition count change is followed."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from app.edge.publisher import BrokerUnavailable, KafkaPublisher, default_partition
from app.settings import Settings


class StandInBatch:
    """What create_batch() hands out: takes records until `capacity` (an empty one takes any)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []

    def append(self, *, timestamp: int | None, key: bytes, value: bytes,
               headers: list[tuple[str, bytes]]) -> object | None:
        if self.records and len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, headers))
        return object()


class StandInCluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.listeners: list[Any] = []

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.partitions))

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def update(self, partitions: int) -> None:
        self.partitions = partitions
        for listener in self.listeners:
            listener(self)


class StandInClient:
    def __init__(self, partitions: int) -> None:
        self.cluster = StandInCluster(partitions)


class StandInProducer:
    """Records what each batch carried and hands out delivery futures the test resolves."""

    def __init__(self, partitions: int = 6, capacity: int = 1000) -> None:
        self.client = StandInClient(partitions)
        self.capacity = capacity
        # (topic, key, value) of every record, in the order the batches were sent
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.batches: list[tuple[str, int, StandInBatch]] = []
        self.deliveries: list[asyncio.Future[Any]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.client.cluster.partitions))

    def create_batch(self) -> StandInBatch:
        return StandInBatch(self.capacity)

    async def send_batch(self, batch: StandInBatch, topic: str, *,
                         partition: int) -> asyncio.Future[Any]:
        assert partition < self.client.cluster.partitions, "a partition the producer knows"
        self.batches.append((topic, partition, batch))
        self.sent.extend((topic, key, value) for key, value, _headers in batch.records)
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery

    def ack_all(self) -> None:
        for delivery in self.deliveries:
            if not delivery.done():
                delivery.set_result(object())

    async def stop(self) -> None:
        pass


def publisher(producers: int = 1, partitions: int = 6, capacity: int = 1000,
              **overrides: Any) -> tuple[KafkaPublisher, list[Any]]:
    settings = Settings().with_overrides(edge_producers=producers, producer_linger_ms=0,
                                         **overrides)
    pub = KafkaPublisher(settings)
    stand_ins = [StandInProducer(partitions, capacity) for _ in range(producers)]
    for stand_in in stand_ins:
        pub.add_producer(stand_in)  # type: ignore[arg-type]
    return pub, stand_ins


async def test_publish_returns_only_after_the_ack() -> None:
    pub, (producer,) = publisher()
    try:
        request = asyncio.create_task(pub.publish("t", b"k", b"v"))
        await asyncio.sleep(0.01)
        assert producer.sent == [("t", b"k", b"v")]
        assert not request.done()  # sent, not acknowledged: no 202 yet
        producer.deliveries[0].set_result(object())
        await asyncio.wait_for(request, 1)
    finally:
        await pub.stop()


async def test_a_failed_delivery_is_broker_unavailable() -> None:
    pub, (producer,) = publisher()
    try:
        request = asyncio.create_task(pub.publish("t", b"k", b"v"))
        await asyncio.sleep(0.01)
        producer.deliveries[0].set_exception(KafkaTimeoutError())
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(request, 1)
    finally:
        await pub.stop()


async def test_a_batch_answers_each_of_its_records_after_its_own_ack() -> None:
    """Records that arrive while a batch is on its way wait for the next batch and its ack."""
    pub, (producer,) = publisher(partitions=1)
    try:
        first = asyncio.create_task(pub.publish("t", b"a", b"1"))
        await asyncio.sleep(0.01)
        later = [asyncio.create_task(pub.publish("t", k, b"2")) for k in (b"b", b"c")]
        await asyncio.sleep(0.01)
        assert len(producer.batches) == 1  # one batch outstanding per partition
        producer.deliveries[0].set_result(object())
        await asyncio.wait_for(first, 1)
        await asyncio.sleep(0.01)
        assert not any(r.done() for r in later)  # their batch is sent, not acknowledged
        [(_, _, second)] = producer.batches[1:]
        assert [key for key, _, _ in second.records] == [b"b", b"c"]
        producer.deliveries[1].set_exception(KafkaTimeoutError())
        for request in later:
            with pytest.raises(BrokerUnavailable):
                await asyncio.wait_for(request, 1)
    finally:
        await pub.stop()


async def test_a_full_batch_leaves_the_rest_for_the_next_one() -> None:
    pub, (producer,) = publisher(partitions=1, capacity=2)
    try:
        requests = [asyncio.create_task(pub.publish("t", bytes([65 + i]), b"v"))
                    for i in range(5)]
        for _ in range(4):
            await asyncio.sleep(0.01)
            producer.ack_all()
        await asyncio.wait_for(asyncio.gather(*requests), 1)
        sizes = [len(batch.records) for _, _, batch in producer.batches]
        assert max(sizes) <= 2 and sum(sizes) == 5
        assert [key for _, key, _ in producer.sent] == [b"A", b"B", b"C", b"D", b"E"]
    finally:
        await pub.stop()


async def test_no_ack_within_the_timeout_is_broker_unavailable() -> None:
    pub, (producer,) = publisher(produce_timeout_s=0.2)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BrokerUnavailable):
            await pub.publish("t", b"k", b"v")
        assert 0.15 <= loop.time() - started < 1.0
        assert producer.sent == [("t", b"k", b"v")]  # it was sent: it may still land
    finally:
        await pub.stop()


async def test_a_full_queue_pushes_back_then_times_out() -> None:
    pub, (producer,) = publisher(edge_max_pending=1, produce_timeout_s=0.2)
    try:
        producer.send_batch = _never  # type: ignore[method-assign]
        first = asyncio.create_task(pub.publish("t", b"a", b"v"))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(pub.publish("t", b"b", b"v"))
        await asyncio.sleep(0.01)
        third = asyncio.create_task(pub.publish("t", b"c", b"v"))
        await asyncio.sleep(0.01)
        assert pub._waiting == 1  # the lane is full: the third request waits for room
        for request in (first, second, third):
            with pytest.raises(BrokerUnavailable):
                await request
        assert producer.sent == []
    finally:
        await pub.stop()


async def _never(batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_room_is_given_in_turn_when_the_lanes_drain() -> None:
    pub, (producer,) = publisher(edge_max_pending=2, partitions=1)
    try:
        requests = [asyncio.create_task(pub.publish("t", f"k{i}".encode(), b"v"))
                    for i in range(8)]
        for _ in range(10):
            await asyncio.sleep(0.01)
            producer.ack_all()
        await asyncio.wait_for(asyncio.gather(*requests), 1)
        assert len(producer.sent) == 8 and pub._waiting == 0
    finally:
        await pub.stop()


async def test_one_key_always_uses_the_same_producer() -> None:
    pub, producers = publisher(producers=3)
    try:
        keys = [f"call-{i}".encode() for i in range(30)]
        requests = [asyncio.create_task(pub.publish("t", k, b"v")) for k in keys + keys]
        for _ in range(3):
            await asyncio.sleep(0.02)
            for producer in producers:
                producer.ack_all()
        await asyncio.wait_for(asyncio.gather(*requests), 1)
        owners: dict[bytes, int] = {}
        for index, producer in enumerate(producers):
            for _topic, key, _value in producer.sent:
                assert owners.setdefault(key, index) == index
        assert len(owners) == 30 and all(p.sent for p in producers)
    finally:
        await pub.stop()


async def test_records_go_to_kafkas_default_partition_in_order() -> None:
    pub, (producer,) = publisher(partitions=6)
    try:
        keys = [f"{i:08x}-0000-4000-8000-000000000000".encode() for i in range(40)]
        beats = [(k, n) for n in range(3) for k in keys]  # three beats of each call, in turn
        requests = []
        for key, n in beats:
            requests.append(asyncio.create_task(pub.publish("t", key, str(n).encode())))
            await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0.01)
            producer.ack_all()
        await asyncio.wait_for(asyncio.gather(*requests), 1)
        partitioner = DefaultPartitioner()
        seen: dict[bytes, list[bytes]] = {}
        for _topic, partition, batch in producer.batches:
            for key, value, _headers in batch.records:
                assert partition == partitioner(key, list(range(6)), list(range(6)))
                seen.setdefault(key, []).append(value)
        assert all(values == [b"0", b"1", b"2"] for values in seen.values())
        assert len(seen) == 40
    finally:
        await pub.stop()


async def test_a_partition_count_change_is_followed() -> None:
    pub, producers = publisher(producers=2, partitions=3)
    try:
        keys = [f"key-{i}".encode() for i in range(60)]
        first = [asyncio.create_task(pub.publish("t", k, b"v")) for k in keys]
        await asyncio.sleep(0.01)
        for producer in producers:
            producer.ack_all()
        await asyncio.wait_for(asyncio.gather(*first), 1)
        # One producer learns of more partitions first: the records keep the count every
        # producer knows until the other one learns it too.
        producers[0].client.cluster.update(12)
        assert pub._partitions["t"] == 3
        producers[1].client.cluster.update(12)
        assert pub._partitions["t"] == 12
        again = [asyncio.create_task(pub.publish("t", k, b"w")) for k in keys]
        for _ in range(3):
            await asyncio.sleep(0.01)
            for producer in producers:
                producer.ack_all()
        await asyncio.wait_for(asyncio.gather(*again), 1)
        partitions = {(key, value): partition for producer in producers
                      for _, partition, batch in producer.batches
                      for key, value, _ in batch.records}
        for key in keys:
            assert partitions[(key, b"v")] == default_partition(key, 3)
            assert partitions[(key, b"w")] == default_partition(key, 12)
        assert max(partitions.values()) > 2
    finally:
        await pub.stop()


def test_default_partition_is_kafkas_murmur2() -> None:
    rng = random.Random(10)
    keys = [rng.randbytes(rng.randrange(0, 80)) for _ in range(5000)]
    keys += [f"{rng.getrandbits(128):032x}".encode() for _ in range(5000)]
    for key in keys:
        for partitions in (1, 6, 7, 64):
            assert default_partition(key, partitions) == \
                (murmur2(key) & 0x7FFFFFFF) % partitions


async def test_the_lane_survives_a_failing_send() -> None:
    pub, (producer,) = publisher()
    calls = {"n": 0}
    real_send = producer.send_batch

    async def flaky_send(batch: StandInBatch, topic: str, *,
                         partition: int) -> asyncio.Future[Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("unexpected")
        return await real_send(batch, topic, partition=partition)

    producer.send_batch = flaky_send  # type: ignore[method-assign]
    try:
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(pub.publish("t", b"a", b"v"), 1)
        second = asyncio.create_task(pub.publish("t", b"a", b"v"))
        await asyncio.sleep(0.01)
        producer.deliveries[0].set_result(object())
        await asyncio.wait_for(second, 1)
    finally:
        await pub.stop()


async def test_a_request_that_gave_up_is_not_sent() -> None:
    pub, (producer,) = publisher(partitions=1)
    try:
        first = asyncio.create_task(pub.publish("t", b"a", b"v"))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(pub.publish("t", b"b", b"v"))
        await asyncio.sleep(0.01)
        gone.cancel()  # e.g. the client went away while the first batch was on its way
        with pytest.raises(asyncio.CancelledError):
            await gone
        third = asyncio.create_task(pub.publish("t", b"c", b"v"))
        await asyncio.sleep(0.01)
        producer.ack_all()
        await asyncio.wait_for(first, 1)
        await asyncio.sleep(0.01)
        producer.ack_all()
        await asyncio.wait_for(third, 1)
        assert [key for _, key, _ in producer.sent] == [b"a", b"c"]
        assert pub._waiting == 0
    finally:
        await pub.stop()


async def test_stop_answers_every_waiting_request() -> None:
    pub, _ = publisher(partitions=1)
    requests = [asyncio.create_task(pub.publish("t", k, b"v")) for k in (b"a", b"b")]
    await asyncio.sleep(0.01)
    await pub.stop()
    for request in requests:
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(request, 1)
    with pytest.raises(BrokerUnavailable):
        await pub.publish("t", b"c", b"v")
