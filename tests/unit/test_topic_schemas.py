"""Every value the code writes validates against its published schema in schemas/topics/,
and the schemas do reject what they must (so these tests can fail)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from app.contracts.ids import utc_now_iso
from app.contracts.messages import (
    COMMAND_EXPIRE,
    COMMAND_REPLAY,
    COMMAND_REPROCESS,
    Command,
    PoisonMessage,
    StatusUpdate,
    Submission,
    dead_letter_headers,
    public_call_state,
)
from app.contracts.topic_schemas import HEADER_SCHEMA_TOPICS, TOPIC_SCHEMA_FILES, schema_errors
from app.worker.merge import apply_reprocess, apply_status, merge_beat
from tests.factories import beat1, beat2

TEAM = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def submission(call: dict[str, Any]) -> Submission:
    return Submission.new(team_id=TEAM, key_id="k1", call=call)


def test_every_topic_has_a_schema_with_a_version() -> None:
    from app.contracts.topic_schemas import topic_validator
    from app.contracts.topics import TopicNames, topic_specs

    assert {spec.name for spec in topic_specs(TopicNames())} == set(TOPIC_SCHEMA_FILES)
    for topic in set(TOPIC_SCHEMA_FILES) - HEADER_SCHEMA_TOPICS - {"calls.routed"}:
        schema = topic_validator(topic).schema
        assert schema["properties"]["v"]["const"] == 1 and "v" in schema["required"]


def test_submissions_records_and_jobs_validate() -> None:
    call_id = str(uuid.uuid4())
    first, second = submission(beat1(call_id)), submission(beat2(call_id, userId=str(uuid.uuid4())))
    for value in (first.to_value(), second.to_value()):
        assert schema_errors("calls.submissions", value) == []
    r1 = merge_beat(None, first, "s/0/0")
    r2 = merge_beat(r1.state, second, "s/0/1")
    assert r2.job is not None
    assert schema_errors("calls.records", public_call_state(r1.state)) == []
    assert schema_errors("calls.records", public_call_state(r2.state)) == []
    assert schema_errors("transcription.jobs", r2.job) == []
    done = apply_status(r2.state, StatusUpdate(r2.job["jobId"], call_id, "failed", "no audio",
                                               utc_now_iso())).state
    assert schema_errors("calls.records", public_call_state(done)) == []
    again = apply_reprocess(done, utc_now_iso(), "c/0/3")
    assert again.job is not None and again.job["attempt"] == 2
    assert schema_errors("transcription.jobs", again.job) == []
    assert schema_errors("calls.records", public_call_state(again.state)) == []
    # The table state's bookkeeping is not part of the published record.
    assert schema_errors("calls.records", again.state) != []


def test_status_commands_and_dead_letters_validate() -> None:
    call_id = str(uuid.uuid4())
    for status, error in (("transcribing", None), ("transcribed", None), ("failed", "boom")):
        value = StatusUpdate(str(uuid.uuid4()), call_id, status, error, utc_now_iso()).to_value()
        assert schema_errors("transcription.status", value) == []
    sub = submission(beat2(call_id))
    commands = [
        Command(COMMAND_REPLAY, TEAM, call_id, utc_now_iso(), submission=sub,
                known_job_id=sub.job_id),
        Command(COMMAND_REPLAY, TEAM, call_id, utc_now_iso(), submission=sub),
        Command(COMMAND_REPROCESS, TEAM, call_id, utc_now_iso()),
        Command(COMMAND_EXPIRE, TEAM, call_id, utc_now_iso(), last_change_at=utc_now_iso()),
    ]
    for command in commands:
        assert schema_errors("calls.commands", command.to_value()) == []
        assert Command.from_bytes(orjson.dumps(command.to_value())) == command
    for command in commands:  # what the router writes onto calls.routed
        assert schema_errors("calls.routed", command.to_value()) == []
    assert schema_errors("calls.routed", StatusUpdate(str(uuid.uuid4()), call_id, "transcribed",
                                                      None, utc_now_iso()).to_value()) == []
    headers = dead_letter_headers(topic="t", partition=1, offset=2, reason="ü" * 1500,
                                  stage="route", original=[("request-id", b"r-1")])
    as_text = {k: v.decode() for k, v in headers}  # UTF-8 although the reason was cut
    assert schema_errors("calls.deadletter", as_text) == []
    assert as_text["request-id"] == "r-1" and len(headers[-3][1]) <= 2000


@pytest.mark.parametrize(("topic", "value", "where"), [
    ("transcription.status", {"v": 1, "type": "transcription.status", "jobId": str(uuid.uuid4()),
                              "callId": str(uuid.uuid4()), "status": "failed", "error": None,
                              "time": "2026-06-16T09:05:35Z"}, "error"),
    ("transcription.status", {"v": 2, "type": "transcription.status", "jobId": str(uuid.uuid4()),
                              "callId": str(uuid.uuid4()), "status": "transcribed",
                              "error": None, "time": "2026-06-16T09:05:35Z"}, "v"),
    ("transcription.jobs", {"v": 1, "type": "transcription.job"}, "(value)"),
])
def test_schemas_reject_broken_values(topic: str, value: dict[str, Any], where: str) -> None:
    errors = schema_errors(topic, value)
    assert errors and any(e.startswith(where) for e in errors)


def test_status_parser_agrees_with_the_schema() -> None:
    bad = {"v": 1, "type": "transcription.status", "jobId": str(uuid.uuid4()),
           "callId": str(uuid.uuid4()), "status": "done", "error": None,
           "time": "2026-06-16T09:05:35Z"}
    assert schema_errors("transcription.status", bad)
    with pytest.raises(PoisonMessage, match="status must be one of"):
        StatusUpdate.from_bytes(orjson.dumps(bad))


def test_key_records_match_their_schema() -> None:
    from app.contracts.api_keys import key_record, new_key, revoked, team_record, with_limits

    _, key = new_key(workspace_id=TEAM, team_id=None, label="x", created_at=utc_now_iso())
    for _, value in (key_record(key), key_record(revoked(with_limits(key, 2.5, 5), utc_now_iso())),
                     team_record(TEAM, TEAM, utc_now_iso())):
        assert schema_errors("voix.api-keys", orjson.loads(value)) == []
    secretless = orjson.loads(key_record(key)[1])
    secretless["secret"] = "s"
    assert schema_errors("voix.api-keys", secretless) != []


def test_published_schemas_accept_additive_changes_and_ours_are_complete() -> None:
    """A consumer validating with the published (open) schema keeps working when a field is
    added, in the value and in its call; our strict check refuses a field we did not document."""
    call_id = str(uuid.uuid4())
    result = merge_beat(None, submission(beat2(call_id)), "s/0/0")
    assert result.job is not None
    job = {**result.job, "priority": "high", "call": {"x": 1}}
    state = public_call_state(result.state)
    record = {**state, "call": {**state["call"], "language": "nl"}}
    assert schema_errors("transcription.jobs", job, strict=False) == []
    assert schema_errors("calls.records", record, strict=False) == []
    assert any("priority" in e for e in schema_errors("transcription.jobs", job))
    assert any("language" in e for e in schema_errors("calls.records", record))
    # Open, not lax: a documented field must still have its documented type.
    assert schema_errors("transcription.jobs", {**result.job, "attempt": "1"}, strict=False)
