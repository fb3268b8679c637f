"""Fault-injection scenarios: every test here is marked `faults` (run with `make test-faults`).
Each scenario appends its figures to a results file; the table is printed at the end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.settings import PROJECT_ROOT
from tests.faults.checker import table

RESULTS = Path(os.environ.get("VOIX_FAULTS_RESULTS") or PROJECT_ROOT / "var" / "faults.json")
_rows: list[dict[str, Any]] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults" in str(item.path):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.broker)


def record_figures(row: dict[str, Any]) -> None:
    _rows.append(row)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(_rows, option=orjson.OPT_INDENT_2))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _rows:
        terminalreporter.section("fault-injection figures")
        terminalreporter.write_line(table(_rows))
        terminalreporter.write_line(f"(also in {RESULTS})")
