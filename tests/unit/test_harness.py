"""The process harness the broker tests and the benchmarks share (tests/harness.py), and the
bench's measurements and report, without a broker."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT
from bench import report
from bench.measure import CpuMeter, cpu_seconds, metric_sum, metrics_excerpt, rss_kib, rss_mib
from tests import harness


def test_processes_log_stop_and_kill(tmp_path: Path) -> None:
    procs = harness.Processes(tmp_path)
    script = "import os, sys, time; print('up in', os.getcwd(), flush=True); time.sleep(60)"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("a", "b"):
        procs.start(name, [sys.executable, "-c", script], env)
    for name in ("a", "b"):
        wait_for_line(procs, name, "up in")
    assert f"up in {PROJECT_ROOT}" in procs.log_of("a")
    assert procs.stop("a") == -signal.SIGTERM
    assert procs.kill("b") == -signal.SIGKILL
    assert procs.stop("a") is None and procs.kill("b") is None and procs.procs == {}


def wait_for_line(procs: harness.Processes, name: str, text: str) -> None:
    deadline = time.monotonic() + 20
    while text not in procs.log_of(name):
        assert time.monotonic() < deadline, procs.log_of(name)
        time.sleep(0.05)


def test_wait_http_times_out_with_hint() -> None:
    url = f"http://127.0.0.1:{harness.free_port()}/readyz"
    assert not harness.http_ok(url)
    with pytest.raises(TimeoutError, match="logs in /x"):
        harness.wait_http(url, timeout_s=0.3, hint="; logs in /x")


def test_run_shows_stderr_when_the_command_fails() -> None:
    assert harness.run([sys.executable, "-c", "print('out')"]) == "out\n"
    with pytest.raises(harness.CommandFailed, match=r"failed \(3\):\nboom") as failed:
        harness.run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    assert failed.value.returncode == 3


def test_app_env_puts_a_process_on_its_own_names(tmp_path: Path) -> None:
    env = harness.app_env("127.0.0.1:1", "p-", VOIX_LOG_LEVEL="DEBUG")
    assert env["KAFKA_BOOTSTRAP"] == "127.0.0.1:1" and env["VOIX_TOPIC_PREFIX"] == "p-"
    assert env["VOIX_WORKER_ID"] == "p-worker" and env["VOIX_LOG_LEVEL"] == "DEBUG"
    assert harness.app_argv("edge") == [sys.executable, "-m", "app", "edge"]


def test_private_broker_never_takes_the_shared_port(tmp_path: Path) -> None:
    broker = harness.PrivateBroker(9092, tmp_path)
    with pytest.raises(AssertionError):
        broker.up()
    assert harness.PrivateBroker(19092, tmp_path).bootstrap == "127.0.0.1:19092"
    assert broker.pid() is None


def test_proc_figures_of_this_process() -> None:
    me = os.getpid()
    assert rss_kib(me) > 0 and rss_kib(me, "VmHWM") >= rss_kib(me)
    assert rss_mib([me, me]) == pytest.approx(2 * rss_kib(me) / 1024, rel=0.1)
    assert cpu_seconds(me) > 0 and cpu_seconds(2**22 + 1) == 0.0
    meter = CpuMeter.start({"me": [me]}, children_role="kids")
    sum(i * i for i in range(200_000))
    cores = meter.cores_used(wall_s=1.0)
    assert set(cores) == {"me", "kids"} and cores["me"] >= 0


def test_metric_sum_and_excerpt() -> None:
    page = ("# HELP voix_worker_merges_total merges\n"
            'voix_worker_merges_total{partition="0"} 3.0\n'
            'voix_worker_merges_total{partition="1"} 4.0\n'
            "voix_worker_merges_total_created 17.0\n"
            'voix_worker_latency_bucket{le="1"} 9.0\n')
    assert metric_sum(page, "voix_worker_merges_total") == 7.0
    assert metrics_excerpt(page, "voix_worker_") == page.splitlines()[1:4]


def test_benchmarks_md_is_what_the_report_makes_of_benchmarks_json() -> None:
    """docs/benchmarks.md is generated (make bench): the same figures give the same page."""
    saved = json.loads((PROJECT_ROOT / "docs" / "benchmarks.json").read_text())
    page = report.markdown(saved["results"], saved["machine"], "benchmarks.png")
    assert page == (PROJECT_ROOT / "docs" / "benchmarks.md").read_text()
    assert saved["targets"] == report.ratios(saved["results"])


def test_free_port_block_and_private_cluster_ports(tmp_path: Path) -> None:
    base = harness.free_port_block(3, (0, 1000))
    for port in [base + o + i for o in (0, 1000) for i in range(3)]:
        assert port not in harness.SHARED_PORTS
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free when asked
    cluster = harness.PrivateCluster(tmp_path / "cluster", base_port=base)
    assert cluster.bootstrap == f"127.0.0.1:{base},127.0.0.1:{base + 1},127.0.0.1:{base + 2}"
    assert cluster.port(3) == base + 2 and cluster.pid(1) is None
    with pytest.raises(AssertionError):
        cluster.port(4)
    with pytest.raises(AssertionError):
        harness.PrivateCluster(tmp_path / "c", base_port=9091).run("cluster-status")


def test_secured_broker_settings_come_from_its_client_env(tmp_path: Path) -> None:
    broker = harness.PrivateBroker(harness.free_port(), tmp_path, security="sasl_ssl")
    assert broker.mtls_port is not None and broker.tls_dir == tmp_path / "tls"
    (tmp_path / "client.env").write_text(
        "KAFKA_BOOTSTRAP=127.0.0.1:1\nKAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
        "KAFKA_SSL_CAFILE=/x/ca.pem\n")
    assert broker.client_env() == {"KAFKA_BOOTSTRAP": "127.0.0.1:1",
                                   "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                   "KAFKA_SSL_CAFILE": "/x/ca.pem"}
    plain = harness.PrivateBroker(harness.free_port(), tmp_path)
    assert plain.client_env() == {"KAFKA_BOOTSTRAP": plain.bootstrap}
    assert harness.without_kafka_settings({"KAFKA_X": "1", "VOIX_Y": "2"}) == {"VOIX_Y": "2"}
    with pytest.raises(AssertionError):
        harness.PrivateBroker(1, tmp_path, security="kerberos")


def test_bench_refuses_a_phase_it_does_not_have() -> None:
    # A mistyped phase used to run nothing and say nothing.
    got = subprocess.run([sys.executable, "bench/run.py", "--phases", "edge,burts"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2
    assert "unknown 'burts'" in got.stderr and "'burst'" in got.stderr
