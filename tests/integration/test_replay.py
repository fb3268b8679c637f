"""`python -m app replay` on the real broker: dry-run counts, replay sends no second job,
reprocess sends exactly one new job per selected call."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.contracts.ids import job_id_for
from tests.factories import beat1, beat2
from tests.integration.calls import end_offsets, wait_call, wait_consumed
from tests.integration.conftest import TEAM_A, TEAM_B, Keys
from tests.integration.stack import Record, Stack, new_call_id, read_topic
from tests.integration.test_pipeline import for_call, post


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def jobs_of(stack: Stack, calls: list[tuple[str, str]],
                  at_least: int | None = None) -> dict[tuple[str, str], list[Record]]:
    """Every job of the calls; waits for at_least of them, else reads to the current end."""
    wanted = set(calls)
    jobs = await read_topic(
        stack.bootstrap, stack.topics.jobs, timeout_s=30 if at_least else 0.5,
        until=lambda rs: at_least is not None and sum(
            (r.value["teamId"], r.value["callId"]) in wanted for r in rs) >= at_least)
    return {c: for_call(jobs, c[1], c[0]) for c in calls}


async def make_calls(stack: Stack, keys: Keys) -> tuple[datetime, dict[str, tuple[str, str]]]:
    """Team A: three finished calls and one with beat 1 only; team B: one finished call."""
    since = datetime.now(UTC) - timedelta(seconds=2)
    calls = {name: (TEAM_A, new_call_id()) for name in ("a1", "a2", "a3", "open")}
    calls["b1"] = (TEAM_B, new_call_id())
    for name, (team, call_id) in calls.items():
        key = keys.team_a if team == TEAM_A else keys.team_b
        assert (await post(stack, key, beat1(call_id)))[0] == 202
        if name != "open":
            assert (await post(stack, key, beat2(call_id)))[0] == 202
    finished = [c for n, c in calls.items() if n != "open"]
    jobs = await jobs_of(stack, finished, at_least=len(finished))
    assert all(len(js) == 1 for js in jobs.values())
    await wait_call(stack, keys.team_a, calls["open"][1], lambda s, _: s == 200)
    return since, calls


def selection_args(since: datetime, calls: dict[str, tuple[str, str]]) -> list[str]:
    args = ["--since", iso(since), "--until", iso(datetime.now(UTC) + timedelta(seconds=1))]
    for _, call_id in calls.values():
        args += ["--call-id", call_id]
    return args


async def test_dry_run_counts_and_sends_nothing(stack: Stack, keys: Keys) -> None:
    since, calls = await make_calls(stack, keys)
    before = await end_offsets(stack.bootstrap, stack.topics.commands)
    out = stack.cli("replay", "--dry-run", *selection_args(since, calls))
    assert "selected 9 submissions of 5 calls" in out
    assert "4 calls already have a job" in out and "1 calls have none" in out
    assert "dry run: would send 9 replay commands" in out
    out = stack.cli("replay", "--dry-run", "--team", TEAM_A, *selection_args(since, calls))
    assert "selected 7 submissions of 4 calls" in out
    out = stack.cli("replay", "--dry-run", "--mode", "reprocess",
                    *selection_args(since, calls))
    assert "reprocess: 5 calls get a new job" in out
    assert "dry run: would send 5 reprocess commands" in out
    # The window really is the time window: one ending before the calls selects nothing.
    out = stack.cli("replay", "--dry-run", "--since", iso(since - timedelta(hours=1)),
                    "--until", iso(since - timedelta(minutes=59)),
                    *[a for c in calls.values() for a in ("--call-id", c[1])])
    assert "selected 0 submissions of 0 calls" in out
    assert await end_offsets(stack.bootstrap, stack.topics.commands) == before


async def test_replay_sends_no_second_job(stack: Stack, keys: Keys) -> None:
    since, calls = await make_calls(stack, keys)
    out = stack.cli("replay", *selection_args(since, calls))
    assert re.search(r"sent 9 replay commands", out), out
    await wait_consumed(stack, stack.topics.commands)
    jobs = await jobs_of(stack, list(calls.values()))
    for name, (team, call_id) in calls.items():
        expected = [] if name == "open" else [job_id_for(team, call_id)]
        assert [j.value["jobId"] for j in jobs[(team, call_id)]] == expected, name
    body = await wait_call(stack, keys.team_a, calls["a1"][1], lambda s, _: s == 200)
    assert body["jobId"] == job_id_for(*calls["a1"]) and body["status"] == "transcribing"


async def test_reprocess_sends_one_new_job_per_selected_call(stack: Stack, keys: Keys) -> None:
    since, calls = await make_calls(stack, keys)
    chosen = {n: calls[n] for n in ("a1", "b1")}
    out = stack.cli("replay", "--mode", "reprocess", *selection_args(since, chosen))
    assert "sent 2 reprocess commands" in out
    await wait_consumed(stack, stack.topics.commands)
    jobs = await jobs_of(stack, list(calls.values()))
    for name, (team, call_id) in calls.items():
        got = [(j.value["attempt"], j.value["jobId"]) for j in jobs[(team, call_id)]]
        if name in chosen:
            assert got == [(1, job_id_for(team, call_id)), (2, job_id_for(team, call_id, 2))]
        elif name != "open":
            assert got == [(1, job_id_for(team, call_id))]
    body = await wait_call(stack, keys.team_a, calls["a1"][1],
                           lambda s, b: s == 200 and b["attempt"] == 2)
    assert body["jobId"] == job_id_for(TEAM_A, calls["a1"][1], 2)
    assert body["history"][-1]["attempt"] == 2
