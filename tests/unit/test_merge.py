"""The merge of beats, a pure function: every rule about a call's state and its one job."""

from __future__ import annotations

import uuid
from typing import Any

from app.contracts.messages import Submission, job_id_for
from app.worker.merge import RECEIVED, TRANSCRIBING, merge_beat
from tests.factories import beat1, beat2

TEAM = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def sub(call: dict[str, Any], at: str = "2026-06-16T09:06:00.000Z") -> Submission:
    job = job_id_for(TEAM, call["callId"]) if "recordingUrl" in call else None
    return Submission(submission_id=str(uuid.uuid4()), team_id=TEAM, key_id="k",
                      received_at=at, job_id=job, call=call)


def run(*beats: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state, jobs = None, []
    for i, body in enumerate(beats):
        result = merge_beat(state, sub(body), source=f"t/0/{i}")
        state = result.state
        if result.job:
            jobs.append(result.job)
    assert state is not None
    return state, jobs


def test_beat1_registers_without_job() -> None:
    call_id = str(uuid.uuid4())
    state, jobs = run(beat1(call_id))
    assert jobs == []
    assert state["status"] == RECEIVED
    assert state["jobId"] is None
    assert state["call"]["callId"] == call_id


def test_two_beats_one_job_with_latest_values() -> None:
    call_id = str(uuid.uuid4())
    state, jobs = run(beat1(call_id, to="+31200000000"), beat2(call_id, outgoing=True))
    assert len(jobs) == 1
    job = jobs[0]
    assert job["jobId"] == job_id_for(TEAM, call_id) == state["jobId"]
    assert job["outgoing"] is True and job["to"] == "+31201234567" and job["duration"] == 42
    assert state["status"] == TRANSCRIBING
    assert [h["status"] for h in state["history"]] == [RECEIVED, TRANSCRIBING]


def test_single_finishing_beat_emits_job() -> None:
    call_id = str(uuid.uuid4())
    _, jobs = run(beat2(call_id))
    assert len(jobs) == 1


def test_retries_never_emit_a_second_job() -> None:
    call_id = str(uuid.uuid4())
    _, jobs = run(beat1(call_id), beat2(call_id), beat2(call_id), beat2(call_id))
    assert len(jobs) == 1


def test_late_beat1_keeps_the_recording_and_emits_nothing() -> None:
    call_id = str(uuid.uuid4())
    state, jobs = run(beat2(call_id), beat1(call_id))
    assert len(jobs) == 1
    assert state["call"]["recordingUrl"].endswith(f"{call_id}.wav?sig=secret")
    assert state["call"]["duration"] == 42
    assert state["status"] == TRANSCRIBING


def test_later_beat_updates_record_but_not_job() -> None:
    call_id = str(uuid.uuid4())
    state, jobs = run(beat2(call_id), beat2(call_id, duration=99))
    assert len(jobs) == 1 and jobs[0]["duration"] == 42
    assert state["call"]["duration"] == 99


def test_outgoing_and_user_are_null_when_not_sent() -> None:
    call_id = str(uuid.uuid4())
    body = beat2(call_id)
    del body["outgoing"]
    _, jobs = run(body)
    assert jobs[0]["outgoing"] is None and jobs[0]["userId"] is None


def test_identical_retry_is_not_a_change() -> None:
    call_id = str(uuid.uuid4())
    first = merge_beat(None, sub(beat1(call_id)), "t/0/0")
    again = merge_beat(first.state, sub(beat1(call_id), at="2026-06-16T09:07:00.000Z"), "t/0/1")
    assert first.changed and not again.changed
    assert again.state["updatedAt"] == first.state["updatedAt"]


def test_redelivery_of_the_deciding_record_resends_the_same_job() -> None:
    # At-least-once: the table change landed but the job may not have; the record comes again.
    call_id = str(uuid.uuid4())
    first = merge_beat(None, sub(beat2(call_id)), "t/3/17")
    redelivered = merge_beat(first.state, sub(beat2(call_id)), "t/3/17")
    other_retry = merge_beat(first.state, sub(beat2(call_id)), "t/3/18")
    assert first.job is not None and redelivered.job == first.job
    assert other_retry.job is None
    assert not redelivered.changed


def test_merge_does_not_mutate_its_input() -> None:
    call_id = str(uuid.uuid4())
    first = merge_beat(None, sub(beat1(call_id)), "t/0/0")
    snapshot = repr(first.state)
    merge_beat(first.state, sub(beat2(call_id)), "t/0/1")
    assert repr(first.state) == snapshot


def test_job_id_is_deterministic_and_team_scoped() -> None:
    call_id = str(uuid.uuid4())
    other_team = "3f2504e0-4f89-41d3-9a0c-0305e82c3399"
    assert job_id_for(TEAM, call_id) == job_id_for(TEAM.upper(), call_id.upper())
    assert job_id_for(TEAM, call_id) != job_id_for(other_team, call_id)
    assert job_id_for(TEAM, call_id, attempt=2) != job_id_for(TEAM, call_id)
