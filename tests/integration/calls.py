"""Helpers for the downstream-side broker tests: GET /calls, producing status messages, and
waiting until the worker group has consumed a topic to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

from app.contracts.ids import utc_now_iso
from app.contracts.messages import StatusUpdate, dumps
from app.ops.tail import topic_partitions
from tests.integration.stack import Stack


async def get_call(base_url: str, key: str | None, call_id: str,
                   team: str | None = None) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    params = {"teamId": team} if team else {}
    async with aiohttp.ClientSession() as http, http.get(
        f"{base_url}/calls/{call_id}", headers=headers, params=params,
        timeout=aiohttp.ClientTimeout(total=15),
    ) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


async def wait_call(stack: Stack, key: str, call_id: str,
                    until: Callable[[int, Any], bool], timeout_s: float = 30.0) -> Any:
    """Poll GET /calls/{callId} until `until(status, body)` holds; the last body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        status, _, body = await get_call(stack.url, key, call_id)
        if until(status, body):
            return body
        if loop.time() > deadline:
            raise AssertionError(f"GET /calls/{call_id}: last answer {status} {body}")
        await asyncio.sleep(0.2)


async def produce(stack: Stack, topic: str, key: bytes, value: bytes) -> RecordMetadata:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        return await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def send_status(stack: Stack, job_id: str, call_id: str, status: str,
                      error: str | None = None, at: str | None = None) -> RecordMetadata:
    update = StatusUpdate(job_id, call_id, status, error, at or utc_now_iso())
    return await produce(stack, stack.topics.status, call_id.encode(), dumps(update.to_value()))


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def wait_consumed(stack: Stack, topic: str, timeout_s: float = 40.0) -> None:
    """Wait until the worker group has committed every record of `topic` written so far; with
    at-least-once, a committed record has been fully processed (its output acknowledged)."""
    ends = await end_offsets(stack.bootstrap, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(f"{stack.prefix}worker")
            behind = {p: end for p, end in ends.items() if end > 0 and (
                committed.get(TopicPartition(topic, p)) is None
                or committed[TopicPartition(topic, p)].offset < end)}
            if not behind:
                return
            if loop.time() > deadline:
                raise AssertionError(f"worker has not consumed {topic} partitions {behind}")
            await asyncio.sleep(0.3)
    finally:
        await admin.close()
