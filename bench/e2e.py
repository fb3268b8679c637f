"""End-to-end latency for `make bench`: post finishing beats at a fixed rate and time each one
from the moment its POST starts to the moment its job is read from transcription.jobs.

One process, one clock (time.monotonic) for both ends: an aiohttp client posts, an aiokafka
consumer that was positioned at the end of the jobs topic before the first POST reads the jobs
and matches them by callId (the end of the job's key, teamId/callId). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.kafka_clients import env_client_kwargs
from app.ops.tail import topic_partitions


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def beat(call_id: str) -> bytes:
    return orjson.dumps({"callId": call_id, "from": "+31612345678", "to": "+31201234567",
                         "startTime": "2026-06-16T09:05:35.000Z", "outgoing": False,
                         "duration": 42, "recordingUrl": f"https://rec.example.com/{call_id}.wav"})


async def run(args: argparse.Namespace) -> dict[str, object]:
    consumer = AIOKafkaConsumer(**env_client_kwargs(args.bootstrap, group_id=None,
                                                    enable_auto_commit=False,
                                                    fetch_max_wait_ms=50))
    await consumer.start()
    sent_at: dict[str, float] = {}
    e2e: list[float] = []
    post_latency: list[float] = []
    statuses: Counter[str] = Counter()
    accepted: set[str] = set()
    try:
        partitions = await topic_partitions(consumer, args.jobs_topic)
        tps = [TopicPartition(args.jobs_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)

        async def read_jobs() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.monotonic()
                for records in batch.values():
                    for record in records:
                        # The job's key is teamId/callId.
                        call_id = record.key.decode().rpartition("/")[2] if record.key else ""
                        started = sent_at.pop(call_id, None)
                        if started is not None:
                            e2e.append(now - started)

        reader = asyncio.create_task(read_jobs())
        headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=args.connections)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def post(call_id: str) -> None:
                started = time.monotonic()
                sent_at[call_id] = started
                try:
                    async with session.post(f"{args.url}/submit", data=beat(call_id),
                                            headers=headers) as resp:
                        await resp.read()
                        statuses[str(resp.status)] += 1
                        if resp.status == 202:
                            accepted.add(call_id)
                        else:
                            sent_at.pop(call_id, None)
                except aiohttp.ClientError as exc:
                    statuses[type(exc).__name__] += 1
                    sent_at.pop(call_id, None)
                post_latency.append(time.monotonic() - started)

            total = int(args.rate * args.seconds)
            tasks: set[asyncio.Task[None]] = set()
            begin = time.monotonic()
            launched = 0
            while launched < total:
                due = min(total, int((time.monotonic() - begin) * args.rate) + 1)
                while launched < due:
                    call_id = f"{args.tag}-{launched // 16**12:04x}-4000-8000-{launched:012x}"
                    task = asyncio.create_task(post(call_id))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    launched += 1
                await asyncio.sleep(0.002)
            posting_seconds = time.monotonic() - begin
            if tasks:
                await asyncio.wait(tasks, timeout=30)
        deadline = time.monotonic() + args.drain_timeout
        while len(e2e) < len(accepted) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        reader.cancel()
    finally:
        await consumer.stop()
    return {
        "target_rate": args.rate, "posted": total,
        "achieved_rate": total / posting_seconds, "status": dict(statuses),
        "accepted": len(accepted), "jobs_matched": len(e2e),
        "post_ms": {"p50": _ms(percentile(post_latency, 50)),
                    "p99": _ms(percentile(post_latency, 99))},
        "e2e_ms": {"p50": _ms(percentile(e2e, 50)), "p99": _ms(percentile(e2e, 99)),
                   "max": _ms(max(e2e) if e2e else None)},
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--jobs-topic", required=True)
    parser.add_argument("--rate", type=float, required=True, help="POSTs per second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--tag", required=True, help="8 hex digits, unique per run")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--drain-timeout", type=float, default=30)
    args = parser.parse_args()
    sys.stdout.write(orjson.dumps(asyncio.run(run(args))).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
