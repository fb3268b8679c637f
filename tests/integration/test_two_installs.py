"""Two installs that share nothing but Kafka: two separate copies of the code, each run from its
own directory (its own cwd, so its own var/ state), sharing only the interpreter and its
dependencies.

- A key made with install A's CLI is accepted by install B's edge within 2 s, and once revoked
  with A's CLI it is refused by B's edge within 2 s; neither copy holds a key file.
- Two workers, one from each copy, share the partitions; the edge knows ONE address for the
  whole pool (a round-robin reverse proxy in this test process stands in for a load-balanced
  service name). Every call answers GET /calls 200 with its state, whichever worker owns it;
  a worker port asked without a key says 401 and shows nothing; another team's key gets 404.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from app.settings import PROJECT_ROOT
from tests import harness
from tests.factories import beat1, beat2
from tests.integration.calls import get_call
from tests.integration.conftest import TEAM_A, TEAM_B, WORKSPACE
from tests.integration.stack import new_call_id

PROPAGATION_BOUND_S = 2.0
FORWARDED_HEADER = "X-Voix-Forwarded-By"  # app.worker.call_status: "answer, do not forward"


def copy_of_the_code(dest: Path) -> Path:
    """A separate copy of the code as it is now (tracked files and new ones, not ignored ones:
    no .venv, no var/, no broker jars): what a second checkout on another host would hold."""
    listed = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files", "-z", "--cached",
                             "--others", "--exclude-standard"], capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@dataclass
class Install:
    """One copy of the code, run from its own directory."""

    name: str
    root: Path
    bootstrap: str
    prefix: str
    logs: Path
    processes: harness.Processes = field(init=False)

    def __post_init__(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes = harness.Processes(self.logs, cwd=self.root)

    def env(self, **extra: str) -> dict[str, str]:
        # PYTHONPATH: this copy's `app`, never the dev checkout's (the cwd would win anyway).
        return harness.app_env(self.bootstrap, self.prefix, PYTHONPATH=str(self.root),
                               VOIX_LOG_LEVEL="INFO", **extra)

    def cli(self, *args: str, **env: str) -> str:
        return harness.run(harness.app_argv(*args), self.env(**env), timeout_s=90,
                           cwd=self.root)

    def start(self, name: str, args: list[str], **env: str) -> None:
        self.processes.start(name, harness.app_argv(*args), self.env(**env))

    def log_of(self, name: str) -> str:
        path = self.processes.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Deployment:
    a: Install
    b: Install
    edge_url: str  # install B's edge
    pool_port: int  # where the edge's one worker address (the proxy) listens


@pytest.fixture(scope="module")
def deployment(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("two-installs")
    prefix = f"it-inst-{uuid.uuid4().hex[:8]}."
    a, b = (Install(name, copy_of_the_code(tmp / f"install-{name}"), bootstrap, prefix,
                    tmp / f"logs-{name}") for name in ("a", "b"))
    pool_port, edge_port = harness.free_port(), harness.free_port()
    a.cli("topics", "create")
    b.start("edge", ["edge", "--port", str(edge_port)],
            VOIX_WORKER_URLS=f"http://127.0.0.1:{pool_port}", VOIX_CALL_STATUS_TIMEOUT_S="5",
            VOIX_RATE_LIMIT_PER_S="1000", VOIX_RATE_LIMIT_BURST="1000")
    edge_url = f"http://127.0.0.1:{edge_port}"
    try:
        harness.wait_http(f"{edge_url}/readyz", 60, hint=f"; logs in {b.logs}")
        yield Deployment(a, b, edge_url, pool_port)
    finally:
        a.processes.stop_all()
        b.processes.stop_all()


def test_each_install_runs_its_own_copy(deployment: Deployment) -> None:
    for install in (deployment.a, deployment.b):
        where = subprocess.run(
            [sys.executable, "-c", "import app, app.contracts.submission as s, app.settings as "
             "c; print(app.__file__); print(s.SCHEMAS_DIR); print(c.PROJECT_ROOT)"],
            cwd=install.root, env=install.env(), capture_output=True, text=True, check=True,
        ).stdout.split()
        assert all(Path(p).is_relative_to(install.root) for p in where), where
    assert deployment.a.root != deployment.b.root


async def submit_status(http: aiohttp.ClientSession, url: str, key: str) -> int:
    async with http.post(f"{url}/submit", json=beat1(),
                         headers={"Authorization": f"Bearer {key}"},
                         timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status


async def seconds_until(http: aiohttp.ClientSession, url: str, key: str, wanted: int,
                        bound_s: float) -> float:
    """How long after now B's edge first answers `wanted` to this key; AssertionError if it
    does not within `bound_s` (polled every 50 ms)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen: list[int] = []
    while True:
        status = await submit_status(http, url, key)
        elapsed = loop.time() - started
        if status == wanted:
            return elapsed
        seen.append(status)
        if elapsed > bound_s:
            raise AssertionError(f"B's edge still answers {seen[-1]} after {elapsed:.2f}s "
                                 f"(wanted {wanted}; answers seen {sorted(set(seen))})")
        await asyncio.sleep(0.05)


async def test_a_key_of_install_a_works_on_install_b_within_2s(deployment: Deployment) -> None:
    a, url = deployment.a, deployment.edge_url
    async with aiohttp.ClientSession() as http:
        # Measured from the moment A's command returned (the write is acknowledged then).
        cli_started = time.monotonic()
        key = a.cli("keys", "create", "--workspace", WORKSPACE, "--team", TEAM_A).strip()
        create_took = time.monotonic() - cli_started
        accepted_after = await seconds_until(http, url, key, 202, PROPAGATION_BOUND_S)
        key_id = key.split("_")[1]
        cli_started = time.monotonic()
        assert "revoked" in a.cli("keys", "revoke", key_id)
        revoke_took = time.monotonic() - cli_started
        refused_after = await seconds_until(http, url, key, 401, PROPAGATION_BOUND_S)
        # Stays refused: the revocation is the topic's latest word, not a blip.
        for _ in range(5):
            assert await submit_status(http, url, key) == 401
    print(f"\nkey propagation A->B (after A's command returned; bound {PROPAGATION_BOUND_S} s):"
          f" accepted after {accepted_after:.3f} s (keys create took {create_took:.2f} s), "
          f"refused after {refused_after:.3f} s (keys revoke took {revoke_took:.2f} s)")
    # Nothing but Kafka carried it: no file of either copy holds the key's id.
    for install in (deployment.a, deployment.b):
        for path in install.root.rglob("*"):
            if path.is_file() and not path.is_relative_to(install.root / "var" / "worker"):
                assert key_id.encode() not in path.read_bytes(), path


# ---- two workers behind one pool address ---------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length",
              "upgrade", "te", "trailer", "proxy-authorization", "proxy-authenticate"}


class RoundRobinProxy:
    """The load-balanced service name in front of the workers: each request goes to the next
    upstream in turn, as a kube-proxy or a Docker DNS round robin would send it."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self._next = itertools.cycle(range(len(upstreams)))
        self.served: list[tuple[str, str, int]] = []  # (upstream, path, status)
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert self._http is not None
        upstream = self.upstreams[next(self._next)]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            async with self._http.request(request.method, upstream + request.path_qs,
                                          headers=headers, data=await request.read(),
                                          timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.read()
                self.served.append((upstream, request.path, resp.status))
                return web.Response(status=resp.status, body=body, headers={
                    "Content-Type": resp.headers.get("Content-Type", "application/json")})
        except (aiohttp.ClientError, TimeoutError):
            self.served.append((upstream, request.path, 502))
            return web.Response(status=502, text="upstream did not answer")

    async def start(self, port: int) -> None:
        self._http = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()


def wait_workers_ready(installs: list[Install], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not all("Worker ready" in i.log_of("worker") for i in installs):
        for install in installs:
            proc = install.processes.procs.get("worker")
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"worker of install {install.name} exited "
                                     f"{proc.returncode}:\n{install.log_of('worker')[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("workers not ready:\n" + "\n".join(
                i.log_of("worker")[-1500:] for i in installs))
        time.sleep(0.3)


@dataclass
class Pool:
    deployment: Deployment
    workers: dict[str, Install]  # worker URL -> the install it runs from
    key_a: str  # team A: submits the calls
    key_b: str  # team B, same workspace: must see none of them


@pytest.fixture(scope="module")
def pool(deployment: Deployment) -> Iterator[Pool]:
    """One worker from each copy (own web port, own data dir under its cwd), one group."""
    a, b = deployment.a, deployment.b
    workers: dict[str, Install] = {}
    for install in (a, b):
        port = harness.free_port()
        install.start("worker", ["worker", "--web-port", str(port)],
                      BROKER_SESSION_TIMEOUT="10", BROKER_HEARTBEAT_INTERVAL="1")
        workers[f"http://127.0.0.1:{port}"] = install
    try:
        wait_workers_ready([a, b])
        key_a = a.cli("keys", "create", "--workspace", WORKSPACE, "--team", TEAM_A).strip()
        key_b = b.cli("keys", "create", "--workspace", WORKSPACE, "--team", TEAM_B).strip()
        yield Pool(deployment, workers, key_a, key_b)
    finally:
        for install in (a, b):
            install.processes.stop("worker")


async def ask_worker(http: aiohttp.ClientSession, base: str, call_id: str,
                     headers: dict[str, str]) -> tuple[int, str]:
    async with http.get(f"{base}/calls/{call_id}", headers=headers,
                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status, await resp.text()


def state_is(expected: dict[str, Any]) -> Any:
    def check(status: int, body: Any) -> bool:
        return status == 200 and isinstance(body, dict) and body.get("status") == expected[
            "status"] and body["call"].get("duration") == expected["duration"]
    return check


async def submit_calls(pool: Pool, count: int) -> dict[str, dict[str, Any]]:
    """`count` calls of team A through the edge: every other one finished (transcribing,
    duration 42), the rest only begun; what GET /calls must then answer for each."""
    expected: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            call_id = new_call_id()
            finished = i % 2 == 0
            for body in ([beat1(call_id), beat2(call_id)] if finished else [beat1(call_id)]):
                async with http.post(f"{pool.deployment.edge_url}/submit", json=body,
                                     headers={"Authorization": f"Bearer {pool.key_a}"}) as resp:
                    assert resp.status == 202, await resp.text()
            expected[call_id] = {"status": "transcribing" if finished else "received",
                                 "duration": 42 if finished else None}
    return expected


async def owners_of(pool: Pool, calls: dict[str, dict[str, Any]],
                    timeout_s: float = 90) -> dict[str, str]:
    """The worker that owns each call, asked not to forward (only the owner answers 200, and
    only once it has merged the call's beats); bounded wait until every call has one."""
    owners: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            owners.clear()
            for call_id, want in calls.items():
                for base in pool.workers:
                    status, text = await ask_worker(http, base, call_id, {
                        "Authorization": f"Bearer {pool.key_a}", FORWARDED_HEADER: "test"})
                    # 404: the owner has not merged the call yet; 421: not the owner;
                    # 503: rebalancing.
                    assert status in (200, 404, 421, 503), (base, status, text)
                    if status == 200 and state_is(want)(200, orjson.loads(text)["teams"][TEAM_A]):
                        assert call_id not in owners, "two workers answer for one call"
                        owners[call_id] = base
            if set(owners) == set(calls):
                return owners
            assert time.monotonic() < deadline, f"no owner for {set(calls) - set(owners)}"
            await asyncio.sleep(1)


async def test_two_workers_from_two_copies_behind_one_pool_address(pool: Pool) -> None:
    edge = pool.deployment.edge_url
    proxy = RoundRobinProxy(list(pool.workers))
    await proxy.start(pool.deployment.pool_port)
    try:
        for install in pool.workers.values():  # each copy keeps its table in its own cwd
            assert (install.root / "var" / "worker").is_dir(), install.name
        expected = await submit_calls(pool, 24)
        owners = await owners_of(pool, expected)
        assert set(owners.values()) == set(pool.workers), "one worker owns every call"

        # The edge knows only the pool address; every call answers 200 with its state,
        # whichever worker owns it.
        before = len(proxy.served)
        for call_id, want in expected.items():
            status, _, body = await get_call(edge, pool.key_a, call_id)
            assert state_is(want)(status, body), (call_id, status, body)
            assert body["callId"] == call_id and body["teamId"] == TEAM_A
        through_pool = proxy.served[before:]
        assert {upstream for upstream, _, _ in through_pool} == set(pool.workers)
        # Some requests reached a worker that does not own the call and still got the call:
        # forwarded to its owner (or, after a 421, asked again through the pool by the edge).
        assert any(owners[path.rsplit("/", 1)[1]] != upstream
                   for upstream, path, _ in through_pool), "the pool always hit the owner"

        some_call = next(iter(expected))
        async with aiohttp.ClientSession() as http:
            for base in pool.workers:
                # A worker port without a key, or with a wrong one: 401 and no call state.
                for headers in ({}, {"Authorization": "Bearer vx_000000000000_nope"}):
                    status, text = await ask_worker(http, base, some_call, headers)
                    assert status == 401 and some_call not in text and "teams" not in text
            # Another team's key: from the owner, the same 404 as no call at all.
            status, text = await ask_worker(http, owners[some_call], some_call, {
                "Authorization": f"Bearer {pool.key_b}", FORWARDED_HEADER: "test"})
            assert status == 404 and "teams" not in text, text
        status, _, body = await get_call(edge, pool.key_b, some_call)
        assert status == 404 and body["error"] == "not_found"
        assert (await get_call(edge, None, some_call))[0] == 401
    finally:
        await proxy.stop()


async def test_any_worker_answers_for_any_call(pool: Pool) -> None:
    """A sticky pool (an HTTP client that keeps its connection to one worker, as aiohttp does
    to a service name) must still get every call: each worker forwards to the owner."""
    expected = await submit_calls(pool, 12)
    owners = await owners_of(pool, expected)
    wrong: dict[str, tuple[str, int]] = {}
    async with aiohttp.ClientSession() as http:
        for call_id in expected:
            for base in pool.workers:
                status, text = await ask_worker(http, base, call_id,
                                                {"Authorization": f"Bearer {pool.key_a}"})
                role = "owner" if owners[call_id] == base else "not owner"
                if status != 200:
                    wrong[call_id] = (f"{base} ({role})", status)
                else:
                    assert orjson.loads(text)["teams"][TEAM_A]["callId"] == call_id
                status, text = await ask_worker(http, base, call_id,
                                                {"Authorization": f"Bearer {pool.key_b}"})
                if status != 404:
                    wrong[f"{call_id} as team B"] = (base, status)
    assert not wrong, f"{len(wrong)} of {2 * 2 * len(expected)} answers wrong: {wrong}"
