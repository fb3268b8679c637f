"""Fault injection on the real broker: nothing acknowledged is lost, nothing is duplicated
(or, where Kafka's at-least-once shows through, only with the same jobId), and the edge answers
only 202 or 503 while the broker is away.

Every scenario runs the real processes (`python -m app edge|worker`) on topics of its own; the
one that stops the broker starts a PRIVATE broker for it and never touches the shared one.
Figures go to docs/reliability.md; `make test-faults` prints them.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.checker import Fault, Figures, figures, read_jobs
from tests.faults.conftest import record_figures
from tests.faults.loadgen import Ledger, LoadDriver, TeamKey
from tests.harness import PrivateBroker
from tests.integration.stack import Stack, broker_reachable, free_port, kafka_bootstrap

WORKSPACE = "fa017000-0000-4000-8000-000000000001"
TEAMS = ("fa017000-0000-4000-8000-0000000000a1", "fa017000-0000-4000-8000-0000000000b2")
CALLS = int(os.environ.get("VOIX_FAULTS_CALLS") or 400)
RETRY_SHARE = 0.1

# What production runs too: table state on disk (rocksdb), so a killed worker restarts from its
# own state plus the changelog. Faust's 60 s default session timeout would make every kill -9 a
# minute-long stall; these values are Faust's own environment settings.
WORKER_ENV = {
    "VOIX_WORKER_STORE": "rocksdb://",
    "BROKER_SESSION_TIMEOUT": "10",
    "BROKER_HEARTBEAT_INTERVAL": "1",
    "BROKER_REBALANCE_TIMEOUT": "20",
}
EDGE_ENV = {"VOIX_RATE_LIMIT_PER_S": "100000", "VOIX_RATE_LIMIT_BURST": "100000",
            "VOIX_PRODUCE_TIMEOUT_S": "3", "VOIX_RETRY_AFTER_S": "1"}


@dataclass
class Scenario:
    stack: Stack
    keys: list[TeamKey]

    def start_worker(self, name: str = "worker", **env: str) -> None:
        self.stack.start_worker(name, None, **{**WORKER_ENV, **env})

    def start_edge(self) -> None:
        self.stack.start("edge", ["edge", "--port", str(self.stack.edge_port)], **EDGE_ENV)
        self.stack.wait_http(f"{self.stack.url}/readyz", timeout_s=60)

    async def wait_worker_assigned(self, name: str = "worker", timeout_s: float = 90) -> None:
        """Until the worker logs that it is processing (its partitions are assigned)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            log = self.stack.log_of(name) if (self.stack.workdir / f"{name}.log").exists() else ""
            if "Worker ready" in log or "[^Worker]: Ready" in log:
                return
            proc = self.stack.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{log[-3000:]}")
            await asyncio.sleep(0.2)
        tail = self.stack.log_of(name)[-3000:]
        raise AssertionError(f"{name} not ready after {timeout_s}s:\n{tail}")

    def driver(self, calls: int = CALLS, rate: float = 40.0, concurrency: int = 32) -> LoadDriver:
        return LoadDriver(self.stack.url, self.keys, calls, rate_per_s=rate,
                          retry_share=RETRY_SHARE, concurrency=concurrency,
                          request_timeout_s=15.0, retry_deadline_s=180.0,
                          seed=uuid.uuid4().int & 0xFFFF)

    async def run(self, name: str, driver: LoadDriver,
                  inject: Callable[[LoadDriver, list[Fault]], Awaitable[None]] | None = None,
                  ) -> tuple[Figures, Ledger]:
        faults: list[Fault] = []
        load = asyncio.create_task(driver.run())
        if inject is not None:
            await inject(driver, faults)
        ledger = await asyncio.wait_for(load, timeout=600)
        jobs = await read_jobs(self.stack.bootstrap, self.stack.topics.jobs,
                               set(ledger.acknowledged()), timeout_s=180)
        return figures(name, ledger, jobs, faults), ledger

    async def run_restarting_worker(
            self, name: str, driver: LoadDriver,
            inject: Callable[[LoadDriver, list[Fault]], Awaitable[None]],
            ) -> tuple[Figures, Ledger]:
        """`run`, with the worker started again whenever it exits, as systemd's
        Restart=on-failure would (a worker that cannot reach Kafka at start gives up)."""
        restarts = 0

        async def supervise() -> None:
            nonlocal restarts
            while True:
                proc = self.stack.procs.get("worker")
                if proc is not None and proc.poll() is not None:
                    restarts += 1
                    self.start_worker()
                await asyncio.sleep(0.5)

        supervisor = asyncio.create_task(supervise())
        try:
            result, ledger = await self.run(name, driver, inject)
        finally:
            supervisor.cancel()
        if restarts:
            result.notes.append(f"worker restarted {restarts}x by the supervisor")
        return result, ledger


async def until_calls(driver: LoadDriver, share: float, timeout_s: float = 300) -> None:
    """Wait until `share` of the driver's calls are done (faults land mid-stream)."""
    deadline = time.monotonic() + timeout_s
    while driver.finished_calls < share * driver.calls:
        if time.monotonic() > deadline:
            raise AssertionError(f"load stalled at {driver.finished_calls}/{driver.calls}")
        await asyncio.sleep(0.05)


def make_stack(bootstrap: str, workdir: Path) -> tuple[Stack, list[TeamKey]]:
    stack = Stack(bootstrap=bootstrap, prefix=f"faults-{uuid.uuid4().hex[:10]}.",
                  workdir=workdir)
    stack.cli("topics", "create")
    keys = [TeamKey(stack.cli("keys", "create", "--workspace", WORKSPACE, "--team",
                              team).strip(), team) for team in TEAMS]
    return stack, keys


@pytest.fixture
def bootstrap() -> str:
    bootstrap = kafka_bootstrap()
    if not broker_reachable(bootstrap):
        pytest.fail(f"no Kafka broker at {bootstrap}: run `make broker-up`")
    return bootstrap


@pytest.fixture
async def scenario(bootstrap: str, tmp_path: Path) -> AsyncIterator[Scenario]:
    stack, keys = make_stack(bootstrap, tmp_path)
    try:
        yield Scenario(stack, keys)
    finally:
        stack.stop_all()


def assert_no_loss(result: Figures, ledger: Ledger) -> None:
    assert result.acknowledged > 0.9 * result.calls, ledger.summary()
    assert result.lost == 0, result
    assert result.foreign == 0, result
    assert "500" not in result.statuses, result


# ---- 1. no faults ----------------------------------------------------------------------

async def test_no_faults(scenario: Scenario) -> None:
    scenario.start_worker()
    scenario.start_edge()
    await scenario.wait_worker_assigned()
    result, ledger = await scenario.run("1 no faults", scenario.driver(rate=80))
    record_figures(result.as_row())
    assert_no_loss(result, ledger)
    assert result.acknowledged == result.calls
    assert result.duplicates == 0 and result.jobs == result.calls, result


# ---- 2. kill -9 the worker three times -------------------------------------------------

# Faust's exactly_once lost acknowledged calls in this scenario (docs/reliability.md), so it is
# an opt-in experiment: VOIX_FAULTS_EXACTLY_ONCE=1 make test-faults.
GUARANTEES = ["at_least_once"] + (["exactly_once"] if os.environ.get("VOIX_FAULTS_EXACTLY_ONCE")
                                  else [])


@pytest.mark.parametrize("guarantee", GUARANTEES)
async def test_worker_killed_three_times(scenario: Scenario, guarantee: str) -> None:
    env = {"VOIX_PROCESSING_GUARANTEE": guarantee}
    scenario.start_worker(**env)
    scenario.start_edge()
    await scenario.wait_worker_assigned()

    async def inject(driver: LoadDriver, faults: list[Fault]) -> None:
        for share in (0.2, 0.45, 0.7):
            await until_calls(driver, share)
            began = time.time()
            scenario.stack.kill("worker")
            await asyncio.sleep(1.0)
            scenario.start_worker(**env)  # same data dir: its rocksdb state survives
            faults.append(Fault("kill -9 worker", began, time.time()))

    result, ledger = await scenario.run(f"2 kill -9 worker x3 ({guarantee})",
                                        scenario.driver(calls=int(CALLS * 1.5), rate=20),
                                        inject)
    record_figures(result.as_row())
    assert_no_loss(result, ledger)
    assert result.acknowledged == result.calls


# ---- 3. stop the broker under load -----------------------------------------------------

@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(free_port(), tmp_path / "kafka",
                           env={"KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m", "KAFKA_UP_TIMEOUT": "120"})
    broker.up()
    try:
        yield broker
    finally:
        broker.kill()


async def test_broker_stopped_under_load(private_broker: PrivateBroker, tmp_path: Path) -> None:
    stack, keys = make_stack(private_broker.bootstrap, tmp_path / "stack")
    scenario = Scenario(stack, keys)
    try:
        scenario.start_worker()
        scenario.start_edge()
        await scenario.wait_worker_assigned()

        async def inject(driver: LoadDriver, faults: list[Fault]) -> None:
            await until_calls(driver, 0.3)
            began = time.time()
            await asyncio.to_thread(private_broker.kill)
            await asyncio.sleep(8)
            # Repaired when the broker starts: the worker can write jobs before up() has
            # confirmed it is ready (that confirmation polls), so a later stamp can miss them.
            restarted = time.time()
            await asyncio.to_thread(private_broker.up)
            faults.append(Fault("broker kill -9 for 8 s", began, restarted))

        result, ledger = await scenario.run_restarting_worker(
            "3 broker down 8 s", scenario.driver(rate=25), inject)
        record_figures(result.as_row())
    finally:
        stack.stop_all()
    statuses = {int(s) for s in result.statuses if s.isdigit()}
    assert statuses <= {202, 503}, result.statuses  # never 500, never another status
    assert "no answer" not in result.statuses, result.statuses  # never a hang or a reset
    assert_no_loss(result, ledger)
    assert result.acknowledged == result.calls


# ---- 4. a second worker joins, then leaves ---------------------------------------------

@pytest.mark.rebalance
async def test_second_worker_joins_and_leaves(scenario: Scenario) -> None:
    scenario.start_worker()
    scenario.start_edge()
    await scenario.wait_worker_assigned()

    async def inject(driver: LoadDriver, faults: list[Fault]) -> None:
        await until_calls(driver, 0.2)
        began = time.time()
        scenario.start_worker("worker-2")
        await scenario.wait_worker_assigned("worker-2")
        faults.append(Fault("worker-2 joins", began, time.time()))
        await until_calls(driver, 0.7)
        began = time.time()
        await asyncio.to_thread(scenario.stack.stop, "worker-2")  # SIGTERM, graceful
        faults.append(Fault("worker-2 leaves", began, time.time()))

    result, ledger = await scenario.run("4 worker joins, leaves",
                                        scenario.driver(calls=CALLS, rate=15), inject)
    record_figures(result.as_row())
    assert_no_loss(result, ledger)
    assert result.acknowledged == result.calls


# ---- 5. kill -9 the edge mid-burst -----------------------------------------------------

async def test_edge_killed_mid_burst(scenario: Scenario) -> None:
    scenario.start_worker()
    scenario.start_edge()
    await scenario.wait_worker_assigned()

    async def inject(driver: LoadDriver, faults: list[Fault]) -> None:
        await until_calls(driver, 0.4)
        began = time.time()
        scenario.stack.kill("edge")
        await asyncio.to_thread(scenario.start_edge)
        faults.append(Fault("kill -9 edge", began, time.time()))

    result, ledger = await scenario.run("5 kill -9 edge mid-burst",
                                        scenario.driver(rate=200, concurrency=64), inject)
    record_figures(result.as_row())
    assert_no_loss(result, ledger)
    assert result.acknowledged == result.calls
