"""A Kafka transport for the worker that does not lose records around a rebalance.

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
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence, Set
from typing import Any, ClassVar, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger("voix.worker")


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


class RebalanceSafeTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    """Faust's aiokafka transport with the three fixes above."""

    Consumer: ClassVar[Any] = _Consumer
