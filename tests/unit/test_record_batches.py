"""The worker's outputs and changelog records go out as aiokafka record batches, one per
topic-partition (app.worker.faust_seams.send_record_batches), and its table writes go to the
rocksdb store one write batch per partition (faust_seams.CallStore)."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from app.settings import Settings
from app.worker.app import create_worker_app, group_by_partition, last_offsets
from app.worker.faust_seams import CallStore, SentBatch, event_context, send_record_batches
from app.worker.processor import Output
from tests.unit.test_worker_agent import BatchCapture


def test_outputs_are_grouped_by_topic_partition_in_their_order() -> None:
    outputs = [Output("jobs", b"a", b"1", [("h", b"x")], 0), Output("records", b"a", b"2", [], 0),
               Output("jobs", b"b", b"3", [], 1), Output("jobs", b"c", b"4", [], 0),
               Output("dlq", None, b"5", [("why", b"bad")], None)]
    # The last output had no partition: the producer's partitioner chose 2 for it.
    grouped = group_by_partition(outputs, [0, 0, 1, 0, 2])
    assert grouped == {("jobs", 0): [(b"a", b"1", [("h", b"x")]), (b"c", b"4", [])],
                       ("records", 0): [(b"a", b"2", [])],
                       ("jobs", 1): [(b"b", b"3", [])],
                       ("dlq", 2): [(None, b"5", [("why", b"bad")])]}
    assert list(grouped) == [("jobs", 0), ("records", 0), ("jobs", 1), ("dlq", 2)]


def test_the_last_changelog_offset_of_each_partition_comes_from_its_batches() -> None:
    def sent(topic: str, partition: int, records: int) -> SentBatch:
        return SentBatch(topic, partition, records, None)  # type: ignore[arg-type]

    batches = [sent("jobs", 0, 5), sent("changelog", 0, 3), sent("changelog", 1, 1),
               sent("changelog", 0, 2)]
    acked: list[Any] = [SimpleNamespace(offset=o) for o in (100, 10, 7, 13)]
    assert last_offsets("changelog", batches, acked) == {0: 14, 1: 7}


def _app_with(producer: BatchCapture) -> Any:
    return SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer))


async def test_record_batches_keep_order_and_headers_and_split_when_full() -> None:
    got: list[tuple[str, bytes | None, bytes | None, int | None, Any]] = []

    def capture(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                headers: Any) -> int:
        got.append((topic, key, value, partition, list(headers)))
        return len(got) - 1

    producer = BatchCapture(capture)
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = [
        (f"k{i}".encode(), b"v" * 500, [("voix.request-id", f"r{i}".encode())])
        for i in range(20)]
    records.append((b"gone", None, []))  # a tombstone
    sent = await send_record_batches(_app_with(producer), {("jobs", 3): records,
                                                          ("changelog", 1): [(b"c", b"{}", [])]})
    # 20 records of ~530 bytes do not fit in one 4 KiB batch: several, in order.
    jobs = [b for b in sent if b.topic == "jobs"]
    assert len(jobs) > 1 and sum(b.records for b in jobs) == 21
    assert [(b.topic, b.partition) for b in sent][-1] == ("changelog", 1)
    assert [(k, v, h) for t, k, v, _, h in got if t == "jobs"] == records
    assert {p for t, _, _, p, _ in got if t == "jobs"} == {3}
    for batch in sent:  # one acknowledgement per batch, with its first record's offset
        assert (await batch.acked).offset == next(
            i for i, (t, *_) in enumerate(got) if t == batch.topic) + sum(
            b.records for b in sent[:sent.index(batch)] if b.topic == batch.topic)


async def test_a_record_larger_than_max_request_size_is_refused_as_send_refuses_it() -> None:
    producer = BatchCapture(lambda *_: 0)
    producer._max_request_size = 1000
    with pytest.raises(MessageSizeTooLargeError):
        await send_record_batches(_app_with(producer), {("jobs", 0): [(b"k", b"x" * 2000, [])]})


class _Event:
    """Enough of a Faust event for the store (it keeps a weak reference to the current one)."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def test_call_store_writes_what_faust_reads_and_reads_what_faust_wrote(tmp_path: Path) -> None:
    """The rocksdb store, written one write batch per partition, as Faust's own store
    interface (with a current event of the partition) sees it, and the other way round."""
    app = create_worker_app(Settings(worker_store="rocksdb://", worker_data_dir=tmp_path,
                                     worker_id=f"unit-{uuid.uuid4().hex[:8]}"))
    table: Any = app.tables["calls"]
    store = CallStore(table)
    assert store.direct
    changelog = table.changelog_topic

    events = {p: _Event(p) for p in range(6)}

    def event(partition: int) -> Any:
        return events[partition]

    def write(call_id: str, teams: dict[str, Any] | None) -> tuple[str, Any]:
        key = changelog.prepare_key(call_id, None)[0]
        value = changelog.prepare_value(teams, None)[0] if teams else None
        return call_id, (key, value, teams)

    one, two, three = (str(uuid.uuid4()) for _ in range(3))
    teams = {"t": {"status": "received", "history": [{"status": "received"}]}}
    store.write(2, event(2), [write(one, teams), write(two, {"u": {"n": 1}})])
    with event_context(event(2)):
        assert table.data[one] == teams and table.data[two] == {"u": {"n": 1}}
    with event_context(event(4)):  # the table is per partition
        assert table.data.get(one) is None
        table.data[three] = {"v": {"n": 3}}
    key_of = {c: changelog.prepare_key(c, None)[0] for c in (one, two, three)}
    assert store.read(three, key_of[three], 4, event(4)) == {"v": {"n": 3}}
    assert store.read(three, key_of[three], 2, event(2)) is None
    store.write(2, event(2), [write(one, None)])  # deleted: a tombstone in the changelog
    assert store.read(one, key_of[one], 2, event(2)) is None
    assert store.read(two, key_of[two], 2, event(2)) == {"u": {"n": 1}}
    with event_context(event(2)):
        assert one not in table.data and table.data[two] == {"u": {"n": 1}}
    # The store holds the bytes the changelog carries.
    assert table.data._encode_value(teams) == changelog.prepare_value(teams, None)[0]
    assert table.data._encode_key(one) == key_of[one]
