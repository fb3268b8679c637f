"""One bench run's rig, on the process harness the broker tests use (tests/harness.py): its
private broker and API key, the app processes it starts by name, their environment, wrk with
the CPU each role used, the helper processes that print one JSON line, and the workers'
/metrics. The phases (bench/phases.py) get a `Bench` and keep what they measure in
`bench.results`."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.contracts.api_keys import ApiKey, key_record, new_key
from app.contracts.ids import utc_now_iso
from app.ops.keys import KeyAdmin
from app.settings import PROJECT_ROOT, Settings
from bench.measure import CpuMeter, children, metric_sum
from tests import harness
from tests.harness import PrivateBroker, free_port, http_get

BENCH = PROJECT_ROOT / "bench"
PY = sys.executable
TEAM = "00000000-0000-4000-8000-0000000be7c1"
WORKSPACE = "00000000-0000-4000-8000-0000000be7c0"


def log(msg: str) -> None:
    tqdm.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}")


def run_json(argv: list[str]) -> dict[str, Any]:
    """Run a helper that prints one JSON line; its stderr is in the error if it fails."""
    out = harness.run(argv, timeout_s=900)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def metrics_or_empty(url: str) -> str:
    try:
        return http_get(url)
    except OSError:
        return ""


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    broker: PrivateBroker
    key: str = ""
    _key_record: ApiKey | None = None
    results: dict[str, Any] = field(default_factory=dict)
    # Set by the stack phase for the phases that load the whole pipeline.
    stack_port: int = 0
    stack_prefix: str = ""
    worker_ports: list[int] = field(default_factory=list)
    processes: harness.Processes = field(init=False)

    def __post_init__(self) -> None:
        self.processes = harness.Processes(self.workdir)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    # ---- processes -------------------------------------------------------------------------

    def setup(self) -> None:
        """Start the private broker and make the one API key every request uses."""
        log(f"private broker on {self.bootstrap}, data in {self.broker.data_dir}")
        self.broker.up()
        # One key for the whole run; topics() writes its record into each stack's keys topic.
        self.key, self._key_record = new_key(workspace_id=WORKSPACE, team_id=TEAM,
                                             label="bench", created_at=utc_now_iso())

    def env(self, prefix: str) -> dict[str, str]:
        env = harness.app_env(
            self.bootstrap, prefix,
            VOIX_LOG_LEVEL=self.args.log_level,
            VOIX_EDGE_PRODUCERS=str(self.args.edge_producers),
            # The bench posts with one API key; at the default per-key limit (100/s) it would
            # measure the 429 path. The limiter still runs on every request.
            VOIX_RATE_LIMIT_PER_S="1000000000", VOIX_RATE_LIMIT_BURST="1000000000")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return env

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.processes.start(name, argv, env)

    def start_app(self, name: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        """`python -m app ARGS` as process `name`."""
        return self.start(name, harness.app_argv(*args), env)

    def stop(self, name: str) -> None:
        self.processes.stop(name, timeout_s=30)

    def stop_all(self) -> None:
        self.processes.stop_all(timeout_s=30)

    def topics(self, prefix: str) -> None:
        """The stack's topics, and the run's API key on its keys topic."""
        env = self.env(prefix)
        harness.run(harness.app_argv("topics", "create"), env, timeout_s=120)
        assert self._key_record is not None, "setup() makes the key"
        asyncio.run(KeyAdmin(Settings.from_env(env)).write([key_record(self._key_record)]))

    def start_edge(self, prefix: str) -> int:
        """The edge with --edge-procs processes on a free port, ready; its port."""
        port = free_port()
        self.start_app("edge", self.env(prefix), "edge", "--port", str(port), "--workers",
                       str(self.args.edge_procs))
        harness.wait_http(f"http://127.0.0.1:{port}/readyz", 60)
        return port

    def start_worker(self, i: int, env: dict[str, str]) -> int:
        """Worker `i`, up to its /metrics page; its web port."""
        web_port = free_port()
        self.worker_ports.append(web_port)
        self.start_app(f"worker{i}", env, "worker", "--web-port", str(web_port),
                       "--data-dir", str(self.workdir / f"worker{i}"))
        harness.wait_http(f"http://127.0.0.1:{web_port}/metrics", 120)
        return web_port

    def cpu_groups(self) -> dict[str, list[int]]:
        """The processes whose CPU time each measurement reports, by role."""
        groups: dict[str, list[int]] = {}
        for name, proc in self.processes.procs.items():
            role = name.rstrip("0123456789")
            pids = children(proc.pid) if name == "edge" else []
            groups.setdefault(role, []).extend(pids or [proc.pid])
        broker_pid = self.broker.pid()
        if broker_pid is not None:
            groups["broker"] = [broker_pid]
        return groups

    def edge_pids(self, name: str = "edge") -> list[int]:
        proc = self.processes.procs.get(name)
        if proc is None:
            return []
        return children(proc.pid) or [proc.pid]

    def worker_pids(self) -> list[int]:
        return [p.pid for n, p in self.processes.procs.items() if n.startswith("worker")]

    # ---- the workers' /metrics -------------------------------------------------------------

    def worker_totals(self) -> tuple[float, float]:
        """Merges so far and consumer lag now, summed over the workers."""
        merges = lag = 0.0
        for web_port in self.worker_ports:
            try:
                text = http_get(f"http://127.0.0.1:{web_port}/metrics")
            except OSError:
                continue
            merges += metric_sum(text, "voix_worker_merges_total")
            lag += metric_sum(text, "voix_worker_consumer_lag")
        return merges, lag

    def wait_caught_up(self, timeout_s: float = 300) -> float:
        """Wait until the workers have no lag (bounded); returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.worker_totals()[1] == 0:
                break
            time.sleep(0.5)
        return time.monotonic() - started

    # ---- wrk -------------------------------------------------------------------------------

    def wrk(self, port: int, connections: int, seconds: float, mode: str = "pairs",
            calls_per_thread: int = 0, done_file: Path | None = None,
            sampler: Callable[[], None] | None = None) -> dict[str, Any]:
        """wrk with bench/submit.lua against the edge on `port` (2 threads); its figures, with
        accepted_per_s and the cores each role used during the run. With a done file, wrk is
        stopped once both threads wrote theirs (every call of their quota answered); `sampler`
        is called every 0.25 s while it runs."""
        tag = secrets.token_hex(4)
        argv = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{int(seconds)}s",
                "--timeout", "10s", "-s", str(BENCH / "submit.lua"), f"http://127.0.0.1:{port}",
                "--", self.key or "none", mode, tag, str(calls_per_thread)]
        if done_file is not None:
            argv.append(str(done_file))
        meter = CpuMeter.start(self.cpu_groups(), children_role="wrk")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started = time.monotonic()
        finished_at: float | None = None
        while proc.poll() is None:
            if sampler is not None:
                sampler()
            if done_file is not None and finished_at is None and done_file.exists() and \
                    len(done_file.read_text().split()) >= 2:
                finished_at = time.monotonic()
                proc.send_signal(signal.SIGINT)
            time.sleep(0.25)
        out = proc.stdout.read().decode() if proc.stdout else ""
        wall_s = time.monotonic() - started
        cores_used = meter.cores_used(wall_s)
        match = re.search(r"WRKJSON (\{.*\})", out)
        if not match:
            raise RuntimeError(f"wrk gave no result:\n{out}")
        result: dict[str, Any] = json.loads(match.group(1))
        wall = (finished_at or time.monotonic()) - started
        seconds_run = result["duration_us"] / 1e6 if done_file is None else wall
        result["seconds"] = seconds_run
        result["accepted_per_s"] = result["status"]["202"] / seconds_run
        result["connections"] = connections
        # Cores busy per role during the run (2.0 = both cores of a 2-core box).
        result["cores_used"] = cores_used
        return result
