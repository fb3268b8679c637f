"""Worker drain benchmark: how fast does each consumer empty one pre-filled submissions topic?

One topic is filled with N beats (N/2 calls, beat 1 then beat 2, in the edge's submission
envelope, keyed by callId, 6 partitions). Then, one process each and one after the other,
these drain it, each in its own consumer group writing to its own output topics:

  raw     a raw aiokafka loop: consume -> the same merge (app.worker.merge) in a dict ->
          produce job and record (pipelined), commit after every batch's sends are acked;
  quix    a quix-streams app: the same merge, RocksDB state with changelog, at-least-once;
  voix    the real worker, `python -m app worker` (Faust, rocksdb table store);
  faust   for the "why": a bare Faust agent (faust-streaming as the worker configures it) doing
          the same merge in a dict, no table, sends not awaited: Faust's own per-record cost.

A contestant's drain time runs from its first output record to its last (the broker's append
times),
so process start-up, group join and table recovery are not counted; it is done when every
call has its job and every expected record is there. Figures: beats/s, ratio vs quix, CPU
seconds the process used, jobs and duplicate jobs.

    python bench/drain.py --bootstrap 127.0.0.1:29392 [--quick] [--beats N] [--only raw,voix]

Use a private broker: KAFKA_PORT=29392 KAFKA_DATA_DIR=/tmp/bench-broker bash broker/kafka.sh up
`drain(...)` returns the figures as a dict (for `make bench`); the CLI prints them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/drain.py` from anywhere
    sys.path.insert(0, str(ROOT))

from app.contracts.messages import Submission, downstream_key, dumps  # noqa: E402
from app.kafka_clients import env_client_kwargs  # noqa: E402
from app.worker.merge import merge_beat  # noqa: E402
from app.worker.processor import parse_submission_value  # noqa: E402
from bench.measure import cpu_seconds  # noqa: E402

CONTESTANTS = ("raw", "quix", "voix", "faust")
PARTITIONS = 6
TEAM = "00000000-0000-4000-8000-0000000d7a1e"
# Beat 2 of call i is written after beat 1 of call i + LAG: the beats of a call are apart, as
# in real traffic, but both are in the topic.
LAG = 500


def log(msg: str) -> None:
    tqdm.write(f"[drain {time.strftime('%H:%M:%S')}] {msg}")


# ---- the input ----------------------------------------------------------------------------

def beats_in_order(calls: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of every beat, beat 1 of call i then, LAG calls later, its beat 2."""
    call_ids = [str(uuid.uuid4()) for _ in range(calls)]

    def beat(call_id: str, finishing: bool) -> tuple[bytes, bytes]:
        call: dict[str, Any] = {"callId": call_id, "from": "+31612345678",
                                "to": "+31201234567", "startTime": "2026-06-16T09:05:35.000Z",
                                "outgoing": False}
        if finishing:
            call.update(duration=42, recordingUrl=f"https://rec.example.com/{call_id}.wav")
        value = Submission.new(team_id=TEAM, key_id="bench", call=call).to_value()
        return call_id.encode(), dumps(value)

    out: list[tuple[bytes, bytes]] = []
    for i in range(calls + LAG):
        if i < calls:
            out.append(beat(call_ids[i], finishing=False))
        if i >= LAG:
            out.append(beat(call_ids[i - LAG], finishing=True))
    return out


async def create_topics(bootstrap: str, names: Sequence[str], compacted: Sequence[str] = (),
                        config: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(**env_client_kwargs(bootstrap))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, PARTITIONS, 1, topic_configs={
            **(config or {}), **({"cleanup.policy": "compact"} if n in compacted else {})})
            for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def prefill(bootstrap: str, topic: str, beats: int) -> None:
    await create_topics(bootstrap, [topic])
    records = beats_in_order(beats // 2)
    producer = AIOKafkaProducer(**env_client_kwargs(
        bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024))
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        for key, value in tqdm(records, desc="prefill", unit="beat", leave=False):
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


# ---- contestant: raw aiokafka -------------------------------------------------------------

async def raw_loop(bootstrap: str, source: str, jobs: str, records: str, group: str,
                   beats: int) -> None:
    """consume -> merge in a dict -> produce (pipelined), committing after the sends of each
    fetched batch were acknowledged: at-least-once, as the worker promises."""
    consumer = AIOKafkaConsumer(source, **env_client_kwargs(
        bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
        max_poll_records=2000))
    producer = AIOKafkaProducer(**env_client_kwargs(
        bootstrap, acks="all", enable_idempotence=True, linger_ms=2, max_batch_size=256 * 1024))
    await consumer.start()
    await producer.start()
    state: dict[str, dict[str, Any]] = {}
    seen = 0
    try:
        while seen < beats:
            batch = await consumer.getmany(timeout_ms=1000)
            pending: list[asyncio.Future[Any]] = []
            for tp_records in batch.values():
                for r in tp_records:
                    submission = parse_submission_value(orjson.loads(r.value))
                    teams = state.setdefault(submission.call_id, {})
                    source_id = f"{r.topic}/{r.partition}/{r.offset}"
                    result = merge_beat(teams.get(submission.team_id), submission, source_id)
                    teams[submission.team_id] = result.state
                    if result.job is not None:
                        pending.append(await producer.send(jobs, dumps(result.job), key=r.key))
                    if result.changed or result.job is not None:
                        key = downstream_key(submission.team_id, submission.call_id)
                        pending.append(await producer.send(records, dumps(result.state),
                                                           key=key))
                    seen += 1
            if pending:
                await asyncio.gather(*pending)
            if batch:
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


# ---- contestant: quix-streams -------------------------------------------------------------

def quix_app(bootstrap: str, source: str, jobs: str, records: str, group: str,
             state_dir: str) -> None:
    """The same merge as a quix-streams app: RocksDB state with its changelog, at-least-once.
    The stateful step returns (kind, key, value) outputs; one to_topic picks each one's topic."""
    from quixstreams import Application, message_context
    from quixstreams.models.serializers import SerializationContext, Serializer

    class Payload(Serializer):  # type: ignore[misc]
        """The value bytes of an output tuple."""

        def __call__(self, value: tuple[str, bytes, bytes], ctx: SerializationContext) -> bytes:
            return value[2]

    app = Application(broker_address=bootstrap, consumer_group=group,
                      auto_offset_reset="earliest", processing_guarantee="at-least-once",
                      state_dir=state_dir, loglevel="WARNING",
                      producer_extra_config={"enable.idempotence": True, "acks": "all"})
    topic = app.topic(source, value_deserializer="bytes", key_deserializer="bytes")
    outputs = {kind: app.topic(name, value_serializer=Payload(), key_serializer="bytes")
               for kind, name in (("job", jobs), ("record", records))}

    def merge(value: bytes, state: Any) -> list[tuple[str, bytes, bytes]]:
        submission = parse_submission_value(orjson.loads(value))
        ctx = message_context()
        source_id = f"{ctx.topic}/{ctx.partition}/{ctx.offset}"
        result = merge_beat(state.get(submission.team_id), submission, source_id)
        state.set(submission.team_id, result.state)
        out: list[tuple[str, bytes, bytes]] = []
        if result.job is not None:
            out.append(("job", submission.call_id.encode(), dumps(result.job)))
        if result.changed or result.job is not None:
            out.append(("record", downstream_key(submission.team_id, submission.call_id),
                        dumps(result.state)))
        return out

    sdf = app.dataframe(topic).apply(merge, stateful=True, expand=True)  # type: ignore[arg-type]
    sdf.to_topic(lambda value, key, timestamp, headers: outputs[value[0]],
                 key=lambda value: value[1])
    app.run()


# ---- contestant: a bare Faust agent ------------------------------------------------------

def faust_app(bootstrap: str, source: str, jobs: str, records: str, group: str,
              state_dir: str) -> None:
    """The floor of any Faust worker: one plain agent, the merge in a dict, no table; sends go
    to the producer and are not awaited one by one (Faust's commit flushes them)."""
    import faust

    app = faust.App(group, broker=f"kafka://{bootstrap}", store="memory://", datadir=state_dir,
                    consumer_auto_offset_reset="earliest", producer_acks=-1,
                    producer_linger=0.005, producer_max_batch_size=512 * 1024,
                    web_enabled=False, autodiscover=False, topic_partitions=PARTITIONS)
    topic = app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    state: dict[str, dict[str, Any]] = {}

    @app.agent(topic, name="bare")
    async def bare(stream: Any) -> None:
        producer = app.producer
        async for event in stream.events():
            m = event.message
            submission = parse_submission_value(orjson.loads(event.value))
            teams = state.setdefault(submission.call_id, {})
            result = merge_beat(teams.get(submission.team_id), submission,
                                f"{m.topic}/{m.partition}/{m.offset}")
            teams[submission.team_id] = result.state
            if result.job is not None:
                await producer.send(jobs, m.key, dumps(result.job), None, None, None)
            if result.changed or result.job is not None:
                key = downstream_key(submission.team_id, submission.call_id)
                await producer.send(records, key, dumps(result.state), None, None, None)

    del bare
    from faust.worker import Worker

    Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


# ---- the orchestrator ---------------------------------------------------------------------

async def end_total(consumer: AIOKafkaConsumer, topic: str) -> int:
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = await consumer.end_offsets(tps)
    return sum(ends.values())


async def read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """(timestamp ms, key, value) of every record on the topic."""
    consumer = AIOKafkaConsumer(**env_client_kwargs(
        bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024))
    await consumer.start()
    out: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for records in batch.values():
                out.extend((r.timestamp, r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return out


async def wait_outputs(bootstrap: str, jobs: str, records: str, calls: int,
                       proc: subprocess.Popen[bytes], timeout_s: float, label: str) -> bool:
    """Until the output topics hold a job per call and two records per call."""
    consumer = AIOKafkaConsumer(**env_client_kwargs(bootstrap, group_id=None))
    await consumer.start()
    bar = tqdm(total=calls, desc=f"drain {label}: jobs", unit="job", leave=False)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done_jobs = await end_total(consumer, jobs)
            done_records = await end_total(consumer, records)
            bar.update(min(done_jobs, calls) - bar.n)
            if done_jobs >= calls and done_records >= 2 * calls:
                return True
            if proc.poll() is not None:
                return False
            await asyncio.sleep(0.5)
        return False
    finally:
        bar.close()
        await consumer.stop()


def output_topics(run: str, name: str) -> tuple[str, str]:
    return f"{run}{name}.transcription.jobs", f"{run}{name}.calls.records"


def contestant_kind(name: str) -> str:
    """"quix" for "quix" and for its later rounds ("quix.r2")."""
    return name.split(".")[0]


def round_name(name: str, round_no: int) -> str:
    """A contestant's name in round `round_no` (its own topics, group, log and state)."""
    return name if round_no == 1 else f"{name}.r{round_no}"


def start_contestant(name: str, bootstrap: str, run: str, source: str, beats: int,
                     workdir: Path, checkout: Path = ROOT) -> subprocess.Popen[bytes]:
    """Start one contestant's process (its output in workdir/<name>.log)."""
    jobs, records = output_topics(run, name)
    group = f"{run}{name}"
    logf = (workdir / f"{name}.log").open("ab")
    if name.startswith("voix"):
        env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "VOIX_TOPIC_PREFIX": run,
               "VOIX_TOPIC_JOBS": f"{name}.transcription.jobs",
               "VOIX_TOPIC_RECORDS": f"{name}.calls.records",
               "VOIX_WORKER_ID": group, "VOIX_WORKER_STORE": "rocksdb://",
               "VOIX_LOG_LEVEL": "WARNING"}
        # Its other topics (status, commands, dead letters) as `make run` creates them.
        # (Run from `checkout`: `python -m app` imports the app of the working directory.)
        subprocess.run([sys.executable, "-m", "app", "topics", "create"], env=env,
                       cwd=checkout, check=True, capture_output=True, timeout=120)
        argv = [sys.executable, "-m", "app", "worker", "--web-port", str(free_port()),
                "--data-dir", str(workdir / name)]
    else:
        env = dict(os.environ)
        argv = [sys.executable, str(Path(__file__).resolve()), f"_{contestant_kind(name)}",
                "--bootstrap", bootstrap, "--topic", source, "--jobs", jobs,
                "--records", records, "--group", group, "--beats", str(beats),
                "--state-dir", str(workdir / name)]
    proc = subprocess.Popen(argv, env=env, cwd=checkout, stdout=logf, stderr=subprocess.STDOUT)
    logf.close()
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` until it exits, collapsed stacks (one line per stack and its
    sample count, for flamegraph.pl or speedscope) into `out`; idle samples included, so the
    waiting shows too."""
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--format", "raw",
                             "--idle", "--rate", "250", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def drain_one(name: str, bootstrap: str, run: str, source: str, beats: int,
                    workdir: Path, timeout_s: float, checkout: Path = ROOT,
                    profile: bool = False) -> dict[str, Any]:
    calls = beats // 2
    jobs, records = output_topics(run, name)
    # The broker stamps each output record when it appends it: quix-streams would otherwise
    # give an output the input's timestamp, and the drain time must be the contestant's.
    await create_topics(bootstrap, [jobs, records], compacted=[records],
                        config={"message.timestamp.type": "LogAppendTime"})
    proc = start_contestant(name, bootstrap, run, source, beats, workdir, checkout)
    profiler = start_profiler(proc.pid, workdir / f"{name}.pyspy.txt") if profile else None
    started = time.monotonic()
    try:
        complete = await wait_outputs(bootstrap, jobs, records, calls, proc, timeout_s, name)
        cpu = cpu_seconds(proc.pid)
    finally:
        stop(proc)
        if profiler is not None:
            profiler.wait(timeout=60)  # py-spy writes its file once the process is gone
    wall = time.monotonic() - started
    job_rows = await read_all(bootstrap, jobs)
    record_rows = await read_all(bootstrap, records)
    stamps = [t for t, _, _ in job_rows + record_rows]
    job_ids = [orjson.loads(v)["jobId"] for _, _, v in job_rows if v]
    span = (max(stamps) - min(stamps)) / 1000 if stamps else float("nan")
    result = {"complete": complete, "jobs": len(job_ids),
              "duplicate_jobs": len(job_ids) - len(set(job_ids)),
              "records": len(record_rows), "drain_s": round(span, 2),
              "beats_per_s": round(beats / span, 1) if complete and span > 0 else None,
              "process_wall_s": round(wall, 1), "process_cpu_s": round(cpu, 1)}
    if complete and span > 0:
        result["cores"] = round(cpu / wall, 2)
    if not complete:
        tail = (workdir / f"{name}.log").read_text(errors="replace")[-3000:]
        log(f"{name} did not finish; the end of its log:\n{tail}")
    log(f"{name}: {result}")
    return result


def drain(bootstrap: str, beats: int = 100_000, contestants: Sequence[str] = CONTESTANTS,
          timeout_s: float = 900.0, workdir: Path | None = None,
          compare_with: Path | None = None, profile: bool = False,
          rounds: int = 1) -> dict[str, Any]:
    """Fill one topic with `beats` beats and let each contestant drain it, back to back.
    `compare_with`: another checkout of voix-ingest whose worker also drains it, right after
    this one's ("voix-before"). Returns {"beats", "calls", "partitions", "contestants": {name:
    figures}, "ratios_vs_quix", "rounds"}. With `rounds` > 1 every contestant drains the
    topic that many times (alternating) and its figures are those of its fastest complete round,
    with every round's beats/s in "rounds_beats_per_s". `profile`: py-spy samples each contestant
    (workdir/<name>.pyspy.txt)."""
    run = f"drain-{uuid.uuid4().hex[:8]}."
    source = f"{run}calls.submissions"
    own_dir = workdir is None
    base = Path(tempfile.mkdtemp(prefix="voix-drain-")) if workdir is None else workdir
    try:
        log(f"prefilling {source} with {beats} beats ({beats // 2} calls)")
        asyncio.run(prefill(bootstrap, source, beats))
        by_round: dict[str, list[dict[str, Any]]] = {}
        # Rounds alternate the contestants (A B A B, not A A B B), so that a noisy minute on
        # the shared machine does not land on one contestant's every run.
        for round_no in range(1, rounds + 1):
            for name in contestants:
                by_round.setdefault(name, []).append(asyncio.run(drain_one(
                    round_name(name, round_no), bootstrap, run, source, beats, base, timeout_s,
                    profile=profile)))
                if name == "voix" and compare_with is not None:
                    by_round.setdefault("voix-before", []).append(asyncio.run(drain_one(
                        round_name("voix-before", round_no), bootstrap, run, source, beats,
                        base, timeout_s, compare_with)))
        results = {name: best_round(runs) for name, runs in by_round.items()}
    finally:
        if own_dir:
            subprocess.run(["rm", "-rf", str(base)], check=False)
    quix = (results.get("quix") or {}).get("beats_per_s")
    ratios = {name: round(r["beats_per_s"] / quix, 3) for name, r in results.items()
              if quix and r.get("beats_per_s")}
    return {"beats": beats, "calls": beats // 2, "partitions": PARTITIONS,
            "contestants": results, "ratios_vs_quix": ratios, "rounds": rounds}


def best_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A contestant's fastest complete round (or its first, if none completed), with the
    beats/s of every round."""
    complete = [r for r in runs if r.get("beats_per_s")]
    best = max(complete, key=lambda r: r["beats_per_s"]) if complete else runs[0]
    return {**best, "rounds_beats_per_s": [r.get("beats_per_s") for r in runs]}


def _contestant_main(name: str, args: argparse.Namespace) -> int:
    if name == "raw":
        asyncio.run(raw_loop(args.bootstrap, args.topic, args.jobs, args.records, args.group,
                             args.beats))
    elif name == "faust":
        faust_app(args.bootstrap, args.topic, args.jobs, args.records, args.group,
                  args.state_dir)
    else:
        quix_app(args.bootstrap, args.topic, args.jobs, args.records, args.group,
                 args.state_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("_raw", "_quix", "_faust"):  # a contestant process, started by drain()
        sub = argparse.ArgumentParser()
        for flag in ("--bootstrap", "--topic", "--jobs", "--records", "--group", "--state-dir"):
            sub.add_argument(flag, required=True)
        sub.add_argument("--beats", type=int, required=True)
        return _contestant_main(argv[0][1:], sub.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(prog="bench/drain.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:29392",
                        help="a private broker (default 127.0.0.1:29392)")
    parser.add_argument("--beats", type=int, default=100_000, help="beats to drain (even)")
    parser.add_argument("--quick", action="store_true", help="20,000 beats")
    parser.add_argument("--only", default=",".join(CONTESTANTS),
                        help=f"comma-separated subset of {','.join(CONTESTANTS)}")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="give a contestant at most this long (s)")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    parser.add_argument("--compare-with", type=Path, metavar="CHECKOUT",
                        help="another checkout of voix-ingest (e.g. `git archive main` "
                             "unpacked): its worker drains the topic right after this one's")
    parser.add_argument("--workdir", type=Path,
                        help="keep the contestants' logs and state here (default: a temporary "
                             "directory, removed after the run)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="drain the topic this many times per contestant, alternating; "
                             "report each one's fastest round (default 1)")
    parser.add_argument("--profile", action="store_true",
                        help="sample each contestant with py-spy (needs --workdir): collapsed "
                             "stacks in WORKDIR/<name>.pyspy.txt; the sampling costs the "
                             "contestants some speed, so compare profiles, not beats/s")
    args = parser.parse_args(argv)
    if args.profile and not args.workdir:
        parser.error("--profile needs --workdir (where the profiles are kept)")
    beats = 20_000 if args.quick else args.beats
    chosen = [c for c in args.only.split(",") if c]
    unknown = [c for c in chosen if c not in CONTESTANTS]
    if unknown:
        parser.error(f"unknown contestants: {unknown}")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    figures = drain(args.bootstrap, beats - beats % 2, chosen, args.timeout, args.workdir,
                    args.compare_with, args.profile, max(1, args.rounds))
    text = orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
