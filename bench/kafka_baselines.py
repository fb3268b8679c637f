"""The Kafka client ceilings for `make bench`, each in its own process:

  produce:  a raw aiokafka produce loop with the edge's producer settings (acks=all,
            idempotent), records shaped like real submissions, sends batched (not awaited
            one by one); prints records/s.
  relay:    a raw consume -> produce loop (what the worker does, minus Faust, the merge and the
            table): reads the records `produce` wrote and writes one record per input to
            another topic; prints records/s.

Output: one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.contracts.messages import Submission
from app.kafka_clients import env_client_kwargs
from app.ops.tail import topic_partitions


def sample_value() -> bytes:
    call_id = str(uuid.uuid4())
    call = {"callId": call_id, "from": "+31612345678", "to": "+31201234567",
            "startTime": "2026-06-16T09:05:35.000Z", "outgoing": False, "duration": 42,
            "recordingUrl": f"https://rec.example.com/{call_id}.wav"}
    submission = Submission.new(team_id=str(uuid.uuid4()), key_id="bench", call=call)
    return orjson.dumps(submission.to_value())


def producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(**env_client_kwargs(
        bootstrap, acks="all", enable_idempotence=True, linger_ms=2, max_batch_size=256 * 1024,
        client_id="bench-raw"))


# Delivery futures awaited together once this many are in flight: memory stays flat, sends batch.
IN_FLIGHT = 10_000


async def settle_if_full(pending: list[asyncio.Future[object]]) -> None:
    """Wait for the in-flight sends once there are IN_FLIGHT of them, like a real sender."""
    if len(pending) >= IN_FLIGHT:
        await asyncio.gather(*pending)
        pending.clear()


async def produce(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    value = sample_value()
    keys = [str(uuid.uuid4()).encode() for _ in range(count)]
    prod = producer(bootstrap)
    await prod.start()
    try:
        await prod.send_and_wait(topic, value, key=b"warm-up")
        started = time.perf_counter()
        pending = []
        for key in keys:
            pending.append(await prod.send(topic, value, key=key))
            await settle_if_full(pending)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    finally:
        await prod.stop()
    return {"records": count, "seconds": elapsed, "records_per_s": count / elapsed,
            "value_bytes": len(value)}


async def relay(bootstrap: str, source: str, target: str, count: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(**env_client_kwargs(
        bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", group_id=None,
        max_poll_records=2000))
    prod = producer(bootstrap)
    await consumer.start()
    await prod.start()
    try:
        partitions = await topic_partitions(consumer, source)
        tps = [TopicPartition(source, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        pending = []
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000)
            if not batch and time.perf_counter() - started > 120:
                break
            for records in batch.values():
                for record in records:
                    value = orjson.loads(record.value) if record.value else None
                    out = orjson.dumps({"callId": value and value.get("call", {}).get("callId")})
                    pending.append(await prod.send(target, out, key=record.key))
                    seen += 1
            await settle_if_full(pending)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    finally:
        await prod.stop()
        await consumer.stop()
    return {"records": seen, "seconds": elapsed, "records_per_s": seen / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["produce", "relay"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True, help="topic to write (produce) or read (relay)")
    parser.add_argument("--target", help="relay: topic to write")
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    if args.mode == "produce":
        result = asyncio.run(produce(args.bootstrap, args.topic, args.count))
    else:
        result = asyncio.run(relay(args.bootstrap, args.topic, args.target, args.count))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
