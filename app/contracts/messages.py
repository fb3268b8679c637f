"""Message formats on every topic, with their version, and the job id rule.

Values are JSON objects with a `v` (format version) and a `type`. Keys are UTF-8 strings.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from app.contracts.submission import default_validator, is_rfc3339, is_uuid

FORMAT_VERSION = 1
SUBMISSION_TYPE = "call.submission"
RECORD_TYPE = "call.record"
JOB_TYPE = "transcription.job"
DEADLETTER_TYPE = "deadletter"

# Fixed namespace so that jobIds are the same on every edge, worker and replay.
JOB_ID_NAMESPACE = uuid.UUID("6f1c2b0e-3f7a-5d4e-9a61-7c0b8e2d4f10")


def job_id_for(team_id: str, call_id: str, attempt: int = 1) -> str:
    """Deterministic per (team, call, attempt): every retry of a finishing beat gets the same id."""
    return str(uuid.uuid5(JOB_ID_NAMESPACE, f"{team_id.lower()}/{call_id.lower()}/{attempt}"))


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_key(team_id: str, call_id: str) -> str:
    """The key of a call in the worker's table and on the compacted records topic."""
    return f"{team_id.lower()}/{call_id.lower()}"


def dumps(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


class PoisonMessage(ValueError):
    """A record that can never be processed; it goes to the dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Submission:
    """One beat as it travels on the submissions topic."""

    submission_id: str
    team_id: str
    key_id: str
    received_at: str
    job_id: str | None
    call: dict[str, Any]

    @property
    def call_id(self) -> str:
        return str(self.call["callId"])

    def to_value(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "type": SUBMISSION_TYPE,
            "submissionId": self.submission_id,
            "teamId": self.team_id,
            "keyId": self.key_id,
            "receivedAt": self.received_at,
            "jobId": self.job_id,
            "call": self.call,
        }

    @classmethod
    def new(cls, *, team_id: str, key_id: str, call: dict[str, Any]) -> Submission:
        return cls(
            submission_id=str(uuid.uuid4()),
            team_id=team_id,
            key_id=key_id,
            received_at=utc_now_iso(),
            job_id=job_id_for(team_id, call["callId"]) if "recordingUrl" in call else None,
            call=call,
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Submission:
        """Parse and check a submissions-topic value; anything unusable is a PoisonMessage."""
        if raw is None:
            raise PoisonMessage("empty value")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise PoisonMessage(f"value is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise PoisonMessage("value is not a JSON object")
        if value.get("v") != FORMAT_VERSION or value.get("type") != SUBMISSION_TYPE:
            raise PoisonMessage(
                f"unsupported format: v={value.get('v')!r} type={value.get('type')!r}"
            )
        call = value.get("call")
        problems = default_validator().problems(call)
        if problems:
            detail = "; ".join(f"{p.field} {p.problem}" for p in problems)
            raise PoisonMessage(f"call does not match the submission schema: {detail}")
        assert isinstance(call, dict)
        team_id, received_at = value.get("teamId"), value.get("receivedAt")
        if not is_uuid(team_id) or not is_rfc3339(received_at):
            raise PoisonMessage("teamId or receivedAt missing or malformed")
        job_id = value.get("jobId")
        if job_id is not None and not is_uuid(job_id):
            raise PoisonMessage("jobId is malformed")
        return cls(
            submission_id=str(value.get("submissionId", "")),
            team_id=str(team_id),
            key_id=str(value.get("keyId", "")),
            received_at=str(received_at),
            job_id=job_id,
            call=call,
        )


def deadletter_value(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
    reason: str,
) -> dict[str, Any]:
    """A dead letter keeps the original bytes (as text where possible) and where they came from."""
    return {
        "v": FORMAT_VERSION,
        "type": DEADLETTER_TYPE,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "reason": reason,
        "key": None if key is None else key.decode("utf-8", "replace"),
        "value": None if value is None else value.decode("utf-8", "replace"),
        "failedAt": utc_now_iso(),
    }
