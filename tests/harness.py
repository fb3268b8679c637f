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

A private broker can also be the SASL_SSL-only one (`PrivateBroker(..., security="sasl_ssl")`,
its client settings from `client_env()`), and `PrivateCluster` is a private N-node KRaft
cluster (`kafka.sh cluster-*` on free ports and a data dir of its own).
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


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


SHARED_PORTS = frozenset({9092, 10092, 9094, 9095, 10094})  # the shared brokers' ports


def free_port_block(count: int, offsets: Sequence[int] = (0,), tries: int = 200) -> int:
    """A port P such that P+o+i is free for every offset o and i < count (e.g. a cluster's
    broker ports and, 1000 above, their controller ports), none of them a shared broker's."""
    for _ in range(tries):
        base = free_port()
        wanted = [base + o + i for o in offsets for i in range(count)]
        if all(p < 65536 and p not in SHARED_PORTS and _port_free(p) for p in wanted):
            return base
    raise RuntimeError(f"no block of {count} free ports at offsets {list(offsets)}")


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


def run(argv: Sequence[str], env: dict[str, str] | None = None, timeout_s: float = 60.0,
        cwd: Path = PROJECT_ROOT) -> str:
    """Run a command (in the project root unless `cwd`) to its end; its stdout. CommandFailed
    if it fails."""
    proc = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        raise CommandFailed(proc.returncode, list(argv), proc.stdout, proc.stderr)
    return proc.stdout


# ---- long-running processes -----------------------------------------------------------------

@dataclass
class Processes:
    """Named child processes, each started in `cwd` (the project root unless said otherwise)
    with stdout and stderr going to `workdir/<name>.log` (appended to, so a restarted process
    keeps one log)."""

    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    cwd: Path = PROJECT_ROOT

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log_of(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log_path(name).open("ab") as log:  # the child keeps its own fd
            proc = subprocess.Popen(list(argv), env=env, cwd=self.cwd, stdout=log,
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

def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as kafka.sh writes client.env (no quotes, no comments)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def without_kafka_settings(env: dict[str, str]) -> dict[str, str]:
    """`env` without any KAFKA_* variable: a process configured only by what is added next."""
    return {k: v for k, v in env.items() if not k.startswith("KAFKA_")}


@dataclass
class PrivateBroker:
    """A single-node Kafka broker of our own on `port` with its data in `data_dir`, started and
    stopped with broker/kafka.sh; never the shared one on 9092.

    `security="sasl_ssl"`: the broker that admits clients only over SASL_SSL (SCRAM-SHA-512,
    a private CA) on `port` and mutual TLS on `mtls_port`; `client_env()` is the client
    settings it wrote (KAFKA_BOOTSTRAP, KAFKA_SECURITY_PROTOCOL, ...), `tls_dir` its CA and
    the wrong-CA material for failure tests."""

    port: int
    data_dir: Path
    controller_port: int | None = None  # None: a free one each time kafka.sh runs
    env: dict[str, str] = field(default_factory=dict)  # more kafka.sh settings (KAFKA_HEAP_OPTS)
    show_output: bool = False  # False: kafka.sh's output is captured, not shown
    timeout_s: float | None = 180.0
    security: str = "plaintext"  # or "sasl_ssl"
    mtls_port: int | None = None  # sasl_ssl only; None: a free one, chosen once

    def __post_init__(self) -> None:
        assert self.security in ("plaintext", "sasl_ssl"), self.security
        if self.security == "sasl_ssl" and self.mtls_port is None:
            self.mtls_port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    def client_env(self) -> dict[str, str]:
        """The KAFKA_* settings a client of this broker needs (for sasl_ssl, what kafka.sh
        wrote to DATA/client.env; the password is in a file it names)."""
        if self.security == "plaintext":
            return {"KAFKA_BOOTSTRAP": self.bootstrap}
        return read_env_file(self.data_dir / "client.env")

    def pid(self) -> int | None:
        """The broker's pid while kafka.sh has it running."""
        with contextlib.suppress(OSError, ValueError):
            return int((self.data_dir / "kafka.pid").read_text())
        return None

    def run(self, action: str) -> None:
        """`broker/kafka.sh ACTION` (up, down, kill, status, ...) for this broker."""
        assert self.port not in SHARED_PORTS, "a private broker never takes a shared port"
        env = {**os.environ, "KAFKA_PORT": str(self.port),
               "KAFKA_CONTROLLER_PORT": str(self.controller_port or free_port()),
               "KAFKA_DATA_DIR": str(self.data_dir), "KAFKA_SECURITY": self.security,
               **self.env}
        if self.mtls_port is not None:
            env["KAFKA_MTLS_PORT"] = str(self.mtls_port)
        _kafka_sh([action], env, self.show_output, self.timeout_s)

    def up(self) -> None:
        self.run("up")

    def down(self) -> None:
        self.run("down")

    def kill(self) -> None:
        self.run("kill")


def _kafka_sh(args: Sequence[str], env: dict[str, str], show_output: bool,
              timeout_s: float | None) -> str:
    """Run broker/kafka.sh; its stdout when captured. Shown: what it says, except the line
    `down` prints."""
    quiet = args[0] in ("down", "cluster-down")
    stdout = (subprocess.DEVNULL if quiet else None) if show_output else subprocess.PIPE
    proc = subprocess.run(["bash", str(KAFKA_SH), *args], env=env, check=True,
                          cwd=PROJECT_ROOT, timeout=timeout_s, stdout=stdout,
                          stderr=None if show_output else subprocess.PIPE, text=True)
    return proc.stdout or ""


@dataclass
class PrivateCluster:
    """A local N-node KRaft cluster of our own (`kafka.sh cluster-*`): node N serves clients on
    `base_port + N - 1` (its controller 1000 above) with its data in `cluster_dir/node-N`.
    Every node is broker and controller; node N has node.id N."""

    cluster_dir: Path
    base_port: int = field(default_factory=lambda: free_port_block(3, (0, 1000)))
    nodes: int = 3
    env: dict[str, str] = field(default_factory=dict)  # KAFKA_CLUSTER_HEAP_OPTS, ...
    show_output: bool = False
    timeout_s: float | None = 240.0

    def port(self, node: int) -> int:
        assert 1 <= node <= self.nodes, node
        return self.base_port + node - 1

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port(n)}" for n in range(1, self.nodes + 1))

    def pid(self, node: int) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.cluster_dir / f"node-{node}" / "kafka.pid").read_text())
        return None

    def run(self, *args: str) -> str:
        ports = {self.port(n) + o for n in range(1, self.nodes + 1) for o in (0, 1000)}
        assert not ports & SHARED_PORTS, "a private cluster never takes a shared port"
        env = {**os.environ, "NODES": str(self.nodes), "KAFKA_CLUSTER_DIR": str(self.cluster_dir),
               "KAFKA_CLUSTER_PORT": str(self.base_port), **self.env}
        env.pop("KAFKA_SECURITY", None)  # the cluster is PLAINTEXT only
        return _kafka_sh(args, env, self.show_output, self.timeout_s)

    def up(self) -> None:
        self.run("cluster-up")

    def down(self) -> None:
        self.run("cluster-down")

    def kill(self, node: int) -> None:
        """SIGKILL node N (kafka.sh waits until its process is gone)."""
        self.run("cluster-kill", str(node))

    def start(self, node: int) -> None:
        """Start node N again; returns once it is back in the cluster (registered, unfenced)."""
        self.run("cluster-start", str(node))
