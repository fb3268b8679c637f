"""The Faust worker: wires the topics, the calls table and the processor (app.worker.processor,
where all processing lives). It holds no state of its own outside the table.

Per batch of input events (app.worker.faust_seams.run_in_batches): the processor merges them
against the table, each call it changed is written to the table store once (one write per
partition) and its changelog record sent once, the outputs are sent, all of them as one record
batch per topic-partition, and every batch is awaited (pipelined, not one by one) before the
batch's events are acked; Faust commits only acked offsets.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT, RecordMetadata, StreamT
from yarl import URL

from app.contracts.ids import utc_now_iso
from app.contracts.messages import COMMAND_EXPIRE, Command, call_key, dumps, partition_for
from app.contracts.topics import CALLS_TABLE
from app.kafka_clients import faust_broker_kwargs
from app.ops.topics import Replication, replication_for
from app.settings import Settings
from app.worker.call_status import register_call_status_view
from app.worker.faust_seams import (
    CRASH_EXIT_CODE,
    BatchRecord,
    CallStore,
    IngestWorker,
    SentBatch,
    StoreWrite,
    default_partition,
    limit_fetch_wait,
    persist_changelog_offset,
    run_in_batches,
    send_record_batches,
)
from app.worker.health import register_health_views
from app.worker.merge import is_expired
from app.worker.metrics import count_worker_outputs, install_worker_metrics
from app.worker.processor import BatchResult, DeadLetterLimit, InputRecord, Output, Processor

log = logging.getLogger("voix.worker")

__all__ = ["CRASH_EXIT_CODE", "create_worker_app", "instance_id", "new_faust_app"]

# Most events handled as one batch: enough to amortise the sends, small enough that a batch's
# outputs stay well inside the producer's buffers.
MAX_BATCH = 1000
# Sends wait this long to share a produce request: fewer, larger requests cost the worker less
# CPU (measured with bench/drain.py: 0 ms 3,000, 5 ms 4,800 beats/s). Batches are pipelined,
# so the linger adds latency, not a stall.
PRODUCER_LINGER_S = 0.005
# Events whose outputs may await the broker's acknowledgement at once (pipelining).
MAX_IN_FLIGHT = 5000
# Producer batches (per partition): Faust's default of 16 KiB fills after ~30 records, and a
# full batch makes the next send wait for the broker's round trip.
PRODUCER_MAX_BATCH_BYTES = 512 * 1024
# Records a fetch hands on at once, and the stream buffer (Faust's queue between the fetch loop
# and the agent). A partition stops being fetched when the buffer is 80 % full; with at most
# MAX_POLL_RECORDS more per fetch the buffer never fills, so a record never has to wait for
# room (that wait is Faust's slow path: four tasks per record). Faust's defaults (unlimited
# records per fetch, a 4,096-event buffer) made about two in three records wait.
MAX_POLL_RECORDS = 2000
STREAM_BUFFER = 16384


def instance_id(settings: Settings) -> str:
    """The worker's static group member id: VOIX_WORKER_INSTANCE_ID, or derived from what is
    this worker's alone, its host and its state directory (two workers never share one: they
    could not share a rocksdb directory either)."""
    if settings.worker_instance_id:
        return settings.worker_instance_id
    where = f"{socket.gethostname()}:{settings.worker_data_dir.resolve()}"
    return f"{settings.worker_id}-{hashlib.sha256(where.encode()).hexdigest()[:16]}"


def new_faust_app(settings: Settings, replication: Replication) -> IngestWorker:
    """The Faust app with every broker and client setting (the cluster and its credentials
    from app.kafka_clients; `replication` for the topics Faust creates)."""
    return IngestWorker(
        settings.worker_id,
        **faust_broker_kwargs(settings),
        store=settings.worker_store,
        datadir=str(settings.worker_data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=replication.factor,
        processing_guarantee=settings.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=instance_id(settings),
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        producer_linger=PRODUCER_LINGER_S,
        broker_max_poll_records=MAX_POLL_RECORDS,
        stream_buffer_maxsize=STREAM_BUFFER,
        # Faust's web_bind is the listen address (its default, 0.0.0.0, exposed the port on
        # every interface); web_host/canonical_url are what it advertises to the other workers.
        web_bind=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_host=URL(settings.worker_url).host,
        canonical_url=settings.worker_url,
        web_enabled=True,
        # Faust's own web apps answer without any authentication: /table/<name>/<key> would
        # serve every tenant's call state, /router and /graph the topology. Only our pages
        # (metrics, the authorised call-state page) are served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        autodiscover=False,
    )


def create_worker_app(settings: Settings, replication: Replication | None = None) -> faust.App:
    """`replication`: of the topics Faust creates (its changelog); run_worker asks the cluster."""
    replication = replication or replication_for(settings, brokers=1)
    app = new_faust_app(settings, replication)
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                           "key_serializer": "raw", "value_serializer": "raw"}
    topics = settings.topics
    # The merge reads the submissions (the edge keys them by callId) and calls.routed (the
    # statuses and commands, re-keyed by the router below), both partitioned by callId with
    # the same partition count: one agent sees every event of a call, in order per topic, on
    # the worker that owns the call's table partition.
    merge_inputs = app.topic(topics.submissions, topics.routed, partitions=settings.partitions,
                             **raw)
    # Statuses and commands come from other producers (any client, any partitioner): the
    # router moves each onto its call's partition of calls.routed first.
    route_inputs = app.topic(topics.status, topics.commands, **raw)
    # Declared so that Faust creates them if missing; the processor's outputs name them.
    for name in (topics.records, topics.jobs, topics.deadletter):
        app.topic(name, **raw)
    install_worker_metrics(app, topics.submissions)
    limit_fetch_wait(app, settings.worker_fetch_wait_ms)
    # Keyed by callId (JSON-encoded in the store and the changelog); each call is written to
    # the changelog partition of the input records that changed it, which is the call's input
    # partition. The value maps teamId -> that team's call state (two teams may share a callId).
    calls = app.Table(CALLS_TABLE, default=None, partitions=settings.partitions,
                      extra_topic_configs={"min.insync.replicas": str(replication.min_insync)},
                      schema=faust.Schema(key_type=str, key_serializer="raw",
                                          value_serializer="json"))
    processor = Processor(topics, settings.state_ttl_s, settings.partitions,
                          DeadLetterLimit(settings.worker_max_deadletters, window_s=60.0))

    store = CallStore(calls)
    changelog_name = calls.changelog_topic.get_topic_name()

    async def handle(events: list[EventT[bytes]]) -> asyncio.Future[Any]:
        """Process a batch, write its calls, start its sends; the future is done when the
        broker acknowledged every one of them."""
        # Any event of a partition serves as "current event" for the store's partition lookup.
        of_partition = {event.message.partition: event for event in events}
        records = input_records(events)
        keys: dict[str, bytes] = {}  # callId -> its key in the store and the changelog

        def read(call_id: str, partition: int) -> dict[str, Any] | None:
            key = keys[call_id] = store.encode_key(call_id)
            return store.read(call_id, key, partition,  # type: ignore[no-any-return]
                              of_partition[partition])

        result = processor.process(records, read)
        sent = await send(result, of_partition, keys)
        acknowledged = asyncio.ensure_future(confirm(result, sent, len(events)))
        return acknowledged

    async def send(result: BatchResult, of_partition: dict[int, EventT[bytes]],
                   keys: dict[str, bytes]) -> list[SentBatch]:
        """Write the changed calls to the store (one write per partition) and start every
        send: the outputs first, then one changelog record per call, in record batches per
        topic-partition (pipelined; none is awaited here)."""
        batches = await by_partition(result.outputs)
        writes: dict[int, list[tuple[str, StoreWrite]]] = {}
        for call_id, write in result.writes.items():
            # Encoded exactly as Faust encodes its own changelog records (JSON key and value,
            # CallStore), so that table recovery reads them back; the rocksdb store holds the
            # same bytes.
            key = keys.get(call_id) or store.encode_key(call_id)
            value = store.encode_value(write.teams) if write.teams else None
            writes.setdefault(write.partition, []).append((call_id, (key, value, write.teams)))
            batches.setdefault((changelog_name, write.partition), []).append((key, value, []))
        for partition, rows in writes.items():
            store.write(partition, of_partition[partition], rows)
        return await send_record_batches(app, batches)

    async def confirm(result: BatchResult, sent: list[SentBatch], events: int) -> None:
        acked = await asyncio.gather(*(batch.acked for batch in sent))
        for partition, offset in last_offsets(changelog_name, sent, acked).items():
            persist_changelog_offset(app, calls, partition, offset)
        count_worker_outputs(Counter(out.topic for out in result.outputs), topics)
        app.events_done += events  # type: ignore[attr-defined]

    async def by_partition(outputs: list[Output]) -> dict[tuple[str, int], list[BatchRecord]]:
        """The outputs grouped by topic-partition; one without a partition goes where the
        producer's partitioner would send it."""
        partitions = [out.partition if out.partition is not None
                      else await default_partition(app, out.topic, out.key) for out in outputs]
        return group_by_partition(outputs, partitions)

    async def send_outputs(outputs: list[Output]) -> list[SentBatch]:
        """Start every send (pipelined; none is awaited here)."""
        return await send_record_batches(app, await by_partition(outputs))

    async def handle_routing(events: list[EventT[bytes]]) -> asyncio.Future[Any]:
        outputs = processor.route(input_records(events))
        sent = await send_outputs(outputs)

        async def acknowledged() -> None:
            await asyncio.gather(*(batch.acked for batch in sent))
            count_worker_outputs(Counter(out.topic for out in outputs), topics)

        return asyncio.ensure_future(acknowledged())

    @app.agent(merge_inputs, name="merge-beats")
    async def merge_beats(stream: StreamT[bytes]) -> None:
        """Merge beats, statuses and commands into the calls table; emit jobs and records."""
        await run_in_batches(stream, handle, MAX_BATCH, MAX_IN_FLIGHT)

    @app.agent(route_inputs, name="route-by-call")
    async def route_by_call(stream: StreamT[bytes]) -> None:
        """Move statuses and commands onto their call's partition of calls.routed."""
        await run_in_batches(stream, handle_routing, MAX_BATCH, MAX_IN_FLIGHT)

    @app.timer(interval=settings.expiry_sweep_s, on_leader=False)  # type: ignore[untyped-decorator]
    async def sweep_expired() -> None:
        """Tables can only change inside a stream event, so the sweep does not delete: it asks
        the owning agent to, with an expire command on the call's partition of calls.routed
        (the agent re-checks)."""
        now = datetime.now(UTC)
        active = {tp.partition for tp in app.assignor.assigned_actives()
                  if tp.topic == topics.submissions}
        sent = 0
        for call_id, teams in list(calls.items()):
            partition = partition_for(call_id, settings.partitions)
            if partition not in active:
                continue
            for team_id, state in (teams or {}).items():
                if is_expired(state, now, settings.state_ttl_s):
                    await app.producer.send(topics.routed, call_key(call_id), dumps(Command(
                        command=COMMAND_EXPIRE, team_id=team_id, call_id=call_id,
                        at=utc_now_iso(), last_change_at=state["updatedAt"]).to_value()),
                        partition, None, None)
                    sent += 1
        if sent:
            log.info("expiry sweep: asked to expire %d call(s)", sent)

    app.events_done = 0  # type: ignore[attr-defined]
    register_call_status_view(app, calls, settings)
    register_health_views(app)
    return app


def input_records(events: list[EventT[bytes]]) -> list[InputRecord]:
    """The processor's view of a batch of Faust events."""
    return [InputRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                        e.value, _headers(e.message.headers)) for e in events]


def group_by_partition(outputs: list[Output], partitions: list[int]
                       ) -> dict[tuple[str, int], list[BatchRecord]]:
    """(key, value, headers) of each output by (topic, partition), in the outputs' order
    within each; `partitions[i]` is where outputs[i] goes."""
    batches: dict[tuple[str, int], list[BatchRecord]] = {}
    for out, partition in zip(outputs, partitions, strict=True):
        batches.setdefault((out.topic, partition), []).append((out.key, out.value, out.headers))
    return batches


def last_offsets(topic: str, sent: list[SentBatch], acked: list[RecordMetadata]
                 ) -> dict[int, int]:
    """partition -> the offset of the last record of `topic` sent there, from each record
    batch's acknowledgement (its base offset: its records are base .. base + n - 1)."""
    last: dict[int, int] = {}
    for batch, metadata in zip(sent, acked, strict=True):
        if batch.topic == topic:
            offset = metadata.offset + batch.records - 1
            last[batch.partition] = max(last.get(batch.partition, -1), offset)
    return last


def _headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """aiokafka hands headers on as a sequence of pairs; Faust may hold a mapping."""
    if isinstance(headers, Mapping):
        return tuple(headers.items())
    return tuple(headers or ())
