"""The worker's /healthz and /readyz in a real worker process on the real broker."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson

from tests.integration.stack import Stack, free_port


def get(url: str) -> tuple[int | None, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:
        return None, {}


def test_worker_readyz_turns_200_once_it_consumes(bootstrap: str, tmp_path: Path) -> None:
    stack = Stack(bootstrap=bootstrap, prefix=f"it-health-{uuid.uuid4().hex[:8]}.",
                  workdir=tmp_path)
    stack.cli("topics", "create")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stack.processes.start("worker", [sys.executable, "-m", "app", "worker", "--web-port",
                                     str(port), "--data-dir", str(tmp_path / "data")],
                          stack.env())
    try:
        seen: list[int | None] = []
        deadline = time.monotonic() + 90
        while True:
            status, body = get(f"{base}/readyz")
            seen.append(status)
            if status == 200:
                assert body == {"status": "ready"}
                break
            assert status in (None, 503), (status, body)
            if status == 503:
                assert body["status"] == "not ready" and body["reason"], body
            assert time.monotonic() < deadline, f"not ready: {seen[-5:]}\n" + stack.log_of(
                "worker")[-3000:]
            time.sleep(0.2)
        assert "Worker ready" in stack.log_of("worker")
        assert get(f"{base}/healthz") == (200, {"status": "ok"})
    finally:
        stack.stop_all()
