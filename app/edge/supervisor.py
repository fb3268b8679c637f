"""`python -m app edge --workers N`: N edge processes sharing one port with SO_REUSEPORT.

Each process has its own event loop and its own Kafka producer; the kernel spreads incoming
connections across them. The parent only starts them, forwards SIGTERM/SIGINT and exits with
the first non-zero exit code. It points PROMETHEUS_MULTIPROC_DIR at a fresh directory (unless
one is set) so that /metrics on any process reports the sum over all of them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

from app.ops.metrics import MULTIPROC_ENV
from app.settings import Settings

log = logging.getLogger("voix.edge")


def run_edge_processes(settings: Settings, workers: int) -> int:
    with tempfile.TemporaryDirectory(prefix="voix-edge-metrics-") as metrics_dir:
        env = dict(os.environ)
        env.setdefault(MULTIPROC_ENV, metrics_dir)
        command = [sys.executable, "-m", "app", "edge", "--host", settings.edge_host,
                   "--port", str(settings.edge_port), "--reuse-port"]
        procs = [subprocess.Popen(command, env=env) for _ in range(workers)]
        log.info("started %d edge processes on port %d (pids %s)", workers, settings.edge_port,
                 ", ".join(str(p.pid) for p in procs))

        def stop_all(*_: object) -> None:
            for p in procs:
                if p.poll() is None:
                    p.terminate()

        signal.signal(signal.SIGTERM, stop_all)
        signal.signal(signal.SIGINT, stop_all)
        exit_code = 0
        while procs:
            for p in list(procs):
                code = p.poll()
                if code is None:
                    continue
                procs.remove(p)
                if code not in (0, -signal.SIGTERM, -signal.SIGINT) and exit_code == 0:
                    exit_code = code if code > 0 else 1
                    log.error("edge process %d exited with %d; stopping the others", p.pid, code)
                stop_all()
            time.sleep(0.2)
        return exit_code
