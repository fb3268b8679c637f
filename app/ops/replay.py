"""`python -m app replay`: replay or reprocess the calls submitted in a time window.

The window is given in wall-clock time and turned into offsets with Kafka's timestamp index
(offsets_for_times) on every partition of the submissions topic. The submissions in the
window are read (optionally only one team's, or only some callIds) and turned into commands on
the worker's control topic, keyed by callId, so each goes to the worker that owns the call:

- replay: every selected submission is merged again, in its original order per call. A call
  whose job is already on the jobs topic gets no second job: the command carries that job's
  id (knownJobId), so even a worker whose table forgot the call (expired, or a new worker id)
  records the same jobId instead of sending a new job. A call that never got a job (e.g. its
  job was lost) gets its first one. Replaying the same window twice changes nothing more.
- reprocess: one command per selected call; the worker sends a NEW transcription job with the
  next attempt number and a new jobId (job_id_for(team, call, attempt)). Running it twice makes
  two more attempts: that is the point of reprocessing.

--dry-run reads and counts but sends nothing.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from tqdm import tqdm

from app.contracts.ids import utc_now_iso
from app.contracts.messages import (
    COMMAND_REPLAY,
    COMMAND_REPROCESS,
    Command,
    PoisonMessage,
    Submission,
    call_key,
    dumps,
)
from app.kafka_clients import client_kwargs
from app.ops.tail import topic_partitions
from app.settings import Settings

REPLAY = "replay"
REPROCESS = "reprocess"

CallRef = tuple[str, str]  # (teamId, callId)


class ReplayError(ValueError):
    """The request cannot be carried out (bad window, missing topic)."""


def parse_time(text: str) -> datetime:
    """RFC 3339 / ISO 8601 (a time without an offset is UTC), or 'now'."""
    if text == "now":
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(f"not a date-time: {text!r} (use e.g. 2026-06-16T09:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Selection:
    since: datetime
    until: datetime
    team_id: str | None = None
    call_ids: frozenset[str] | None = None

    def wants(self, submission: Submission) -> bool:
        return ((self.team_id is None or submission.team_id == self.team_id)
                and (self.call_ids is None or submission.call_id in self.call_ids))


@dataclass
class Plan:
    """What a replay or reprocess would do: the offsets of the window and what it selected."""

    selection: Selection
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> [start, end)
    scanned: int = 0
    unreadable: int = 0
    selected: list[Submission] = field(default_factory=list)
    known_jobs: dict[CallRef, tuple[str, int]] = field(default_factory=dict)  # -> jobId, attempt

    @property
    def calls(self) -> list[CallRef]:
        return list(dict.fromkeys((s.team_id, s.call_id) for s in self.selected))

    def commands(self, mode: str) -> list[Command]:
        now = utc_now_iso()
        if mode == REPLAY:
            out = []
            for sub in self.selected:
                job_id, attempt = self.known_jobs.get((sub.team_id, sub.call_id), (None, 1))
                out.append(Command(command=COMMAND_REPLAY, team_id=sub.team_id,
                                   call_id=sub.call_id, at=now, submission=sub,
                                   known_job_id=job_id, known_attempt=attempt))
            return out
        return [Command(command=COMMAND_REPROCESS, team_id=team, call_id=call, at=now)
                for team, call in self.calls]


def _progress(total: int, desc: str, show: bool) -> tqdm[None]:
    return tqdm(total=total, desc=desc, unit="rec", file=sys.stderr, disable=not show,
                dynamic_ncols=True, leave=True)


async def _read_ranges(consumer: AIOKafkaConsumer, topic: str,
                       ranges: dict[int, tuple[int, int]], bar: tqdm[None]
                       ) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Every record of topic in the offset ranges, as (partition, offset, key, value)."""
    todo = {TopicPartition(topic, p): r for p, r in ranges.items() if r[1] > r[0]}
    out: list[tuple[int, int, bytes | None, bytes | None]] = []
    if not todo:
        return out
    consumer.assign(list(todo))
    for tp, (start, _) in todo.items():
        consumer.seek(tp, start)
    while todo:
        batch = await consumer.getmany(*todo, timeout_ms=1000)
        for tp, records in batch.items():
            end = todo[tp][1] if tp in todo else -1
            for r in records:
                if r.offset < end:
                    out.append((r.partition, r.offset, r.key, r.value))
                    bar.update(1)
        for tp in list(todo):
            if await consumer.position(tp) >= todo[tp][1]:
                del todo[tp]
    return out


async def make_plan(settings: Settings, selection: Selection, show_progress: bool = True
                    ) -> Plan:
    if selection.until <= selection.since:
        raise ReplayError("--until must be after --since")
    plan = Plan(selection)
    consumer = AIOKafkaConsumer(**client_kwargs(settings, group_id=None, enable_auto_commit=False,
                                                 auto_offset_reset="earliest"))
    await consumer.start()
    try:
        topic = settings.topics.submissions
        partitions = await topic_partitions(consumer, topic)
        if not partitions:
            raise ReplayError(f"no topic {topic!r}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = await consumer.end_offsets(tps)
        since_ms = int(selection.since.timestamp() * 1000)
        until_ms = int(selection.until.timestamp() * 1000)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        stops = await consumer.offsets_for_times({tp: until_ms for tp in tps})
        for tp in tps:
            # No record at/after the time: the range starts/stops at the end of the partition.
            start = starts[tp].offset if starts[tp] is not None else ends[tp]
            stop = stops[tp].offset if stops[tp] is not None else ends[tp]
            plan.ranges[tp.partition] = (start, stop)
        total = sum(max(0, b - a) for a, b in plan.ranges.values())
        with _progress(total, "scan submissions", show_progress) as bar:
            records = await _read_ranges(consumer, topic, plan.ranges, bar)
        plan.scanned = len(records)
        wanted_partitions: set[int] = set()
        for partition, _, _, value in sorted(records, key=lambda r: (r[0], r[1])):
            try:
                sub = Submission.from_bytes(value)
            except PoisonMessage:
                plan.unreadable += 1
                continue
            if selection.wants(sub):
                plan.selected.append(sub)
                wanted_partitions.add(partition)
        plan.known_jobs = await _known_jobs(consumer, settings, set(plan.calls),
                                            wanted_partitions, show_progress)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return plan


async def _known_jobs(consumer: AIOKafkaConsumer, settings: Settings, calls: set[CallRef],
                      partitions: set[int], show_progress: bool
                      ) -> dict[CallRef, tuple[str, int]]:
    """The latest job of each selected call on the jobs topic. The jobs topic is keyed by
    callId with the same partition count, so only the partitions of the selected calls are
    read."""
    if not calls:
        return {}
    topic = settings.topics.jobs
    existing = await topic_partitions(consumer, topic)
    tps = [TopicPartition(topic, p) for p in sorted(partitions & existing)]
    if not tps:
        return {}
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    ranges = {tp.partition: (begins[tp], ends[tp]) for tp in tps}
    known: dict[CallRef, tuple[str, int]] = {}
    with _progress(sum(b - a for a, b in ranges.values()), "scan jobs", show_progress) as bar:
        for _, _, _, value in await _read_ranges(consumer, topic, ranges, bar):
            try:
                job = orjson.loads(value or b"")
                ref = (str(job["teamId"]), str(job["callId"]))
                attempt = int(job.get("attempt", 1))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if ref in calls and attempt >= known.get(ref, ("", 0))[1]:
                known[ref] = (str(job["jobId"]), attempt)
    return known


async def send_commands(settings: Settings, commands: list[Command],
                        show_progress: bool = True) -> int:
    producer = AIOKafkaProducer(**client_kwargs(settings, acks="all", enable_idempotence=True))
    await producer.start()
    try:
        with _progress(len(commands), "send commands", show_progress) as bar:
            futures = []
            for command in commands:
                futures.append(await producer.send(settings.topics.commands,
                                                   dumps(command.to_value()),
                                                   key=call_key(command.call_id)))
                bar.update(1)
            for fut in futures:
                await fut  # every command acknowledged before we report success
    finally:
        await producer.stop()
    return len(commands)


def describe(plan: Plan, mode: str, topic: str) -> str:
    sel = plan.selection
    calls = plan.calls
    lines = [f"window {sel.since.isoformat()} .. {sel.until.isoformat()} on {topic}"]
    for partition, (start, stop) in sorted(plan.ranges.items()):
        lines.append(f"  partition {partition}: offsets {start}..{stop} "
                     f"({max(0, stop - start)} records)")
    who = []
    if sel.team_id:
        who.append(f"team {sel.team_id}")
    if sel.call_ids is not None:
        who.append(f"{len(sel.call_ids)} callId(s)")
    lines.append(f"scanned {plan.scanned} records ({plan.unreadable} unreadable); selected "
                 f"{len(plan.selected)} submissions of {len(calls)} calls"
                 + (f" ({', '.join(who)})" if who else ""))
    with_job = sum(1 for c in calls if c in plan.known_jobs)
    if mode == REPLAY:
        lines.append(f"replay: {len(plan.selected)} submissions to merge again; {with_job} "
                     f"calls already have a job (no new job, same jobId); "
                     f"{len(calls) - with_job} calls have none on the jobs topic (they get "
                     "their first job if they have a recording)")
    else:
        lines.append(f"reprocess: {len(calls)} calls get a new job with the next attempt "
                     f"number ({with_job} have a job on the jobs topic; calls the worker does "
                     "not know or without a recording go to the dead-letter topic)")
    return "\n".join(lines)
