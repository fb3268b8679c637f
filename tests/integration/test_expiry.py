"""Bounded state on the real broker: a call is forgotten (tombstone) a configurable time after
its last change; what a late status, a replay and a late beat do afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.contracts.ids import job_id_for
from tests.factories import beat1, beat2
from tests.integration.calls import get_call, send_status, wait_call, wait_consumed
from tests.integration.conftest import TEAM_A, WORKSPACE
from tests.integration.stack import Record, Stack, new_call_id, read_topic
from tests.integration.test_pipeline import post
from tests.integration.test_replay import iso

TTL_S = 4


@pytest.fixture(scope="module")
def short_lived(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker that forgets calls TTL_S seconds after their last change."""
    stack = Stack(bootstrap=bootstrap, prefix=f"it-exp-{uuid.uuid4().hex[:8]}.",
                  workdir=tmp_path_factory.mktemp("expiry"))
    with stack.running(VOIX_STATE_TTL_S=str(TTL_S), VOIX_EXPIRY_SWEEP_S="1"):
        yield stack


def records_for(records: list[Record], call_id: str) -> list[Record]:
    return [r for r in records if r.key == f"{TEAM_A}/{call_id}".encode()]


async def test_expiry_late_status_replay_and_late_beat(short_lived: Stack) -> None:
    stack = short_lived
    key = await stack.create_key(WORKSPACE, TEAM_A)
    since = datetime.now(UTC) - timedelta(seconds=2)
    call_id = new_call_id()
    job_id = job_id_for(TEAM_A, call_id)
    _, _, answer = await post(stack, key, beat2(call_id))
    assert answer["jobId"] == job_id
    await wait_call(stack, key, call_id, lambda s, b: s == 200 and b["status"] == "transcribing")

    # 1. Forgotten after the ttl: 404, and a tombstone on the compacted records topic.
    await wait_call(stack, key, call_id, lambda s, _: s == 404, timeout_s=TTL_S + 20)
    records = await read_topic(stack.bootstrap, stack.topics.records, until=lambda rs: any(
        r.tombstone for r in records_for(rs, call_id)))
    assert [r.tombstone for r in records_for(records, call_id)] == [False, True]

    # 2. A status for the forgotten call goes to the dead-letter topic.
    meta = await send_status(stack, job_id, call_id, "transcribed")
    source = (stack.topics.status, meta.partition, meta.offset)
    dead = await read_topic(stack.bootstrap, stack.topics.deadletter, until=lambda rs: any(
        r.dead_letter[:3] == source for r in rs))
    assert any("expired" in r.dead_letter[3] for r in dead if r.dead_letter[:3] == source)

    # 3. A replay re-derives the state from the submissions but, although this worker forgot
    # the call, sends no second job: the jobs topic already has one (knownJobId).
    out = stack.cli("replay", "--since", iso(since), "--call-id", call_id)
    assert "1 calls already have a job" in out and "sent 1 replay commands" in out
    await wait_consumed(stack, stack.topics.commands)
    records = await read_topic(stack.bootstrap, stack.topics.records, until=lambda rs: len(
        records_for(rs, call_id)) >= 3)
    rederived = records_for(records, call_id)[2]
    assert not rederived.tombstone and rederived.value["jobId"] == job_id
    jobs = [r for r in await read_topic(stack.bootstrap, stack.topics.jobs, timeout_s=0.5)
            if r.value["callId"] == call_id]
    assert [j.value["jobId"] for j in jobs] == [job_id]

    # 4. Once forgotten again, a late beat starts the call afresh. A late finishing beat sends
    # the job again with the SAME jobId (deterministic), which consumers dedupe on.
    await wait_call(stack, key, call_id, lambda s, _: s == 404, timeout_s=TTL_S + 20)
    other = new_call_id()
    assert (await post(stack, key, beat1(other)))[0] == 202
    await wait_call(stack, key, other, lambda s, _: s == 200)
    await wait_call(stack, key, other, lambda s, _: s == 404, timeout_s=TTL_S + 20)
    assert (await post(stack, key, beat1(other, duration=5)))[0] == 202
    body = await wait_call(stack, key, other, lambda s, _: s == 200)
    assert [h["status"] for h in body["history"]] == ["received"]
    assert body["call"]["duration"] == 5

    assert (await post(stack, key, beat2(call_id)))[0] == 202
    body = await wait_call(stack, key, call_id, lambda s, _: s == 200)
    assert body["jobId"] == job_id
    jobs = await read_topic(stack.bootstrap, stack.topics.jobs, until=lambda rs: sum(
        r.value["callId"] == call_id for r in rs) >= 2)
    assert [j.value["jobId"] for j in jobs if j.value["callId"] == call_id] == [job_id, job_id]
    status, _, _ = await get_call(stack.url, key, new_call_id())
    assert status == 404
