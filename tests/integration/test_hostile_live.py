"""Hostile input against the real edge process and broker: schemathesis fuzzing of the OpenAPI
document, tenant isolation as seen on the downstream topics, slow clients, and the processes'
logs kept free of secrets."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from app.contracts.api_keys import split_key
from app.contracts.ids import job_id_for
from tests.factories import beat1, beat2
from tests.integration.conftest import FOREIGN_TEAM, TEAM_A, TEAM_B, Keys
from tests.integration.stack import Record, Stack, free_port, new_call_id, read_topic
from tests.integration.test_pipeline import for_call, jobs_after_barrier, post

SCHEMATHESIS_MAX_EXAMPLES = 150


def test_schemathesis_finds_no_server_error_and_no_nonconforming_response(
        stack: Stack, keys: Keys, tmp_path: Path) -> None:
    """Property-based fuzzing of every operation in /openapi.json, positive and negative data:
    no 5xx, every status code, header, content type and body as documented."""
    report = tmp_path / "schemathesis.xml"
    accepted_before = stack.log_of("edge").count("\"message\": \"accepted call ")
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url}/openapi.json",
           "--header", f"Authorization: Bearer {keys.team_a}",
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
           "response_headers_conformance,response_schema_conformance,negative_data_rejection",
           "--max-examples", str(SCHEMATHESIS_MAX_EXAMPLES), "--workers", "2",
           "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
           "--request-timeout", "20", "--no-color", "--output-sanitize", "true",
           "--report", "junit", "--report-junit-path", str(report)]
    # The secret stays out of the command line shown on failure.
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False,
                         cwd=tmp_path)  # its cache directory goes there
    output = (out.stdout + out.stderr).replace(keys.team_a, "<key>")
    print(output[-1500:])  # the summary, shown with -s
    assert out.returncode == 0, output[-6000:]
    assert report.exists() and "testcase" in report.read_text(), output[-2000:]
    # Positive cases really got through to Kafka (not only 4xx paths were explored).
    assert stack.log_of("edge").count("\"message\": \"accepted call ") > accepted_before


# ---- tenant isolation: the "change" side (the "read" side is GET /calls/{id}, issue 3) ---

async def test_a_team_key_cannot_change_another_teams_call(stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    assert (await post(stack, keys.team_b, beat1(call_id, to="+31100000000")))[0] == 202
    status, _, b_answer = await post(stack, keys.team_b, beat2(call_id, duration=7))
    assert status == 202
    b_jobs = await jobs_after_barrier(stack, keys.team_b, call_id, TEAM_B)
    records = await read_topic(stack.bootstrap, stack.topics.records, timeout_s=1)
    b_before = [r.value for r in for_call(records, call_id, TEAM_B)]

    # Team A names the same callId, and even B's teamId in the body.
    status, _, a_answer = await post(stack, keys.team_a, beat2(
        call_id, duration=99, to="+31999999999", recordingUrl="https://evil.example.com/x.wav",
        teamId=TEAM_B))
    assert status == 202
    assert a_answer["jobId"] == job_id_for(TEAM_A, call_id) != b_answer["jobId"]
    a_jobs = await jobs_after_barrier(stack, keys.team_a, call_id, TEAM_A)

    records = await read_topic(stack.bootstrap, stack.topics.records, timeout_s=1)
    assert [r.value for r in for_call(records, call_id, TEAM_B)] == b_before  # untouched
    assert all(r.key == f"{TEAM_A}/{call_id}".encode() for r in for_call(records, call_id,
                                                                        TEAM_A))
    jobs = for_call(await read_topic(stack.bootstrap, stack.topics.jobs, timeout_s=1), call_id)
    assert [j.value["jobId"] for j in jobs if j.value["teamId"] == TEAM_B] == \
        [b_answer["jobId"]] == [j.value["jobId"] for j in b_jobs]
    b_job = next(j.value for j in jobs if j.value["teamId"] == TEAM_B)
    assert b_job["recordingUrl"] == beat2(call_id)["recordingUrl"] and b_job["duration"] == 7
    assert [j.value["recordingUrl"] for j in a_jobs] == ["https://evil.example.com/x.wav"]


async def test_a_workspace_key_cannot_name_a_team_outside_its_workspace(
        stack: Stack, keys: Keys) -> None:
    call_id = new_call_id()
    for key, team in ((keys.foreign_workspace, TEAM_A), (keys.workspace, FOREIGN_TEAM)):
        status, _, body = await post(stack, key, beat2(call_id, teamId=team))
        assert status == 403, body
        assert body["fields"][0]["field"] == "teamId"
    # Its own team works, so the 403s above were about the team, not the key.
    status, _, body = await post(stack, keys.foreign_workspace, beat1(call_id,
                                                                     teamId=FOREIGN_TEAM))
    assert status == 202

    def seen(rs: list[Record]) -> bool:
        return any(r.value["call"]["callId"] == call_id for r in rs)

    subs = await read_topic(stack.bootstrap, stack.topics.submissions, until=seen)
    mine = [r.value for r in subs if r.value["call"]["callId"] == call_id]
    assert [v["teamId"] for v in mine] == [FOREIGN_TEAM]  # the 403s wrote nothing


# ---- slow clients ----------------------------------------------------------------------

async def test_slow_clients_are_cut_off(stack: Stack, keys: Keys) -> None:
    port = free_port()
    stack.start_edge("edge-slow", port=port, VOIX_CLIENT_TIMEOUT_S="1")
    try:
        stack.wait_http(f"http://127.0.0.1:{port}/healthz")
        # Headers that never end: the connection is closed (slowloris).
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /submit HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        await writer.drain()
        started = time.monotonic()
        async with asyncio.timeout(20):
            assert await reader.read() == b""
        assert time.monotonic() - started < 15  # a bound, not a speed claim
        writer.close()
        # A body that never arrives: 408.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + keys.team_a.encode() + b"\r\n"
                     b"Content-Length: 500\r\n\r\n{")
        await writer.drain()
        async with asyncio.timeout(20):
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 408")
        writer.close()
    finally:
        stack.stop("edge-slow")


# ---- logs ------------------------------------------------------------------------------

async def test_process_logs_carry_no_key_secret_and_no_url_query(stack: Stack,
                                                                 keys: Keys) -> None:
    call_id = new_call_id()
    url = "https://recordings.example.com/a.wav?X-Amz-Signature=LIVESECRET0123456789"
    assert (await post(stack, keys.team_a, beat1(call_id)))[0] == 202
    assert (await post(stack, keys.team_a, beat2(call_id, recordingUrl=url)))[0] == 202
    assert (await post(stack, keys.team_a, beat2(call_id, recordingUrl=url, bad=1)))[0] == 400
    assert (await post(stack, keys.team_a + "x", beat2(call_id, recordingUrl=url)))[0] == 401
    async with aiohttp.ClientSession() as http, http.post(  # a forged key id with a secret
            f"{stack.url}/submit", json={}, headers={"Authorization": "Bearer vx_ab_LIVEKEY"}
    ) as resp:
        assert resp.status == 401
    assert len(await jobs_after_barrier(stack, keys.team_a, call_id)) == 1
    await asyncio.sleep(0.5)  # let the processes flush their log lines
    logs = {name: stack.log_of(name) for name in ("edge", "worker")}
    assert call_id in logs["edge"] and call_id in logs["worker"]  # they do log this call
    # The whole secret (it may itself contain "_": token_urlsafe), as the edge parses it.
    secrets: list[Any] = [split_key(k)[1]  # type: ignore[index]
                          for k in (keys.team_a, keys.team_b, keys.workspace)]
    for name, text in logs.items():
        for secret in [*secrets, "LIVESECRET", "LIVEKEY"]:
            assert secret not in text, f"{secret[:4]}… appears in the {name} log"


async def test_schemathesis_validates_real_call_answers(stack: Stack, keys: Keys) -> None:
    """GET /calls answers for calls that exist (random callIds only reach the 404 path):
    schemathesis checks each against the OpenAPI document the edge serves (status, headers,
    body schema: the call record, from schemas/topics/calls.records.schema.json)."""
    import schemathesis

    from tests.integration.calls import send_status, wait_call

    received, transcribing, failed = new_call_id(), new_call_id(), new_call_id()
    assert (await post(stack, keys.team_a, beat1(received)))[0] == 202
    for call_id in (transcribing, failed):
        assert (await post(stack, keys.team_a, beat2(call_id, userId=new_call_id())))[0] == 202
    job = await wait_call(stack, keys.team_a, failed,
                          lambda s, b: s == 200 and b["status"] == "transcribing")
    await send_status(stack, job["jobId"], failed, "failed", error="silent recording")
    await wait_call(stack, keys.team_a, failed, lambda s, b: s == 200 and b["status"] == "failed")
    await wait_call(stack, keys.team_a, received, lambda s, _: s == 200)

    schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{stack.url}/openapi.json")
    operation = schema["/calls/{callId}"]["GET"]
    checked = []
    for call_id, key in ((received, keys.team_a), (transcribing, keys.team_a),
                         (failed, keys.team_a), (failed, keys.workspace),
                         (failed, keys.team_b), (new_call_id(), keys.team_a)):
        case = operation.Case(path_parameters={"callId": call_id},
                              headers={"Authorization": f"Bearer {key}"})
        response = await asyncio.to_thread(case.call, base_url=stack.url)
        await asyncio.to_thread(case.validate_response, response)
        checked.append(response.status_code)
    assert checked == [200, 200, 200, 200, 404, 404]
