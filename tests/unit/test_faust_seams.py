"""The worker's seams into Faust and aiokafka internals (app.worker.faust_seams) were read
against exact versions; an upgrade must re-read them, not discover them in production."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.transport import consumer as faust_consumer
from faust.types.enums import ProcessingGuarantee

from app.contracts.topics import CALLS_TABLE
from app.settings import Settings
from app.worker import faust_seams
from app.worker.app import create_worker_app, instance_id


def test_installed_faust_and_aiokafka_are_the_versions_the_seams_were_written_for() -> None:
    mismatches = faust_seams.version_mismatches()
    assert not mismatches, (
        "app/worker/faust_seams.py touches private parts of faust-streaming and aiokafka and "
        "was written for " + ", ".join(f"{p} {v}" for p, v in faust_seams.WRITTEN_FOR.items())
        + "; installed: " + ", ".join(f"{p} {got} (written for {want})"
                                      for p, (want, got) in mismatches.items())
        + ". Re-read every seam listed in that module's docstring against the new source "
        "(the agent-error override, the rebalance transport, the fetch wait, the current "
        "event, the batch acks, the changelog offsets, the static member's leave, the record "
        "batches, the table store, the drain loop), then update WRITTEN_FOR.")


def test_each_worker_has_its_own_stable_static_member_id(tmp_path: Path) -> None:
    one = Settings(worker_data_dir=tmp_path / "w1")
    assert instance_id(one) == instance_id(Settings(worker_data_dir=tmp_path / "w1"))
    assert instance_id(one) != instance_id(Settings(worker_data_dir=tmp_path / "w2"))
    assert instance_id(one.with_overrides(worker_instance_id="pod-3")) == "pod-3"
    app = create_worker_app(one.with_overrides(worker_store="memory://"))
    assert app.conf.consumer_group_instance_id == instance_id(one)
    env = Settings.from_env({"VOIX_WORKER_INSTANCE_ID": "w-7", "VOIX_WORKER_MAX_DEADLETTERS": "5"})
    assert (env.worker_instance_id, env.worker_max_deadletters) == ("w-7", 5)


def test_the_drain_loop_copied_from_faust_is_still_faust_s() -> None:
    source = inspect.getsource(faust_consumer.Consumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == faust_seams.DRAIN_MESSAGES_SOURCE, (
        "faust's Consumer._drain_messages changed: copy it again into "
        "app/worker/faust_seams.py (_Consumer._drain_messages), keeping the direct first step "
        "of each callback, and update DRAIN_MESSAGES_SOURCE")


async def test_a_callback_that_waits_is_finished_in_a_task_with_its_result() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def deliver() -> str:
        steps.append("started")
        got = await gate
        steps.append(f"got {got}")
        await asyncio.sleep(0)  # a bare yield after the first wait
        return got.upper()

    coroutine = deliver()
    waiting_on = coroutine.send(None)  # run up to its first wait, as the drain loop does
    assert waiting_on is gate and steps == ["started"]
    task = asyncio.ensure_future(faust_seams.finish_waiting(coroutine, waiting_on))
    await asyncio.sleep(0)
    assert not task.done()
    gate.set_result("beat")
    assert await asyncio.wait_for(task, 2) == "BEAT"
    assert steps == ["started", "got beat"]


async def test_a_callback_that_does_not_wait_finishes_in_its_first_step() -> None:
    async def deliver() -> str:
        return "queued"

    coroutine = deliver()
    with pytest.raises(StopIteration) as stop:
        coroutine.send(None)
    assert stop.value.value == "queued"


async def test_cancelling_a_waiting_callback_cancels_it_where_it_waits() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned_up: list[bool] = []

    async def deliver() -> None:
        try:
            await gate
        finally:
            cleaned_up.append(True)

    coroutine = deliver()
    task = asyncio.ensure_future(faust_seams.finish_waiting(coroutine, coroutine.send(None)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned_up == [True] and gate.cancelled()


async def test_a_callback_that_fails_after_waiting_raises_from_the_task() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def deliver() -> None:
        await gate
        raise ValueError("undecodable")

    coroutine = deliver()
    task = asyncio.ensure_future(faust_seams.finish_waiting(coroutine, coroutine.send(None)))
    gate.set_result(None)
    with pytest.raises(ValueError, match="undecodable"):
        await asyncio.wait_for(task, 2)


def test_a_drained_buffer_ends_the_consumer_thread_s_fetch_wait_at_once() -> None:
    # The consumer thread's loop, with a fetch waiting there for records (aiokafka's waiter),
    # as when Faust asked only for the partitions not held back.
    thread_loop = asyncio.new_event_loop()
    runner = threading.Thread(target=thread_loop.run_forever, daemon=True)
    runner.start()
    try:
        waiters: set[asyncio.Future[None]] = set()
        fetcher = SimpleNamespace(_fetch_waiters=waiters,
                                  _notify=lambda f: f.done() or f.set_result(None))

        async def wait_for_records() -> float:
            waiter = thread_loop.create_future()
            waiters.add(waiter)
            started = time.monotonic()
            await asyncio.wait_for(waiter, 5.0)  # aiokafka waits up to the fetch timeout
            return time.monotonic() - started

        fetch = asyncio.run_coroutine_threadsafe(wait_for_records(), thread_loop)
        while not waiters:
            time.sleep(0.001)
        consumer_thread = SimpleNamespace(_consumer=SimpleNamespace(_fetcher=fetcher),
                                          thread_loop=thread_loop)
        faust_seams._ConsumerThread.wake_fetch_waiters(consumer_thread)  # type: ignore[arg-type]
        assert fetch.result(timeout=2.0) < 2.0  # woken, not timed out
    finally:
        thread_loop.call_soon_threadsafe(thread_loop.stop)
        runner.join(2)
        thread_loop.close()


def test_the_store_encodes_calls_as_the_table_s_changelog_topic_does(tmp_path: Path) -> None:
    app = create_worker_app(Settings(worker_data_dir=tmp_path, worker_store="memory://"))
    changelog = app.tables[CALLS_TABLE].changelog_topic
    call_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    teams = {"7c9e6679-7425-40de-944b-e07fc1f90ae7": {
        "status": "received", "history": [{"status": "received", "at": "2026-01-01T00:00:00Z"}],
        "attempt": 1, "jobId": None, "call": {"duration": 12.5, "outgoing": True}}}
    store = faust_seams.CallStore
    assert store.encode_key(call_id) == changelog.prepare_key(call_id, None)[0]
    assert store.encode_value(teams) == changelog.prepare_value(teams, None)[0]
    assert store.decode_value(store.encode_value(teams)) == teams
    table_store: Any = app.tables[CALLS_TABLE]
    assert table_store.data._decode_value(store.encode_value(teams)) == teams


async def test_the_worker_s_producer_is_idempotent_without_transactions(tmp_path: Path) -> None:
    # Faust turns idempotence on only for exactly_once; the worker runs at_least_once.
    app = create_worker_app(Settings(worker_store="memory://", worker_id="unit-idempotent",
                                     worker_data_dir=tmp_path))
    assert cast(Any, app.conf).processing_guarantee is ProcessingGuarantee.AT_LEAST_ONCE
    producer = cast(Any, app.producer)._new_producer()
    try:
        assert producer._txn_manager is not None, "aiokafka's idempotent producer state"
        assert producer._txn_manager.transactional_id is None  # idempotent, not transactional
        assert producer._sender._acks == -1
    finally:
        await producer.stop()
