"""The pipeline against a broker that admits clients only over SASL_SSL (SCRAM-SHA-512, a
private CA), configured ONLY through the KAFKA_* settings, exactly as a deployment on a managed
cluster is: topics, keys, two beats to one job, auth; and what a wrong password or a wrong CA
does to the edge (503, never 202, one line naming the cause), the worker (exit 69 with the
line) and the CLI (exit 1 with the line).

One private secured broker serves the whole module (the `secured_broker` session fixture,
started only when these tests run); the shared PLAINTEXT broker is not used here.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from app.contracts.ids import job_id_for
from app.kafka_clients import client_kwargs, diagnose
from app.settings import PROJECT_ROOT, Settings
from tests import harness
from tests.factories import beat1, beat2
from tests.harness import PrivateBroker
from tests.integration.conftest import TEAM_A, TEAM_B, WORKSPACE
from tests.integration.stack import Stack, new_call_id, read_topic

PRODUCE_TIMEOUT_S = 3.0
# A wrong password that a log line must never show.
WRONG_PASSWORD = "not-the-password-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def secured(secured_broker: PrivateBroker,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Topics, a worker and an edge on the secured broker, from its client.env alone."""
    stack = Stack(bootstrap=secured_broker.bootstrap, prefix=f"sec-{uuid.uuid4().hex[:8]}.",
                  workdir=tmp_path_factory.mktemp("secured-stack"),
                  kafka_env=secured_broker.client_env())
    with stack.running():
        yield stack


async def post(url: str, key: str | None, body: Any) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.post(
            f"{url}/submit", json=body, headers=headers,
            timeout=aiohttp.ClientTimeout(total=15)) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


def test_the_settings_are_the_secured_brokers(secured: Stack,
                                              secured_broker: PrivateBroker) -> None:
    settings = secured.settings
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_ssl_cafile == secured_broker.tls_dir / "ca.pem"
    assert settings.kafka_sasl_password  # read from KAFKA_SASL_PASSWORD_FILE
    assert "KAFKA_SASL_PASSWORD" not in secured.env()  # only the _FILE form is set


async def test_the_broker_admits_no_plaintext_client(secured_broker: PrivateBroker) -> None:
    problem = await diagnose(Settings(kafka_bootstrap=secured_broker.bootstrap), timeout_s=3)
    assert problem is not None, "a PLAINTEXT client got in: this would not test SASL_SSL"


async def test_topics_create_over_sasl_ssl(secured: Stack) -> None:
    # The fixture created them; a second run finds them all, and they are really there.
    assert secured.cli("topics", "create").strip() == "created: nothing (all exist)"
    listed = set(secured.cli("topics", "list").split())
    topics = secured.topics
    ours = {topics.submissions, topics.records, topics.jobs, topics.deadletter, topics.status,
            topics.commands, topics.keys}
    assert ours <= listed
    admin = AIOKafkaAdminClient(**client_kwargs(secured.settings))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topics.submissions])
    finally:
        await admin.close()
    assert len(described["partitions"]) == secured.settings.partitions


async def test_two_beats_make_one_job_over_sasl_ssl(secured: Stack) -> None:
    key = secured.cli("keys", "create", "--workspace", WORKSPACE, "--team", TEAM_A).strip()
    call_id = new_call_id()
    status, _, body = await post(secured.url, key, beat1(call_id))
    assert (status, body) == (202, {"status": "received", "callId": call_id})
    status, _, body = await post(secured.url, key, beat2(call_id))
    assert status == 202 and body["jobId"] == job_id_for(TEAM_A, call_id)
    # A later beat that changes the call; once its record is out, every earlier beat of the
    # call has been merged, so the jobs topic holds all the jobs the call will ever get.
    assert (await post(secured.url, key, beat2(call_id, duration=777)))[0] == 202
    await read_topic(secured.bootstrap, secured.topics.records, settings=secured.settings,
                     until=lambda rs: any(r.value.get("callId") == call_id
                                          and r.value["call"].get("duration") == 777
                                          for r in rs))
    jobs = await read_topic(secured.bootstrap, secured.topics.jobs, settings=secured.settings,
                            timeout_s=1)
    mine = [j for j in jobs if j.value.get("callId") == call_id]
    assert [j.value["jobId"] for j in mine] == [body["jobId"]]
    assert mine[0].value["teamId"] == TEAM_A and mine[0].value["duration"] == 42


async def test_auth_over_sasl_ssl(secured: Stack) -> None:
    status, headers, body = await post(secured.url, "vx_000000000000_not-a-real-secret",
                                       beat1())
    assert status == 401 and body["error"] == "unauthorized"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert (await post(secured.url, None, beat1()))[0] == 401
    key = secured.cli("keys", "create", "--workspace", WORKSPACE, "--team", TEAM_B).strip()
    status, _, body = await post(secured.url, key, beat1())
    assert status == 202 and body["status"] == "received"


# ---- a wrong password, a wrong CA ------------------------------------------------------

# (what is wrong, the settings that make it so, what the cause line must say)
WRONG = {
    "password": ({"KAFKA_SASL_PASSWORD_FILE": "", "KAFKA_SASL_PASSWORD": WRONG_PASSWORD},
                 "refused our credentials"),
    "ca": ({"KAFKA_SSL_CAFILE": "{tls}/wrong-ca.pem"}, "certificate is not trusted by"),
}


def wrong_env(what: str, broker: PrivateBroker) -> tuple[dict[str, str], str]:
    env, cause = WRONG[what]
    return {k: v.format(tls=broker.tls_dir) for k, v in env.items()}, cause


def wait_for_text(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in {path} after {timeout_s}s:\n"
                                 f"{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


@pytest.mark.parametrize("what", sorted(WRONG))
async def test_edge_with_wrong_settings_answers_503_and_says_why_once(
        secured: Stack, secured_broker: PrivateBroker, what: str) -> None:
    env, cause = wrong_env(what, secured_broker)
    key = secured.cli("keys", "create", "--workspace", WORKSPACE, "--team", TEAM_A).strip()
    name, port = f"edge-wrong-{what}", harness.free_port()
    secured.start(name, ["edge", "--port", str(port)], **env,
                  VOIX_PRODUCE_TIMEOUT_S=str(PRODUCE_TIMEOUT_S))
    url = f"http://127.0.0.1:{port}"
    log = secured.processes.log_path(name)
    try:
        await asyncio.to_thread(wait_for_text, log, cause, 30)
        statuses: list[int] = []
        async with aiohttp.ClientSession() as http:
            # About 6 s of tries, as a carrier keeps sending: the edge keeps retrying Kafka
            # meanwhile, and must neither accept a call nor repeat its line.
            for i in range(12):
                async with http.get(f"{url}/readyz") as resp:
                    assert resp.status == 503, await resp.text()
                started = time.monotonic()
                status, headers, _ = await post(url, key, beat1())
                took = time.monotonic() - started
                statuses.append(status)
                assert status == 503 and headers.get("Retry-After", "").isdigit(), (i, status)
                assert took < PRODUCE_TIMEOUT_S, f"503 after {took:.2f}s"
                await asyncio.sleep(0.5)
        assert 202 not in statuses
        text = log.read_text(errors="replace")
        cause_lines = [line for line in text.splitlines() if cause in line]
        assert len(cause_lines) == 1, "\n".join(cause_lines)
        assert "Kafka at 127.0.0.1" in cause_lines[0]
        # aiokafka's own connect error is folded too: at most one copy, not one per retry.
        assert text.count("Unable connect to") <= 1, text[-3000:]
        assert WRONG_PASSWORD not in text
    finally:
        secured.stop(name)


@pytest.mark.parametrize("what", sorted(WRONG))
def test_worker_with_wrong_settings_exits_69_with_the_line(
        secured: Stack, secured_broker: PrivateBroker, what: str, tmp_path: Path) -> None:
    env, cause = wrong_env(what, secured_broker)
    started = time.monotonic()
    proc = subprocess.run(
        harness.app_argv("worker", "--web-port", str(harness.free_port()), "--data-dir",
                         str(tmp_path / "worker")),
        env=secured.env(**env), cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=90)
    took = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 69, output[-3000:]
    lines = [line for line in output.splitlines() if "worker cannot use Kafka" in line]
    assert len(lines) == 1 and cause in lines[0] and "CRITICAL" in lines[0], output[-3000:]
    assert WRONG_PASSWORD not in output
    assert took < 60, f"a permanent problem should stop the worker at once, took {took:.0f}s"


def test_cli_with_a_wrong_password_exits_1_with_the_line(
        secured: Stack, secured_broker: PrivateBroker) -> None:
    env, cause = wrong_env("password", secured_broker)
    for args in (("topics", "create"), ("keys", "list")):
        proc = subprocess.run(harness.app_argv(*args), env=secured.env(**env),
                              cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=90)
        assert proc.returncode == 1, (args, proc.stderr[-2000:])
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and cause in errors[0], (args, proc.stderr[-2000:])
        assert WRONG_PASSWORD not in proc.stdout + proc.stderr
