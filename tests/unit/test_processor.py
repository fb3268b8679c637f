"""The processor without Faust: table state + records -> new state + outputs."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from app.contracts.ids import job_id_for, utc_now_iso
from app.contracts.messages import (
    COMMAND_REPROCESS,
    Command,
    StatusUpdate,
    Submission,
    dumps,
)
from app.contracts.topics import TopicNames
from app.worker.processor import (
    DeadLetterLimit,
    InputRecord,
    Processor,
    TooManyDeadLetters,
    parse_submission_value,
)
from tests.factories import beat1, beat2

TEAM = "5d0b7a4e-1c2f-4e3a-8b9c-0d1e2f3a4b5c"
TOPICS = TopicNames()


class Table:
    """A dict standing in for the calls table; counts reads."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.reads = 0

    def read(self, call_id: str, partition: int) -> dict[str, Any] | None:
        self.reads += 1
        return self.data.get(call_id)

    def apply(self, writes: dict[str, Any]) -> None:
        for call_id, write in writes.items():
            if write.teams:
                self.data[call_id] = write.teams
            else:
                self.data.pop(call_id, None)


def submission(call: dict[str, Any], offset: int, partition: int = 3) -> InputRecord:
    value = Submission.new(team_id=TEAM, key_id="k", call=call).to_value()
    return InputRecord(TOPICS.submissions, partition, offset, call["callId"].encode(),
                       dumps(value))


def on(outputs: list[Any], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in outputs if o.topic == topic and o.value is not None]


def test_a_batch_reads_and_writes_each_call_once_and_emits_one_job() -> None:
    table, processor = Table(), Processor(TOPICS, state_ttl_s=3600, partitions=6)
    call_id = str(uuid.uuid4())
    batch = [submission(beat1(call_id), 0), submission(beat2(call_id), 1),
             submission(beat2(call_id), 2)]  # a client retry of beat 2
    result = processor.process(batch, table.read)
    assert table.reads == 1
    assert list(result.writes) == [call_id] and result.writes[call_id].partition == 3
    assert [j["jobId"] for j in on(result.outputs, TOPICS.jobs)] == [job_id_for(TEAM, call_id)]
    assert [r["status"] for r in on(result.outputs, TOPICS.records)] == ["received",
                                                                         "transcribing"]
    # Outputs are plain values: topic, key bytes, value bytes, headers, partition. Downstream
    # keys are teamId/callId (tenant-safe); the partition is the call's.
    job = next(o for o in result.outputs if o.topic == TOPICS.jobs)
    assert job.key == f"{TEAM}/{call_id}".encode() and job.headers == []
    assert job.partition == 3  # the partition the call's records came from
    # The public record leaves the worker's bookkeeping out.
    assert all("jobSource" not in r and "job" not in r for r in on(result.outputs, TOPICS.records))


def test_redelivery_of_the_deciding_record_resends_the_same_job() -> None:
    """At least once: the batch is processed again after a crash, against the table state the
    first run already wrote (its changelog was ahead of the committed offset)."""
    table, processor = Table(), Processor(TOPICS, state_ttl_s=3600, partitions=6)
    call_id = str(uuid.uuid4())
    batch = [submission(beat1(call_id), 10), submission(beat2(call_id), 11)]
    first = processor.process(batch, table.read)
    table.apply(first.writes)
    again = processor.process(batch, table.read)
    assert on(again.outputs, TOPICS.jobs) == on(first.outputs, TOPICS.jobs)
    # The state is written again although it did not change: the store may be ahead of the
    # changelog after a crash, and this write re-sends the state's changelog record.
    assert again.writes[call_id].teams == first.writes[call_id].teams
    # A beat that is not the deciding record sends no job.
    later = processor.process([submission(beat2(call_id), 12)], table.read)
    assert on(later.outputs, TOPICS.jobs) == []


def test_every_unusable_record_is_one_dead_letter_and_the_batch_goes_on() -> None:
    table, processor = Table(), Processor(TOPICS, state_ttl_s=3600, partitions=6)
    bad_call = Submission.new(team_id=TEAM, key_id="k", call=beat1()).to_value()
    bad_call["call"]["callId"] = "not-a-uuid"
    no_recording_url_type = Submission.new(team_id=TEAM, key_id="k", call=beat2(
        str(uuid.uuid4()))).to_value()
    no_recording_url_type["call"]["recordingUrl"] = 7
    stranger = str(uuid.uuid4())
    unknown_status = StatusUpdate(job_id_for(TEAM, stranger), stranger, "transcribed", None,
                                  utc_now_iso())
    reprocess_unknown = Command(COMMAND_REPROCESS, TEAM, stranger, utc_now_iso())
    values = [b"\x00 not json", b"[1]", orjson.dumps({"v": 99, "type": "call.submission"}),
              orjson.dumps({"v": 1, "type": "call.unknown"}), orjson.dumps(bad_call),
              orjson.dumps(no_recording_url_type), dumps(unknown_status.to_value()),
              dumps(reprocess_unknown.to_value()), None]
    records = [InputRecord(TOPICS.submissions, 0, i, b"k", v) for i, v in enumerate(values)]
    good = str(uuid.uuid4())
    result = processor.process([*records, submission(beat2(good), 99)], table.read)
    dead = [o for o in result.outputs if o.topic == TOPICS.deadletter]
    headers = [{k: v.decode() for k, v in o.headers} for o in dead]
    assert [h["voix.dlq.offset"] for h in headers] == [str(i) for i in range(len(values))]
    assert {h["voix.dlq.topic"] for h in headers} == {TOPICS.submissions}
    assert {h["voix.dlq.stage"] for h in headers} == {"merge"}
    assert result.dead_letters == len(values)
    reasons = [h["voix.dlq.reason"] for h in headers]
    assert "not JSON" in reasons[0] and "not a JSON object" in reasons[1]
    assert "unsupported format" in reasons[2] and "unknown message type" in reasons[3]
    assert "callId must be a UUID" in reasons[4] and "recordingUrl" in reasons[5]
    assert "unknown call" in reasons[6] and "reprocess of unknown call" in reasons[7]
    assert "empty value" in reasons[8]
    # The original key and value bytes, exactly (Kafka Connect's convention).
    assert [(o.key, o.value) for o in dead] == [(b"k", v) for v in values]
    assert len(on(result.outputs, TOPICS.jobs)) == 1


def test_more_dead_letters_than_the_limit_within_the_window_stop_the_worker() -> None:
    now = [0.0]
    limit = DeadLetterLimit(3, window_s=60.0, clock=lambda: now[0])
    processor = Processor(TOPICS, state_ttl_s=3600, partitions=6, dead_letter_limit=limit)
    poison = [InputRecord(TOPICS.submissions, 0, i, b"k", b"x") for i in range(3)]
    processor.process(poison, Table().read)  # three: at the limit, not over it
    now[0] = 61.0  # the window moved on: those three no longer count
    processor.process(poison, Table().read)
    with pytest.raises(TooManyDeadLetters, match="4 dead letters within 60 s"):
        processor.process(poison[:1], Table().read)


def test_a_submission_is_checked_cheaply_but_a_malformed_one_is_rejected() -> None:
    value = Submission.new(team_id=TEAM, key_id="k", call=beat2(str(uuid.uuid4()))).to_value()
    assert parse_submission_value(value).call == value["call"]
    for field, bad in (("teamId", "x"), ("receivedAt", "yesterday"), ("jobId", "nope")):
        broken = {**value, field: bad}
        with pytest.raises(ValueError, match="malformed"):
            parse_submission_value(broken)
    missing_from = {**value, "call": {k: v for k, v in value["call"].items() if k != "from"}}
    with pytest.raises(ValueError, match="from must be a string"):
        parse_submission_value(missing_from)


def test_statuses_and_commands_are_routed_to_their_calls_partition() -> None:
    """Whatever partition a producer put a status on (librdkafka's default partitioner, a
    wrong key), the router moves it, bytes unchanged, onto the call's partition."""
    from app.contracts.messages import partition_for

    processor = Processor(TOPICS, state_ttl_s=3600, partitions=6)
    call_id = str(uuid.uuid4())
    status = dumps(StatusUpdate(job_id_for(TEAM, call_id), call_id.upper(), "transcribed",
                                None, utc_now_iso()).to_value())
    command = dumps(Command(COMMAND_REPROCESS, TEAM, call_id, utc_now_iso()).to_value())
    records = [InputRecord(TOPICS.status, 5, 40, b"whatever", status,
                           (("request-id", b"r-9"),)),
               InputRecord(TOPICS.commands, 2, 7, None, command),
               InputRecord(TOPICS.status, 1, 3, b"k", b'{"v": 1, "callId": "nope"}'),
               InputRecord(TOPICS.status, 1, 4, b"k", b"not json")]
    routed, again, *dead = processor.route(records)
    assert (routed.topic, routed.key, routed.value) == (TOPICS.routed, call_id.encode(), status)
    assert routed.partition == partition_for(call_id, 6) == again.partition
    assert dict(routed.headers) == {"request-id": b"r-9", "voix.source":
                                    f"{TOPICS.status}/5/40".encode()}
    assert [d.topic for d in dead] == [TOPICS.deadletter] * 2
    assert {dict(d.headers)[b"voix.dlq.stage".decode()] for d in dead} == {b"route"}
    # Routed twice (the router crashed before its commit), a command is still one record:
    # its source is where it was first read.
    twice = processor.route([InputRecord(TOPICS.routed, 0, 99, again.key, again.value,
                                         tuple(again.headers))])[0]
    first_source = InputRecord(TOPICS.routed, 0, 1, None, None, tuple(again.headers)).source
    assert InputRecord(TOPICS.routed, 0, 2, None, None, tuple(twice.headers)).source == \
        first_source == f"{TOPICS.commands}/2/7"


def test_the_request_id_travels_to_the_job_and_the_record() -> None:
    table, processor = Table(), Processor(TOPICS, state_ttl_s=3600, partitions=6)
    call_id = str(uuid.uuid4())
    beat = submission(beat2(call_id), 0)
    traced = InputRecord(beat.topic, beat.partition, beat.offset, beat.key, beat.value,
                         (("request-id", b"req-7"), ("traceparent", b"00-" + b"a" * 32 + b"-"
                                                     + b"b" * 16 + b"-01"), ("other", b"x")))
    result = processor.process([traced], table.read)
    for out in result.outputs:
        assert dict(out.headers) == {"request-id": b"req-7",
                                     "traceparent": b"00-" + b"a" * 32 + b"-" + b"b" * 16 +
                                     b"-01"}, out.topic


def test_a_routed_record_that_cannot_be_applied_is_dead_lettered_where_it_was_written() -> None:
    processor = Processor(TOPICS, state_ttl_s=3600, partitions=6)
    stranger = str(uuid.uuid4())
    status = dumps(StatusUpdate(job_id_for(TEAM, stranger), stranger, "transcribed", None,
                                utc_now_iso()).to_value())
    [routed] = processor.route([InputRecord(TOPICS.status, 4, 17, b"k", status)])
    read_back = InputRecord(TOPICS.routed, routed.partition or 0, 3, routed.key, routed.value,
                            tuple(routed.headers))
    [dead] = processor.process([read_back], Table().read).outputs
    headers = {k: v.decode() for k, v in dead.headers}
    assert (headers["voix.dlq.topic"], headers["voix.dlq.partition"],
            headers["voix.dlq.offset"]) == (TOPICS.status, "4", "17")
    assert headers["voix.dlq.stage"] == "merge" and dead.value == status
