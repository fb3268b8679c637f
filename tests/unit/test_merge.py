"""The merge of beats, a pure function: every rule about a call's state and its one job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.contracts.ids import job_id_for
from app.contracts.messages import StatusUpdate, Submission
from app.worker.merge import (
    FAILED,
    RECEIVED,
    TRANSCRIBED,
    TRANSCRIBING,
    apply_reprocess,
    apply_status,
    is_expired,
    merge_beat,
)
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


# ---- lifecycle: statuses, replay with a known job, reprocess, expiry ----------------------

def status(state: dict[str, Any], value: str, error: str | None = None,
           at: str = "2026-06-16T09:10:00.000Z", job_id: str | None = None) -> StatusUpdate:
    return StatusUpdate(job_id=job_id or state["jobId"], call_id=state["callId"], status=value,
                        error=error, time=at)


def test_status_transcribed_is_the_last_transition_with_its_time() -> None:
    call_id = str(uuid.uuid4())
    state, _ = run(beat1(call_id), beat2(call_id))
    assert [h["status"] for h in state["history"]] == [RECEIVED, TRANSCRIBING]
    result = apply_status(state, status(state, TRANSCRIBED, at="2026-06-16T09:20:00.000Z"))
    assert result.changed and result.job is None
    assert result.state["status"] == TRANSCRIBED
    assert [(h["status"], h["at"]) for h in result.state["history"]][-1] == (
        TRANSCRIBED, "2026-06-16T09:20:00.000Z")
    assert result.state["updatedAt"] == "2026-06-16T09:20:00.000Z"


def test_status_failed_keeps_the_reason_and_a_later_success_clears_it() -> None:
    state, _ = run(beat2(str(uuid.uuid4())))
    failed = apply_status(state, status(state, FAILED, error="recording not found")).state
    assert failed["status"] == FAILED and failed["error"] == "recording not found"
    assert failed["history"][-1]["error"] == "recording not found"
    ok = apply_status(failed, status(failed, TRANSCRIBED, at="2026-06-16T09:30:00.000Z")).state
    assert ok["status"] == TRANSCRIBED and ok["error"] is None


def test_repeated_or_backward_status_changes_nothing() -> None:
    state, _ = run(beat2(str(uuid.uuid4())))
    done = apply_status(state, status(state, TRANSCRIBED)).state
    assert not apply_status(done, status(done, TRANSCRIBED)).changed
    assert not apply_status(done, status(done, TRANSCRIBING)).changed
    assert not apply_status(done, status(done, FAILED, error="late")).changed


def test_status_for_a_job_of_another_call_is_refused() -> None:
    state, _ = run(beat2(str(uuid.uuid4())))
    with pytest.raises(ValueError, match="is not a job of call"):
        apply_status(state, status(state, TRANSCRIBED, job_id=str(uuid.uuid4())))


def test_status_without_a_job_is_refused() -> None:
    state, _ = run(beat1(str(uuid.uuid4())))
    with pytest.raises(ValueError):
        apply_status(state, StatusUpdate(job_id=str(uuid.uuid4()), call_id=state["callId"],
                                         status=TRANSCRIBED, error=None,
                                         time="2026-06-16T09:10:00Z"))


def test_replay_with_a_known_job_records_it_and_sends_nothing() -> None:
    call_id = str(uuid.uuid4())
    known = job_id_for(TEAM, call_id)
    result = merge_beat(None, sub(beat2(call_id)), "commands/0/5", known_job_id=known)
    assert result.job is None
    assert result.state["jobId"] == known and result.state["status"] == TRANSCRIBING
    # ...and a redelivery of that replay command does not send one either.
    again = merge_beat(result.state, sub(beat2(call_id)), "commands/0/5", known_job_id=known)
    assert again.job is None


def test_replay_without_a_known_job_sends_the_first_one() -> None:
    call_id = str(uuid.uuid4())
    result = merge_beat(None, sub(beat2(call_id)), "commands/0/5", known_job_id=None)
    assert result.job is not None and result.job["jobId"] == job_id_for(TEAM, call_id)


def test_reprocess_sends_a_new_attempt_and_redelivery_resends_it() -> None:
    call_id = str(uuid.uuid4())
    state, jobs = run(beat2(call_id))
    state = apply_status(state, status(state, FAILED, error="boom")).state
    first = apply_reprocess(state, "2026-06-17T10:00:00.000Z", "commands/2/7")
    assert first.job is not None and first.job["attempt"] == 2
    assert first.job["jobId"] == job_id_for(TEAM, call_id, 2) != jobs[0]["jobId"]
    assert first.state["status"] == TRANSCRIBING and first.state["error"] is None
    assert first.state["history"][-1] == {"status": TRANSCRIBING, "at": "2026-06-17T10:00:00.000Z",
                                          "jobId": first.job["jobId"], "attempt": 2}
    redelivered = apply_reprocess(first.state, "2026-06-17T10:00:00.000Z", "commands/2/7")
    assert redelivered.job == first.job and not redelivered.changed
    second = apply_reprocess(first.state, "2026-06-17T11:00:00.000Z", "commands/2/9")
    assert second.job is not None and second.job["attempt"] == 3
    # A late status about attempt 1 no longer moves the call.
    late = apply_status(second.state, status(state, TRANSCRIBED, job_id=jobs[0]["jobId"]))
    assert not late.changed and late.state["status"] == TRANSCRIBING


def test_reprocess_without_a_recording_is_refused() -> None:
    state, _ = run(beat1(str(uuid.uuid4())))
    with pytest.raises(ValueError, match="no recording"):
        apply_reprocess(state, "2026-06-17T10:00:00.000Z", "commands/0/1")


def test_expiry_counts_from_the_last_change() -> None:
    state, _ = run(beat1(str(uuid.uuid4())))  # updatedAt 2026-06-16T09:06:00Z
    last = datetime(2026, 6, 16, 9, 6, tzinfo=UTC)
    assert not is_expired(state, last + timedelta(seconds=59), ttl_s=60)
    assert is_expired(state, last + timedelta(seconds=60), ttl_s=60)
    later = apply_status(run(beat2(state["callId"]))[0],
                         status(run(beat2(state["callId"]))[0], TRANSCRIBED,
                                at="2026-06-16T10:00:00.000Z")).state
    assert not is_expired(later, last + timedelta(seconds=120), ttl_s=60)


def test_redelivered_job_is_the_job_as_first_sent() -> None:
    # The table can be restored ahead of the committed offset: a later beat was merged, then
    # the deciding record comes again. The resent job must be identical, not rebuilt.
    call_id = str(uuid.uuid4())
    first = merge_beat(None, sub(beat2(call_id)), "t/1/5")
    user = str(uuid.uuid4())
    later = merge_beat(first.state, sub(beat2(call_id, userId=user)), "t/1/6")
    redelivered = merge_beat(later.state, sub(beat2(call_id)), "t/1/5")
    assert first.job is not None and first.job["userId"] is None
    assert redelivered.job == first.job
    assert redelivered.state["call"]["userId"] == user  # the record keeps the later value
