"""The core pipeline end to end: HTTP in, real Kafka, the Faust worker, topics out."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from app.contracts.ids import job_id_for
from tests.factories import beat1, beat2
from tests.integration.conftest import TEAM_A, TEAM_B, Keys
from tests.integration.stack import Record, Stack, new_call_id, read_topic


async def post(stack: Stack, key: str | None, body: Any) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.post(
        f"{stack.url}/submit", json=body, headers=headers,
        timeout=aiohttp.ClientTimeout(total=15),
    ) as resp:
        return resp.status, dict(resp.headers), await resp.json()


def for_call(records: list[Record], call_id: str, team: str | None = None) -> list[Record]:
    return [r for r in records if r.value.get("callId") == call_id
            and (team is None or r.value.get("teamId") == team)]


async def jobs_after_barrier(stack: Stack, key: str, call_id: str,
                             team: str = TEAM_A) -> list[Record]:
    """Send one more beat that changes the call, wait until its record is out (so every earlier
    beat of the call has been processed), then return every job for the call."""
    status, _, _ = await post(stack, key, beat2(call_id, duration=9999))
    assert status == 202
    await read_topic(stack.bootstrap, stack.topics.records, until=lambda rs: any(
        r.value["call"].get("duration") == 9999 for r in for_call(rs, call_id, team)))
    jobs = await read_topic(stack.bootstrap, stack.topics.jobs, timeout_s=1)
    return for_call(jobs, call_id, team)


async def test_two_beats_make_one_job_with_latest_values(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    status, _, body = await post(stack, keys.team_a, beat1(call_id))
    assert (status, body) == (202, {"status": "received", "callId": call_id})
    status, _, body = await post(stack, keys.team_a, beat2(call_id, outgoing=True,
                                                            to="+31209999999"))
    assert (status, body) == (202, {"status": "transcribing", "callId": call_id,
                                    "jobId": job_id_for(TEAM_A, call_id)})
    jobs = await jobs_after_barrier(stack, keys.team_a, call_id)
    assert len(jobs) == 1
    job = jobs[0].value
    assert job["jobId"] == body["jobId"] and job["teamId"] == TEAM_A
    assert job["outgoing"] is True and job["to"] == "+31209999999" and job["duration"] == 42
    assert jobs[0].key == f"{TEAM_A}/{call_id}".encode()  # tenant-safe downstream key


async def test_single_finishing_beat(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    body = beat2(call_id)
    del body["outgoing"]
    status, _, answer = await post(stack, keys.team_a, body)
    assert status == 202 and answer["status"] == "transcribing"
    jobs = await jobs_after_barrier(stack, keys.team_a, call_id)
    assert [j.value["jobId"] for j in jobs] == [answer["jobId"]]
    assert jobs[0].value["outgoing"] is None and jobs[0].value["userId"] is None


async def test_finishing_beat_three_times_is_one_job(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    answers = await asyncio.gather(*(post(stack, keys.team_a, beat2(call_id)) for _ in range(3)))
    assert {a[2]["jobId"] for a in answers} == {job_id_for(TEAM_A, call_id)}
    assert [a[0] for a in answers] == [202, 202, 202]
    assert len(await jobs_after_barrier(stack, keys.team_a, call_id)) == 1


async def test_late_beat1_keeps_the_recording(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    assert (await post(stack, keys.team_a, beat2(call_id)))[0] == 202
    assert (await post(stack, keys.team_a, beat1(call_id)))[0] == 202
    jobs = await jobs_after_barrier(stack, keys.team_a, call_id)
    assert len(jobs) == 1
    records = for_call(await read_topic(stack.bootstrap, stack.topics.records, timeout_s=1),
                       call_id)
    final = records[-1].value
    assert final["status"] == "transcribing"
    assert final["call"]["recordingUrl"] == beat2(call_id)["recordingUrl"]


async def test_beat1_is_visible_downstream_at_once(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    assert (await post(stack, keys.team_a, beat1(call_id)))[0] == 202
    records = await read_topic(stack.bootstrap, stack.topics.records,
                               until=lambda rs: bool(for_call(rs, call_id)))
    [record] = for_call(records, call_id)
    assert record.value["status"] == "received" and record.value["jobId"] is None
    assert record.key == f"{TEAM_A}/{call_id}".encode()


async def test_all_beats_of_a_call_share_one_partition(stack: Stack, keys: Keys) -> None:
    call_ids = [new_call_id() for _ in range(8)]
    for call_id in call_ids:
        for body in (beat1(call_id), beat2(call_id), beat1(call_id)):
            assert (await post(stack, keys.team_a, body))[0] == 202
    wanted = set(call_ids)
    subs = await read_topic(
        stack.bootstrap, stack.topics.submissions,
        until=lambda rs: sum(r.value["call"]["callId"] in wanted for r in rs) >= 24)
    by_call: dict[str, set[int]] = {}
    for r in subs:
        if r.value["call"]["callId"] in wanted:
            by_call.setdefault(r.value["call"]["callId"], set()).add(r.partition)
            assert r.key == r.value["call"]["callId"].encode()
    assert len(by_call) == 8
    partitions = 6
    for call_id, seen in by_call.items():
        # Java's default partitioner: toPositive(murmur2(key)) % partitions.
        assert seen == {(murmur2(call_id.encode()) & 0x7FFFFFFF) % partitions}
    assert len({p for s in by_call.values() for p in s}) > 1  # keys really spread


async def test_two_teams_same_call_id_are_two_jobs(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    a = await post(stack, keys.team_a, beat2(call_id))
    b = await post(stack, keys.team_b, beat2(call_id, duration=7))
    assert a[2]["jobId"] != b[2]["jobId"]
    jobs_a = await jobs_after_barrier(stack, keys.team_a, call_id, TEAM_A)
    jobs_b = await jobs_after_barrier(stack, keys.team_b, call_id, TEAM_B)
    assert [j.value["jobId"] for j in jobs_a] == [a[2]["jobId"]]
    assert [j.value["jobId"] for j in jobs_b] == [b[2]["jobId"]]
    assert jobs_b[0].value["duration"] == 7


async def test_poison_record_goes_to_dead_letters(stack: Stack, keys: Keys) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(stack.topics.submissions, b"{broken", key=b"poison")
    finally:
        await producer.stop()
    source = (stack.topics.submissions, meta.partition, meta.offset)
    dead = await read_topic(stack.bootstrap, stack.topics.deadletter, until=lambda rs: any(
        r.dead_letter[:3] == source for r in rs))
    [letter] = [r for r in dead if r.dead_letter[:3] == source]
    # The original key and value bytes, exactly; what went wrong in the headers.
    assert (letter.key, letter.raw) == (b"poison", b"{broken")
    assert "not JSON" in letter.dead_letter[3]
    # ...and the worker went on: a call on the same partition still gets its job.
    call_id = new_call_id()
    assert (await post(stack, keys.team_a, beat2(call_id)))[0] == 202
    assert len(await jobs_after_barrier(stack, keys.team_a, call_id)) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("unknownField", "x"), ("callId", "not-a-uuid"), ("startTime", "2026-06-16 09:05"),
     ("recordingUrl", "ftp://example.com/a.wav")],
)
async def test_invalid_fields_are_400_naming_the_field(stack: Stack, keys: Keys, field: str,
                                                       value: str) -> None:
    status, _, body = await post(stack, keys.team_a, beat1(**{field: value}))
    assert status == 400
    assert [f["field"] for f in body["fields"]] == [field]


async def test_broker_unreachable_is_a_quick_503(stack: Stack, keys: Keys) -> None:
    """An edge whose broker is down answers 503 with Retry-After, never 202, never a hang."""
    from tests.integration.stack import free_port

    port = free_port()
    stack.start_edge("edge-no-broker", port=port, KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
                     VOIX_PRODUCE_TIMEOUT_S="2")
    try:
        stack.wait_http(f"http://127.0.0.1:{port}/healthz")
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            async with http.post(f"http://127.0.0.1:{port}/submit", json=beat2(new_call_id()),
                                 headers={"Authorization": f"Bearer {keys.team_a}"},
                                 timeout=aiohttp.ClientTimeout(total=30)) as resp:
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) > 0
                assert (await resp.json())["error"] == "unavailable"
            # Bounded: well under the client's 30 s timeout (this is not a speed assertion;
            # the bound is the configured produce timeout plus slack).
            assert time.monotonic() - started < 15
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
    finally:
        stack.stop("edge-no-broker")
