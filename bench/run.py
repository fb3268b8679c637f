"""`make bench`: measure the real stack against its baselines, in one run, on a private broker.

Each figure is later shown as a ratio against a baseline measured in this same run. The run
starts a private broker, runs the phases below in order (each a function in bench/phases.py),
stops the broker and writes docs/benchmarks.json, docs/benchmarks.md and docs/benchmarks.png
(bench/report.py; --out elsewhere). The load generator is wrk (C, 2 threads, bench/submit.lua),
except for end-to-end where a Python driver (bench/e2e.py) matches each POST to its job; it
shares the 2 cores with what it measures.

Adding a phase: write `def my_phase(bench: Bench) -> None` (in bench/phases.py, or a module of
its own such as bench/drain.py) that keeps its figures in bench.results, and add one
Phase("name", my_phase, "what it measures") to PHASES below, where it should run; --phases and
--help then know it. Bench (bench/harness.py) has what phases share: env(prefix),
topics(prefix), start_edge, start_worker, wrk, worker_totals, wait_caught_up, and the stack's
port and topic prefix once the stack phase ran. For a table in the report, read its figures in
bench/report.py's markdown().
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as bench/run.py: import bench and tests as packages
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tqdm import tqdm

from app.settings import PROJECT_ROOT
from bench import phases, report
from bench.harness import Bench, log
from tests.harness import PrivateBroker, free_port


@dataclass(frozen=True)
class Phase:
    name: str  # as --phases names it
    run: Callable[[Bench], None]
    what: str  # for --help


# The order they run in. A phase may use what an earlier one measured or started (the stack).
PHASES = [
    Phase("bare handler", phases.bare,
          "HTTP ceiling: bench/bare_edge.py (parse + validate + 202, no Kafka) under wrk"),
    Phase("edge", phases.edge,
          "`python -m app edge --workers N` alone under wrk at the same concurrencies"),
    Phase("kafka ceilings", phases.kafka_ceilings,
          "a raw aiokafka produce loop and a raw consume->produce loop"),
    Phase("drain", phases.drain,
          "a pre-filled submissions topic drained, one process each, by a raw aiokafka loop, "
          "a quix-streams app with the same merge, the voix worker and a bare Faust agent "
          "(bench/drain.py); beats/s and the ratios to quix-streams"),
    Phase("stack", phases.stack,
          "start the worker(s) and the edge; one call through the whole pipeline"),
    Phase("saturated", phases.saturated,
          "wrk at the edge's best concurrency; worker merges/s and consumer lag from the "
          "workers' /metrics, sampled every second"),
    Phase("end-to-end", phases.end_to_end,
          "bench/e2e.py posts finishing beats at half the edge's best rate (and at half the "
          "worker's), POST->job latency"),
    Phase("burst", phases.burst,
          "N calls x 2 beats with wrk; time until every job is on transcription.jobs, "
          "statuses, peak RSS of the edge processes and the workers"),
]
STEPS = ["broker", *(p.name for p in PHASES), "report"]


def phase_list() -> str:
    """The PHASES for --help, one paragraph each."""
    width = max(len(p.name) for p in PHASES)
    return "phases, in order (--phases takes these names):\n" + "\n".join(
        textwrap.fill(p.what, 96, initial_indent=f"  {p.name:<{width}}  ",
                      subsequent_indent=" " * (width + 4)) for p in PHASES)


def parse_args() -> argparse.Namespace:
    quick_env = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(description=__doc__, epilog=phase_list(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", default=quick_env,
                   help="short run while iterating (also BENCH_QUICK=1)")
    p.add_argument("--edge-procs", type=int, default=2, help="edge processes (default 2)")
    # One: the edge's rounds put every partition's batch in one produce request per producer;
    # a second producer splits them (paired quick runs: 0.53-0.57x bare with 1, 0.45-0.46x
    # with 2).
    p.add_argument("--edge-producers", type=int, default=1,
                   help="Kafka producers per edge process, VOIX_EDGE_PRODUCERS (default 1)")
    p.add_argument("--phases", default="all",
                   help="comma-separated subset while iterating (no report unless it names "
                        "report): " + ", ".join(
                            repr(ph.name) if " " in ph.name else ph.name for ph in PHASES))
    p.add_argument("--worker-procs", type=int, default=2,
                   help="worker processes sharing the partitions (default 2)")
    p.add_argument("--concurrencies", default=None, help="wrk connections, comma separated")
    p.add_argument("--duration", type=float, default=None, help="seconds per wrk run")
    p.add_argument("--burst-calls", type=int, default=None, help="calls in the burst")
    p.add_argument("--burst-connections", type=int, default=128,
                   help="wrk connections in the burst (default 128)")
    p.add_argument("--log-level", default="WARNING",
                   help="VOIX_LOG_LEVEL of the edge and worker (default WARNING: no line per "
                        "request)")
    p.add_argument("--out", default=str(PROJECT_ROOT / "docs"), help="where to write the report")
    p.add_argument("--report-from", metavar="JSON",
                   help="only rewrite the Markdown and the plot from a benchmarks.json")
    args = p.parse_args()
    args.concurrencies = [int(c) for c in (args.concurrencies or
                                           ("32,128" if args.quick else "16,64,256")).split(",")]
    args.duration = args.duration or (4 if args.quick else 10)
    args.burst_calls = args.burst_calls or (10_000 if args.quick else 100_000)
    args.saturation_seconds = 8 if args.quick else 20
    args.e2e_seconds = 5 if args.quick else 15
    args.raw_records = 30_000 if args.quick else 200_000
    if args.phases != "all":
        unknown = sorted(set(args.phases.split(",")) - set(STEPS))
        if unknown:
            p.error(f"--phases: unknown {', '.join(map(repr, unknown))}; the phases are "
                    + ", ".join(map(repr, STEPS)))
    args.kafka_port = free_port()
    args.kafka_controller_port = free_port()
    return args


def main() -> int:
    args = parse_args()
    if args.report_from:
        report.rewrite_from(Path(args.report_from), Path(args.out))
        return 0
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (make bench installs it: apt-get install -y wrk)",
              file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="voix-bench-"))
    broker = PrivateBroker(args.kafka_port, workdir / "kafka",
                           controller_port=args.kafka_controller_port, show_output=True,
                           timeout_s=None)
    bench = Bench(args, workdir, broker)
    machine = report.machine_info(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    by_name = {p.name: p for p in PHASES}
    bar = tqdm(STEPS, desc="make bench", unit="phase")
    ok = False
    try:
        wanted = None if args.phases == "all" else {"broker", *args.phases.split(",")}
        for step in bar:
            bar.set_postfix_str(step)
            if wanted is not None and step not in wanted:
                continue
            if step == "broker":
                bench.setup()
            elif step == "report":
                report.write_report(out, bench.results, machine)
                log(f"wrote {out / 'benchmarks.md'}, benchmarks.json, benchmarks.png")
            else:
                by_name[step].run(bench)
        ok = True
    finally:
        bar.close()
        bench.stop_all()
        with contextlib.suppress(subprocess.CalledProcessError):
            broker.down()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"bench failed; logs kept in {workdir}", file=sys.stderr)
    if args.phases == "all":
        print((out / "benchmarks.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
