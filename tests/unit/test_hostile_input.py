"""Hostile clients: rate limits, slow bodies and headers, SSRF via recordingUrl, and logs that
never carry secrets. (Size, media type and malformed JSON are in test_edge.py.)"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from app.contracts.api_keys import split_key
from app.contracts.recording_url import recording_url_problem
from app.contracts.submission import default_validator
from app.edge.guards import RateLimiter
from tests.factories import beat1, beat2
from tests.unit.test_edge import TEAM, Edge, start_edge

MakeEdge = Callable[..., Awaitable[Edge]]


@pytest.fixture
async def make_edge() -> AsyncIterator[MakeEdge]:
    edges: list[Edge] = []

    async def make(**overrides: object) -> Edge:
        edge = await start_edge(**overrides)
        edges.append(edge)
        return edge

    yield make
    for edge in edges:
        await edge.client.close()


# ---- rate limit ------------------------------------------------------------------------

def test_token_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)
    assert limiter.acquire("other") == 0.0  # buckets are per key
    now[0] = 0.5
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("k") > 0
    now[0] = 100.0  # refills to the burst, not beyond
    assert [limiter.acquire("k") for _ in range(4)][-1] > 0


async def test_over_the_limit_is_429_with_retry_after(make_edge: MakeEdge) -> None:
    edge = await make_edge(rate_limit_per_s=0.5, rate_limit_burst=2)
    statuses = [(await edge.submit(beat1())).status for _ in range(2)]
    assert statuses == [202, 202]
    resp = await edge.submit(beat1())
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert (await resp.json())["error"] == "rate_limited"
    assert len(edge.publisher.published) == 2
    # Another key has its own bucket.
    assert (await edge.submit(beat1(teamId=TEAM), key=edge.workspace_key)).status == 202


# ---- slow clients ----------------------------------------------------------------------

async def test_slow_body_is_408(make_edge: MakeEdge) -> None:
    edge = await make_edge(client_timeout_s=0.5)
    reader, writer = await asyncio.open_connection(edge.client.host, edge.client.port)
    try:
        writer.write(b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + edge.team_key.encode() + b"\r\n"
                     b"Content-Length: 200\r\n\r\n{\"callId\":")
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
    finally:
        writer.close()
    assert edge.publisher.published == []


# ---- SSRF guard ------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.wav", "http://127.1/a.wav", "http://2130706433/a.wav",
    "http://0x7f000001/a.wav", "http://0177.0.0.1/a.wav", "http://[::1]/a.wav",
    "http://[::ffff:127.0.0.1]/a.wav", "http://[fe80::1%25eth0]/a.wav",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
    "http://10.1.2.3/a.wav", "http://172.16.0.1/a.wav", "http://192.168.1.1/a.wav",
    "http://100.64.0.1/a.wav", "http://0.0.0.0/a.wav", "http://224.0.0.1/a.wav",
    "http://240.0.0.1/a.wav", "http://[2002:7f00:1::]/a.wav",
    "http://localhost/a.wav", "http://LOCALHOST./a.wav", "http://api.localhost/a.wav",
    "http://metadata.google.internal/computeMetadata/v1/", "http://metadata/",
    "http://printer.local/a.wav", "http://nas.home.arpa/a.wav", "http://intranet/a.wav",
    "https://user:pass@recordings.example.com/a.wav", "https://token@recordings.example.com/",
])
def test_recording_url_into_our_network_is_refused(url: str) -> None:
    problems = default_validator().problems(beat2(str(uuid.uuid4()), recordingUrl=url))
    assert [p.field for p in problems] == ["recordingUrl"], problems
    assert url not in problems[0].problem  # never echo a URL: it may carry a signature


@pytest.mark.parametrize("url", [
    "https://recordings.example.com/a.wav?sig=abc", "http://8.8.8.8/a.wav",
    "https://[2606:4700:4700::1111]/a.wav", "HTTPS://Recordings.Example.COM:8443/x",
    "https://cafe.be/a.wav", "https://s3.eu-west-1.amazonaws.com/bucket/a.wav",
])
def test_public_recording_urls_pass(url: str) -> None:
    assert recording_url_problem(url) is None
    assert default_validator().problems(beat2(str(uuid.uuid4()), recordingUrl=url)) == []


async def test_ssrf_url_is_400_naming_recording_url(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    resp = await edge.submit(beat2(str(uuid.uuid4()),
                                   recordingUrl="http://169.254.169.254/latest/meta-data/"))
    assert resp.status == 400
    [problem] = (await resp.json())["fields"]
    assert problem["field"] == "recordingUrl" and "link-local" in problem["problem"]
    assert edge.publisher.published == []


# ---- logs never carry secrets ----------------------------------------------------------

async def test_logs_carry_neither_key_secret_nor_url_query(
        make_edge: MakeEdge, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    edge = await make_edge(rate_limit_per_s=1.0, rate_limit_burst=3)
    secret = split_key(edge.team_key)[1]  # type: ignore[index]  # may itself contain "_"
    query = "sig=TOPSECRET-SIGNATURE"
    url = f"https://recordings.example.com/a.wav?{query}"
    call_id = str(uuid.uuid4())
    await edge.submit(beat1(call_id))
    await edge.submit(beat2(call_id, recordingUrl=url))
    await edge.submit(beat2(call_id, recordingUrl=url.replace("https://recordings.example.com",
                                                              "http://10.0.0.1")))
    await edge.submit(beat2(call_id, recordingUrl=url, language="nl"))
    await edge.submit(None, data=b'{"recordingUrl": "' + url.encode() + b'", "x": NaN}',
                      headers={"Content-Type": "application/json"})
    edge.publisher.failing = True
    await edge.submit(beat2(call_id, recordingUrl=url))  # 503 logs at error level
    await edge.submit(beat2(call_id, recordingUrl=url))  # 429
    await edge.client.post("/submit", data=b"{}", headers={
        "Authorization": f"Bearer {edge.team_key}x", "Content-Type": "application/json"})
    assert caplog.records, "the edge logged nothing: this test would prove nothing"
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert secret not in text
    assert "TOPSECRET" not in text
