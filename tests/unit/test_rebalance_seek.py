"""The worker's rebalance fixes (app.worker.faust_seams): records fetched but not handed on are
read again, and a partition without a committed offset is read from its beginning."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import TopicPartition

from app.settings import Settings
from app.worker.app import create_worker_app
from app.worker.faust_seams import (
    RebalanceSafeTransport,
    is_stale_jump,
    not_handed_on,
    rewind_to,
    seek_to_committed_or_beginning,
)


class RecordingConsumer:
    """Just the part of AIOKafkaConsumer the seek uses, recording what it is asked to do."""

    def __init__(self, committed: dict[TopicPartition, int | None],
                 positions: dict[TopicPartition, int | None] | None = None) -> None:
        self._committed = committed
        # aiokafka's internal partition state, as app.worker.faust_seams.fetch_position reads it
        states = {tp: SimpleNamespace(position=pos, has_valid_position=pos is not None)
                  for tp, pos in (positions or {}).items()}
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(
            assignment=SimpleNamespace(state_value=states.__getitem__)))
        self.seeks: dict[TopicPartition, int] = {}
        self.to_beginning: list[TopicPartition] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self._committed)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self._committed[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> bool:
        self.to_beginning.extend(tps)
        return True


async def test_never_committed_stream_partitions_are_read_from_the_beginning() -> None:
    committed_p, zero_p, fresh_p = (TopicPartition("calls.submissions", p) for p in (0, 1, 2))
    changelog = TopicPartition("voix-calls-changelog", 2)
    consumer = RecordingConsumer({committed_p: 14, zero_p: 0, fresh_p: None, changelog: None})

    result = await seek_to_committed_or_beginning(
        consumer, {"voix-calls-changelog"})  # type: ignore[arg-type]

    assert result == {committed_p: 14, zero_p: 0, fresh_p: None, changelog: None}
    # aiokafka itself skips offset 0 and None; both matter after records were dropped.
    assert consumer.seeks == {committed_p: 14, zero_p: 0}
    assert consumer.to_beginning == [fresh_p]


async def test_the_worker_app_uses_the_rebalance_safe_transport() -> None:
    app = create_worker_app(Settings(worker_store="memory://", worker_id="unit-seek"))
    assert isinstance(app.transport, RebalanceSafeTransport)


def test_not_handed_on_is_the_first_record_after_the_last_one_handed_on() -> None:
    def batch(*offsets: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(offset=o) for o in offsets]

    fetched = {"all": batch(3, 4), "some": batch(7, 8, 9), "none": batch(0, 1)}
    assert not_handed_on(fetched, {"all": 4, "some": 7}) == {"some": 8, "none": 0}
    assert not_handed_on({}, {}) == {}


async def test_rewind_only_goes_back_and_only_on_assigned_partitions() -> None:
    ahead, behind, resetting, revoked = (TopicPartition("t", p) for p in range(4))
    consumer = RecordingConsumer(
        committed={ahead: None, behind: None, resetting: None},  # the assigned ones
        positions={ahead: 12, behind: 5, resetting: None})

    rewound = await rewind_to(consumer, {ahead: 8, behind: 8, resetting: 8,  # type: ignore[arg-type]
                                         revoked: 8})

    assert rewound == {ahead: 8}
    assert consumer.seeks == {ahead: 8}  # behind is not moved forward; the reset decides later


def test_a_jump_ahead_is_withheld_once_then_accepted_as_a_real_gap() -> None:
    assert not is_stale_jump(30, expected=30, rewound_for_jump=None)  # the next record
    assert not is_stale_jump(12, expected=30, rewound_for_jump=None)  # a repeat: Faust drops it
    assert not is_stale_jump(33, expected=None, rewound_for_jump=None)  # nothing known yet
    assert is_stale_jump(33, expected=30, rewound_for_jump=None)  # 30..32 would be lost
    assert not is_stale_jump(33, expected=30, rewound_for_jump=30)  # again after a rewind: real
    assert is_stale_jump(40, expected=35, rewound_for_jump=30)  # a new jump from elsewhere
