"""`python -m app run`: the local stack in one command (what `make run` calls).

Creates the topics, makes sure a dev API key exists, starts N workers and one edge as child
processes, waits until the edge is ready, prints how to use it, and stops everything on Ctrl-C.
If any child dies, the others are stopped too and the exit code says so.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from app.ops.keys import KeyAdmin
from app.ops.topics import ensure_topics
from app.settings import Settings

DEV_WORKSPACE = "00000000-0000-4000-8000-00000000d001"
DEV_TEAM = "00000000-0000-4000-8000-00000000d002"


DEV_KEY_FILE = Path("var/dev-key")


def ensure_dev_key(settings: Settings, key_file: Path = DEV_KEY_FILE) -> str:
    """A team-scoped key for local use, kept in var/dev-key (git-ignored); made on the keys
    topic the first time, or again when the one in the file no longer works there."""
    admin = KeyAdmin(settings)
    if key_file.exists():
        presented = key_file.read_text().strip()
        if asyncio.run(admin.load()).authenticate(presented) is not None:
            return presented
    presented, _ = asyncio.run(admin.create(workspace_id=DEV_WORKSPACE, team_id=DEV_TEAM,
                                            label="make run"))
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(presented + "\n")
    key_file.chmod(0o600)
    return presented


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def run_stack(settings: Settings, workers: int = 1) -> int:
    created = asyncio.run(ensure_topics(settings))
    if created:
        print(f"created topics: {', '.join(created)}", flush=True)
    dev_key = ensure_dev_key(settings)

    python = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    worker_urls = ",".join(f"http://127.0.0.1:{settings.worker_web_port + i}"
                           for i in range(workers))
    # The edge asks these workers for GET /calls (each worker has its own web port).
    env = dict(os.environ, KAFKA_BOOTSTRAP=settings.kafka_bootstrap, VOIX_WORKER_URLS=worker_urls)
    for i in range(workers):
        data_dir = Path(settings.worker_data_dir) / f"w{i}"
        procs.append(subprocess.Popen(
            [python, "-m", "app", "worker", "--web-port", str(settings.worker_web_port + i),
             "--data-dir", str(data_dir)], env=env))
    procs.append(subprocess.Popen([python, "-m", "app", "edge"], env=env))

    stopped_by_user = False

    def on_signal(*_: object) -> None:
        nonlocal stopped_by_user
        stopped_by_user = True
        stop_all()

    def stop_all() -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    base = f"http://{settings.edge_host}:{settings.edge_port}"
    if not _wait_ready(f"{base}/readyz", procs, timeout_s=60):
        print("the stack did not become ready; see the logs above", file=sys.stderr)
        stop_all()
        for p in procs:
            p.wait(timeout=30)
        return 1
    example = ('{"callId":"1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed","from":"+31612345678",'
               '"to":"+31201234567","startTime":"2026-06-16T09:05:35.000Z","outgoing":false}')
    plural = "s" if workers != 1 else ""
    print(f"""
voix-ingest is running ({workers} worker{plural}, 1 edge, Kafka at {settings.kafka_bootstrap})
  edge:    {base}  (POST /submit, GET /calls/{{callId}}, GET /healthz, GET /readyz)
  dev key: {dev_key}   (team {DEV_TEAM}; also in var/dev-key)
  try:     curl -s -X POST {base}/submit -H "Authorization: Bearer $(cat var/dev-key)" \\
             -H 'Content-Type: application/json' \\
             -d '{example}'
Ctrl-C stops everything.
""", flush=True)
    # Supervise: the first child to exit takes the others down with it.
    while all(p.poll() is None for p in procs):
        time.sleep(0.5)
    stop_all()
    codes = [p.wait(timeout=60) for p in procs]
    if stopped_by_user:
        return 0  # Ctrl-C or SIGTERM: children stopping on the signal is not a failure
    return max((c if c > 0 else 1 for c in codes if c), default=0)
