"""The phases of `make bench`, one function each, in the order bench/run.py runs them (its
PHASES list names them and says what each measures). Each takes the run's `Bench`, starts what
it needs, and keeps its figures in `bench.results` under its own keys, which bench/report.py
reads; the stack phase leaves the edge and the workers running for the phases after it."""

from __future__ import annotations

import secrets
import time

from tqdm import tqdm

from bench.harness import BENCH, PY, Bench, log, metrics_or_empty, run_json
from bench.measure import CpuMeter, latency, metrics_excerpt, rss_mib, topic_end_total
from tests.harness import free_port, http_get, wait_http


def bare(bench: Bench) -> None:
    """The HTTP ceiling: bench/bare_edge.py processes under wrk at each concurrency."""
    port = free_port()
    for i in range(bench.args.edge_procs):
        bench.start(f"bare{i}", [PY, str(BENCH / "bare_edge.py"), "--port", str(port),
                                 "--reuse-port"], bench.env("bare-"))
    wait_http(f"http://127.0.0.1:{port}/healthz", 60)
    bench.wrk(port, 32, 2)  # warm-up
    runs = []
    for c in bench.args.concurrencies:
        r = bench.wrk(port, c, bench.args.duration)
        log(f"bare handler  c={c:4d}: {r['accepted_per_s']:8.0f} 202/s  {latency(r)}  "
            f"cores {r['cores_used']}")
        runs.append(r)
    for i in range(bench.args.edge_procs):
        bench.stop(f"bare{i}")
    bench.results["bare"] = runs


def edge(bench: Bench) -> None:
    """The edge alone (no worker) under wrk at the same concurrencies."""
    prefix = "edge-only-"
    bench.topics(prefix)
    port = bench.start_edge(prefix)
    time.sleep(1.0)  # /readyz answered from one process; give the others a moment
    bench.wrk(port, 32, 3)  # warm-up: producer metadata, connections
    runs = []
    for c in bench.args.concurrencies:
        r = bench.wrk(port, c, bench.args.duration)
        log(f"edge          c={c:4d}: {r['accepted_per_s']:8.0f} 202/s  {latency(r)}  "
            f"non-202 {sum(v for k, v in r['status'].items() if k != '202')}  "
            f"cores {r['cores_used']}")
        runs.append(r)
    bench.results["edge"] = runs
    bench.results["edge_metrics_sample"] = metrics_excerpt(
        http_get(f"http://127.0.0.1:{port}/metrics"), "voix_edge_")
    bench.stop("edge")


def kafka_ceilings(bench: Bench) -> None:
    """bench/kafka_baselines.py: a raw aiokafka produce loop, then a consume->produce loop."""
    prefix = "raw-"
    bench.topics(prefix)  # same partitions and configs as the real topics
    count = bench.args.raw_records
    baselines = [PY, str(BENCH / "kafka_baselines.py")]
    bench.results["raw_produce"] = run_json(
        [*baselines, "produce", "--bootstrap", bench.bootstrap,
         "--topic", prefix + "calls.submissions", "--count", str(count)])
    log(f"raw produce loop: {bench.results['raw_produce']['records_per_s']:8.0f} records/s")
    bench.results["raw_relay"] = run_json(
        [*baselines, "relay", "--bootstrap", bench.bootstrap,
         "--topic", prefix + "calls.submissions",
         "--target", prefix + "transcription.jobs", "--count", str(count)])
    log(f"raw consume->produce loop: {bench.results['raw_relay']['records_per_s']:8.0f} "
        "records/s")


def jobs_topic(bench: Bench) -> str:
    return bench.stack_prefix + "transcription.jobs"


def stack(bench: Bench) -> None:
    """Worker(s) and the edge on the stack's topics, one call through the whole pipeline, then
    the further workers one at a time; they stay up for the phases after this one."""
    prefix = "stack-"
    bench.topics(prefix)
    bench.stack_prefix = prefix
    env = bench.env(prefix)
    bench.worker_ports = []
    bench.start_worker(0, env)
    port = bench.start_edge(prefix)
    # One call through the whole pipeline proves the workers have their partitions.
    bench.wrk(port, 2, 60, mode="finishing", calls_per_thread=1,
              done_file=bench.workdir / "warmup.done")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (topic_end_total(bench.bootstrap, jobs_topic(bench)) < 2
                                           or bench.worker_totals()[0] < 2):
        time.sleep(0.5)
    if time.monotonic() >= deadline:
        raise TimeoutError("the warm-up call never reached transcription.jobs")
    # Further workers join one at a time, so each rebalance settles before the next.
    for i in range(1, bench.args.worker_procs):
        web_port = bench.start_worker(i, env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "voix_worker_consumer_lag{" not in \
                metrics_or_empty(f"http://127.0.0.1:{web_port}/metrics"):
            time.sleep(0.5)
        log(f"worker {i} has partitions after {120 - (deadline - time.monotonic()):.0f}s")
    bench.stack_port = port


def saturated(bench: Bench) -> None:
    """wrk at the edge's best concurrency with the workers running: merges/s and consumer lag
    from the workers' /metrics every second, then the catch-up once wrk stops."""
    best = max(bench.results["edge"], key=lambda r: r["accepted_per_s"])
    samples: list[dict[str, float]] = []
    t0 = time.monotonic()
    last = [0.0]

    def sample() -> None:
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        merges, lag = bench.worker_totals()
        samples.append({"t": now - t0, "merges": merges, "lag": lag})

    merges0, _ = bench.worker_totals()
    r = bench.wrk(bench.stack_port, best["connections"], bench.args.saturation_seconds,
                  sampler=sample)
    merges1, lag_end = bench.worker_totals()
    window = r["seconds"]
    # Then let the workers catch up, bounded.
    drain_started = time.monotonic()
    lag = lag_end
    while lag > 0 and time.monotonic() - drain_started < 300:
        time.sleep(0.5)
        _, lag = bench.worker_totals()
    catch_up = time.monotonic() - drain_started
    merges2, _ = bench.worker_totals()
    res = {
        "connections": best["connections"], "wrk": r,
        "accepted_beats_per_s": r["accepted_per_s"],
        "merges_per_s_while_saturated": (merges1 - merges0) / window,
        "lag_at_end": lag_end, "max_lag": max((s["lag"] for s in samples), default=0),
        "catch_up_seconds": catch_up, "lag_after_catch_up": lag,
        "merges_per_s_overall": (merges2 - merges0) / (window + catch_up),
        "samples": samples,
    }
    bench.results["saturated"] = res
    log(f"stack saturated: {r['accepted_per_s']:.0f} beats/s accepted, worker "
        f"{res['merges_per_s_while_saturated']:.0f} merges/s, lag at end {lag_end:.0f}, "
        f"caught up in {catch_up:.1f}s")
    for web_port in bench.worker_ports[:1]:
        bench.results["worker_metrics_sample"] = metrics_excerpt(
            http_get(f"http://127.0.0.1:{web_port}/metrics"), "voix_worker_")


def end_to_end(bench: Bench) -> None:
    """bench/e2e.py at half of the edge's best rate alone, at half of what the workers merged
    per second beside the saturated edge (the stack's sustained rate: the target), and at a
    tenth of that (light load)."""
    best = max(r["accepted_per_s"] for r in bench.results["edge"])
    e2e_at(bench, "e2e", best / 2)
    merges = bench.results["saturated"]["merges_per_s_overall"]
    e2e_at(bench, "e2e_worker_half", merges / 2)
    e2e_at(bench, "e2e_light", merges / 10)


def e2e_at(bench: Bench, key: str, rate: float) -> None:
    waited = bench.wait_caught_up()
    if waited > 1:
        log(f"waited {waited:.0f}s for the workers to catch up before measuring")
    rate = max(rate, 10.0)
    meter = CpuMeter.start(bench.cpu_groups(), children_role="driver")
    started = time.monotonic()
    res = run_json(
        [PY, str(BENCH / "e2e.py"), "--url", f"http://127.0.0.1:{bench.stack_port}",
         "--key", bench.key, "--bootstrap", bench.bootstrap, "--jobs-topic", jobs_topic(bench),
         "--rate", f"{rate:.1f}", "--seconds", str(bench.args.e2e_seconds),
         "--tag", secrets.token_hex(4), "--drain-timeout", "120"])
    # The driver's CPU shows once it has exited; its drain wait is in the wall time too, so
    # the figures are a little low for every role alike.
    res["cores_used"] = meter.cores_used(time.monotonic() - started)
    bench.results[key] = res
    log(f"cores {res['cores_used']}")
    log(f"end-to-end at {res['achieved_rate']:.0f}/s (target {rate:.0f}): p50 "
        f"{res['e2e_ms']['p50']} ms, p99 {res['e2e_ms']['p99']} ms, "
        f"{res['jobs_matched']}/{res['accepted']} jobs")


def burst(bench: Bench) -> None:
    """--burst-calls calls x 2 beats as fast as wrk posts them: time until every job is on
    transcription.jobs, statuses, and the RSS of the edge processes and the workers."""
    bench.wait_caught_up()
    calls = bench.args.burst_calls
    topic = jobs_topic(bench)
    jobs0 = topic_end_total(bench.bootstrap, topic)
    worker_pids = bench.worker_pids()
    edge_pids = bench.edge_pids()
    rss_before = {"edge_mib": rss_mib(edge_pids), "worker_mib": rss_mib(worker_pids)}
    peak = {"edge_mib": 0.0, "worker_mib": 0.0}

    def sample_rss() -> None:
        peak["edge_mib"] = max(peak["edge_mib"], rss_mib(edge_pids))
        peak["worker_mib"] = max(peak["worker_mib"], rss_mib(worker_pids))

    bar = tqdm(total=calls, desc="burst: jobs on transcription.jobs", unit="job",
               leave=False)
    jobs_seen = [0]
    last_poll = [0.0]

    def sample() -> None:
        sample_rss()
        now = time.monotonic()
        if now - last_poll[0] >= 1.0:
            last_poll[0] = now
            done = topic_end_total(bench.bootstrap, topic) - jobs0
            bar.update(done - jobs_seen[0])
            jobs_seen[0] = done

    done_file = bench.workdir / "burst.done"
    started = time.monotonic()
    r = bench.wrk(bench.stack_port, bench.args.burst_connections, 3600, mode="pairs",
                  calls_per_thread=calls // 2, done_file=done_file, sampler=sample)
    posted_at = time.monotonic() - started
    expected = calls  # every finishing beat answered 202 makes one job
    non202 = sum(v for k, v in r["status"].items() if k != "202")
    stalled_since = time.monotonic()
    while jobs_seen[0] < expected and time.monotonic() - stalled_since < 60:
        before = jobs_seen[0]
        time.sleep(0.25)
        last_poll[0] = 0
        sample()
        if jobs_seen[0] != before:
            stalled_since = time.monotonic()
    drained_at = time.monotonic() - started
    bar.close()
    hwm = {"edge_mib": rss_mib(edge_pids, "VmHWM"), "worker_mib": rss_mib(worker_pids, "VmHWM")}
    res = {"calls": calls, "posts": calls * 2, "connections": bench.args.burst_connections,
           "status": r["status"], "socket_errors": r["socket_errors"], "non_202": non202,
           "post_seconds": posted_at, "posts_per_s": calls * 2 / posted_at,
           "jobs": jobs_seen[0], "drain_seconds": drained_at,
           "rss_before": rss_before, "rss_peak_sampled": peak, "rss_hwm_sum": hwm,
           "edge_processes": len(edge_pids), "worker_processes": len(worker_pids)}
    bench.results["burst"] = res
    log(f"burst: {calls} calls posted in {posted_at:.1f}s, {res['jobs']} jobs after "
        f"{drained_at:.1f}s; statuses {r['status']}; peak RSS edge "
        f"{peak['edge_mib']:.0f} MiB, worker {peak['worker_mib']:.0f} MiB")


def drain(bench: Bench) -> None:
    """The worker alone against its peers: one pre-filled submissions topic drained, one
    process each, by a raw aiokafka loop, a quix-streams app doing the same merge, and the voix
    worker (bench/drain.py, which also runs on its own)."""
    from bench import drain as worker_drain

    beats = 20_000 if bench.args.quick else 100_000
    workdir = bench.workdir / "drain"
    workdir.mkdir(parents=True, exist_ok=True)
    # Two rounds each (alternating), the fastest kept: one contestant's drain is 5-20 s, short
    # enough for a burst of noise on the shared machine to halve it.
    bench.results["drain"] = worker_drain.drain(bench.bootstrap, beats, workdir=workdir,
                                                rounds=1 if bench.args.quick else 2)
