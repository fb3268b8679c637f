"""Message formats on every topic, with their version, and the job id rule.

Values are JSON objects with a `v` (format version) and a `type`. Keys are UTF-8 strings.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from app.contracts.ids import (
    JOB_ID_NAMESPACE,
    is_rfc3339,
    is_uuid,
    normalise_uuid,
    utc_now_iso,
)
from app.contracts.submission import default_validator

FORMAT_VERSION = 1
SUBMISSION_TYPE = "call.submission"
RECORD_TYPE = "call.record"
JOB_TYPE = "transcription.job"
STATUS_TYPE = "transcription.status"
COMMAND_TYPE = "call.command"

# Statuses the transcriber reports on the status topic.
STATUS_VALUES = ("transcribing", "transcribed", "failed")
# Commands on the worker's control topic.
COMMAND_REPLAY = "replay"
COMMAND_REPROCESS = "reprocess"
COMMAND_EXPIRE = "expire"
COMMANDS = (COMMAND_REPLAY, COMMAND_REPROCESS, COMMAND_EXPIRE)

def call_key(call_id: str) -> bytes:
    """The Kafka key of a call's records on every topic partitioned by call (submissions,
    statuses, commands): the callId, so all of them reach the worker that owns the call."""
    return call_id.encode()


def downstream_key(team_id: str, call_id: str) -> bytes:
    """The Kafka key of a call's records on the topics downstream reads (calls.records,
    transcription.jobs): teamId/callId, so two teams' calls with the same callId never share a
    key (a compacted topic, a table or an upsert sink keyed by it keeps them apart). The
    partition is still the call's (partition_for(callId)), as on every other topic."""
    return f"{team_id}/{call_id}".encode()


def partition_for(call_id: str, partitions: int) -> int:
    """The partition of a call on every topic: Kafka's default (Java) partitioner on the
    callId, murmur2(key) & 0x7fffffff mod partitions."""
    return int(murmur2(call_key(call_id)) & 0x7FFFFFFF) % partitions


# Kafka headers: the request id of the HTTP request a record came from (and W3C trace
# context), on the submission and on what the worker writes because of it.
REQUEST_ID_HEADER = "request-id"
TRACEPARENT_HEADER = "traceparent"
# On a status or command the worker re-keyed onto calls.routed: where it was first read
# (topic/partition/offset), which is what names it for at-least-once redelivery.
SOURCE_HEADER = "voix.source"
# Headers that travel from a record to what the worker writes because of it.
CARRIED_HEADERS = (REQUEST_ID_HEADER, TRACEPARENT_HEADER)

# Bookkeeping in the worker's table state that is not part of a call's public view: which
# record decided the job, and the job as sent (both only for at-least-once redelivery). The
# public view is the value on calls.records and the answer of GET /calls/{callId}.
INTERNAL_STATE_FIELDS = ("jobSource", "job")


def public_call_state(state: dict[str, Any]) -> dict[str, Any]:
    """A call's state as downstream sees it: its record on calls.records, and the answer of
    GET /calls/{callId}."""
    return {k: v for k, v in state.items() if k not in INTERNAL_STATE_FIELDS}


def dumps(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


# The variant nibble of a random UUID (RFC 9562: 10xx) for each hex digit of random bits.
_VARIANT = {f"{n:x}": "89ab"[n & 3] for n in range(16)}


def new_submission_id() -> str:
    """A random (version 4) UUID, spelt as str(uuid.uuid4()) spells it, for a third of the
    cost (one call per request)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_received_second: tuple[int, str] = (-1, "")


def received_now() -> str:
    """utc_now_iso() (RFC 3339 UTC, milliseconds, `Z`); the date and time of day formatted
    once a second."""
    global _received_second
    seconds, millis = divmod(time.time_ns() // 1_000_000, 1000)
    cached, prefix = _received_second
    if seconds != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _received_second = (seconds, prefix)
    return f"{prefix}.{millis:03d}Z"


_JOB_NAMESPACE = JOB_ID_NAMESPACE.bytes


def new_job_id(team_id: str, call_id: str) -> str:
    """job_id_for(team_id, call_id) (the first attempt's job id: a UUID 5 of the team and the
    call), spelt out for the per-request path at a third of uuid.uuid5's cost; a unit test
    holds it to job_id_for."""
    name = f"{team_id.lower()}/{call_id.lower()}/1".encode()
    digest = bytearray(hashlib.sha1(_JOB_NAMESPACE + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
            submission_id=new_submission_id(),
            team_id=team_id,
            key_id=key_id,
            received_at=received_now(),
            job_id=new_job_id(team_id, call["callId"]) if "recordingUrl" in call else None,
            call=call,
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Submission:
        """Parse and check a submissions-topic value; anything unusable is a PoisonMessage."""
        value = _envelope(raw, SUBMISSION_TYPE)
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


# ---- dead letters: the original record, with why and where in its headers ------------------
# As Kafka Connect's dead-letter queues do it: the key and value are the original bytes, so a
# fixed consumer can re-read them as they were; what went wrong is in the headers.
DLQ_TOPIC_HEADER = "voix.dlq.topic"
DLQ_PARTITION_HEADER = "voix.dlq.partition"
DLQ_OFFSET_HEADER = "voix.dlq.offset"
DLQ_REASON_HEADER = "voix.dlq.reason"
DLQ_STAGE_HEADER = "voix.dlq.stage"  # which step refused it: route or merge
DLQ_FAILED_AT_HEADER = "voix.dlq.failed.at"
DLQ_HEADERS = (DLQ_TOPIC_HEADER, DLQ_PARTITION_HEADER, DLQ_OFFSET_HEADER, DLQ_REASON_HEADER,
               DLQ_STAGE_HEADER, DLQ_FAILED_AT_HEADER)
# Longest reason kept in a header (a reason can quote parts of a hostile record).
MAX_REASON_BYTES = 2000


def dead_letter_headers(*, topic: str, partition: int, offset: int, reason: str, stage: str,
                        original: Sequence[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    """The original record's headers (minus dead-letter headers of an earlier failure), then
    where it was read and why it was refused."""
    kept = [(k, v) for k, v in original if k not in DLQ_HEADERS]
    # Cut at a byte bound, then drop a character the cut split: the header stays UTF-8.
    short_reason = reason.encode()[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode()
    return [
        *kept,
        (DLQ_TOPIC_HEADER, topic.encode()),
        (DLQ_PARTITION_HEADER, str(partition).encode()),
        (DLQ_OFFSET_HEADER, str(offset).encode()),
        (DLQ_REASON_HEADER, short_reason),
        (DLQ_STAGE_HEADER, stage.encode()),
        (DLQ_FAILED_AT_HEADER, utc_now_iso().encode()),
    ]


# ---- jobs and records: what downstream reads ------------------------------------------------

def build_job(team_id: str, call: dict[str, Any], job_id: str, created_at: str,
              attempt: int = 1) -> dict[str, Any]:
    """The transcription job (topic transcription.jobs). outgoing and userId are passed as
    sent (or null) so the transcriber can infer direction and agent itself; ingest does not
    guess."""
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


def json_object(raw: bytes | None) -> dict[str, Any]:
    """A record value that must be a JSON object; PoisonMessage otherwise."""
    if raw is None:
        raise PoisonMessage("empty value")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"value is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PoisonMessage("value is not a JSON object")
    return value


def _envelope(raw: bytes | None, expected_type: str) -> dict[str, Any]:
    """A JSON object of our format version and the expected type, or a PoisonMessage."""
    value = json_object(raw)
    if value.get("v") != FORMAT_VERSION or value.get("type") != expected_type:
        raise PoisonMessage(
            f"unsupported format: v={value.get('v')!r} type={value.get('type')!r}")
    return value


def message_type(raw: bytes | None) -> str:
    """The `type` of a value on any of our topics (PoisonMessage if it has none)."""
    value = json_object(raw)
    kind = value.get("type")
    if value.get("v") != FORMAT_VERSION or not isinstance(kind, str):
        raise PoisonMessage(f"unsupported format: v={value.get('v')!r} type={kind!r}")
    return kind


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """What the downstream transcriber reports about a job (topic transcription.status)."""

    job_id: str
    call_id: str
    status: str
    error: str | None
    time: str

    def to_value(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "type": STATUS_TYPE, "jobId": self.job_id,
                "callId": self.call_id, "status": self.status, "error": self.error,
                "time": self.time}

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> StatusUpdate:
        value = _envelope(raw, STATUS_TYPE)
        job_id, call_id, status = value.get("jobId"), value.get("callId"), value.get("status")
        error, time = value.get("error"), value.get("time")
        if not is_uuid(job_id) or not is_uuid(call_id):
            raise PoisonMessage("jobId or callId missing or not a UUID")
        if status not in STATUS_VALUES:
            raise PoisonMessage(f"status must be one of {', '.join(STATUS_VALUES)}, "
                                f"got {status!r}")
        if not is_rfc3339(time):
            raise PoisonMessage("time missing or not an RFC 3339 date-time")
        if error is not None and not isinstance(error, str):
            raise PoisonMessage("error must be a string or null")
        if status == "failed" and not error:
            raise PoisonMessage("a failed status needs an error")
        return cls(job_id=normalise_uuid(str(job_id)), call_id=normalise_uuid(str(call_id)),
                   status=status,
                   error=error, time=str(time))


@dataclass(frozen=True, slots=True)
class Command:
    """A control record for the worker (topic calls.commands), keyed by callId like the
    submissions so that it reaches the worker that owns the call.

    - replay: merge `submission` again; `knownJobId` is the job already on the jobs topic for
      this call (if any), so that no second job is sent.
    - reprocess: send a new transcription job (next attempt) for the call.
    - expire: forget the call if it has not changed since `lastChangeAt`.
    """

    command: str
    team_id: str
    call_id: str
    at: str
    submission: Submission | None = None
    known_job_id: str | None = None
    known_attempt: int = 1
    last_change_at: str | None = None

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {"v": FORMAT_VERSION, "type": COMMAND_TYPE,
                                 "command": self.command, "teamId": self.team_id,
                                 "callId": self.call_id, "at": self.at}
        if self.command == COMMAND_REPLAY:
            assert self.submission is not None
            value["submission"] = self.submission.to_value()
            value["knownJobId"] = self.known_job_id
            value["knownAttempt"] = self.known_attempt
        if self.command == COMMAND_EXPIRE:
            value["lastChangeAt"] = self.last_change_at
        return value

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Command:
        value = _envelope(raw, COMMAND_TYPE)
        command, team_id, call_id, at = (value.get("command"), value.get("teamId"),
                                         value.get("callId"), value.get("at"))
        if command not in COMMANDS:
            raise PoisonMessage(f"command must be one of {', '.join(COMMANDS)}")
        if not is_uuid(team_id) or not is_uuid(call_id) or not is_rfc3339(at):
            raise PoisonMessage("teamId, callId or at missing or malformed")
        submission = None
        known = value.get("knownJobId")
        if command == COMMAND_REPLAY:
            submission = Submission.from_bytes(orjson.dumps(value.get("submission")))
            if known is not None and not is_uuid(known):
                raise PoisonMessage("knownJobId is malformed")
            known_attempt = value.get("knownAttempt", 1)
            if not isinstance(known_attempt, int) or known_attempt < 1:
                raise PoisonMessage("knownAttempt must be a positive integer")
        else:
            known_attempt = 1
        last_change = value.get("lastChangeAt")
        if command == COMMAND_EXPIRE and not is_rfc3339(last_change):
            raise PoisonMessage("lastChangeAt missing or malformed")
        return cls(command=str(command), team_id=normalise_uuid(str(team_id)),
                   call_id=normalise_uuid(str(call_id)), at=str(at), submission=submission,
                   known_job_id=known, known_attempt=known_attempt,
                   last_change_at=last_change)
