"""Every auth case against the running edge, including revocation without a restart."""

from __future__ import annotations

import asyncio

from app.contracts.ids import job_id_for
from tests.factories import beat1, beat2
from tests.integration.conftest import FOREIGN_TEAM, TEAM_A, TEAM_B, WORKSPACE, Keys
from tests.integration.stack import Stack, new_call_id
from tests.integration.test_pipeline import jobs_after_barrier, post


async def test_missing_key_is_401(stack: Stack, keys: Keys) -> None:
    status, headers, body = await post(stack, None, beat1())
    assert status == 401 and body["error"] == "unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_unknown_key_is_401(stack: Stack, keys: Keys) -> None:
    status, _, _ = await post(stack, "vx_000000000000_not-a-real-secret", beat1())
    assert status == 401
    status, _, _ = await post(stack, keys.team_a[:-2] + "xx", beat1())
    assert status == 401


async def test_revoked_key_is_401_without_restart(stack: Stack, keys: Keys) -> None:
    presented = stack.cli("keys", "create", "--workspace", WORKSPACE, "--team", TEAM_A).strip()
    assert (await post(stack, presented, beat1()))[0] == 202
    key_id = presented.split("_")[1]
    assert key_id in stack.cli("keys", "list")
    stack.cli("keys", "revoke", key_id)
    for _ in range(50):  # the edge re-reads the key file within a second
        status, _, _ = await post(stack, presented, beat1())
        if status == 401:
            break
        await asyncio.sleep(0.1)
    assert status == 401
    assert "revoked" in stack.cli("keys", "list")


async def test_team_key_ignores_the_body_team(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    status, _, body = await post(stack, keys.team_a, beat2(call_id, teamId=TEAM_B))
    assert status == 202 and body["jobId"] == job_id_for(TEAM_A, call_id)
    jobs = await jobs_after_barrier(stack, keys.team_a, call_id, TEAM_A)
    assert [j.value["teamId"] for j in jobs] == [TEAM_A]


async def test_workspace_key_requires_team(stack: Stack, keys: Keys) -> None:
    status, _, body = await post(stack, keys.workspace, beat1())
    assert status == 400
    assert body["fields"] == [{"field": "teamId",
                               "problem": "is required with a workspace-wide API key"}]


async def test_workspace_key_cannot_name_a_foreign_team(stack: Stack, keys: Keys) -> None:
    status, _, body = await post(stack, keys.workspace, beat1(teamId=FOREIGN_TEAM))
    assert status == 403 and body["error"] == "forbidden"
    status, _, _ = await post(stack, keys.foreign_workspace, beat1(teamId=TEAM_A))
    assert status == 403


async def test_workspace_key_with_its_team(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    status, _, body = await post(stack, keys.workspace, beat2(call_id, teamId=TEAM_B))
    assert status == 202 and body["jobId"] == job_id_for(TEAM_B, call_id)
    jobs = await jobs_after_barrier(stack, keys.team_b, call_id, TEAM_B)
    assert [j.value["jobId"] for j in jobs] == [body["jobId"]]
