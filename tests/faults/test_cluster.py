"""Scenario 6: a PRIVATE 3-node KRaft cluster (every node broker and controller), topics with
replication factor 3 and min.insync.replicas 2 (what `topics create` picks for 3 brokers),
under load from the driver:

1. kill -9 the leader of the busiest submissions partition, then start it again;
2. kill -9 another node and keep it down: one of three down, the edge must go on taking writes;
3. kill -9 a second node: two of three down, the controller quorum is lost and produce times
   out; POST /submit must answer 503 with Retry-After within VOIX_PRODUCE_TIMEOUT_S (3 s),
   never 202;
4. start both again; the driver's retries finish.

Nothing the edge acknowledged may be lost (tests/faults/checker.py). A 503 means "may or may
not be stored": a send that timed out may still be written later, which is why the driver
retries with the same body. The shared broker is never touched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.factories import beat1
from tests.faults.checker import Fault
from tests.faults.conftest import record_figures
from tests.faults.loadgen import OK, Ledger, LoadDriver
from tests.faults.test_faults import CALLS, Scenario, assert_no_loss, make_stack, until_calls
from tests.harness import PrivateCluster

NODES = 3
PRODUCE_TIMEOUT_S = 3.0
ONE_DOWN_S = 14.0  # how long one of three nodes stays down (phase 2)
TWO_DOWN_S = 10.0  # how long two of three nodes stay down (phase 3)
# Calls started per second: slow enough that the load outlasts the faults (node starts take
# 10-30 s on a busy 2-core box), for about 100 s.
RATE = CALLS / 100
# A 503 is the edge's own timeout plus the HTTP round trip on a busy 2-core box.
ANSWER_SLACK_S = 1.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(tmp_path / "cluster", nodes=NODES)
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()


async def partitions(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Leader, replicas and ISR of each partition, as a live node reports them (the admin
    client may first pick a dead node: a few tries)."""
    last: Exception | None = None
    for _ in range(10):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            [described] = await admin.describe_topics([topic])
            return sorted(described["partitions"], key=lambda p: p["partition"])
        except Exception as exc:  # a dead node, stale metadata: ask again
            last = exc
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise AssertionError(f"cannot describe {topic}: {last!r}")


async def min_insync(bootstrap: str, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})])
    finally:
        await admin.close()
    for resource in response.resources:
        for entry in resource[4]:
            if entry[0] == "min.insync.replicas":
                return str(entry[1])
    raise AssertionError(f"no min.insync.replicas in {response}")


async def busiest_partition(bootstrap: str, topic: str, count: int) -> int:
    """The partition with the most records so far."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return max(ends, key=lambda tp: ends[tp]).partition


async def probe_while_down(url: str, key: str, seconds: float) -> list[tuple[int | None, float]]:
    """POST a new call every 0.5 s for `seconds`, without waiting for the answers: (status,
    seconds to the answer) of each; status None when there was no answer within 15 s."""

    async def one(http: aiohttp.ClientSession) -> tuple[int | None, float]:
        started = time.monotonic()
        try:
            async with http.post(f"{url}/submit", json=beat1(),
                                 headers={"Authorization": f"Bearer {key}"},
                                 timeout=aiohttp.ClientTimeout(total=15)) as resp:
                if resp.status == 503:
                    assert resp.headers.get("Retry-After", "").isdigit(), dict(resp.headers)
                return resp.status, time.monotonic() - started
        except (aiohttp.ClientError, TimeoutError):
            return None, time.monotonic() - started

    async with aiohttp.ClientSession() as http:
        sent = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent.append(asyncio.create_task(one(http)))
            await asyncio.sleep(0.5)
        return list(await asyncio.gather(*sent))


def attempts_between(ledger: Ledger, start: float, end: float) -> list[Any]:
    return [a for a in ledger.attempts if start <= a.sent_at < end]


async def test_cluster_nodes_killed_under_load(cluster: PrivateCluster, tmp_path: Path) -> None:
    stack, keys = make_stack(cluster.bootstrap, tmp_path / "stack")
    scenario = Scenario(stack, keys)
    topic = stack.topics.submissions
    # What `topics create` chose for 3 brokers: 3 copies, 2 of them needed for an ack.
    layout = await partitions(cluster.bootstrap, topic)
    assert len(layout) == stack.settings.partitions, layout
    assert all(len(p["replicas"]) == NODES for p in layout), layout
    assert await min_insync(cluster.bootstrap, topic) == "2"
    assert await min_insync(cluster.bootstrap, stack.topics.jobs) == "2"

    windows: dict[str, tuple[float, float]] = {}
    probes: list[tuple[int | None, float]] = []
    killed: list[int] = []
    try:
        scenario.start_worker()
        await asyncio.to_thread(scenario.start_edge)  # EDGE_ENV: VOIX_PRODUCE_TIMEOUT_S=3
        await scenario.wait_worker_assigned()

        async def kill(node: int) -> None:
            await asyncio.to_thread(cluster.kill, node)
            killed.append(node)

        async def inject(driver: LoadDriver, faults: list[Fault]) -> None:
            # 1. the leader of the busiest submissions partition, killed and started again
            await until_calls(driver, 0.05)
            busiest = await busiest_partition(cluster.bootstrap, topic, len(layout))
            leader = next(p["leader"] for p in await partitions(cluster.bootstrap, topic)
                          if p["partition"] == busiest)
            began = time.time()
            await kill(leader)
            await asyncio.sleep(4)
            restarted = time.time()
            await asyncio.to_thread(cluster.start, leader)
            faults.append(Fault(f"kill -9 node {leader} (leader of p{busiest})", began,
                                restarted))

            # 2. another node down, and left down
            await asyncio.sleep(2)
            other = leader % NODES + 1
            began = time.time()
            await kill(other)
            await asyncio.sleep(ONE_DOWN_S)
            # Leadership moves once the killed node is fenced (3 s): measured from then on.
            windows["one down"] = (began + 6, time.time())

            # 3. a second node: two of three down, no controller quorum
            second = next(n for n in range(1, NODES + 1) if n not in (other, leader))
            await kill(second)
            down_from = time.time()
            probes.extend(await probe_while_down(stack.url, keys[0].key, TWO_DOWN_S))
            restarted = time.time()
            windows["two down"] = (down_from, restarted)
            # The load must still be running, or this window tested only the probes.
            assert driver.finished_calls < driver.calls, "the load ended before 2 of 3 down"
            # 4. both back (the first start restores the quorum)
            await asyncio.to_thread(cluster.start, second)
            await asyncio.to_thread(cluster.start, other)
            faults.append(Fault(f"kill -9 node {other}, then node {second}: 2 of 3 down "
                                f"{restarted - down_from:.0f} s", began, restarted))

        result, ledger = await scenario.run_restarting_worker(
            "6 3-node cluster: kill -9 leader + restart, kill -9 2nd node, then 3rd",
            scenario.driver(calls=CALLS, rate=RATE), inject)
    finally:
        stack.stop_all()

    one_down = attempts_between(ledger, *windows["one down"])
    two_down = attempts_between(ledger, *windows["two down"])
    ok_one_down = sum(a.outcome == OK for a in one_down)
    slowest = max((took for _, took in probes), default=0.0)
    result.notes.append(f"1 of 3 down: {ok_one_down}/{len(one_down)} requests 2xx")
    result.notes.append(
        f"2 of 3 down {TWO_DOWN_S:.0f} s: {len(probes)} probes, "
        + " ".join(f"{s}:{sum(1 for p in probes if p[0] == s)}"
                   for s in sorted({p[0] for p in probes}, key=str))
        + f", slowest answer {slowest:.2f} s; load requests {len(two_down)}, "
          f"2xx {sum(a.outcome == OK for a in two_down)}")
    record_figures(result.as_row())

    # Two of three down: 503 with Retry-After (checked per probe), within the produce timeout,
    # never 202; and no 2xx either for any request of the load driver sent in that window.
    assert probes and all(status == 503 for status, _ in probes), probes
    assert slowest <= PRODUCE_TIMEOUT_S + ANSWER_SLACK_S, probes
    assert not [a for a in two_down if a.outcome == OK], two_down
    # One of three down: the cluster still acknowledges writes (RF 3, min ISR 2).
    assert one_down and ok_one_down >= 0.9 * len(one_down), one_down
    statuses = {int(s) for s in result.statuses if s.isdigit()}
    assert statuses <= {202, 503}, result.statuses
    assert "no answer" not in result.statuses, result.statuses
    assert_no_loss(result, ledger)
    assert result.acknowledged == result.calls
    assert sorted(killed) == list(range(1, NODES + 1)), killed  # each node was killed once

