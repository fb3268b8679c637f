"""The Faust worker: wires the pure merge to the submissions topic, the calls table and the
downstream topics. It holds no state of its own outside the table."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import faust
from faust.types import EventT, StreamT

from app.contracts.messages import (
    PoisonMessage,
    Submission,
    deadletter_value,
    dumps,
    record_key,
)
from app.ops.metrics import install_worker_metrics
from app.settings import Settings
from app.worker.merge import merge_beat
from app.worker.tuning import limit_fetch_wait

log = logging.getLogger("voix.worker")

# Exit code when the worker stops because processing failed (sysexits EX_SOFTWARE).
CRASH_EXIT_CODE = 70


class IngestWorker(faust.App):
    """A Faust app whose agents never die silently.

    Faust's default reaction to an agent exception is to commit offsets and restart the agent,
    which can skip the failing record. We stop the whole process instead, without committing:
    the record is processed again after the restart.
    """

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        log.critical("agent %s failed; stopping the worker so no record is skipped: %r",
                     getattr(agent, "name", agent), exc, exc_info=exc)
        # A hard exit is the only way to be sure Faust commits nothing on the way out.
        asyncio.get_running_loop().call_soon(os._exit, CRASH_EXIT_CODE)


def create_worker_app(settings: Settings) -> faust.App:
    app = IngestWorker(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.worker_store,
        datadir=str(settings.worker_data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee=settings.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        web_enabled=True,
        autodiscover=False,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                           "key_serializer": "raw", "value_serializer": "raw"}
    topics = settings.topics
    submissions = app.topic(topics.submissions, partitions=settings.partitions, **raw)
    records = app.topic(topics.records, **raw)
    jobs = app.topic(topics.jobs, **raw)
    deadletter = app.topic(topics.deadletter, **raw)
    install_worker_metrics(app, topics.submissions, topics.jobs, topics.records, topics.deadletter)
    limit_fetch_wait(app, settings.worker_fetch_wait_ms)
    calls = app.Table("calls", default=None, partitions=settings.partitions,
                      schema=faust.Schema(key_type=str, key_serializer="json",
                                          value_serializer="json"))

    async def process(event: EventT[bytes]) -> None:
        msg = event.message
        source = f"{msg.topic}/{msg.partition}/{msg.offset}"
        try:
            submission = Submission.from_bytes(event.value)
        except PoisonMessage as exc:
            log.error("dead-lettering topic=%s partition=%d offset=%d: %s",
                      msg.topic, msg.partition, msg.offset, exc)
            await deadletter.send(key=msg.key, value=dumps(deadletter_value(
                topic=msg.topic, partition=msg.partition, offset=msg.offset,
                key=msg.key, value=event.value, reason=str(exc))))
            return
        key = record_key(submission.team_id, submission.call_id)
        result = merge_beat(calls.get(key), submission, source)
        if result.job is not None:
            await jobs.send(key=submission.call_id.encode(), value=dumps(result.job))
            log.info("job %s for call %s team %s", result.job["jobId"], submission.call_id,
                     submission.team_id)
        if result.changed or result.job is not None:
            await records.send(key=key.encode(), value=dumps(result.state))
        calls[key] = result.state

    @app.agent(submissions, name="merge-beats")
    async def merge_beats(stream: StreamT[bytes]) -> None:
        """Merge every beat into the calls table; emit jobs and records downstream."""
        async for event in stream.events():
            await process(event)

    return app
