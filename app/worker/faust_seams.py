"""Every place the worker touches faust-streaming's or aiokafka's internals, in one module.

They were written for faust-streaming 0.15.3 and aiokafka 0.14.0 (WRITTEN_FOR below);
tests/unit/test_faust_seams.py fails, naming these seams, when the installed versions differ:
re-read each seam against the new source before changing the pins. The seams:

1. `IngestWorker._on_agent_error`: an agent error stops the process without committing.
2. `IngestWorker._new_transport` and the transport classes at the end: the rebalance fixes
   (section "Rebalances" below); they subclass Faust's aiokafka Consumer and ConsumerThread and
   read aiokafka's subscription state (`fetch_position`).
3. `limit_fetch_wait`: sets the aiokafka fetcher's private `_fetch_max_wait_ms` (Faust
   hard-codes 1500 ms, which stalls quiet partitions).
4. `event_context`: sets Faust's private current-event context variable, which the rocksdb
   store reads to pick a key's partition database (a batch writes many partitions at once).
5. `run_in_batches`: drives the agent's stream with acks off (`Stream.enable_acks`) and acks
   each event itself, after everything produced for its batch was acknowledged by the broker.
6. `persist_changelog_offset`: what Faust's `Table._on_changelog_sent` does, for changelog
   records the worker sends itself.
7. `_ConsumerThread.on_thread_stop`: clears aiokafka's private `_group_instance_id` on a
   graceful stop, so a static member leaves the group (aiokafka never sends LeaveGroup for one).
8. `send_record_batches`, `default_partition`: the aiokafka producer inside Faust's
   (`Producer._ensure_producer`), its record-batch API (`create_batch`/`send_batch`), its
   partitioner (`_partition`) and its size limit (`_max_request_size`): one produce batch and
   one future per topic-partition of a worker batch instead of one `send()` per record.
9. `CallStore`: reads and writes the table's rocksdb store (rocksdict) by partition directly
   (`_db_for_partition`, `_key_index`, one `WriteBatch` per partition and worker batch), as
   the store's own `_get`/`_set`/`_del` would with the current event of that partition; keys
   and values encoded and decoded as Faust's json codec does (orjson, `CallStore.encode_key`,
   `encode_value`, `decode_value`), without its serializer registry per record.
10. `_Consumer._drain_messages`, `_Consumer.on_buffer_drop`, `_Consumer._wait_next_records`,
   `_ConsumerThread.wake_fetch_waiters`: Faust's loop that hands fetched records to the
   conductor, without four asyncio tasks per record, and a fetch that does not sleep a second
   after a full stream buffer drains (aiokafka's `Fetcher._fetch_waiters`; section "Handing
   records on" below).
11. `_IdempotentProducer._settings_extra`: the extra settings Faust gives its aiokafka
   producer (idempotence only in transactions); ours always has acks=all and idempotence.

## Rebalances

faust-streaming 0.15 drops records it has already fetched whenever a rebalance interrupts a
fetch (the flow is stopped, the consumer generation changed, or the partition was paused in
the meantime), and counts on "seek every partition to its committed offset" to read them again.
That seek does nothing for a partition without a committed offset above 0, so the fetch
position stays *after* the dropped records:

- a stream partition the group never committed (a new deployment, or a second worker joining
  within the commit interval: Faust forgets the acks of revoked partitions before its commit on
  revoke) loses those records for good: the next commit passes them, no job is ever emitted;
- a changelog partition being restored (never committed by design) loses them too, and table
  recovery then waits forever for offsets it will not see: the worker stalls.

Records of a batch fetched *before* a seek can also be handed on *after* it: Faust then sees a
jump ahead of the seek position, books the offsets in between as a "gap" (as if processed) and
drops them as already read when the seek brings them.

Three fixes, all in the consumer Faust uses:

1. Whatever Faust fetched but did not hand on, its partition is rewound to the first record not
   handed on (only ever backwards, and only while the partition is still assigned).
2. A stream record that jumps ahead of where its partition reads is withheld and the partition
   rewound; a second jump from the same offset is a real gap and goes through.
3. When Faust seeks to committed offsets, a stream partition without a committed offset is
   seeked to its beginning: what `auto_offset_reset=earliest` promises such a consumer anyway.

Records read twice are harmless: the merge is idempotent, the jobId deterministic, and a
changelog replays to the same table.

## Handing records on

Faust's `Consumer._drain_messages` hands each fetched record to the conductor (which decodes
it and puts it on its stream's queue) as `await self.wait_first(callback(message),
self.suspend_flow.wait())`: four tasks and an `asyncio.wait` per record, so that a callback
blocked while the flow is suspended (a rebalance) is abandoned. Profiled (bench/drain.py
--profile), that was a quarter of the worker's event-loop time. Almost always the callback
finishes without waiting (there is room on the queue, the flow is not suspended), so the loop
here first runs it directly, up to its first wait; only a callback that does wait is finished
the way Faust does it, racing the suspension (`finish_waiting`). Everything else is Faust's
loop, line for line.

A partition whose stream buffer is 80 % full is left out of the next fetches until the buffer
drains to 40 % (Faust's flow control). Faust's fetch then asks aiokafka for records of the other
partitions only, with a one-second timeout, or sleeps a second when no partition is left; the
held-back partition's records, long fetched, wait out that second (measured: every other fetch
of a drain returned nothing after exactly 1.0 s, and the worker idled 45 % of its time). When a
buffer drains, the consumer thread's fetch wait is ended at once, and a fetch loop with no
partition left waits for that drain instead of a fixed second.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import types
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
    Sequence,
    Set,
)
from importlib import metadata
from typing import Any, ClassVar, cast

import faust
import orjson
import rocksdict
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from faust import streams as faust_streams
from faust.sensors import Sensor
from faust.stores import rocksdb as faust_rocksdb
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, EventT, RecordMetadata, StreamT

log = logging.getLogger("voix.worker")

# The versions every seam here was read against.
WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}

# sha256 (first 16 hex digits) of the source of faust's Consumer._drain_messages that
# _Consumer._drain_messages copies (seam 10): a change there must be copied again.
DRAIN_MESSAGES_SOURCE = "44a2500309e83c63"

# Longest the fetch loop waits for a full stream buffer to drain before asking again (Faust's
# own fixed sleep in that case).
BUFFER_FULL_WAIT_S = 1.0

# Exit code when the worker stops because processing failed (sysexits EX_SOFTWARE).
CRASH_EXIT_CODE = 70


def version_mismatches() -> dict[str, tuple[str, str]]:
    """package -> (written for, installed), for every package whose version differs."""
    found: dict[str, tuple[str, str]] = {}
    for package, expected in WRITTEN_FOR.items():
        installed = metadata.version(package)
        if installed != expected:
            found[package] = (expected, installed)
    return found


# ---- 1. agent errors ------------------------------------------------------------------------

class IngestWorker(faust.App):
    """A Faust app whose agents never die silently, with the rebalance-safe transport.

    Faust's default reaction to an agent exception is to commit offsets and restart the agent,
    which can skip the failing record. We stop the whole process instead, without committing:
    the record is processed again after the restart.
    """

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        log.critical("agent %s failed; stopping the worker so no record is skipped: %r",
                     getattr(agent, "name", agent), exc, exc_info=exc)
        # A hard exit is the only way to be sure Faust commits nothing on the way out.
        asyncio.get_running_loop().call_soon(os._exit, CRASH_EXIT_CODE)

    def _new_transport(self) -> Any:
        # Faust's aiokafka transport with the fixes that keep it from losing records around
        # seeks (section "Rebalances" above).
        return RebalanceSafeTransport(self.conf.broker_consumer, self)


# ---- 3. the fetch wait ----------------------------------------------------------------------

def _fetcher(app: Any) -> Any:
    thread = getattr(app.consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    return getattr(consumer, "_fetcher", None)


def limit_fetch_wait(app: Any, max_wait_ms: int) -> None:
    """Set the worker consumer's fetch wait to `max_wait_ms` once it exists (after each
    rebalance, as the consumer may have been recreated).

    Faust creates its aiokafka consumer with fetch_max_wait_ms=1500. aiokafka keeps one fetch
    request in flight per broker and leaves partitions that still have buffered records out of
    it, so a fetch for quiet partitions can sit at the broker for 1.5 s while new beats wait on
    the busy ones: end-to-end latency of a second or more at moderate load. A short wait bounds
    that stall; when idle it costs one small fetch request per wait period."""

    class _FetchWait(Sensor):  # type: ignore[misc]
        def on_rebalance_end(self, app_: Any, state: Any) -> None:
            fetcher = _fetcher(app)
            if fetcher is None:
                log.warning("cannot shorten the fetch wait: aiokafka internals changed")
                return
            fetcher._fetch_max_wait_ms = max_wait_ms

    app.sensors.add(_FetchWait())


# ---- 4. the current event -------------------------------------------------------------------

@contextlib.contextmanager
def event_context(event: EventT[Any]) -> Iterator[None]:
    """Make `event` Faust's current event: the rocksdb store reads and writes a key in the
    database of the current event's partition."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


# ---- 5. batches -----------------------------------------------------------------------------

async def run_in_batches(stream: StreamT[Any],
                         handle: Callable[[list[EventT[Any]]], Awaitable[asyncio.Future[Any]]],
                         max_batch: int, max_in_flight: int) -> None:
    """Hand the stream's events to `handle` in batches: whatever arrived meanwhile, at most
    `max_batch`, never waiting for more (a lone event is a batch of one).

    `handle` processes a batch and starts its sends; it returns a future that is done when the
    broker acknowledged all of them (pipelined: the next batch is handled meanwhile, up to
    `max_in_flight` events unacknowledged). Events are acked in order, and only once their
    batch's future is done; Faust commits only acked offsets, so a commit never passes a
    record whose outputs could still be lost. If a batch's sends fail, this raises before
    acking it or anything after it (and the agent error stops the process).

    The stream is read by a separate task into a buffer, so a batch being handled never waits
    for the next event: in a rebalance Faust stops the flow and waits until every event it
    handed out is acked (Consumer.wait_empty); a batch held back while waiting for more events
    would deadlock it. Acks are off on the stream (as Stream.take_events does it) and done here.
    """
    stream.enable_acks = False
    arrived: list[EventT[Any]] = []  # read, not yet handed to `handle`
    in_flight: collections.deque[tuple[list[EventT[Any]], asyncio.Future[Any]]] = (
        collections.deque())
    unacked = 0
    wake = asyncio.Event()  # something arrived, was acknowledged, or the reader ended
    room = asyncio.Event()  # `arrived` has room again

    def wake_up(_: object = None) -> None:
        wake.set()

    async def read() -> None:
        async for event in stream.events():
            arrived.append(event)
            if not in_flight or len(arrived) >= max_batch:  # else the acknowledgement wakes
                wake.set()
            if len(arrived) >= max_batch:
                room.clear()
                await room.wait()

    reader = asyncio.ensure_future(read())
    reader.add_done_callback(wake_up)
    try:
        while True:
            while in_flight and in_flight[0][1].done():
                events, acknowledged = in_flight.popleft()
                acknowledged.result()  # a failed send: raise, ack nothing more
                for event in events:
                    await stream.ack(event)
                unacked -= len(events)
            if reader.done():
                reader.result()  # the stream ended or failed: end or fail with it
                return
            # While a batch awaits its acknowledgements the next one grows, unless it is
            # already full: batches as large as the broker's round trip allows.
            busy = bool(in_flight) and (len(arrived) < max_batch or unacked >= max_in_flight)
            if not arrived or busy:
                wake.clear()  # no await since the state was read: no wake-up is missed
                await wake.wait()
                continue
            batch = arrived[:max_batch]
            del arrived[:max_batch]
            room.set()
            acknowledged = await handle(batch)
            acknowledged.add_done_callback(wake_up)
            in_flight.append((batch, acknowledged))
            unacked += len(batch)
    finally:
        reader.cancel()


# ---- 6. changelog offsets -------------------------------------------------------------------

def persist_changelog_offset(app: faust.App, table: Any, partition: int, offset: int) -> None:
    """Remember in the table's store (rocksdb) the changelog offset it has data up to, as
    Faust's Table._on_changelog_sent does, so that a restart restores only what came after."""
    tp = TP(table.changelog_topic.get_topic_name(), partition)
    if app.in_transaction:
        app.tables.persist_offset_on_commit(table.data, tp, offset)
    else:
        table.data.set_persisted_offset(tp, offset)


# ---- 8. record batches ----------------------------------------------------------------------

Header = tuple[str, bytes]
# (key, value, headers) of one record; value None: a tombstone.
BatchRecord = tuple["bytes | None", "bytes | None", list[Header]]  # aiokafka wants a list


def aiokafka_producer(app: faust.App) -> AIOKafkaProducer:
    """The aiokafka producer Faust's producer sends with (started with the app)."""
    return cast(AIOKafkaProducer, cast(Any, app.producer)._ensure_producer())


async def default_partition(app: faust.App, topic: str, key: bytes | None) -> int:
    """The partition the producer's own partitioner picks for a record sent without one
    (aiokafka's default: murmur2 of the key; a random available partition without a key),
    exactly as `send(partition=None)` would."""
    producer = aiokafka_producer(app)
    await producer.client._wait_on_metadata(topic)
    return int(producer._partition(topic, None, key, None, key, None))


@dataclasses.dataclass(frozen=True, slots=True)
class SentBatch:
    """One aiokafka record batch on its way: `acked` gives the broker's metadata, whose
    `offset` is the batch's base offset (its records are base .. base + records - 1)."""

    topic: str
    partition: int
    records: int
    acked: Awaitable[RecordMetadata]


async def send_record_batches(app: faust.App,
                              batches: Mapping[tuple[str, int], Sequence[BatchRecord]]
                              ) -> list[SentBatch]:
    """Start sending each (topic, partition)'s records, in order, as aiokafka record batches
    (split where one is full: the producer's max_batch_size), through the same producer and
    accumulator `send()` uses (acks, idempotence, retries, linger of other sends unchanged).
    None of them is awaited here. A batch is left open, so it lingers (producer linger) as the
    batch `send()` fills would: a worker batch sent right after this one waits for it to be
    drained instead of the broker getting many small requests (measured: closed batches sent
    at once made batches of ~10 events and the worker 30 % slower). A record larger than the
    producer's max_request_size is refused as `send()` refuses it."""
    producer = aiokafka_producer(app)
    max_size = producer._max_request_size
    sent: list[SentBatch] = []
    for (topic, partition), records in batches.items():
        batch = producer.create_batch()
        for key, value, headers in records:
            appended = batch.append(timestamp=None, key=key, value=value, headers=headers)
            if appended is None:  # full: send it, the record starts the next one
                sent.append(SentBatch(topic, partition, batch.record_count(),
                                      await producer.send_batch(batch, topic,
                                                                partition=partition)))
                batch = producer.create_batch()
                appended = batch.append(timestamp=None, key=key, value=value, headers=headers)
                assert appended is not None  # an empty batch takes any record
            if appended.size > max_size:
                raise MessageSizeTooLargeError(
                    f"a record of {appended.size} bytes for {topic}/{partition} is larger than "
                    f"the producer's max_request_size ({max_size})")
        if batch.record_count():
            sent.append(SentBatch(topic, partition, batch.record_count(),
                                  await producer.send_batch(batch, topic, partition=partition)))
    return sent


# ---- 9. the table store ---------------------------------------------------------------------

# (key bytes, value bytes or None to delete, the decoded value or None) of one table write.
StoreWrite = tuple[bytes, "bytes | None", Any]


class CallStore:
    """The worker's reads and writes of a table's store, by partition. With the rocksdb store
    (rocksdict), straight to the partition's database, with the key and value bytes the
    changelog carries (the store and the changelog encode with the same serializers), and each
    partition's writes of a batch in one WriteBatch; Faust's store would decode, re-encode and
    write each key on its own, reading the partition from the current event. Any other store
    (memory://) is used through Faust's mapping interface with that event current."""

    # Faust's json codec (faust.utils.json with orjson): the bytes its changelog topic and
    # store hold for a key or a value. tests/unit/test_faust_seams.py compares them with the
    # table's own encoding.
    _JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z

    @staticmethod
    def encode_key(key: str) -> bytes:
        """`key` as the table's changelog topic encodes it (a JSON string)."""
        return orjson.dumps(key)

    @classmethod
    def encode_value(cls, value: Any) -> bytes:
        """`value` as the table's changelog topic and store encode it (JSON)."""
        return orjson.dumps(value, option=cls._JSON_OPTIONS)

    @staticmethod
    def decode_value(raw: bytes) -> Any:
        return orjson.loads(raw)

    def __init__(self, table: Any) -> None:
        self._store = table.data
        self._direct = (isinstance(self._store, faust_rocksdb.Store)
                        and self._store.rocksdb_options.use_rocksdict)

    @property
    def direct(self) -> bool:
        """Whether reads and writes go straight to rocksdb."""
        return self._direct

    def read(self, key: str, key_bytes: bytes, partition: int, event: EventT[Any]) -> Any:
        """The value of `key` in the table partition `partition` (None: absent)."""
        store = self._store
        if not self._direct:
            with event_context(event):
                return store.get(key)
        raw = store._db_for_partition(partition).get(key_bytes)
        if raw is None:
            return None
        store._key_index[key_bytes] = partition
        return self.decode_value(raw)

    def write(self, partition: int, event: EventT[Any], writes: Sequence[tuple[str, StoreWrite]]
              ) -> None:
        """Write (key, (key bytes, value bytes or None, value)) into table partition
        `partition`, all at once; `event` is one of that partition's events."""
        store = self._store
        if not self._direct:
            with event_context(event):
                for key, (_, value_bytes, value) in writes:
                    if value_bytes is not None:
                        store[key] = value
                    elif key in store:
                        del store[key]
            return
        batch = rocksdict.WriteBatch(raw_mode=True)
        index = store._key_index
        for _, (key_bytes, value_bytes, _) in writes:
            if value_bytes is None:
                batch.delete(key_bytes)
            else:
                batch.put(key_bytes, value_bytes)
                index[key_bytes] = partition
        store._db_for_partition(partition).write(batch)


# ---- 2. the rebalance-safe transport (section "Rebalances" above) ---------------------------

def is_committed(offset: int | None) -> bool:
    """Whether a committed offset from aiokafka is one to seek to (None: never committed)."""
    return offset is not None and offset >= 0


async def seek_to_committed_or_beginning(consumer: AIOKafkaConsumer,
                                         changelog_topics: Set[str]
                                         ) -> Mapping[TopicPartition, int | None]:
    """Seek every assigned partition to its committed offset; a stream partition that has none
    to its beginning. Returns the committed offsets (None: never committed), as aiokafka does."""
    committed: dict[TopicPartition, int | None] = {}
    never_committed: list[TopicPartition] = []
    for tp in consumer.assignment():
        offset = await consumer.committed(tp)
        committed[tp] = offset
        if is_committed(offset):
            consumer.seek(tp, offset)
        elif tp.topic not in changelog_topics:
            never_committed.append(tp)
    if never_committed:
        log.info("no committed offset for %s: reading them from the beginning",
                 ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(never_committed)))
        await consumer.seek_to_beginning(*never_committed)
    return committed


async def rewind_to(consumer: AIOKafkaConsumer,
                    offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Seek each still-assigned partition back to `offsets[tp]` if its fetch position is past
    it; never forward. Returns the partitions that were rewound."""
    assigned = consumer.assignment()
    rewound: dict[TopicPartition, int] = {}
    for tp, offset in offsets.items():
        if tp not in assigned:
            continue  # revoked meanwhile: its new owner starts from the committed offset
        position = fetch_position(consumer, tp)
        if position is not None and position > offset:
            consumer.seek(tp, offset)
            rewound[tp] = offset
    return rewound


def fetch_position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The fetch position of an assigned partition, or None while it awaits a reset. aiokafka's
    public `position()` would wait for the reset; this must not."""
    state = consumer._subscription.subscription.assignment.state_value(tp)
    return int(state.position) if state.has_valid_position else None


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    def wake_fetch_waiters(self) -> None:
        """From the worker's loop: end any wait for fetched records in the consumer thread now,
        so that it looks again at what it has (a partition may have become active)."""
        consumer = self._consumer
        if consumer is None:
            return
        fetcher = consumer._fetcher

        def notify() -> None:
            for waiter in list(fetcher._fetch_waiters):
                fetcher._notify(waiter)

        with contextlib.suppress(RuntimeError):  # the thread's loop is closed: stopping
            self.thread_loop.call_soon_threadsafe(notify)

    async def on_thread_stop(self) -> None:
        # A static member (KIP-345) never sends LeaveGroup in aiokafka, so a worker stopped on
        # purpose would hold its partitions until its session expires. Only a crash should keep
        # them for the restart: a graceful stop leaves the group (by member id) like a dynamic
        # member does.
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is not None and getattr(coordinator, "_group_instance_id", None):
            coordinator._group_instance_id = None
        await super().on_thread_stop()

    # Any: Faust annotates the values as int, but they are None for a partition never committed.
    async def seek_to_committed(self) -> Mapping[Any, Any]:
        changelog_topics = set(self.app.tables.changelog_topics)
        result: Mapping[Any, Any] = await self.call_thread(
            seek_to_committed_or_beginning, self._ensure_consumer(), changelog_topics)
        return result

    async def rewind_to(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = await self.call_thread(
            rewind_to, self._ensure_consumer(), offsets)
        return result


def not_handed_on(fetched: Mapping[Any, Sequence[Any]],
                  handed_on: Mapping[Any, int]) -> dict[Any, int]:
    """For each partition of a fetched batch, the first offset past the last record handed on
    (none when every record was)."""
    first_missed: dict[Any, int] = {}
    for tp, records in fetched.items():
        last = handed_on.get(tp, -1)
        missed = [r.offset for r in records if r.offset > last]
        if missed:
            first_missed[tp] = missed[0]
    return first_missed


def is_stale_jump(offset: int, expected: int | None, rewound_for_jump: int | None) -> bool:
    """A record ahead of where its partition now reads (expected), most likely from a batch
    fetched before the last seek. Faust would hand it on, book the offsets in between as a
    "gap" (as if processed) and then drop them as already read when they arrive: lost. We
    withhold it and rewind once; the same jump again from the same offset is a real gap
    (transaction markers, retention), handed on as Faust expects."""
    return expected is not None and offset > expected and rewound_for_jump != expected


class _Consumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    _last_fetched: Mapping[Any, Sequence[Any]] | None = None
    _thread: _ConsumerThread
    # Stream partition -> the offset the next record handed on must have (unknown: absent).
    _expected: dict[Any, int]
    # Stream partition -> an offset we already rewound to once for a jump: a second jump from
    # the same offset is a real gap (e.g. transaction markers), handed on as Faust expects.
    _rewound_for_jump: dict[Any, int]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._expected, self._rewound_for_jump = {}, {}
        self._buffer_dropped = asyncio.Event()

    def on_buffer_drop(self, tp: Any) -> None:
        held_back = tp in self._buffered_partitions
        super().on_buffer_drop(tp)
        if held_back:
            # Its records are likely fetched already, but a fetch that started while it was held
            # back waits (up to a second) for data on the other partitions only: end that wait.
            self._buffer_dropped.set()
            self._thread.wake_fetch_waiters()

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_to_committed(self) -> Mapping[Any, Any]:
        committed: Mapping[Any, Any] = await super().seek_to_committed()
        for tp, offset in committed.items():
            if is_committed(offset):
                self._expected[tp] = offset
            else:  # read from the beginning: its first offset is not known here
                self._expected.pop(tp, None)
        return committed

    async def on_partitions_revoked(self, revoked: Set[Any]) -> None:
        for tp in revoked:
            self._expected.pop(tp, None)
            self._rewound_for_jump.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 (Faust's)
        if self.flow_active and not self._get_active_partitions() and self._buffered_partitions:
            # Every partition is held back because its stream's buffer is full: Faust would
            # sleep a whole second before fetching again; wake as soon as a buffer drains
            # (section "Handing records on" above).
            self._buffer_dropped.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._buffer_dropped.wait(), BUFFER_FULL_WAIT_S)
        records, active_partitions = await super()._wait_next_records(timeout)
        self._last_fetched = records
        return records, active_partitions

    async def getmany(self, timeout: float  # noqa: ASYNC109 (Faust's signature)
                      ) -> AsyncIterator[tuple[Any, Any]]:
        changelogs = self.app.tables.changelog_topics
        handed_on: dict[Any, int] = {}
        withheld: dict[Any, int] = {}
        async for tp, message in super().getmany(timeout):
            if tp in withheld:
                continue
            expected = self._expected.get(tp) if tp.topic not in changelogs else None
            if is_stale_jump(message.offset, expected, self._rewound_for_jump.get(tp)):
                withheld[tp] = cast(int, expected)
                continue
            handed_on[tp] = message.offset
            if expected is None or message.offset >= expected:
                self._expected[tp] = message.offset + 1
            yield tp, message
        fetched, self._last_fetched = self._last_fetched, None
        targets = {**not_handed_on(fetched or {}, handed_on), **withheld}
        if targets:
            rewound = await self._thread.rewind_to(targets)
            for tp, offset in withheld.items():
                self._rewound_for_jump[tp] = offset
            if rewound:
                log.info("rewound %s to re-read records fetched during a rebalance",
                         ", ".join(f"{tp.topic}/{tp.partition}@{offset}"
                                   for tp, offset in sorted(rewound.items())))


    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (a broker's)
        # Faust 0.15.3's Consumer._drain_messages, but each record's callback is run directly
        # up to its first wait (section "Handing records on" above).
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            # The conductor's on_message: a coroutine function.
                            delivering = cast(Coroutine[Any, Any, Any], callback(message))
                            try:
                                waiting_on = delivering.send(None)
                            except StopIteration:
                                pass  # delivered without waiting: the common case
                            else:
                                await self.wait_first(
                                    finish_waiting(delivering, waiting_on),
                                    self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    unset_flag(flag_consumer_fetching)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    # The task running this waits on what `coroutine` yielded, then runs the rest of it (a
    # throw, e.g. the task's cancellation, goes to `coroutine` as it would in its own task).
    while True:
        try:
            yield waiting_on
        except BaseException as exc:  # handed on to the coroutine, not handled here
            try:
                waiting_on = coroutine.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            return (yield from coroutine)  # type: ignore[misc]


async def finish_waiting(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Finish a coroutine already run up to its first wait (it yielded `waiting_on`, the
    future it waits for) as if it had run in this task from the start."""
    return await _resume(coroutine, waiting_on)


class _IdempotentProducer(faust_aiokafka.Producer):  # type: ignore[misc]
    """Faust's producer, idempotent always: Faust asks for idempotence only inside
    transactions (exactly_once), so a send retried after a lost acknowledgement could write a
    job or changelog record twice, or out of order behind a later one."""

    def _settings_extra(self) -> Mapping[str, Any]:
        extra: Mapping[str, Any] = super()._settings_extra()
        return {**extra, "acks": "all", "enable_idempotence": True}


class RebalanceSafeTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    """Faust's aiokafka transport with the three rebalance fixes above, the lean drain loop
    and an idempotent producer."""

    Consumer: ClassVar[Any] = _Consumer
    Producer: ClassVar[Any] = _IdempotentProducer
