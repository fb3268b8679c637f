"""`python -m app tail TOPIC`: print a topic's records as JSON lines (partition, offset, key,
headers, value), from the beginning; with --follow, keep printing new ones until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.kafka_clients import client_kwargs
from app.settings import Settings


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of a topic the consumer is not subscribed to. aiokafka only keeps metadata
    for subscribed topics, so ask the cluster directly."""
    metadata = await consumer._client.fetch_all_metadata()
    return set(metadata.partitions_for_topic(topic) or ())


async def tail_topic(settings: Settings, topic: str, follow: bool) -> int:
    consumer = AIOKafkaConsumer(**client_kwargs(settings, group_id=None, enable_auto_commit=False,
                                                 auto_offset_reset="earliest"))
    try:
        await consumer.start()
        partitions = await topic_partitions(consumer, topic)
        if not partitions:
            print(f"error: no topic {topic!r}", file=sys.stderr)
            return 2
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    try:
                        value = orjson.loads(r.value) if r.value is not None else None
                    except orjson.JSONDecodeError:
                        value = r.value.decode("utf-8", "replace") if r.value else None
                    line = {"partition": r.partition, "offset": r.offset,
                            "key": r.key.decode("utf-8", "replace") if r.key else None,
                            "headers": {k: v.decode("utf-8", "replace")
                                        for k, v in (r.headers or ())},
                            "value": value}
                    sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()
            if not follow and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                return 0
    finally:
        # aiokafka can surface its own cancelled housekeeping task when stopped early.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()
