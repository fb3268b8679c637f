"""The edge's HTTP behaviour with an in-memory publisher (the broker tier tests the real one)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.contracts.ids import job_id_for
from app.edge.app import create_app
from app.edge.publisher import BrokerUnavailable
from app.settings import Settings
from tests.factories import MemoryKeys, beat1, beat2

WS = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f60"
TEAM = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f61"
OTHER_TEAM = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f62"


@dataclass
class RecordingPublisher:
    published: list[tuple[str, bytes, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, bytes]] = field(default_factory=list)
    failing: bool = False
    ready: bool = True

    async def publish(self, topic: str, key: bytes, value: bytes,
                      headers: Sequence[tuple[str, bytes]] = ()) -> None:
        if self.failing:
            raise BrokerUnavailable("test: broker down")
        self.published.append((topic, key, orjson.loads(value)))
        self.headers.append(dict(headers))

    async def check(self) -> bool:
        return not self.failing


@dataclass
class Edge:
    client: TestClient
    publisher: RecordingPublisher
    team_key: str
    workspace_key: str
    keys: MemoryKeys

    async def submit(self, body: Any, key: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.team_key}"}
        headers.update(kw.pop("headers", {}))
        if "data" not in kw:
            kw["json"] = body
        return await self.client.post("/submit", headers=headers, **kw)


async def start_edge(**settings_overrides: object) -> Edge:
    """An edge on a test server with a recording publisher, a team key and a workspace key."""
    settings = Settings(max_body_bytes=16384).with_overrides(**settings_overrides)
    keys = MemoryKeys()
    team_key, _ = keys.create(workspace_id=WS, team_id=TEAM)
    workspace_key, _ = keys.create(workspace_id=WS, team_id=None)
    publisher = RecordingPublisher()
    client = TestClient(TestServer(create_app(settings, publisher=publisher, keys=keys)))
    await client.start_server()
    return Edge(client, publisher, team_key, workspace_key, keys)




async def test_beat1_answers_received_and_publishes(edge: Edge) -> None:
    body = beat1("1B9D6BCD-BBFD-4B2D-9B5D-AB8DFBBD4BED")
    resp = await edge.submit(body)
    assert resp.status == 202
    call_id = "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"
    assert await resp.json() == {"status": "received", "callId": call_id}
    [(topic, key, value)] = edge.publisher.published
    assert topic == "calls.submissions" and key == call_id.encode()
    assert value["v"] == 1 and value["type"] == "call.submission"
    assert value["teamId"] == TEAM and value["jobId"] is None
    assert value["call"]["callId"] == call_id and value["receivedAt"].endswith("Z")


async def test_finishing_beat_answers_transcribing_with_stable_job_id(edge: Edge) -> None:
    call_id = str(uuid.uuid4())
    bodies = []
    for _ in range(3):
        resp = await edge.submit(beat2(call_id))
        assert resp.status == 202
        bodies.append(await resp.json())
    expected = {"status": "transcribing", "callId": call_id, "jobId": job_id_for(TEAM, call_id)}
    assert bodies == [expected] * 3


async def test_team_key_ignores_body_team(edge: Edge) -> None:
    resp = await edge.submit(beat1(teamId=OTHER_TEAM))
    assert resp.status == 202
    value = edge.publisher.published[0][2]
    assert value["teamId"] == TEAM and "teamId" not in value["call"]


async def test_workspace_key_needs_a_team_of_its_workspace(edge: Edge) -> None:
    resp = await edge.submit(beat1(), key=edge.workspace_key)
    assert resp.status == 400
    assert (await resp.json())["fields"] == [
        {"field": "teamId", "problem": "is required with a workspace-wide API key"}]

    resp = await edge.submit(beat1(teamId=OTHER_TEAM), key=edge.workspace_key)
    assert resp.status == 403
    assert (await resp.json())["fields"][0]["field"] == "teamId"

    resp = await edge.submit(beat1(teamId=TEAM), key=edge.workspace_key)
    assert resp.status == 202
    assert edge.publisher.published[-1][2]["teamId"] == TEAM


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz",
                                    "Bearer vx_unknown_secret", "Token abc"])
async def test_missing_or_unknown_key_is_401(edge: Edge, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = await edge.client.post("/submit", json=beat1(), headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"] == "unauthorized"
    assert edge.publisher.published == []


async def test_revoked_key_is_401_without_restart(edge: Edge) -> None:
    key = edge.keys.current.authenticate(edge.team_key)
    assert key is not None
    edge.keys.revoke(key.key_id)  # as the directory applies a revocation read from the topic
    resp = await edge.submit(beat1())
    assert resp.status == 401


async def test_a_key_that_was_just_used_is_401_once_revoked(edge: Edge) -> None:
    """The edge remembers keys that authenticated, for the ring they authenticated against
    only: a revocation (a new ring) is seen on the next request."""
    assert (await edge.submit(beat1())).status == 202
    assert (await edge.submit(beat1())).status == 202
    key = edge.keys.current.authenticate(edge.team_key)
    assert key is not None
    edge.keys.revoke(key.key_id)
    resp = await edge.submit(beat1())
    assert resp.status == 401
    other = await edge.submit({**beat1(), "teamId": TEAM}, key=edge.workspace_key)
    assert other.status == 202  # other keys are unaffected


async def test_keys_not_loaded_yet_is_503_not_401(edge: Edge) -> None:
    edge.keys.ready = False
    resp = await edge.submit(beat1())
    assert resp.status == 503 and resp.headers["Retry-After"] == "2"
    ready = await edge.client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["reason"] == "API keys not loaded yet"
    assert edge.publisher.published == []


async def test_a_key_can_carry_its_own_rate_limit(edge: Edge) -> None:
    limited, _ = edge.keys.create(workspace_id=WS, team_id=TEAM, rate_limit_per_s=0.001,
                                  rate_limit_burst=2)
    statuses = [(await edge.submit(beat1(), key=limited)).status for _ in range(3)]
    assert statuses == [202, 202, 429]
    assert (await edge.submit(beat1())).status == 202  # the default limit of other keys


async def test_invalid_body_lists_every_field(edge: Edge) -> None:
    body = {"callId": "nope", "from": "+31", "startTime": "2026-06-16", "recordingUrl": "ftp://x",
            "language": "nl"}
    resp = await edge.submit(body)
    assert resp.status == 400
    payload = await resp.json()
    assert payload["error"] == "invalid_body"
    assert [f["field"] for f in payload["fields"]] == [
        "callId", "recordingUrl", "to", "startTime", "language"]
    assert "callId must be a UUID" in payload["message"]
    assert edge.publisher.published == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{", "not valid JSON"),
        (b'{"callId": "a", "callId": "b"}', "duplicate key 'callId'"),
        (b'{"duration": NaN}', "NaN is not valid JSON"),
        (b'{"duration": Infinity}', "Infinity is not valid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"duration": ' + b"9" * 5000 + b"}", "not acceptable JSON"),
    ],
)
async def test_malformed_json_is_400(edge: Edge, data: bytes, expected: str) -> None:
    resp = await edge.submit(None, data=data, headers={"Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    payload = await resp.json()
    assert payload["error"] == "malformed_json" and expected in payload["message"]


async def test_huge_integer_within_json_is_a_field_error(edge: Edge) -> None:
    resp = await edge.submit(beat1(duration=10**30))
    assert resp.status == 400
    assert (await resp.json())["fields"] == [
        {"field": "duration", "problem": "must be at most 604800"}]


@pytest.mark.parametrize("data", [b"[]", b'"call"', b"1", b"null", b"true"])
async def test_non_object_json_is_400(edge: Edge, data: bytes) -> None:
    resp = await edge.submit(None, data=data, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["fields"] == [
        {"field": "(body)", "problem": "must be a JSON object"}]


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "application/json; charset=latin-1"])
async def test_wrong_content_type_is_415(edge: Edge, ctype: str) -> None:
    resp = await edge.submit(None, data=orjson.dumps(beat1()), headers={"Content-Type": ctype})
    assert resp.status == 415
    assert (await resp.json())["error"] == "unsupported_media_type"


async def test_body_over_the_cap_is_413(edge: Edge) -> None:
    resp = await edge.submit(None, data=b'{"from": "' + b"1" * 20000 + b'"}',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"] == "body_too_large"


async def test_broker_unavailable_is_503_with_retry_after(edge: Edge) -> None:
    edge.publisher.failing = True
    resp = await edge.submit(beat2(str(uuid.uuid4())))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "2"
    assert (await resp.json())["error"] == "unavailable"
    ready = await edge.client.get("/readyz")
    assert ready.status == 503


async def test_health_and_ready(edge: Edge) -> None:
    assert (await edge.client.get("/healthz")).status == 200
    assert await (await edge.client.get("/readyz")).json() == {"status": "ready"}


async def test_unknown_route_and_method_are_json(edge: Edge) -> None:
    resp = await edge.client.get("/nope")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await edge.client.get("/submit")
    assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]


async def test_request_id_is_echoed_and_carried_to_kafka(edge: Edge) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    resp = await edge.submit(beat1(), headers={"X-Request-Id": "carrier-42.abc",
                                               "traceparent": traceparent})
    assert resp.status == 202 and resp.headers["X-Request-Id"] == "carrier-42.abc"
    assert edge.publisher.headers[-1] == {"request-id": b"carrier-42.abc",
                                          "traceparent": traceparent.encode()}


@pytest.mark.parametrize("offered", [None, "", "x" * 200, "has space", "semi;colon", "<b>"])
async def test_a_missing_or_unsafe_request_id_is_replaced(edge: Edge, offered: str | None) -> None:
    headers = {} if offered is None else {"X-Request-Id": offered}
    resp = await edge.submit(beat1(), headers={**headers, "traceparent": "garbage"})
    made = resp.headers["X-Request-Id"]
    assert made != offered and len(made) == 32
    assert edge.publisher.headers[-1] == {"request-id": made.encode()}


async def test_errors_carry_the_request_id_too(edge: Edge) -> None:
    resp = await edge.submit({"callId": "nope"}, headers={"X-Request-Id": "r-1"})
    assert resp.status == 400 and resp.headers["X-Request-Id"] == "r-1"
    resp = await edge.client.get("/nope", headers={"X-Request-Id": "r-2"})
    assert resp.status == 404 and resp.headers["X-Request-Id"] == "r-2"
