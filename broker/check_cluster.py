"""Fault check of the local 3-node cluster (`make cluster-up`) with aiokafka, the app's client.

Usage: .venv/bin/python broker/check_cluster.py   (the cluster must be up; it is left up)

On a new topic with RF 3 and min.insync.replicas 2, producing with acks=all:
  1. kill -9 the partition leader: producing still succeeds (a new leader, ISR of 2);
     meanwhile a topic with min.insync.replicas 3 refuses with NotEnoughReplicas;
  2. restart it (cluster-start waits until it is back): producing succeeds;
  3. kill -9 the (new) leader, then the follower while the first is down, so that the
     survivor leads alone: producing must fail (NotEnoughReplicas or a timeout), never succeed;
  4. restart both: producing succeeds, and every acknowledged record is read back.
Uses broker/kafka.sh cluster-kill/cluster-start; prints what it sees; exit 0 if all held.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

KAFKA_SH = Path(__file__).resolve().parent / "kafka.sh"
NODES = 3
BOOTSTRAP = ",".join(f"127.0.0.1:{19092 + i}" for i in range(NODES))
PRODUCE_TIMEOUT = 12.0  # seconds for one acks=all send before we call it failed
DOWN_WINDOW = 40.0      # seconds we keep trying while 2 of 3 nodes are down (> replica lag 30 s)

acked: list[bytes] = []   # every record the cluster acknowledged
problems: list[str] = []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def kafka_sh(*args: str) -> float:
    """Run broker/kafka.sh; seconds it took."""
    start = time.monotonic()
    out = subprocess.run(["bash", str(KAFKA_SH), *args], check=True, capture_output=True,
                         text=True, timeout=180)
    took = time.monotonic() - start
    log(f"kafka.sh {' '.join(args)} ({took:.1f} s): {out.stdout.strip().splitlines()[-1]}")
    return took


async def partition_state(topic: str) -> dict[str, Any] | str:
    """Leader and ISR of partition 0 as a live node reports them (it may be stale)."""
    last = ""
    for _ in range(5):  # the admin client may first pick a dead node from its metadata
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000)
        try:
            await admin.start()
            (desc,) = await admin.describe_topics([topic])
            (part,) = desc["partitions"]
            return {"leader": part["leader"], "isr": sorted(part["isr"])}
        except Exception as e:
            last = f"{type(e).__name__}"
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    return f"unknown ({last})"


async def current_state(topic: str) -> dict[str, Any]:
    state = await partition_state(topic)
    if isinstance(state, str):
        raise RuntimeError(f"no partition state for {topic}: {state}")
    return state


async def produce(producer: AIOKafkaProducer, topic: str, label: str) -> tuple[bool, str]:
    """One acks=all send: (succeeded, what happened)."""
    value = f"{label} {uuid.uuid4().hex[:6]}".encode()
    start = time.monotonic()
    try:
        meta = await asyncio.wait_for(producer.send_and_wait(topic, value), PRODUCE_TIMEOUT)
    except Exception as e:  # asyncio.TimeoutError included
        return False, f"failed after {time.monotonic() - start:.1f} s: {type(e).__name__} {e}"
    acked.append(value)
    return True, f"acked offset {meta.offset} after {time.monotonic() - start:.2f} s"


async def expect_success(producer: AIOKafkaProducer, topic: str, label: str) -> None:
    ok, what = await produce(producer, topic, label)
    log(f"produce ({label}): {what}")
    if not ok:
        problems.append(f"{label}: {what}")


async def main() -> int:
    # aiokafka logs every refused connection to a killed node at ERROR: we print the outcomes.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    run = uuid.uuid4().hex[:6]
    topic, strict = f"check-cluster-{run}", f"check-cluster-strict-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([
        NewTopic(topic, 1, 3, topic_configs={"min.insync.replicas": "2"}),
        NewTopic(strict, 1, 3, topic_configs={"min.insync.replicas": "3"}),
    ])
    await admin.close()
    await asyncio.sleep(1)  # let every node learn the new topics' leaders
    log(f"topic {topic}: RF 3, min.insync.replicas 2: {await partition_state(topic)}")

    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all",
                                request_timeout_ms=10000, retry_backoff_ms=200)
    await producer.start()
    try:
        await expect_success(producer, topic, "all 3 up")

        # 1. kill -9 the leader
        first = (await current_state(topic))["leader"]
        kafka_sh("cluster-kill", str(first))
        await expect_success(producer, topic, f"node {first} (leader) killed")
        await asyncio.sleep(4)  # broker.session.timeout.ms 3 s: the dead node is fenced
        log(f"after the fencing: {await partition_state(topic)}")
        ok, what = await produce(producer, strict, "min.insync.replicas 3, 2 nodes up")
        log(f"produce to {strict} (min ISR 3): {what}")
        if ok or "NotEnoughReplicas" not in what:
            problems.append(f"min ISR 3 with 2 of 3 up: expected NotEnoughReplicas, {what}")

        # 2. restart it
        kafka_sh("cluster-start", str(first))
        await expect_success(producer, topic, f"node {first} back")
        await asyncio.sleep(2)
        log(f"after the restart: {await partition_state(topic)}")

        # 3. kill the leader, then a second node while the first is down: the follower, so
        # that the survivor is the new leader, the one that must refuse acks=all alone.
        leader = (await current_state(topic))["leader"]
        kafka_sh("cluster-kill", str(leader))
        await expect_success(producer, topic, f"node {leader} (leader) killed")
        survivor = (await current_state(topic))["leader"]
        second = next(n for n in range(1, NODES + 1) if n not in (leader, survivor))
        kafka_sh("cluster-kill", str(second))
        log(f"nodes {leader} and {second} down, node {survivor} leads alone; "
            f"{await partition_state(topic)} (ISR stale: no controller quorum to shrink it)")
        outcomes: list[str] = []
        deadline = time.monotonic() + DOWN_WINDOW
        while time.monotonic() < deadline:
            ok, what = await produce(producer, topic, "2 of 3 down")
            log(f"produce (2 of 3 down): {what}")
            outcomes.append(what)
            if ok:
                problems.append(f"2 of 3 nodes down and acks=all succeeded: {what}")
        refusals = sum("NotEnoughReplicas" in o for o in outcomes)
        log(f"2 of 3 down: {len(outcomes)} sends, {refusals} NotEnoughReplicas, "
            f"{len(outcomes) - refusals} other failures (timeouts), 0 allowed to succeed")
    finally:
        await producer.stop()  # its unsent batches fail: they were never acked

    # 4. restart both, produce, read everything back
    kafka_sh("cluster-start", str(leader))
    kafka_sh("cluster-start", str(second))
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", request_timeout_ms=10000)
    await producer.start()
    try:
        await expect_success(producer, topic, "all 3 back")
    finally:
        await producer.stop()
    log(f"all back: {await partition_state(topic)}")

    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        seen: list[bytes] = []
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=5000)
            seen += [r.value for r in batches.get(tp, []) if r.value]
    finally:
        await consumer.stop()
    missing = [v for v in acked if v not in seen]
    # A timed-out send is not proof of a lost record: the leader may have appended it and
    # committed it once a follower came back (what a retrying producer would duplicate).
    unacked = len([v for v in seen if v not in acked])
    log(f"read back {len(seen)} records (log end {end}): {len(acked)} acked, "
        f"{len(missing)} of them missing; {unacked} present that the client saw fail")
    if missing:
        problems.append(f"acked but lost: {missing}")

    for p in problems:
        log(f"PROBLEM: {p}")
    log("all held" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
