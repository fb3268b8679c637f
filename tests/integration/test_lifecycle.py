"""GET /calls/{callId}: every lifecycle transition, driven by real status messages on the real
broker and answered from the worker's table; tenancy; a clean 503 without workers."""

from __future__ import annotations

import uuid

from app.contracts.ids import job_id_for
from tests.factories import beat1, beat2
from tests.integration.calls import get_call, send_status, wait_call
from tests.integration.conftest import TEAM_A, Keys
from tests.integration.stack import Stack, free_port, new_call_id, read_topic
from tests.integration.test_pipeline import post


def statuses(body: dict[str, object]) -> list[str]:
    history = body["history"]
    assert isinstance(history, list)
    return [h["status"] for h in history]


async def test_received_transcribing_transcribed(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    assert (await post(stack, keys.team_a, beat1(call_id)))[0] == 202
    body = await wait_call(stack, keys.team_a, call_id, lambda s, _: s == 200)
    assert body["status"] == "received" and body["jobId"] is None
    assert statuses(body) == ["received"] and body["teamId"] == TEAM_A
    assert "jobSource" not in body  # internal bookkeeping stays inside

    _, _, answer = await post(stack, keys.team_a, beat2(call_id))
    body = await wait_call(stack, keys.team_a, call_id,
                           lambda s, b: s == 200 and b["status"] == "transcribing")
    assert body["jobId"] == answer["jobId"] and body["call"]["duration"] == 42

    done_at = "2026-06-16T09:40:00.000Z"
    await send_status(stack, body["jobId"], call_id, "transcribed", at=done_at)
    body = await wait_call(stack, keys.team_a, call_id,
                           lambda s, b: s == 200 and b["status"] == "transcribed")
    assert statuses(body) == ["received", "transcribing", "transcribed"]
    assert body["history"][-1]["at"] == done_at and body["error"] is None
    assert all(h["at"] for h in body["history"])


async def test_failed_with_reason_then_transcribed(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    _, _, answer = await post(stack, keys.team_a, beat2(call_id))
    await wait_call(stack, keys.team_a, call_id,
                    lambda s, b: s == 200 and b["status"] == "transcribing")
    await send_status(stack, answer["jobId"], call_id, "failed", error="recording is silent")
    body = await wait_call(stack, keys.team_a, call_id,
                           lambda s, b: s == 200 and b["status"] == "failed")
    assert body["error"] == "recording is silent"
    assert body["history"][-1]["error"] == "recording is silent"
    await send_status(stack, answer["jobId"], call_id, "transcribed")
    body = await wait_call(stack, keys.team_a, call_id,
                           lambda s, b: s == 200 and b["status"] == "transcribed")
    assert statuses(body) == ["received", "transcribing", "failed", "transcribed"]
    assert body["error"] is None


async def test_a_team_sees_only_its_own_calls(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    assert (await post(stack, keys.team_a, beat1(call_id)))[0] == 202
    await wait_call(stack, keys.team_a, call_id, lambda s, _: s == 200)
    status, _, body = await get_call(stack.url, keys.team_b, call_id)
    assert status == 404 and body["error"] == "not_found"
    unknown = await get_call(stack.url, keys.team_a, new_call_id())
    assert unknown[0] == 404 and unknown[2] == body | {"message": unknown[2]["message"]}
    assert (await get_call(stack.url, keys.foreign_workspace, call_id))[0] == 404
    status, _, body = await get_call(stack.url, keys.workspace, call_id)
    assert status == 200 and body["teamId"] == TEAM_A
    status, _, _ = await get_call(stack.url, keys.workspace, call_id,
                                  team=str(uuid.uuid4()))
    assert status == 404
    assert (await get_call(stack.url, None, call_id))[0] == 401
    status, _, body = await get_call(stack.url, keys.team_a, "not-a-uuid")
    assert status == 400 and body["fields"][0]["field"] == "callId"


async def test_two_teams_same_call_id_each_see_their_own(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    assert (await post(stack, keys.team_a, beat1(call_id)))[0] == 202
    assert (await post(stack, keys.team_b, beat2(call_id)))[0] == 202
    a = await wait_call(stack, keys.team_a, call_id, lambda s, _: s == 200)
    b = await wait_call(stack, keys.team_b, call_id,
                        lambda s, b: s == 200 and b["status"] == "transcribing")
    assert a["status"] == "received" and b["jobId"] != a["jobId"]
    # A workspace key that sees both teams must say which one it means.
    status, _, body = await get_call(stack.url, keys.workspace, call_id)
    assert status == 400 and body["error"] == "ambiguous_call"


async def test_status_for_an_unknown_call_is_dead_lettered(stack: Stack, keys: Keys) -> None:
    stranger = new_call_id()
    meta = await send_status(stack, job_id_for(TEAM_A, stranger), stranger, "transcribed")
    source = (stack.topics.status, meta.partition, meta.offset)
    dead = await read_topic(stack.bootstrap, stack.topics.deadletter, until=lambda rs: any(
        r.dead_letter[:3] == source for r in rs))
    [letter] = [r for r in dead if r.dead_letter[:3] == source]
    assert "unknown call" in letter.dead_letter[3] and letter.key == stranger.encode()
    # The dead letter is the status as it was written: the same bytes.
    assert letter.value["callId"] == stranger and letter.headers["voix.dlq.stage"] == "merge"


async def test_no_worker_answers_is_a_clean_503(stack: Stack, keys: Keys) -> None:
    port = free_port()
    stack.start_edge("edge-no-worker", port=port,
                     VOIX_WORKER_URLS=f"http://127.0.0.1:{free_port()}",
                     VOIX_LIFECYCLE_TIMEOUT_S="1")
    try:
        stack.wait_http(f"http://127.0.0.1:{port}/healthz")
        status, headers, body = await get_call(f"http://127.0.0.1:{port}", keys.team_a,
                                               new_call_id())
        assert status == 503 and body["error"] == "unavailable"
        assert int(headers["Retry-After"]) > 0
    finally:
        stack.stop("edge-no-worker")
