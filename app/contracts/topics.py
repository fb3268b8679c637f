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
    # API key ids, hashes, scopes and revocations, read by every edge and worker.
    keys: str = "voix.api-keys"
    # Internal: statuses and commands re-keyed by the workers onto the call's partition, so
    # they reach the owner of the call whatever partitioner their producer used.
    routed: str = "calls.routed"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    config: dict[str, str]
    # None: the setting VOIX_PARTITIONS (every keyed-by-callId topic must share it).
    partitions: int | None = None


# The worker's table: Faust names its changelog topic after the app id and this name.
CALLS_TABLE = "calls"


def faust_internal_topic_specs(worker_id: str) -> list[TopicSpec]:
    """The topics Faust would create for the worker on its own. `topics create` makes them
    first, so they get the same replication and min.insync.replicas as ours (Faust knows
    neither setting for them)."""
    return [
        TopicSpec(f"{worker_id}-{CALLS_TABLE}-changelog", key="callId",
                  config={"cleanup.policy": "compact"}),
        TopicSpec(f"{worker_id}-__assignor-__leader", key="(Faust internal)",
                  config={}, partitions=1),
    ]


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
            # Compacted: the latest merged state of every call, readable from offset 0. A
            # forgotten call's tombstone stays a day after compaction, so a consumer that
            # re-reads the topic at least daily sees the deletion (docs/topics.md).
            config={"cleanup.policy": "compact", "min.compaction.lag.ms": str(60 * 60 * 1000),
                    "delete.retention.ms": str(DAY_MS)},
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
        TopicSpec(
            names.routed,
            key="callId (partitioned like calls.submissions)",
            config={"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
        ),
        TopicSpec(
            names.keys,
            key="key/<keyId> or team/<workspaceId>/<teamId>",
            # Compacted and kept for ever: the latest record of every key is its truth. One
            # partition, so every reader applies the changes in the order they were made.
            config={"cleanup.policy": "compact", "retention.ms": "-1"},
            partitions=1,
        ),
    ]
