"""The Faust worker: wires the pure merge to the submissions topic, the calls table and the
downstream topics. It holds no state of its own outside the table."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.types import EventT, StreamT
from yarl import URL

from app.contracts.ids import utc_now_iso
from app.contracts.messages import (
    COMMAND_EXPIRE,
    COMMAND_REPLAY,
    COMMAND_REPROCESS,
    COMMAND_TYPE,
    STATUS_TYPE,
    SUBMISSION_TYPE,
    Command,
    PoisonMessage,
    StatusUpdate,
    Submission,
    deadletter_value,
    dumps,
    message_type,
    record_key,
)
from app.contracts.topics import CALLS_TABLE
from app.kafka_clients import faust_broker_kwargs
from app.ops.topics import Replication, replication_for
from app.settings import Settings
from app.worker.call_status import register_call_status_view
from app.worker.merge import MergeResult, apply_reprocess, apply_status, is_expired, merge_beat
from app.worker.metrics import install_worker_metrics
from app.worker.rebalance import RebalanceSafeTransport
from app.worker.tuning import limit_fetch_wait

log = logging.getLogger("voix.worker")

# Exit code when the worker stops because processing failed (sysexits EX_SOFTWARE).
CRASH_EXIT_CODE = 70


class IngestWorker(faust.App):
    """A Faust app whose agents never die silently.

    Faust's default reaction to an agent exception is to commit offsets and restart the agent,
    which can skip the failing record. We stop the whole process instead, without committing:
    the record is processed again after the restart.
    """

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        log.critical("agent %s failed; stopping the worker so no record is skipped: %r",
                     getattr(agent, "name", agent), exc, exc_info=exc)
        # A hard exit is the only way to be sure Faust commits nothing on the way out.
        asyncio.get_running_loop().call_soon(os._exit, CRASH_EXIT_CODE)

    def _new_transport(self) -> Any:
        # Faust's aiokafka transport with the fixes that keep it from losing records around
        # seeks (see app.worker.rebalance).
        return RebalanceSafeTransport(self.conf.broker_consumer, self)


def create_worker_app(settings: Settings, replication: Replication | None = None) -> faust.App:
    """`replication`: of the topics Faust creates (its changelog); run_worker asks the cluster."""
    replication = replication or replication_for(settings, brokers=1)
    app = IngestWorker(
        settings.worker_id,
        **faust_broker_kwargs(settings),
        store=settings.worker_store,
        datadir=str(settings.worker_data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=replication.factor,
        processing_guarantee=settings.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Faust's web_bind is the listen address (its default, 0.0.0.0, exposed the port on
        # every interface); web_host/canonical_url are what it advertises to the other workers.
        web_bind=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_host=URL(settings.worker_url).host,
        canonical_url=settings.worker_url,
        web_enabled=True,
        # Faust's own web apps answer without any authentication: /table/<name>/<key> would
        # serve every tenant's call state, /router and /graph the topology. Only our pages
        # (health, metrics, the authorised call-state view) are served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        autodiscover=False,
    )
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes,
                           "key_serializer": "raw", "value_serializer": "raw"}
    topics = settings.topics
    # Submissions, transcriber statuses and worker commands are all keyed by callId with the
    # same partition count, so one agent sees every event of a call, in order per topic, on
    # the worker that owns the call's table partition.
    inputs = app.topic(topics.submissions, topics.status, topics.commands,
                       partitions=settings.partitions, **raw)
    records = app.topic(topics.records, **raw)
    jobs = app.topic(topics.jobs, **raw)
    deadletter = app.topic(topics.deadletter, **raw)
    commands = app.topic(topics.commands, partitions=settings.partitions, **raw)
    install_worker_metrics(app, topics.submissions, topics.jobs, topics.records, topics.deadletter)
    limit_fetch_wait(app, settings.worker_fetch_wait_ms)
    # Keyed by the raw callId bytes, exactly like the input topics: the changelog partition of
    # a call equals its topic partition, so Faust's router (table_route) finds the owner.
    # The value maps teamId -> that team's call state (two teams may use the same callId).
    calls = app.Table(CALLS_TABLE, default=None, partitions=settings.partitions,
                      extra_topic_configs={"min.insync.replicas": str(replication.min_insync)},
                      schema=faust.Schema(key_type=str, key_serializer="raw",
                                          value_serializer="json"))

    async def dead_letter(event: EventT[bytes], reason: str) -> None:
        msg = event.message
        log.error("dead-lettering topic=%s partition=%d offset=%d: %s",
                  msg.topic, msg.partition, msg.offset, reason)
        await deadletter.send(key=msg.key, value=dumps(deadletter_value(
            topic=msg.topic, partition=msg.partition, offset=msg.offset,
            key=msg.key, value=event.value, reason=reason)))

    async def publish(team_id: str, call_id: str, result: MergeResult) -> None:
        if result.job is not None:
            await jobs.send(key=call_id.encode(), value=dumps(result.job))
            log.info("job %s (attempt %s) for call %s team %s", result.job["jobId"],
                     result.job["attempt"], call_id, team_id)
        if result.changed or result.job is not None:
            await records.send(key=record_key(team_id, call_id).encode(),
                               value=dumps(result.state))

    def teams_of(call_id: str) -> dict[str, Any]:
        return dict(calls.get(call_id) or {})

    def store(call_id: str, teams: dict[str, Any]) -> None:
        if teams:
            calls[call_id] = teams
        elif call_id in calls:
            del calls[call_id]  # a tombstone in the changelog

    async def on_submission(submission: Submission, source: str,
                            known_job_id: str | None = None, known_attempt: int = 1) -> None:
        call_id, team_id = submission.call_id, submission.team_id
        teams = teams_of(call_id)
        result = merge_beat(teams.get(team_id), submission, source, known_job_id, known_attempt)
        await publish(team_id, call_id, result)
        teams[team_id] = result.state
        store(call_id, teams)

    async def on_status(event: EventT[bytes], update: StatusUpdate) -> None:
        teams = teams_of(update.call_id)
        owner = next((team for team, state in teams.items()
                      if state.get("jobId") == update.job_id
                      or any(h.get("jobId") == update.job_id for h in state["history"])), None)
        if owner is None:
            await dead_letter(event, f"status for unknown call or job (never seen, or "
                                     f"expired): call {update.call_id} job {update.job_id}")
            return
        try:
            result = apply_status(teams[owner], update)
        except ValueError as exc:
            await dead_letter(event, str(exc))
            return
        if result.changed:
            log.info("call %s team %s is %s", update.call_id, owner, update.status)
            await publish(owner, update.call_id, result)
            teams[owner] = result.state
            store(update.call_id, teams)

    async def on_command(event: EventT[bytes], command: Command, source: str) -> None:
        if command.command == COMMAND_REPLAY:
            assert command.submission is not None
            await on_submission(command.submission, source, command.known_job_id,
                                command.known_attempt)
            return
        teams = teams_of(command.call_id)
        state = teams.get(command.team_id)
        if command.command == COMMAND_REPROCESS:
            if state is None:
                await dead_letter(event, f"reprocess of unknown call {command.call_id} team "
                                         f"{command.team_id} (never seen, or expired)")
                return
            try:
                result = apply_reprocess(state, command.at, source)
            except ValueError as exc:
                await dead_letter(event, str(exc))
                return
            await publish(command.team_id, command.call_id, result)
            teams[command.team_id] = result.state
            store(command.call_id, teams)
        elif command.command == COMMAND_EXPIRE:
            # Re-checked here, inside the event: the call may have changed since the sweep.
            if state is None or state["updatedAt"] != command.last_change_at or not is_expired(
                    state, datetime.now(UTC), settings.state_ttl_s):
                return
            del teams[command.team_id]
            store(command.call_id, teams)
            # Downstream's compacted view forgets the call too.
            await records.send(key=record_key(command.team_id, command.call_id).encode(),
                               value=None)
            log.info("expired call %s team %s (last change %s)", command.call_id,
                     command.team_id, command.last_change_at)

    async def process(event: EventT[bytes]) -> None:
        msg = event.message
        source = f"{msg.topic}/{msg.partition}/{msg.offset}"
        try:
            kind = message_type(event.value)
            if kind == SUBMISSION_TYPE:
                await on_submission(Submission.from_bytes(event.value), source)
            elif kind == STATUS_TYPE:
                await on_status(event, StatusUpdate.from_bytes(event.value))
            elif kind == COMMAND_TYPE:
                await on_command(event, Command.from_bytes(event.value), source)
            else:
                raise PoisonMessage(f"unknown message type {kind!r}")
        except PoisonMessage as exc:
            await dead_letter(event, str(exc))

    @app.agent(inputs, name="merge-beats")
    async def merge_beats(stream: StreamT[bytes]) -> None:
        """Merge beats, statuses and commands into the calls table; emit jobs and records."""
        async for event in stream.events():
            await process(event)

    @app.timer(interval=settings.expiry_sweep_s, on_leader=False)  # type: ignore[untyped-decorator]
    async def sweep_expired() -> None:
        """Tables can only change inside a stream event, so the sweep does not delete: it asks
        the owning agent to, with an expire command keyed by callId (the agent re-checks)."""
        now = datetime.now(UTC)
        active = {tp.partition for tp in app.assignor.assigned_actives()
                  if tp.topic == topics.submissions}
        sent = 0
        for call_id, teams in list(calls.items()):
            if partition_of(call_id, settings.partitions) not in active:
                continue
            for team_id, state in (teams or {}).items():
                if is_expired(state, now, settings.state_ttl_s):
                    await commands.send(key=call_id.encode(), value=dumps(Command(
                        command=COMMAND_EXPIRE, team_id=team_id, call_id=call_id,
                        at=utc_now_iso(), last_change_at=state["updatedAt"]).to_value()))
                    sent += 1
        if sent:
            log.info("expiry sweep: asked to expire %d call(s)", sent)

    register_call_status_view(app, calls, settings, partition_of)
    return app


def partition_of(call_id: str, partitions: int) -> int:
    """The partition Kafka's default (Java) partitioner gives the key callId."""
    return int(murmur2(call_id.encode()) & 0x7FFFFFFF) % partitions
