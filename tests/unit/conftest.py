"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.test_edge import Edge, start_edge


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    """An edge on a test server with a recording publisher and in-memory keys."""
    started = await start_edge()
    try:
        yield started
    finally:
        await started.client.close()
