"""Broker tier: every test here runs against the real local Kafka broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from app.ops.keys import KeyAdmin
from tests.harness import PrivateBroker, free_port
from tests.integration.stack import Stack, broker_reachable, kafka_bootstrap

WORKSPACE = "c0ffee00-0000-4000-8000-000000000001"
TEAM_A = "c0ffee00-0000-4000-8000-00000000000a"
TEAM_B = "c0ffee00-0000-4000-8000-00000000000b"
FOREIGN_WORKSPACE = "c0ffee00-0000-4000-8000-000000000002"
FOREIGN_TEAM = "c0ffee00-0000-4000-8000-00000000000f"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.broker)


@dataclass(frozen=True)
class Keys:
    team_a: str
    team_b: str
    workspace: str
    foreign_workspace: str


@pytest.fixture(scope="session")
def bootstrap() -> str:
    bootstrap = kafka_bootstrap()
    if not broker_reachable(bootstrap):
        pytest.fail(f"no Kafka broker at {bootstrap}: run `make test` (it starts one) or "
                    "`make broker-up`, or set KAFKA_BOOTSTRAP")
    return bootstrap


@pytest.fixture(scope="session")
def stack(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One edge and one worker on topics unique to this test session."""
    stack = Stack(bootstrap=bootstrap, prefix=f"it-{uuid.uuid4().hex[:10]}.",
                  workdir=tmp_path_factory.mktemp("stack"))
    with stack.running():
        yield stack


@pytest.fixture(scope="session")
def keys(stack: Stack) -> Keys:
    async def create() -> Keys:
        admin = KeyAdmin(stack.settings)
        team_a, _ = await admin.create(workspace_id=WORKSPACE, team_id=TEAM_A, label="team A")
        team_b, _ = await admin.create(workspace_id=WORKSPACE, team_id=TEAM_B, label="team B")
        workspace, _ = await admin.create(workspace_id=WORKSPACE, team_id=None,
                                          label="workspace")
        foreign, _ = await admin.create(workspace_id=FOREIGN_WORKSPACE, team_id=None,
                                        label="foreign")
        await admin.add_team(FOREIGN_WORKSPACE, FOREIGN_TEAM)
        return Keys(team_a, team_b, workspace, foreign)

    return asyncio.run(create())


@pytest.fixture(scope="session")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    """A PRIVATE broker that admits clients only over SASL_SSL (SCRAM-SHA-512, a CA of its
    own) and mutual TLS, on free ports with its data under tmp; started once for the session
    by the tests that use it, stopped after them. Its client settings: `client_env()`."""
    broker = PrivateBroker(free_port(), tmp_path_factory.mktemp("secured") / "kafka",
                           security="sasl_ssl",
                           env={"KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m", "KAFKA_UP_TIMEOUT": "120"})
    broker.up()
    try:
        yield broker
    finally:
        broker.down()
