"""The edge's produce funnel, with stand-in producers (no broker): a request is answered only
after its own delivery is acknowledged, a full queue pushes back, and one key always goes to
the same producer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from app.edge.publisher import BrokerUnavailable, KafkaPublisher
from app.settings import Settings


class StandInProducer:
    """Records sends and hands out delivery futures the test resolves."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.deliveries: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery

    async def stop(self) -> None:
        pass


def publisher(producers: int = 1, **overrides: Any) -> tuple[KafkaPublisher, list[Any]]:
    settings = Settings().with_overrides(edge_producers=producers, **overrides)
    pub = KafkaPublisher(settings)
    stand_ins = [StandInProducer() for _ in range(producers)]
    pub._producers.extend(stand_ins)  # type: ignore[arg-type]
    pub._funnel_task = asyncio.create_task(pub._funnel())
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


async def test_a_full_queue_pushes_back_then_times_out() -> None:
    pub, (producer,) = publisher(edge_max_pending=1, produce_timeout_s=0.2)
    assert pub._funnel_task is not None
    pub._funnel_task.cancel()  # nothing drains the queue: it stays full
    try:
        first = asyncio.create_task(pub.publish("t", b"a", b"v"))
        await asyncio.sleep(0.01)
        assert pub._queue.full()
        with pytest.raises(BrokerUnavailable):
            await pub.publish("t", b"b", b"v")
        with pytest.raises(BrokerUnavailable):
            await first
        assert producer.sent == []
    finally:
        await pub.stop()


async def test_one_key_always_uses_the_same_producer() -> None:
    pub, producers = publisher(producers=3)
    try:
        keys = [f"call-{i}".encode() for i in range(30)]
        requests = [asyncio.create_task(pub.publish("t", k, b"v")) for k in keys + keys]
        await asyncio.sleep(0.05)
        for producer in producers:
            for delivery in producer.deliveries:
                delivery.set_result(object())
        await asyncio.wait_for(asyncio.gather(*requests), 1)
        owners: dict[bytes, int] = {}
        for index, producer in enumerate(producers):
            for _topic, key, _value in producer.sent:
                assert owners.setdefault(key, index) == index
        assert len(owners) == 30 and all(p.sent for p in producers)
    finally:
        await pub.stop()


async def test_the_funnel_survives_a_failing_send() -> None:
    pub, (producer,) = publisher()
    calls = {"n": 0}
    real_send = producer.send

    async def flaky_send(topic: str, value: bytes, key: bytes,
                         headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("unexpected")
        return await real_send(topic, value=value, key=key, headers=headers)

    producer.send = flaky_send  # type: ignore[method-assign]
    try:
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(pub.publish("t", b"a", b"v"), 1)
        second = asyncio.create_task(pub.publish("t", b"b", b"v"))
        await asyncio.sleep(0.01)
        producer.deliveries[0].set_result(object())
        await asyncio.wait_for(second, 1)
    finally:
        await pub.stop()
