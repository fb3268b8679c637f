"""The worker's /healthz and /readyz (app/worker/health.py) on the Faust web app the worker
serves, without a broker: ready only once the table is recovered and while no rebalance or
recovery runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.settings import Settings
from app.worker.app import create_worker_app
from app.worker.health import readiness, register_health_views


@pytest.fixture
async def worker() -> AsyncIterator[tuple[Any, TestClient]]:
    app = create_worker_app(Settings(worker_store="memory://",
                                     worker_id=f"unit-health-{uuid.uuid4().hex[:8]}"))
    register_health_views(app)
    register_health_views(app)  # twice: still one route each
    client = TestClient(TestServer(app.web.web_app))  # type: ignore[attr-defined]
    await client.start_server()
    try:
        yield app, client
    finally:
        await client.close()


async def test_healthz_answers_while_the_process_runs(worker: tuple[Any, TestClient]) -> None:
    _, client = worker
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}


async def test_readyz_follows_recovery_and_rebalances(worker: tuple[Any, TestClient]) -> None:
    app, client = worker
    recovery = app.tables.recovery

    async def ready() -> tuple[int, dict[str, Any], str]:
        resp = await client.get("/readyz")
        return resp.status, await resp.json(), resp.headers.get("Retry-After", "")

    status, body, retry_after = await ready()
    assert status == 503 and body["reason"].startswith("starting") and retry_after.isdigit()
    recovery.completed.set()  # what Faust does when the first assignment is recovered
    assert await ready() == (200, {"status": "ready"}, "")
    app.rebalancing = True
    assert (await ready())[:2] == (503, {"status": "not ready", "reason": "rebalancing"})
    app.rebalancing = False
    recovery.in_recovery = True
    assert readiness(app) == "recovering its table"
    assert (await ready())[0] == 503
    recovery.in_recovery = False
    assert readiness(app) is None


def test_paths_are_registered_once(worker: tuple[Any, TestClient]) -> None:
    app, _ = worker
    paths = [r.canonical for r in app.web.web_app.router.resources()]
    assert paths.count("/healthz") == 1 and paths.count("/readyz") == 1


async def test_faust_views_that_would_leak_tenant_data_are_not_served() -> None:
    # Faust's /table/<name>/<key>/ answers any table row without a key (issue 9's leak);
    # /router/ and /graph/ show the topology. Only our own pages may be on the worker's port.
    app = create_worker_app(Settings(worker_store="memory://",
                                     worker_id=f"unit-views-{uuid.uuid4().hex[:8]}"))
    assert app.conf.web_bind == "127.0.0.1"
    app.web.init_server()  # what the worker does when its web server starts: the blueprints
    served = {r.canonical for r in app.web.web_app.router.resources()}  # type: ignore[attr-defined]
    assert served == {"/", "/calls/{call_id}", "/healthz", "/metrics", "/readyz"}
    client = TestClient(TestServer(app.web.web_app))  # type: ignore[attr-defined]
    await client.start_server()
    try:
        for path in ("/table/calls/", "/table/calls/some-call/", "/router/", "/graph/"):
            assert (await client.get(path)).status == 404, path
        index = await client.get("/")
        assert "table" not in (await index.text()).lower()
    finally:
        await client.close()
