"""Property tests of the merge (hypothesis): any interleaving, duplication and at-least-once
redelivery of the beats of calls gives one jobId per (team, call) and the latest values."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.contracts.ids import job_id_for
from app.contracts.messages import Submission, downstream_key
from app.worker.merge import CALL_FIELDS, merge_beat

CALL_ID = "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"
TEAMS = ("3f2504e0-4f89-41d3-9a0c-0305e82c3301", "3f2504e0-4f89-41d3-9a0c-0305e82c3302")
START = "2026-06-16T09:05:35.000Z"

# A beat: the required fields plus any subset of the optional ones, with small value ranges
# so that later beats often overwrite earlier ones.
beats = st.fixed_dictionaries(
    {"from": st.sampled_from(["+311", "+312"]), "to": st.sampled_from(["+321", "+322"]),
     "startTime": st.just(START)},
    optional={"duration": st.integers(0, 3), "outgoing": st.booleans(),
              "recordingUrl": st.sampled_from(["https://r.example.com/1.wav",
                                               "https://r.example.com/2.wav"]),
              "userId": st.sampled_from(["3f2504e0-4f89-41d3-9a0c-0305e82c33aa"])},
).map(lambda body: {"callId": CALL_ID, **body})

# The log of one partition: (team index, beat) in arrival order. Duplicates are client retries.
logs = st.lists(st.tuples(st.integers(0, 1), beats), min_size=1, max_size=12).flatmap(
    lambda distinct: st.lists(st.sampled_from(distinct), min_size=1, max_size=20))


def submission(team: str, call: dict[str, Any], i: int) -> Submission:
    return Submission(submission_id=f"s{i}", team_id=team, key_id="k",
                      received_at=f"2026-06-16T09:{i // 60:02d}:{i % 60:02d}.000Z",
                      job_id=job_id_for(team, CALL_ID) if "recordingUrl" in call else None,
                      call=call)


def process(table: dict[bytes, Any], log: list[tuple[int, dict[str, Any]]], start: int,
            stop: int, jobs: list[dict[str, Any]]) -> None:
    for offset in range(start, stop):
        team_index, call = log[offset]
        team = TEAMS[team_index]
        key = downstream_key(team, CALL_ID)
        result = merge_beat(table.get(key), submission(team, call, offset), f"t/0/{offset}")
        table[key] = result.state
        if result.job is not None:
            jobs.append(result.job)


def latest_values(log: list[tuple[int, dict[str, Any]]], team_index: int) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for t, call in log:
        if t == team_index:
            merged.update({k: v for k, v in call.items() if k in CALL_FIELDS})
    return merged


def check_outcome(log: list[tuple[int, dict[str, Any]]], table: dict[bytes, Any],
                  jobs: list[dict[str, Any]], exactly_once: bool) -> None:
    for team_index, team in enumerate(TEAMS):
        mine = [j for j in jobs if j["teamId"] == team]
        sent = [call for t, call in log if t == team_index]
        state = table.get(downstream_key(team, CALL_ID))
        if not sent:
            assert state is None and mine == []
            continue
        assert state is not None
        assert state["call"] == latest_values(log, team_index)  # latest value of every field
        if any("recordingUrl" in call for call in sent):
            assert {j["jobId"] for j in mine} == {job_id_for(team, CALL_ID)} == {state["jobId"]}
            if exactly_once:
                assert len(mine) == 1
            # The job carries the call as merged up to the first beat with a recording.
            first = next(i for i, (t, c) in enumerate(log) if t == team_index
                         and "recordingUrl" in c)
            decided = latest_values(log[: first + 1], team_index)
            assert mine[0]["recordingUrl"] == decided["recordingUrl"]
            assert mine[0]["duration"] == decided.get("duration")
            # A resent job (redelivery after a crash) is the job as first sent, byte for byte.
            assert all(j == mine[0] for j in mine)
        else:
            assert mine == [] and state["jobId"] is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=logs)
def test_any_interleaving_and_duplication_gives_one_job_per_team_and_call(
        log: list[tuple[int, dict[str, Any]]]) -> None:
    table: dict[bytes, Any] = {}
    jobs: list[dict[str, Any]] = []
    process(table, log, 0, len(log), jobs)
    check_outcome(log, table, jobs, exactly_once=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=logs, data=st.data())
def test_redelivery_after_a_crash_loses_no_job_and_keeps_one_job_id(
        log: list[tuple[int, dict[str, Any]]], data: st.DataObject) -> None:
    """A worker dies after processing `crashed_at` records; its committed offset is
    `committed` and its table (restored from the changelog) holds the state after `restored`
    records, committed <= restored <= crashed_at. The restarted worker goes on from
    `committed`. Every job sent by either run counts."""
    crashed_at = data.draw(st.integers(0, len(log)), label="crashed_at")
    restored = data.draw(st.integers(0, crashed_at), label="restored")
    committed = data.draw(st.integers(0, restored), label="committed")
    jobs: list[dict[str, Any]] = []
    before_crash: dict[bytes, Any] = {}
    process(before_crash, log, 0, restored, jobs)
    table = dict(before_crash)  # the changelog's view at the crash
    process(before_crash, log, restored, crashed_at, jobs)  # sent, but its state is lost
    process(table, log, committed, len(log), jobs)
    check_outcome(log, table, jobs, exactly_once=False)
