"""Everything that actually landed on the broker validates against schemas/topics/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.contracts.topic_schemas import schema_errors
from app.contracts.topics import TopicNames
from tests.factories import beat1, beat2
from tests.integration.calls import send_status, wait_call, wait_consumed
from tests.integration.conftest import Keys
from tests.integration.stack import Stack, new_call_id, read_topic
from tests.integration.test_pipeline import post


async def test_every_record_on_every_topic_matches_its_schema(stack: Stack, keys: Keys) -> None:
    # Make sure every topic has something of ours, whatever ran before in this session.
    since = datetime.now(UTC) - timedelta(seconds=2)
    call_id = new_call_id()
    assert (await post(stack, keys.team_a, beat1(call_id)))[0] == 202
    _, _, answer = await post(stack, keys.team_a, beat2(call_id, userId=new_call_id()))
    await wait_call(stack, keys.team_a, call_id,
                    lambda s, b: s == 200 and b["status"] == "transcribing")
    await send_status(stack, answer["jobId"], call_id, "failed", error="no audio")
    stranger = new_call_id()  # a status for an unknown call: a dead letter
    await send_status(stack, answer["jobId"], stranger, "transcribed")
    stack.cli("replay", "--since", since.isoformat(), "--call-id", call_id, "--no-progress")
    stack.cli("replay", "--mode", "reprocess", "--since", since.isoformat(), "--call-id",
              call_id, "--no-progress")
    await wait_consumed(stack, stack.topics.commands)
    await wait_call(stack, keys.team_a, call_id, lambda s, b: s == 200 and b["attempt"] == 2)

    await read_topic(stack.bootstrap, stack.topics.deadletter,
                     until=lambda rs: any(r.key == stranger.encode() for r in rs))

    defaults = TopicNames()
    checked: dict[str, int] = {}
    for field in ("submissions", "records", "jobs", "status", "commands", "routed", "keys",
                  "deadletter"):
        topic = getattr(stack.topics, field)
        records = await read_topic(stack.bootstrap, topic, timeout_s=0.5)
        if field == "deadletter":  # the value is the original bytes: the schema is of headers
            values = [r.headers for r in records]
        else:  # tombstones (expiry) have no value; poison records are written on purpose
            values = [r.value for r in records
                      if not r.tombstone and not r.not_json and r.key != b"poison"]
        problems = {i: schema_errors(getattr(defaults, field), v) for i, v in enumerate(values)}
        assert {i: p for i, p in problems.items() if p} == {}, topic
        checked[field] = len(values)
    assert all(n > 0 for n in checked.values()), checked
