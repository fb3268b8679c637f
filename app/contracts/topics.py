"""Every topic voix-ingest writes or reads, in one place: names, keys and retention.

docs/topics.md describes the same topics for downstream consumers.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class TopicNames:
    submissions: str = "calls.submissions"
    records: str = "calls.records"
    jobs: str = "transcription.jobs"
    deadletter: str = "calls.deadletter"
    # Written by the downstream transcriber; co-partitioned with submissions (key callId).
    status: str = "transcription.status"
    # Internal control records for the worker (replay, reprocess, expire); key callId.
    commands: str = "calls.commands"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    config: dict[str, str]


def topic_specs(names: TopicNames) -> list[TopicSpec]:
    """The topics `python -m app topics create` makes, with their broker configs."""
    return [
        TopicSpec(
            names.submissions,
            key="callId",
            # Kept long enough to replay a fortnight of traffic into a fresh worker.
            config={"cleanup.policy": "delete", "retention.ms": str(14 * DAY_MS)},
        ),
        TopicSpec(
            names.records,
            key="teamId/callId",
            # Compacted: the latest merged state of every call, readable from offset 0.
            config={"cleanup.policy": "compact", "min.compaction.lag.ms": str(60 * 60 * 1000)},
        ),
        TopicSpec(
            names.jobs,
            key="callId",
            config={"cleanup.policy": "delete", "retention.ms": str(14 * DAY_MS)},
        ),
        TopicSpec(
            names.deadletter,
            key="original key",
            config={"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
        ),
        TopicSpec(
            names.status,
            key="callId",
            config={"cleanup.policy": "delete", "retention.ms": str(14 * DAY_MS)},
        ),
        TopicSpec(
            names.commands,
            key="callId",
            config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
        ),
    ]
