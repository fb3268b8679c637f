"""The merge of beats: a pure function, so every rule about a call lives here and is tested alone.

Rules:
- A field present in a later beat overwrites; an absent field keeps its earlier value
  (so a late retry of beat 1 never erases the recording).
- The first time the merged call has a recordingUrl, exactly one transcription job is emitted,
  with the jobId the edge already returned to the client.
- Retries and replays never emit a second job; later changes only update the record.
- Time comes from the submission (receivedAt), never from the clock, so a replay derives
  the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.contracts.messages import (
    FORMAT_VERSION,
    JOB_TYPE,
    RECORD_TYPE,
    Submission,
    job_id_for,
)

# Fields that describe the call; teamId is resolved by the edge and kept at the top level.
CALL_FIELDS = ("callId", "from", "to", "startTime", "outgoing", "duration", "userId",
               "recordingUrl")
RECEIVED = "received"
TRANSCRIBING = "transcribing"


@dataclass(frozen=True, slots=True)
class MergeResult:
    state: dict[str, Any]
    job: dict[str, Any] | None
    changed: bool


def merge_beat(
    previous: dict[str, Any] | None, submission: Submission, source: str | None = None
) -> MergeResult:
    """Fold one beat into the call's state; return the new state and the job to emit, if any.

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
        "jobSource": prev.get("jobSource"),
        "jobCreatedAt": prev.get("jobCreatedAt"),
        "createdAt": prev.get("createdAt", received_at),
        "updatedAt": prev.get("updatedAt", received_at),
    }
    job: dict[str, Any] | None = None
    if state["jobId"] is None and "recordingUrl" in call:
        # The edge computed the same id; recompute if an older producer left it out.
        job_id = submission.job_id or job_id_for(submission.team_id, submission.call_id)
        state["jobId"] = job_id
        state["status"] = TRANSCRIBING
        state["history"].append({"status": TRANSCRIBING, "at": received_at})
        state["jobSource"] = source
        state["jobCreatedAt"] = received_at
        job = build_job(submission.team_id, call, job_id, received_at)
    elif source is not None and state["jobSource"] == source:
        # Redelivery of the record that decided the job: send it again, never lose it.
        job = build_job(submission.team_id, call, state["jobId"], state["jobCreatedAt"])

    changed = previous is None or call != prev["call"] or state["jobId"] != prev.get("jobId")
    if changed:
        state["updatedAt"] = received_at
    return MergeResult(state=state, job=job, changed=changed)


def build_job(team_id: str, call: dict[str, Any], job_id: str, created_at: str,
              attempt: int = 1) -> dict[str, Any]:
    """The transcription job. outgoing and userId are passed as sent (or null) so the
    transcriber can infer direction and agent itself; ingest does not guess."""
    return {
        "v": FORMAT_VERSION,
        "type": JOB_TYPE,
        "jobId": job_id,
        "attempt": attempt,
        "teamId": team_id,
        "callId": call["callId"],
        "recordingUrl": call["recordingUrl"],
        "from": call["from"],
        "to": call["to"],
        "startTime": call["startTime"],
        "outgoing": call.get("outgoing"),
        "duration": call.get("duration"),
        "userId": call.get("userId"),
        "createdAt": created_at,
    }
