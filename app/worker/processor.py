"""The worker's processing, without Faust: records in, the calls they touched and the records
to send out.

`Processor.process(records, read)` takes a batch of input records (submissions, transcriber
statuses, commands) and a way to read a call's current state from the table, and returns a
`BatchResult`: the new state of every call the batch changed (each written back once, however
many of its beats the batch held) and the outputs (jobs, merged records, dead letters) in the
order they must be sent. Nothing here awaits, sends or touches Faust: the Faust wiring
(app.worker.app) reads the table, writes the result and sends the outputs.

Every record is parsed once. Submissions were validated against the full schema by the edge;
here they get the cheap checks the merge relies on (types and ids), so a malformed record
is still rejected instead of crashing the worker.

Unusable input has one type, PoisonMessage (from the parsers, the merge's own ValueErrors, a
status or command about a call this worker does not know), caught in one place
(`_process_one`): the record becomes a dead letter and the batch goes on. More than
`DeadLetterLimit.limit` dead letters within its window stop the worker (TooManyDeadLetters):
a flood of them means something upstream is broken, and dead-lettering the whole topic
quietly would be worse than stopping.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.contracts.ids import is_rfc3339, is_uuid, normalise_uuid
from app.contracts.messages import (
    CARRIED_HEADERS,
    COMMAND_EXPIRE,
    COMMAND_REPLAY,
    COMMAND_REPROCESS,
    COMMAND_TYPE,
    FORMAT_VERSION,
    REQUEST_ID_HEADER,
    SOURCE_HEADER,
    STATUS_TYPE,
    SUBMISSION_TYPE,
    TRACEPARENT_HEADER,
    Command,
    PoisonMessage,
    StatusUpdate,
    Submission,
    call_key,
    dead_letter_headers,
    downstream_key,
    dumps,
    json_object,
    partition_for,
    public_call_state,
)
from app.contracts.topics import TopicNames
from app.ops.logging import RequestContext, handling
from app.worker.merge import MergeResult, apply_reprocess, apply_status, is_expired, merge_beat

log = logging.getLogger("voix.worker")

Header = tuple[str, bytes]
# A call's table value: teamId -> that team's call state (two teams may share a callId).
Teams = dict[str, Any]


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One consumed record, as the processor needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()

    @property
    def source(self) -> str:
        """How the merge names the record that decided a job (its redelivery resends the job):
        where it was first read, which for a routed status or command is its original topic,
        partition and offset (so a record routed twice is still one record)."""
        for name, value in self.headers:
            if name == SOURCE_HEADER:
                return value.decode("utf-8", "replace")
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def origin(self) -> tuple[str, int, int]:
        """(topic, partition, offset) where the record was first read (see `source`)."""
        topic, partition, offset = self.source.rsplit("/", 2)
        try:
            return topic, int(partition), int(offset)
        except ValueError:  # a foreign header we cannot read: where we read it
            return self.topic, self.partition, self.offset

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None

    @property
    def carried(self) -> list[Header]:
        """The headers that travel on to what is written because of this record."""
        return [(k, v) for k, v in self.headers if k in CARRIED_HEADERS]

    @property
    def context(self) -> RequestContext | None:
        """The request the record came from, for the log lines about it."""
        request_id = self.header(REQUEST_ID_HEADER)
        return RequestContext(request_id, self.header(TRACEPARENT_HEADER)) if request_id else None


@dataclass(frozen=True, slots=True)
class Output:
    """A record to produce: plain bytes, so headers can be added without reshaping callers."""

    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone
    headers: list[Header] = field(default_factory=list)
    partition: int | None = None  # None: the producer's partitioner on the key


@dataclass(frozen=True, slots=True)
class CallWrite:
    """A call's new table value (None: delete it, a changelog tombstone), and the partition of
    the records that changed it: the table partition the call lives in."""

    teams: Teams | None
    partition: int


@dataclass(slots=True)
class BatchResult:
    writes: dict[str, CallWrite] = field(default_factory=dict)  # by callId
    outputs: list[Output] = field(default_factory=list)
    dead_letters: int = 0


class TooManyDeadLetters(RuntimeError):
    """More dead letters in the window than the limit allows: stop, loudly."""


class DeadLetterLimit:
    """At most `limit` dead letters in any `window_s` seconds (limit 0: no limit)."""

    def __init__(self, limit: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._times: deque[float] = deque()

    def count(self, reason: str) -> None:
        if not self.limit:
            return
        now = self._clock()
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        if len(self._times) > self.limit:
            raise TooManyDeadLetters(
                f"{len(self._times)} dead letters within {self.window_s:g} s (limit "
                f"{self.limit}); last: {reason}")


_REQUIRED_TEXT = ("from", "to", "startTime")


def parse_submission_value(value: dict[str, Any]) -> Submission:
    """A Submission from a parsed submissions-topic value, with the checks the merge needs.

    The edge validated the call against the full schema before writing it; this checks what the
    worker relies on (ids, times, the fields a job is built from), cheaply."""
    if value.get("v") != FORMAT_VERSION or value.get("type") != SUBMISSION_TYPE:
        raise PoisonMessage(
            f"unsupported format: v={value.get('v')!r} type={value.get('type')!r}")
    call = value.get("call")
    if not isinstance(call, dict):
        raise PoisonMessage("call does not match the submission schema: call must be an object")
    problems = [f"{name} must be a string" for name in _REQUIRED_TEXT
                if not isinstance(call.get(name), str)]
    if not is_uuid(call.get("callId")):
        problems.insert(0, "callId must be a UUID")
    url = call.get("recordingUrl")
    if url is not None and not isinstance(url, str):
        problems.append("recordingUrl must be a string")
    if problems:
        raise PoisonMessage(f"call does not match the submission schema: {'; '.join(problems)}")
    team_id, received_at, job_id = value.get("teamId"), value.get("receivedAt"), value.get("jobId")
    if not is_uuid(team_id) or not is_rfc3339(received_at):
        raise PoisonMessage("teamId or receivedAt missing or malformed")
    if job_id is not None and not is_uuid(job_id):
        raise PoisonMessage("jobId is malformed")
    return Submission(submission_id=str(value.get("submissionId", "")), team_id=str(team_id),
                      key_id=str(value.get("keyId", "")), received_at=str(received_at),
                      job_id=job_id, call=call)


# Reads a call's table value (or None) from the table partition given.
TableRead = Callable[[str, int], "Teams | None"]


class _Batch:
    """The calls one batch touched: each read from the table once, written back once."""

    def __init__(self, read: TableRead) -> None:
        self._read = read
        self._teams: dict[str, Teams] = {}
        self._changed: dict[str, int] = {}  # callId -> partition

    def teams(self, call_id: str, partition: int) -> Teams:
        teams = self._teams.get(call_id)
        if teams is None:
            teams = self._teams[call_id] = dict(self._read(call_id, partition) or {})
        return teams

    def put(self, call_id: str, partition: int, team_id: str, state: dict[str, Any]) -> None:
        self.teams(call_id, partition)[team_id] = state
        self._changed[call_id] = partition

    def forget(self, call_id: str, partition: int, team_id: str) -> None:
        self.teams(call_id, partition).pop(team_id, None)
        self._changed[call_id] = partition

    def writes(self) -> dict[str, CallWrite]:
        return {call_id: CallWrite(self._teams[call_id] or None, partition)
                for call_id, partition in self._changed.items()}


class Processor:
    """Merges submissions, statuses and commands into call states and says what to send."""

    def __init__(self, topics: TopicNames, state_ttl_s: float, partitions: int,
                 dead_letter_limit: DeadLetterLimit | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.topics = topics
        self.state_ttl_s = state_ttl_s
        self.partitions = partitions
        self.dead_letter_limit = dead_letter_limit or DeadLetterLimit(0)
        self._now = now

    def process(self, records: Iterable[InputRecord], read: TableRead) -> BatchResult:
        """Process a batch in order; `read(callId, partition)` gives a call's table value."""
        batch = _Batch(read)
        result = BatchResult()
        for record in records:
            self._process_one(record, batch, result.outputs)
        result.writes = batch.writes()
        result.dead_letters = sum(1 for o in result.outputs if o.topic == self.topics.deadletter)
        return result

    def route(self, records: Iterable[InputRecord]) -> list[Output]:
        """Re-key statuses and commands onto their call's partition of calls.routed, whatever
        partitioner (librdkafka's, a wrong key, another partition count) their producer used:
        value bytes unchanged, headers kept, plus where the record was first read. A record
        without a readable callId cannot reach any call: a dead letter (stage "route")."""
        out: list[Output] = []
        for record in records:
            with handling(record.context):
                try:
                    call_id = json_object(record.value).get("callId")
                    if not is_uuid(call_id):
                        raise PoisonMessage("no callId (a UUID) to route the record by")
                except PoisonMessage as exc:
                    out.append(self._dead_letter(record, str(exc), stage="route"))
                    continue
                call_id = normalise_uuid(str(call_id))
                headers = list(record.headers)
                if record.header(SOURCE_HEADER) is None:
                    headers.append((SOURCE_HEADER, record.source.encode()))
                out.append(Output(self.topics.routed, call_key(call_id), record.value, headers,
                                  partition_for(call_id, self.partitions)))
        return out

    def _dead_letter(self, record: InputRecord, reason: str, stage: str) -> Output:
        """The original bytes, as they were; why, and where the record was first written
        (for a routed status, its place on transcription.status), in the headers."""
        topic, partition, offset = record.origin
        log.error("dead-lettering topic=%s partition=%d offset=%d: %s", topic, partition,
                  offset, reason, extra={"topic": topic, "partition": partition,
                                         "offset": offset, "stage": stage})
        self.dead_letter_limit.count(reason)
        return Output(self.topics.deadletter, record.key, record.value, dead_letter_headers(
            topic=topic, partition=partition, offset=offset, reason=reason, stage=stage,
            original=record.headers))

    # ---- one record -----------------------------------------------------------------------

    def _process_one(self, record: InputRecord, batch: _Batch, out: list[Output]) -> None:
        with handling(record.context):
            self._process_in_context(record, batch, out)

    def _process_in_context(self, record: InputRecord, batch: _Batch,
                            out: list[Output]) -> None:
        try:
            value = json_object(record.value)
            kind = value.get("type")
            if value.get("v") != FORMAT_VERSION or not isinstance(kind, str):
                raise PoisonMessage(f"unsupported format: v={value.get('v')!r} type={kind!r}")
            if kind == SUBMISSION_TYPE:
                self._submission(parse_submission_value(value), record, batch, out)
            elif kind == STATUS_TYPE:
                # Statuses and commands are rare: their contract parsers read the bytes again.
                self._status(StatusUpdate.from_bytes(record.value), record, batch, out)
            elif kind == COMMAND_TYPE:
                self._command(Command.from_bytes(record.value), record, batch, out)
            else:
                raise PoisonMessage(f"unknown message type {kind!r}")
        except PoisonMessage as exc:
            out.append(self._dead_letter(record, str(exc), stage="merge"))

    def _publish(self, team_id: str, call_id: str, result: MergeResult, record: InputRecord,
                 out: list[Output]) -> None:
        """The job (if the merge decided one) and the call's public record, keyed teamId/callId
        on the call's partition, with the request's headers."""
        key, partition = downstream_key(team_id, call_id), record.partition
        if result.job is not None:
            out.append(Output(self.topics.jobs, key, dumps(result.job), record.carried,
                              partition))
            log.info("job %s (attempt %s) for call %s team %s", result.job["jobId"],
                     result.job["attempt"], call_id, team_id,
                     extra={"call_id": call_id, "team_id": team_id,
                            "job_id": result.job["jobId"]})
        if result.changed or result.job is not None:
            out.append(Output(self.topics.records, key, dumps(public_call_state(result.state)),
                              record.carried, partition))

    def _submission(self, submission: Submission, record: InputRecord, batch: _Batch,
                    out: list[Output], known_job_id: str | None = None,
                    known_attempt: int = 1) -> None:
        call_id, team_id, partition = submission.call_id, submission.team_id, record.partition
        result = merge_beat(batch.teams(call_id, partition).get(team_id), submission,
                            record.source, known_job_id, known_attempt)
        self._publish(team_id, call_id, result, record, out)
        # Written even when nothing changed: after a crash the local store may hold a state
        # whose changelog record was never acknowledged, and only a write re-sends it.
        batch.put(call_id, partition, team_id, result.state)

    def _status(self, update: StatusUpdate, record: InputRecord, batch: _Batch,
                out: list[Output]) -> None:
        teams = batch.teams(update.call_id, record.partition)
        owner = next((team for team, state in teams.items()
                      if state.get("jobId") == update.job_id
                      or any(h.get("jobId") == update.job_id for h in state["history"])), None)
        if owner is None:
            raise PoisonMessage(f"status for unknown call or job (never seen, or expired): "
                                f"call {update.call_id} job {update.job_id}")
        try:
            result = apply_status(teams[owner], update)
        except ValueError as exc:
            raise PoisonMessage(str(exc)) from None
        if result.changed:
            log.info("call %s team %s is %s", update.call_id, owner, update.status)
            self._publish(owner, update.call_id, result, record, out)
            batch.put(update.call_id, record.partition, owner, result.state)

    def _command(self, command: Command, record: InputRecord, batch: _Batch,
                 out: list[Output]) -> None:
        if command.command == COMMAND_REPLAY:
            assert command.submission is not None
            self._submission(command.submission, record, batch, out, command.known_job_id,
                             command.known_attempt)
            return
        partition = record.partition
        state = batch.teams(command.call_id, partition).get(command.team_id)
        if command.command == COMMAND_REPROCESS:
            if state is None:
                raise PoisonMessage(f"reprocess of unknown call {command.call_id} team "
                                    f"{command.team_id} (never seen, or expired)")
            try:
                result = apply_reprocess(state, command.at, record.source)
            except ValueError as exc:
                raise PoisonMessage(str(exc)) from None
            self._publish(command.team_id, command.call_id, result, record, out)
            batch.put(command.call_id, partition, command.team_id, result.state)
        elif command.command == COMMAND_EXPIRE:
            # Re-checked here, inside the stream: the call may have changed since the sweep.
            if state is None or state["updatedAt"] != command.last_change_at or not is_expired(
                    state, self._now(), self.state_ttl_s):
                return
            batch.forget(command.call_id, partition, command.team_id)
            # Downstream's compacted view forgets the call too.
            out.append(Output(self.topics.records,
                              downstream_key(command.team_id, command.call_id), None,
                              partition=record.partition))
            log.info("expired call %s team %s (last change %s)", command.call_id,
                     command.team_id, command.last_change_at)
