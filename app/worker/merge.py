"""The merge of beats: a pure function, so every rule about a call lives here and is tested alone.

Rules:
- A field present in a later beat overwrites; an absent field keeps its earlier value
  (so a late retry of beat 1 never erases the recording).
- The first time the merged call has a recordingUrl, exactly one transcription job is emitted,
  with the jobId the edge already returned to the client.
- Retries and replays never emit a second job; later changes only update the record.
- Time comes from the submission (receivedAt), never from the clock, so a replay derives
  the same state.
- Lifecycle: received -> transcribing -> transcribed | failed. The last two come from the
  transcriber's status messages (apply_status); every transition is kept in `history`.
- A replayed beat that knows the call's job already exists (knownJobId) records that job
  instead of sending a second one; a reprocess sends a new job with the next attempt number.
- A call expires state_ttl after its last change (updatedAt); is_expired decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.contracts.ids import job_id_for, parse_time
from app.contracts.messages import (
    FORMAT_VERSION,
    RECORD_TYPE,
    StatusUpdate,
    Submission,
    build_job,
)

# Fields that describe the call; teamId is resolved by the edge and kept at the top level.
CALL_FIELDS = ("callId", "from", "to", "startTime", "outgoing", "duration", "userId",
               "recordingUrl")
RECEIVED = "received"
TRANSCRIBING = "transcribing"
TRANSCRIBED = "transcribed"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class MergeResult:
    state: dict[str, Any]
    job: dict[str, Any] | None
    changed: bool


def merge_beat(
    previous: dict[str, Any] | None, submission: Submission, source: str | None = None,
    known_job_id: str | None = None, known_attempt: int = 1,
) -> MergeResult:
    """Fold one beat into the call's state; return the new state and the job to emit, if any.

    `known_job_id`/`known_attempt`: set by a replay when the jobs topic already has this call's
    job; the state records it and no job is sent.

    `source` names the record being merged (topic/partition/offset). The state remembers which
    record decided the job, so that when that same record is processed again after a crash
    (at-least-once redelivery) the job is sent again rather than lost: same jobId, same content.
    """
    prev: dict[str, Any] = previous or {}
    call = dict(prev.get("call", {}))
    call.update({name: submission.call[name] for name in CALL_FIELDS if name in submission.call})
    received_at = submission.received_at

    state: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "type": RECORD_TYPE,
        "teamId": submission.team_id,
        "callId": submission.call_id,
        "status": prev.get("status", RECEIVED),
        "jobId": prev.get("jobId"),
        "call": call,
        "history": list(prev.get("history", [{"status": RECEIVED, "at": received_at}])),
        "attempt": prev.get("attempt", 1),
        "error": prev.get("error"),
        "jobSource": prev.get("jobSource"),
        "jobCreatedAt": prev.get("jobCreatedAt"),
        "job": prev.get("job"),
        "createdAt": prev.get("createdAt", received_at),
        "updatedAt": prev.get("updatedAt", received_at),
    }
    job: dict[str, Any] | None = None
    if state["jobId"] is None and "recordingUrl" in call and known_job_id is not None:
        # A replay of a call whose job is already on the jobs topic: remember it, send nothing.
        state["jobId"] = known_job_id
        state["attempt"] = known_attempt
        state["status"] = TRANSCRIBING
        state["history"].append({"status": TRANSCRIBING, "at": received_at,
                                 "jobId": known_job_id})
        state["jobCreatedAt"] = received_at
    elif state["jobId"] is None and "recordingUrl" in call:
        # The edge computed the same id; recompute if an older producer left it out.
        job_id = submission.job_id or job_id_for(submission.team_id, submission.call_id)
        state["jobId"] = job_id
        state["status"] = TRANSCRIBING
        state["history"].append({"status": TRANSCRIBING, "at": received_at, "jobId": job_id})
        state["jobSource"] = source
        state["jobCreatedAt"] = received_at
        job = build_job(submission.team_id, call, job_id, received_at)
        state["job"] = job
    elif source is not None and state["jobSource"] == source:
        # Redelivery of the record that decided the job: send it again, never lose it. The job
        # as first sent, not rebuilt: later beats may already have changed the call.
        job = state["job"] or build_job(submission.team_id, call, state["jobId"],
                                        state["jobCreatedAt"])

    changed = previous is None or call != prev["call"] or state["jobId"] != prev.get("jobId")
    if changed:
        state["updatedAt"] = received_at
    return MergeResult(state=state, job=job, changed=changed)


def apply_status(previous: dict[str, Any], status: StatusUpdate) -> MergeResult:
    """Fold the transcriber's report about a job into the call's state.

    Only a report about the call's current job moves it: transcribing -> transcribed | failed,
    and failed -> transcribed (the transcriber retried). A report about an earlier attempt's
    job, a repeat, or a step back (e.g. transcribing after transcribed) changes nothing.
    Raises ValueError if the job is not this call's (the caller dead-letters it).
    """
    if previous.get("jobId") != status.job_id:
        known = {h.get("jobId") for h in previous.get("history", [])}
        if status.job_id in known:
            return MergeResult(state=previous, job=None, changed=False)
        raise ValueError(f"job {status.job_id} is not a job of call {status.call_id}")
    current = str(previous.get("status"))
    allowed = {
        TRANSCRIBING: {TRANSCRIBED, FAILED},
        FAILED: {TRANSCRIBED},
    }.get(current, set())
    if status.status not in allowed:
        return MergeResult(state=previous, job=None, changed=False)
    state = dict(previous)
    entry: dict[str, Any] = {"status": status.status, "at": status.time,
                             "jobId": status.job_id}
    if status.error is not None:
        entry["error"] = status.error
    state["history"] = [*previous.get("history", []), entry]
    state["status"] = status.status
    state["error"] = status.error if status.status == FAILED else None
    state["updatedAt"] = status.time
    return MergeResult(state=state, job=None, changed=True)


def apply_reprocess(previous: dict[str, Any], requested_at: str, source: str) -> MergeResult:
    """Deliberately send a new transcription job for the call: the next attempt, with its own
    jobId. The command record that decided it is remembered like a deciding beat, so its
    redelivery resends the same job instead of starting yet another attempt. Raises ValueError
    when the call has no recording yet (nothing to transcribe)."""
    call = previous.get("call", {})
    team_id = previous["teamId"]
    if previous.get("jobSource") == source and previous.get("jobId"):
        job = previous.get("job") or build_job(team_id, call, previous["jobId"],
                                               previous["jobCreatedAt"], previous.get("attempt", 1))
        return MergeResult(state=previous, job=job, changed=False)
    if "recordingUrl" not in call:
        raise ValueError(f"call {call.get('callId')} has no recording yet; nothing to reprocess")
    attempt = int(previous.get("attempt", 1)) + 1
    job_id = job_id_for(team_id, call["callId"], attempt)
    job = build_job(team_id, call, job_id, requested_at, attempt)
    state = dict(previous)
    state.update({
        "job": job, "jobId": job_id, "attempt": attempt, "status": TRANSCRIBING, "error": None,
        "jobSource": source, "jobCreatedAt": requested_at, "updatedAt": requested_at,
        "history": [*previous.get("history", []),
                    {"status": TRANSCRIBING, "at": requested_at, "jobId": job_id,
                     "attempt": attempt}],
    })
    return MergeResult(state=state, job=job, changed=True)


def is_expired(state: dict[str, Any], now: datetime, ttl_s: float) -> bool:
    """A call expires ttl_s after its last change (updatedAt)."""
    return now - parse_time(state["updatedAt"]) >= timedelta(seconds=ttl_s)
