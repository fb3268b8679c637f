"""Create the topics voix-ingest uses (idempotent), with their partitions and configs."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from app.contracts.topics import topic_specs
from app.settings import Settings

log = logging.getLogger("voix.topics")


async def ensure_topics(settings: Settings, wait_s: float = 30.0) -> list[str]:
    """Create missing topics; returns the names that were created. Waits for the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                client_id="voix-admin")
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(spec.name, settings.partitions, settings.replication_factor,
                     topic_configs=spec.config)
            for spec in topic_specs(settings.topics) if spec.name not in existing
        ]
        created: list[str] = []
        for topic in wanted:
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race
        return created
    finally:
        await admin.close()


async def list_topics(settings: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()
