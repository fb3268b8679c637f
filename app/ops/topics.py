"""Create the topics voix-ingest uses (idempotent), with their partitions, replication and
configs, and say how a cluster's size turns into a replication factor."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from app.contracts.topics import TopicSpec, faust_internal_topic_specs, topic_specs
from app.kafka_clients import client_kwargs
from app.settings import Settings

log = logging.getLogger("voix.topics")

# Enough copies to survive one broker loss while a second one is being restarted.
MAX_DEFAULT_REPLICATION = 3


@dataclass(frozen=True, slots=True)
class Replication:
    factor: int
    min_insync: int


def replication_for(settings: Settings, brokers: int) -> Replication:
    """RF = min(3, brokers) and min.insync.replicas = RF - 1 (at least 1), unless the settings
    say otherwise: with RF 3 a write is acknowledged by two copies, and one broker may be
    down (or restarting) without the edge answering 503."""
    factor = settings.replication_factor or min(MAX_DEFAULT_REPLICATION, max(brokers, 1))
    min_insync = settings.min_insync_replicas or max(1, factor - 1)
    if min_insync > factor:
        raise ValueError(f"VOIX_MIN_INSYNC_REPLICAS={min_insync} is more than the replication "
                         f"factor {factor}")
    return Replication(factor, min_insync)


async def start_admin(settings: Settings, wait_s: float = 30.0) -> AIOKafkaAdminClient:
    """A connected admin client; waits up to `wait_s` for the cluster."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings, client_id="voix-admin"))
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            await admin.start()
            return admin
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def cluster_replication(settings: Settings, wait_s: float = 30.0) -> Replication:
    """The replication the topics of this cluster get (asks the cluster for its size)."""
    admin = await start_admin(settings, wait_s)
    try:
        return replication_for(settings, len((await admin.describe_cluster())["brokers"]))
    finally:
        await admin.close()


def _new_topic(spec: TopicSpec, partitions: int, replication: Replication) -> NewTopic:
    config = {"min.insync.replicas": str(replication.min_insync), **spec.config}
    return NewTopic(spec.name, spec.partitions or partitions, replication.factor,
                    topic_configs=config)


async def ensure_topics(settings: Settings, wait_s: float = 30.0) -> list[str]:
    """Create missing topics, Faust's changelog and internal topics included; returns the
    names that were created. Waits for the broker."""
    admin = await start_admin(settings, wait_s)
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        replication = replication_for(settings, brokers)
        existing = set(await admin.list_topics())
        specs = [*topic_specs(settings.topics),
                 *faust_internal_topic_specs(settings.worker_id)]
        created: list[str] = []
        for spec in specs:
            if spec.name in existing:
                continue
            try:
                await admin.create_topics([_new_topic(spec, settings.partitions, replication)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race
        if created:
            log.info("created %d topics with replication factor %d, min.insync.replicas %d "
                     "(%d brokers)", len(created), replication.factor, replication.min_insync,
                     brokers)
        return created
    finally:
        await admin.close()


async def list_topics(settings: Settings) -> list[str]:
    admin = await start_admin(settings, wait_s=5.0)
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()
