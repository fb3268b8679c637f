"""Statuses and commands reach their call from any producer: here librdkafka (confluent-kafka,
the client Go, .NET, C and Python transcribers use) with its default partitioner, which is not
Kafka's Java one, so most records land on a partition whose worker does not own their call."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.partitioner import murmur2
from confluent_kafka import Producer

from app.contracts.ids import job_id_for, utc_now_iso
from app.contracts.messages import Command, StatusUpdate, dumps
from tests.factories import beat2
from tests.integration.calls import wait_call
from tests.integration.conftest import TEAM_A, Keys
from tests.integration.stack import Stack, new_call_id
from tests.integration.test_pipeline import post

CALLS = 12


def produce_with_librdkafka(stack: Stack, records: list[tuple[str, bytes]],
                            topic: str) -> dict[str, int]:
    """Produce keyed records as a librdkafka client does by default; key -> partition."""
    producer = Producer({"bootstrap.servers": stack.bootstrap, "acks": "all"})
    partitions: dict[str, int] = {}
    errors: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(err)
        else:
            partitions[msg.key().decode()] = msg.partition()

    for key, value in records:
        producer.produce(topic, value=value, key=key.encode(), on_delivery=delivered)
    assert producer.flush(30) == 0 and not errors, errors
    return partitions


async def test_statuses_from_librdkafka_reach_every_call(stack: Stack, keys: Keys) -> None:
    call_ids = [new_call_id() for _ in range(CALLS)]
    for call_id in call_ids:
        assert (await post(stack, keys.team_a, beat2(call_id)))[0] == 202
    for call_id in call_ids:
        await wait_call(stack, keys.team_a, call_id,
                        lambda s, b: s == 200 and b["status"] == "transcribing")
    statuses = [(c, dumps(StatusUpdate(job_id_for(TEAM_A, c), c, "transcribed", None,
                                       utc_now_iso()).to_value())) for c in call_ids]
    partitions = await asyncio.to_thread(produce_with_librdkafka, stack, statuses,
                                         stack.topics.status)
    elsewhere = [c for c in call_ids
                 if partitions[c] != (murmur2(c.encode()) & 0x7FFFFFFF) % 6]
    # The premise: librdkafka put most of them where the Java partitioner would not have.
    assert len(elsewhere) > CALLS // 2, partitions
    for call_id in call_ids:
        body = await wait_call(stack, keys.team_a, call_id,
                               lambda s, b: s == 200 and b["status"] == "transcribed")
        assert [h["status"] for h in body["history"]][-1] == "transcribed"


async def test_a_reprocess_command_from_librdkafka_reaches_its_call(stack: Stack,
                                                                     keys: Keys) -> None:
    call_id = new_call_id()
    assert (await post(stack, keys.team_a, beat2(call_id)))[0] == 202
    await wait_call(stack, keys.team_a, call_id,
                    lambda s, b: s == 200 and b["status"] == "transcribing")
    command = dumps(Command("reprocess", TEAM_A, call_id, utc_now_iso()).to_value())
    await asyncio.to_thread(produce_with_librdkafka, stack, [(call_id, command)],
                            stack.topics.commands)
    body = await wait_call(stack, keys.team_a, call_id, lambda s, b: s == 200
                           and b["attempt"] == 2)
    assert body["jobId"] == job_id_for(TEAM_A, call_id, 2)
