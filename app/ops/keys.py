"""API keys on the compacted keys topic: the directory every edge and worker follows, and the
admin side the CLI writes with. The record format is app/contracts/api_keys.py.

No host keeps keys of its own: a key created with any install's `python -m app keys create`
works on every edge that reads the same Kafka within about a second (the directory polls the
topic every `POLL_MS`), and so does a revocation. An edge is not ready until its directory has
read the topic to the end offsets it saw at start: before that it would answer 401 to keys
that exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from app.contracts.api_keys import (
    ApiKey,
    ApiKeyError,
    KeyRing,
    key_record,
    new_key,
    records_from_key_file,
    revoked,
    team_record,
    with_limits,
)
from app.contracts.ids import is_uuid, utc_now_iso
from app.kafka_clients import cause_of, client_kwargs, first_time_said
from app.ops.tail import topic_partitions
from app.settings import Settings

log = logging.getLogger("voix.keys")

# How long a poll of the keys topic waits at the broker: bounds how late a change is seen.
POLL_MS = 200


class KeySource(Protocol):
    """What the edge and the worker need of the keys: the current ring, once loaded."""

    @property
    def ready(self) -> bool: ...

    @property
    def current(self) -> KeyRing: ...

    async def catch_up(self) -> None:
        """Wait (briefly) until every change written before now has been applied."""


class StaticKeys:
    """A fixed ring (unit tests, tools)."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    @property
    def ready(self) -> bool:
        return True

    @property
    def current(self) -> KeyRing:
        return self.ring

    async def catch_up(self) -> None:
        return None


async def _read_to_end(consumer: AIOKafkaConsumer, topic: str) -> list[tuple[bytes | None,
                                                                           bytes | None]]:
    """Every record of the (single-partition) keys topic up to its current end."""
    partitions = await topic_partitions(consumer, topic)
    if not partitions:
        raise ApiKeyError(f"the keys topic {topic} does not exist: run `python -m app topics "
                          "create`")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    records: list[tuple[bytes | None, bytes | None]] = []
    while any([await consumer.position(tp) < ends[tp] for tp in tps]):
        batch = await consumer.getmany(*tps, timeout_ms=POLL_MS)
        # Records past the end seen at start are newer changes: keep them too.
        for tp_records in batch.values():
            records.extend((r.key, r.value) for r in tp_records)
    return records


class KeyDirectory:
    """Follows the keys topic: reads it from the beginning at start, then every change."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ring = KeyRing()
        self._ready = False
        self._loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        # The next offset to apply per partition, and one shared catch-up at a time.
        self._applied: dict[TopicPartition, int] = {}
        self._catching_up: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()  # notified whenever changes were applied

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def current(self) -> KeyRing:
        return self._ring

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow_forever(), name="key-directory")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until the topic has been read to its end (TimeoutError after `timeout_s`)."""
        async with asyncio.timeout(timeout_s):
            await self._loaded.wait()

    async def _follow_forever(self) -> None:
        delay = 0.5
        problem: str | None = None
        while True:
            consumer = AIOKafkaConsumer(**client_kwargs(
                self.settings, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", fetch_max_wait_ms=POLL_MS,
                client_id="voix-keys"))
            try:
                await consumer.start()
                self._consumer = consumer
                await self._follow(consumer)
            except (KafkaError, OSError, ApiKeyError) as exc:
                # Keep serving the keys we have; say why once, not on every retry (and not at
                # all when another client of this process already named the same cause).
                cause = str(exc) if isinstance(exc, ApiKeyError) else await cause_of(
                    self.settings, exc)
                if cause != problem:
                    problem = cause
                    if first_time_said(cause):
                        log.warning("cannot read the keys topic %s: %s; keeping the %d keys "
                                    "loaded, retrying", self.settings.topics.keys, cause,
                                    len(self._ring.keys))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        topic = self.settings.topics.keys
        self._ring = KeyRing().applied(await _read_to_end(consumer, topic))
        self._applied = {tp: await consumer.position(tp) for tp in consumer.assignment()}
        if not self._ready:
            log.info("loaded %d API keys from %s", len(self._ring.keys), topic)
        self._ready = True
        self._loaded.set()
        while True:
            batch = await consumer.getmany(timeout_ms=POLL_MS)
            changes = [(r.key, r.value) for records in batch.values() for r in records]
            if changes:
                self._ring = self._ring.applied(changes)
            for tp, records in batch.items():
                if records:
                    self._applied[tp] = records[-1].offset + 1
            if batch:
                async with self._progress:
                    self._progress.notify_all()

    async def catch_up(self, timeout_s: float = 1.0) -> None:
        """Wait until the changes written before now are applied (at most `timeout_s`). Called
        for a key id the ring does not know, so a key works the moment `keys create` returns;
        concurrent callers share one end-offset request, so unknown ids cannot flood Kafka."""
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.create_task(self._catch_up(timeout_s))
        with contextlib.suppress(TimeoutError, KafkaError):
            await asyncio.shield(self._catching_up)

    async def _catch_up(self, timeout_s: float) -> None:
        consumer = self._consumer
        if consumer is None or not self._ready:
            return
        async with asyncio.timeout(timeout_s):
            ends = await consumer.end_offsets(list(self._applied))
            async with self._progress:
                await self._progress.wait_for(lambda: all(
                    self._applied.get(tp, 0) >= end for tp, end in ends.items()))


class KeyAdmin:
    """Writes key records (acknowledged by every in-sync replica before it returns) and reads
    the whole topic for `list`. One instance per CLI command."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def load(self) -> KeyRing:
        consumer = AIOKafkaConsumer(**client_kwargs(
            self.settings, group_id=None, enable_auto_commit=False, client_id="voix-keys"))
        await consumer.start()
        try:
            return KeyRing().applied(await _read_to_end(consumer, self.settings.topics.keys))
        finally:
            await consumer.stop()

    async def write(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        producer = AIOKafkaProducer(**client_kwargs(
            self.settings, acks="all", enable_idempotence=True, client_id="voix-keys"))
        await producer.start()
        try:
            deliveries = [await producer.send(self.settings.topics.keys, value, key=key)
                          for key, value in records]
            await asyncio.gather(*deliveries)
        finally:
            await producer.stop()

    async def create(self, *, workspace_id: str, team_id: str | None, label: str = "",
                     rate_limit_per_s: float | None = None,
                     rate_limit_burst: int | None = None) -> tuple[str, ApiKey]:
        """Create a key; returns the full key (shown once) and its record."""
        presented, key = new_key(workspace_id=workspace_id, team_id=team_id, label=label,
                                 created_at=utc_now_iso(), rate_limit_per_s=rate_limit_per_s,
                                 rate_limit_burst=rate_limit_burst)
        await self.write([key_record(key)])
        return presented, key

    async def _existing(self, key_id: str) -> ApiKey:
        key = (await self.load()).keys.get(key_id)
        if key is None:
            raise ApiKeyError(f"no key with id {key_id!r}")
        return key

    async def revoke(self, key_id: str) -> ApiKey:
        key = revoked(await self._existing(key_id), utc_now_iso())
        await self.write([key_record(key)])
        return key

    async def set_limit(self, key_id: str, rate_limit_per_s: float | None,
                        rate_limit_burst: int | None) -> ApiKey:
        key = with_limits(await self._existing(key_id), rate_limit_per_s, rate_limit_burst)
        await self.write([key_record(key)])
        return key

    async def add_team(self, workspace_id: str, team_id: str) -> None:
        if not is_uuid(workspace_id) or not is_uuid(team_id):
            raise ApiKeyError("workspace and team ids must be UUIDs")
        await self.write([team_record(workspace_id, team_id, utc_now_iso())])

    async def import_file(self, path: Path) -> int:
        """Copy the keys and teams of a key file of the earlier file-based store into the
        topic (hashes as they are: the secrets keep working). Safe to run twice."""
        records = await asyncio.to_thread(read_key_file, path)
        await self.write(records)
        return len(records)


def read_key_file(path: Path) -> list[tuple[bytes, bytes]]:
    """The keys-topic records for a key file of the earlier file-based store."""
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ApiKeyError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ApiKeyError(f"{path} is not a key file (not JSON: {exc})") from None
    try:
        return records_from_key_file(document)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ApiKeyError(f"{path} is not a key file ({exc!r})") from None
