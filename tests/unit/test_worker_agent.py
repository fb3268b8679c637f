"""The Faust agent in test_context(): the real agent, table and wiring, no broker. The
producer's send is replaced by a capture that acknowledges at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import faust
import orjson
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from faust.types.tuples import Message

from app.contracts.ids import job_id_for, utc_now_iso
from app.contracts.messages import (
    COMMAND_EXPIRE,
    COMMAND_REPROCESS,
    Command,
    StatusUpdate,
    Submission,
    dumps,
)
from app.settings import Settings
from app.worker.app import create_worker_app
from tests.factories import beat1, beat2

TEAM = "5d0b7a4e-1c2f-4e3a-8b9c-0d1e2f3a4b5c"


class BatchCapture:
    """Stands in for Faust's aiokafka producer: record batches are real aiokafka batches
    (small ones, so that a worker batch fills several), read back record by record when sent
    and acknowledged at once; a record without a partition goes to partition 0."""

    _max_request_size = 1024 * 1024
    BATCH_BYTES = 4096

    def __init__(self, capture: Any) -> None:
        self._capture = capture
        self.batches: list[tuple[str, int, int]] = []  # (topic, partition, records) as sent
        self.client = SimpleNamespace(_wait_on_metadata=self._wait_on_metadata)

    async def _wait_on_metadata(self, topic: str) -> None:
        return None

    def _partition(self, topic: str, partition: int | None, *_: Any) -> int:
        return 0 if partition is None else partition

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.BATCH_BYTES, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int
                         ) -> asyncio.Future[Any]:
        first = None
        for record in DefaultRecordBatch(bytes(batch._build())):
            offset = self._capture(topic, record.key, record.value, partition, record.headers)
            first = offset if first is None else first
        self.batches.append((topic, partition, batch.record_count()))
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        acked.set_result(SimpleNamespace(topic=topic, partition=partition, offset=first))
        return acked


class Harness:
    def __init__(self, app: faust.App, ctx: Any,
                 sent: list[tuple[str, bytes | None, dict[str, Any]]]):
        self.app, self.ctx, self.sent = app, ctx, sent
        self.put_count = 0
        self.raw: list[tuple[str, int | None, bytes | None, bytes | None]] = []  # as sent
        self.sent_with_headers: list[tuple[str, int | None, bytes | None, Any]] = []

    async def put_raw(self, value: bytes, key: bytes) -> None:
        """Put a record and wait until the agent's batch with it was handled (the agent reads
        the stream in a task of its own, so ctx.put returns when the record was read)."""
        await self.ctx.put(value, key=key)
        self.put_count += 1
        for _ in range(5000):
            if self.app.events_done >= self.put_count:  # type: ignore[attr-defined]
                return
            await asyncio.sleep(0.001)
        raise AssertionError("the agent did not handle the record within 5 s")

    async def put(self, call: dict[str, Any], team: str = TEAM) -> None:
        sub = Submission.new(team_id=team, key_id="k", call=call)
        await self.put_raw(dumps(sub.to_value()), key=call["callId"].encode())

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [value for name, _, value in self.sent if name == topic]

    def dead_letters(self) -> list[dict[str, Any]]:
        """Each dead letter's headers as text, and its value as sent (the original bytes)."""
        return [{**{k: v.decode() for k, v in headers}, "value": value}
                for topic, _, value, headers in self.sent_with_headers
                if topic.endswith("calls.deadletter")]

    @property
    def table(self) -> Any:
        return self.app.tables["calls"]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    # A 1 s ttl: expiry only happens through expire commands (timers do not run here).
    settings = Settings(worker_store="memory://", worker_id=f"unit-{uuid.uuid4().hex[:8]}",
                        state_ttl_s=1)
    app = create_worker_app(settings)
    app.finalize()
    app.flow_control.resume()
    sent: list[tuple[str, bytes | None, dict[str, Any]]] = []
    harness_raw: list[tuple[str, int | None, bytes | None, bytes | None]] = []
    with_headers: list[tuple[str, int | None, bytes | None, Any]] = []

    def capture(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                headers: Any) -> int:
        # A tombstone (None) is recorded as {"tombstone": true}; a value that is not JSON (a
        # dead letter's original bytes) as {"bytes": value}.
        try:
            parsed = {"tombstone": True} if value is None else orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = {"bytes": value}
        sent.append((topic, key, parsed))
        harness_raw.append((topic, partition, key, value))
        with_headers.append((topic, partition, value, list(headers or ())))
        return len(sent)

    async def send(topic: str, key: bytes, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: Any, **_: Any) -> asyncio.Future[Any]:
        offset = capture(topic, key, value, partition, headers)
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        acked.set_result(SimpleNamespace(topic=topic, partition=partition or 0, offset=offset))
        return acked

    with patch.object(app.producer, "send", send), \
            patch.object(app.producer, "_producer", BatchCapture(capture)):
        async with app.agents["merge-beats"].test_context() as ctx:
            harness = Harness(app, ctx, sent)
            harness.raw = harness_raw
            harness.sent_with_headers = with_headers
            yield harness
    # Faust makes a consumer thread with its own event loop even in test_context and never
    # starts or closes it; close it so the test leaves no open sockets behind.
    consumer = app._consumer
    thread = getattr(consumer, "_thread", None)
    if thread is not None and not thread.thread_loop.is_closed():
        thread.thread_loop.close()


async def test_two_beats_make_one_job_and_two_records(harness: Harness) -> None:
    call_id = str(uuid.uuid4())
    await harness.put(beat1(call_id))
    await harness.put(beat2(call_id))
    await harness.put(beat2(call_id))  # retry: no new job, no record change
    jobs = harness.on("transcription.jobs")
    assert [j["jobId"] for j in jobs] == [job_id_for(TEAM, call_id)]
    records = harness.on("calls.records")
    assert [r["status"] for r in records] == ["received", "transcribing"]
    assert harness.table[call_id][TEAM]["call"]["duration"] == 42


async def test_same_call_id_in_two_teams_is_two_calls(harness: Harness) -> None:
    call_id = str(uuid.uuid4())
    other = "5d0b7a4e-1c2f-4e3a-8b9c-0d1e2f3a4b5d"
    await harness.put(beat2(call_id))
    await harness.put(beat2(call_id), team=other)
    jobs = harness.on("transcription.jobs")
    assert {(j["teamId"], j["jobId"]) for j in jobs} == {
        (TEAM, job_id_for(TEAM, call_id)), (other, job_id_for(other, call_id))}


async def test_poison_message_goes_to_dead_letters_and_agent_goes_on(harness: Harness) -> None:
    await harness.put_raw(b"\x00 not json", key=b"k1")
    await harness.put_raw(orjson.dumps({"v": 99, "type": "call.submission"}), key=b"k2")
    bad_call = Submission.new(team_id=TEAM, key_id="k", call=beat1()).to_value()
    bad_call["call"]["callId"] = "not-a-uuid"
    await harness.put_raw(orjson.dumps(bad_call), key=b"k3")
    call_id = str(uuid.uuid4())
    await harness.put(beat2(call_id))

    dead = harness.dead_letters()
    assert [d["voix.dlq.offset"] for d in dead] == ["0", "1", "2"]
    assert "not JSON" in dead[0]["voix.dlq.reason"]
    assert "unsupported format" in dead[1]["voix.dlq.reason"]
    assert "callId must be a UUID" in dead[2]["voix.dlq.reason"]
    assert dead[0]["value"] == b"\x00 not json"  # the original bytes
    # (test_context() names a multi-topic agent's source "<internal>"; the broker tests check
    # the real topic name.)
    assert len(harness.on("transcription.jobs")) == 1


async def test_agent_failure_stops_the_process_without_committing() -> None:
    """A bug in processing must not become a silently dead agent or a skipped record."""
    from unittest.mock import AsyncMock

    from app.worker.faust_seams import CRASH_EXIT_CODE

    app = create_worker_app(Settings(worker_store="memory://", worker_id="unit-crash"))
    exits: list[int] = []
    consumer = AsyncMock()
    app._consumer = consumer
    with patch("app.worker.faust_seams.os._exit", exits.append):
        await app._on_agent_error(app.agents["merge-beats"], RuntimeError("bug"))
        await asyncio.sleep(0)  # let the scheduled exit run
    assert exits == [CRASH_EXIT_CODE]
    consumer.on_task_error.assert_not_called()  # Faust's default would commit here


async def test_status_messages_move_the_call_and_unknown_ones_are_dead_letters(
        harness: Harness) -> None:
    call_id = str(uuid.uuid4())
    await harness.put(beat2(call_id))
    job_id = job_id_for(TEAM, call_id)
    update = StatusUpdate(job_id, call_id, "transcribed", None, "2026-06-16T09:30:00.000Z")
    await harness.put_raw(dumps(update.to_value()), key=call_id.encode())
    state = harness.table[call_id][TEAM]
    assert [h["status"] for h in state["history"]] == ["received", "transcribing", "transcribed"]
    assert harness.on("calls.records")[-1]["status"] == "transcribed"
    stranger = str(uuid.uuid4())
    lost = StatusUpdate(job_id_for(TEAM, stranger), stranger, "failed", "x", utc_now_iso())
    await harness.put_raw(dumps(lost.to_value()), key=stranger.encode())
    [dead] = harness.dead_letters()
    assert "unknown call" in dead["voix.dlq.reason"]


async def test_reprocess_and_expire_commands(harness: Harness) -> None:
    call_id = str(uuid.uuid4())
    await harness.put(beat2(call_id))
    reprocess = Command(COMMAND_REPROCESS, TEAM, call_id, utc_now_iso())
    await harness.put_raw(dumps(reprocess.to_value()), key=call_id.encode())
    jobs = harness.on("transcription.jobs")
    assert [j["attempt"] for j in jobs] == [1, 2]
    assert jobs[1]["jobId"] == job_id_for(TEAM, call_id, 2)
    state = harness.table[call_id][TEAM]
    # An expire that saw an older state is ignored; one that saw the current state, once the
    # harness's 1 s ttl has passed, deletes the call.
    await asyncio.sleep(1.1)
    stale = Command(COMMAND_EXPIRE, TEAM, call_id, utc_now_iso(),
                    last_change_at="2020-01-01T00:00:00Z")
    await harness.put_raw(dumps(stale.to_value()), key=call_id.encode())
    assert call_id in harness.table
    fresh = Command(COMMAND_EXPIRE, TEAM, call_id, utc_now_iso(),
                    last_change_at=state["updatedAt"])
    await harness.put_raw(dumps(fresh.to_value()), key=call_id.encode())
    assert call_id not in harness.table
    assert harness.on("calls.records")[-1] == {"tombstone": True}


async def test_changelog_records_restore_the_same_table_in_another_worker(
        harness: Harness) -> None:
    """The worker writes its changelog records itself; Faust's recovery of another worker must
    read them back into the same table (key and value encoded as Faust encodes them)."""
    call_id = str(uuid.uuid4())
    await harness.put(beat1(call_id))
    await harness.put(beat2(call_id))
    changelog = harness.table.changelog_topic
    records = [r for r in harness.raw if r[0] == changelog.get_topic_name()]
    assert len(records) == 2 and all(p is not None for _, p, _, _ in records)

    other = create_worker_app(Settings(worker_store="memory://",
                                       worker_id=harness.app.conf.id))
    table = other.tables["calls"]
    events = [await table.changelog_topic.decode(Message(
        topic, partition or 0, offset, 0.0, 0, [], key, value, None))
        for offset, (topic, partition, key, value) in enumerate(records)]
    table.apply_changelog_batch(events)
    assert table.data[call_id] == harness.table[call_id]  # type: ignore[attr-defined]
