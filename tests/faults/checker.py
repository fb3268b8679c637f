"""Compare a load driver's ledger with what landed on the jobs topic.

Figures: calls acknowledged (finishing beat answered 2xx), jobs (records on the jobs topic),
lost (acknowledged, no job), duplicate jobs (a jobId seen more than once; identical or not),
foreign jobs (a job whose team or jobId does not match what that team's key was told), jobs
for calls whose finishing beat was never acknowledged (allowed: a 503 may still have landed),
recovery time after each fault, and resume time: from each repair (a worker restarted, the
broker back, a worker joined or left) until jobs flow again on every jobs partition.

    python -m tests.faults.checker --bootstrap 127.0.0.1:9092 --topic transcription.jobs \\
        --ledger ledger.json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.ops.tail import topic_partitions
from tests.faults.loadgen import OK, Ledger


@dataclass(frozen=True, slots=True)
class Job:
    partition: int
    offset: int
    timestamp_s: float
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: when it began and when it was repaired (wall clock, seconds)."""

    name: str
    began: float
    repaired: float


@dataclass
class Figures:
    scenario: str
    calls: int
    requests: int
    acknowledged: int
    jobs: int
    lost: int
    duplicates: int
    duplicates_identical: bool
    foreign: int
    unacknowledged_with_job: int
    unknown_answers: int
    statuses: dict[str, int]
    recovery_s: float | None
    resume_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


async def read_jobs(bootstrap: str, topic: str, expected: set[tuple[str, str]],
                    timeout_s: float = 120.0) -> list[Job]:
    """Every committed job on the topic, read until every expected (team, call) has one or the
    timeout passes, and then to the end offsets of that moment."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed")
    await consumer.start()
    jobs: list[Job] = []
    seen: set[tuple[str, str]] = set()

    def take(batch: dict[Any, Any]) -> None:
        for records in batch.values():
            for r in records:
                value = orjson.loads(r.value)
                jobs.append(Job(r.partition, r.offset, r.timestamp / 1000, value))
                seen.add((value.get("teamId"), value.get("callId")))

    try:
        partitions = await topic_partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and not expected <= seen:
            take(await consumer.getmany(timeout_ms=300))
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            take(await consumer.getmany(timeout_ms=300))
    finally:
        await consumer.stop()
    return jobs


def figures(scenario: str, ledger: Ledger, jobs: list[Job],
            faults: Sequence[Fault] = ()) -> Figures:
    acked = ledger.acknowledged()
    by_id: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_id[job.value["jobId"]].append(job)
    have = {(j.value["teamId"], j.value["callId"]) for j in jobs}
    lost = [k for k in acked if k not in have]
    duplicates = sum(len(copies) - 1 for copies in by_id.values())
    identical = all(all(c.value == copies[0].value for c in copies)
                    for copies in by_id.values())
    sent_by = {(a.team_id, a.call_id) for a in ledger.attempts}
    foreign = sum(1 for j in jobs if (j.value["teamId"], j.value["callId"]) not in sent_by
                  or acked.get((j.value["teamId"], j.value["callId"]),
                               j.value["jobId"]) != j.value["jobId"])
    summary = ledger.summary()
    return Figures(
        scenario=scenario, calls=ledger.calls, requests=summary["requests"],
        acknowledged=len(acked), jobs=len(jobs), lost=len(lost), duplicates=duplicates,
        duplicates_identical=identical, foreign=foreign,
        unacknowledged_with_job=len(have - set(acked)), unknown_answers=summary["unknown"],
        statuses=summary["statuses"], recovery_s=recovery_time(ledger, jobs, faults),
        resume_s=resume_time(jobs, faults))


def recovery_time(ledger: Ledger, jobs: list[Job], faults: Sequence[Fault]) -> float | None:
    """The longest of, for each fault: from its start until the edge answered a 2xx again and
    a job was written again after the repair (so both intake and processing had resumed)."""
    if not faults:
        return None
    job_times = sorted(j.timestamp_s for j in jobs)
    worst = 0.0
    for fault in faults:
        # A 2xx to a request sent after the fault began (not one already in flight).
        first_ok = min((a.sent_at + a.took_s for a in ledger.attempts
                        if a.outcome == OK and a.sent_at >= fault.began), default=None)
        first_job = next((t for t in job_times if t >= fault.repaired), None)
        if first_ok is None or first_job is None:
            return float("inf")
        worst = max(worst, max(first_ok, first_job) - fault.began)
    return round(worst, 1)


def resume_time(jobs: list[Job], faults: Sequence[Fault]) -> float | None:
    """The longest of, for each fault: from its repair until every jobs partition that gets a
    job after it has had its first one (so a partition that waits for a dead member's session
    counts, not just the first partition back)."""
    if not faults:
        return None
    worst = 0.0
    for fault in faults:
        first: dict[int, float] = {}
        for job in jobs:
            if job.timestamp_s >= fault.repaired:
                first[job.partition] = min(first.get(job.partition, job.timestamp_s),
                                           job.timestamp_s)
        if not first:
            return float("inf")
        worst = max(worst, max(first.values()) - fault.repaired)
    return round(worst, 1)


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table (docs/reliability.md uses the same)."""
    head = ("| scenario | calls | requests | acknowledged | jobs | lost | duplicates "
            "| foreign | unknown answers | statuses | recovery | resume | notes |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        dups = str(r["duplicates"])
        if r["duplicates"]:
            dups += " (identical)" if r["duplicates_identical"] else " (NOT identical)"
        recovery = "-" if r["recovery_s"] is None else f"{r['recovery_s']} s"
        resume = "-" if r.get("resume_s") is None else f"{r['resume_s']} s"
        statuses = " ".join(f"{k}:{v}" for k, v in r["statuses"].items())
        lines.append(f"| {r['scenario']} | {r['calls']} | {r['requests']} | {r['acknowledged']}"
                     f" | {r['jobs']} | {r['lost']} | {dups} | {r['foreign']}"
                     f" | {r['unknown_answers']} | {statuses} | {recovery} | {resume}"
                     f" | {'; '.join(r.get('notes', []))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.checker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="transcription.jobs", help="the jobs topic")
    parser.add_argument("--ledger", type=Path, required=True, help="from loadgen --out")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="wait at most this long for missing jobs (s)")
    args = parser.parse_args(argv)
    ledger = Ledger.load(args.ledger)
    jobs = asyncio.run(read_jobs(args.bootstrap, args.topic, set(ledger.acknowledged()),
                                 args.timeout))
    result = figures(args.ledger.stem, ledger, jobs)
    print(table([result.as_row()]))
    return 1 if result.lost or result.foreign else 0


if __name__ == "__main__":
    sys.exit(main())
