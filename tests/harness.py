"""The process harness shared by the broker tests (tests/integration, tests/faults) and the
benchmarks (bench/): the app's own CLI (`python -m app edge|worker|...`) started as child
processes with an environment and a log file each, free ports, waiting for an HTTP URL,
stopping and killing, reading logs, and a private Kafka broker run by broker/kafka.sh.

    processes = Processes(workdir)
    processes.start("edge", app_argv("edge", "--port", str(port)),
                    app_env(bootstrap, prefix))
    wait_http(f"http://127.0.0.1:{port}/readyz")
    ...
    processes.stop_all()

What a test stack adds on top (topic names, the edge and worker flags, reading topics) is in
tests/integration/stack.py; what the benchmarks add (wrk, CPU accounting) in bench/harness.py.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import PROJECT_ROOT

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
KAFKA_SH = PROJECT_ROOT / "broker" / "kafka.sh"


# ---- ports, brokers and HTTP -----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kafka_bootstrap() -> str:
    """The shared broker: KAFKA_BOOTSTRAP, else the one `make broker-up` starts."""
    return os.environ.get("KAFKA_BOOTSTRAP") or DEFAULT_BOOTSTRAP


def broker_reachable(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """Does GET `url` answer 200?"""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def http_get(url: str, timeout_s: float = 5.0) -> str:
    """The body of GET `url`; raises OSError (URLError, HTTPError) if it does not answer."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return str(resp.read().decode())


def wait_http(url: str, timeout_s: float = 30.0, hint: str = "") -> None:
    """Until GET `url` answers 200; TimeoutError (with `hint` appended) after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http_ok(url):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s}s{hint}")


# ---- commands run to their end ---------------------------------------------------------------

def app_argv(*args: str) -> list[str]:
    """The app's CLI as users run it: `python -m app ARGS`."""
    return [sys.executable, "-m", "app", *args]


def app_env(bootstrap: str, prefix: str, **extra: str) -> dict[str, str]:
    """This process's environment plus what puts an app process on its own topics (`prefix`,
    the keys topic included) and consumer group; `extra` last."""
    return {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "VOIX_TOPIC_PREFIX": prefix,
            "VOIX_WORKER_ID": f"{prefix}worker", **extra}


class CommandFailed(subprocess.CalledProcessError):
    """A CalledProcessError whose message shows the command's stderr."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} failed ({self.returncode}):\n{self.stderr}"


def run(argv: Sequence[str], env: dict[str, str] | None = None, timeout_s: float = 60.0) -> str:
    """Run a command in the project root to its end; its stdout. CommandFailed if it fails."""
    proc = subprocess.run(list(argv), env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        raise CommandFailed(proc.returncode, list(argv), proc.stdout, proc.stderr)
    return proc.stdout


# ---- long-running processes -----------------------------------------------------------------

@dataclass
class Processes:
    """Named child processes, each started in the project root with stdout and stderr going
    to `workdir/<name>.log` (appended to, so a restarted process keeps one log)."""

    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log_of(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log_path(name).open("ab") as log:  # the child keeps its own fd
            proc = subprocess.Popen(list(argv), env=env, cwd=PROJECT_ROOT, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def stop(self, name: str, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit code (None: no such process)."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self, name: str) -> int | None:
        """SIGKILL, as a crash or the OOM killer would: no shutdown code runs."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        proc.kill()
        return proc.wait(timeout=30)

    def stop_all(self, timeout_s: float = 20.0) -> None:
        for name in list(self.procs):
            self.stop(name, timeout_s)


# ---- a private broker -----------------------------------------------------------------------

@dataclass
class PrivateBroker:
    """A single-node Kafka broker of our own on `port` with its data in `data_dir`, started and
    stopped with broker/kafka.sh; never the shared one on 9092."""

    port: int
    data_dir: Path
    controller_port: int | None = None  # None: a free one each time kafka.sh runs
    env: dict[str, str] = field(default_factory=dict)  # more kafka.sh settings (KAFKA_HEAP_OPTS)
    show_output: bool = False  # False: kafka.sh's output is captured, not shown
    timeout_s: float | None = 180.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The broker's pid while kafka.sh has it running."""
        with contextlib.suppress(OSError, ValueError):
            return int((self.data_dir / "kafka.pid").read_text())
        return None

    def run(self, action: str) -> None:
        """`broker/kafka.sh ACTION` (up, down, kill, status, ...) for this broker."""
        assert self.port != 9092, "a private broker never takes the shared broker's port"
        env = {**os.environ, "KAFKA_PORT": str(self.port),
               "KAFKA_CONTROLLER_PORT": str(self.controller_port or free_port()),
               "KAFKA_DATA_DIR": str(self.data_dir), **self.env}
        # Shown: what kafka.sh says, except the line `down` prints; else captured.
        shown = self.show_output
        stdout = (subprocess.DEVNULL if action == "down" else None) if shown else subprocess.PIPE
        subprocess.run(["bash", str(KAFKA_SH), action], env=env, check=True, cwd=PROJECT_ROOT,
                       timeout=self.timeout_s, stdout=stdout,
                       stderr=None if shown else subprocess.PIPE)

    def up(self) -> None:
        self.run("up")

    def down(self) -> None:
        self.run("down")

    def kill(self) -> None:
        self.run("kill")
