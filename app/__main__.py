"""`python -m app`: one command line for the edge, the worker, API keys and topics."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app import __version__
from app.ops.keys_cli import add_keys_parser
from app.ops.logging import configure_logging
from app.settings import Settings, SettingsError, help_lines, markdown_table, warn_unknown_variables

ENV_HELP = ("environment (every setting; `python -m app settings` shows the values in use):\n"
            + "\n".join(help_lines()))


def _ranged_int(minimum: int, maximum: int) -> Any:
    """An argparse type: a whole number in [minimum, maximum], else a one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}, got {value}")
        return value
    return parse


PORT = _ranged_int(1, 65535)
PROCESSES = _ranged_int(1, 64)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="voix-ingest: POST /submit -> Kafka -> one transcription job per call.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"voix-ingest {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    edge = sub.add_parser("edge", help="run the HTTP edge (POST /submit, /healthz, /readyz)",
                          description="Run the HTTP edge: POST /submit, GET /calls/{callId}, "
                                      "/healthz, /readyz, /metrics, /openapi.json. It reads "
                                      "the API keys from the keys topic and is ready once they "
                                      "are loaded and the producer reaches Kafka.")
    edge.add_argument("--host", help="listen address (default VOIX_EDGE_HOST or 127.0.0.1)")
    edge.add_argument("--port", type=PORT, help="listen port (default VOIX_EDGE_PORT or 8080)")
    edge.add_argument("--workers", type=PROCESSES, default=1,
                      help="edge processes sharing the port via SO_REUSEPORT, each with its "
                           "own producer (default 1)")
    edge.add_argument("--reuse-port", action="store_true",
                      help="bind with SO_REUSEPORT (set by --workers for its children)")

    worker = sub.add_parser("worker", help="run the Faust worker that merges beats into jobs",
                            description="Run the Faust worker (one process; run several, on "
                                        "any hosts, to share the partitions). Its web port "
                                        "serves health, metrics and GET /calls/{callId}.")
    worker.add_argument("--web-port", type=PORT,
                        help="worker web port (default VOIX_WORKER_WEB_PORT or 6066)")
    worker.add_argument("--data-dir", help="state directory (default VOIX_WORKER_DATA_DIR)")

    add_keys_parser(sub)

    run = sub.add_parser("run", help="run the local stack: topics, dev key, worker(s) and edge",
                         description="Create topics and a dev API key, start the workers and "
                                     "the edge, print the URL and key; Ctrl-C stops all.")
    run.add_argument("--workers", type=PROCESSES, default=1, help="worker processes (default 1)")

    tail = sub.add_parser("tail", help="print a topic's records as JSON lines",
                          description="Print every record of a topic from the beginning.")
    tail.add_argument("topic", help="the topic's full name (with VOIX_TOPIC_PREFIX if any)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new records")

    replay = sub.add_parser(
        "replay", help="replay or reprocess the calls submitted in a time window",
        description="Read the submissions of a time window (Kafka timestamps -> offsets) and "
                    "send them to the workers again. --mode replay re-derives the calls' state "
                    "and never sends a second job for a call that already has one (same "
                    "jobIds); --mode reprocess sends one NEW job per selected call (next "
                    "attempt, new jobId). See docs/topics.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    replay.add_argument("--since", required=True,
                        help="window start, RFC 3339 (e.g. 2026-06-16T09:00:00Z)")
    replay.add_argument("--until", default="now", help="window end, RFC 3339 (default now)")
    replay.add_argument("--mode", choices=["replay", "reprocess"], default="replay",
                        help="replay (default) or reprocess")
    replay.add_argument("--team", help="only this team's calls (UUID)")
    replay.add_argument("--call-id", action="append", dest="call_ids", metavar="CALL_ID",
                        help="only this call (repeatable)")
    replay.add_argument("--call-ids-file", help="only the callIds in this file, one a line")
    replay.add_argument("--dry-run", action="store_true", help="count, send nothing")
    replay.add_argument("--no-progress", action="store_true", help="no progress bars")

    topics = sub.add_parser("topics", help="create or list the Kafka topics",
                            description="Create the topics (idempotent) or list them. Creation "
                                        "uses VOIX_PARTITIONS, VOIX_REPLICATION_FACTOR and "
                                        "VOIX_MIN_INSYNC_REPLICAS (defaults: min(3, brokers) "
                                        "and one less).")
    topics.add_argument("action", choices=["create", "list"],
                        help="create: make the missing topics (Faust's included) with their "
                             "partitions, replication and configs; list: print topic names")

    config = sub.add_parser("settings", help="print the settings in use (secrets masked)",
                            description="Print every setting as VARIABLE=value, as read from "
                                        "the environment now (secrets masked), or the README "
                                        "table with --markdown.")
    config.add_argument("--markdown", action="store_true",
                        help="print the configuration table of the README instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from aiokafka.errors import KafkaConnectionError

    from app.kafka_clients import KafkaUnusable, diagnose

    args = _parser().parse_args(argv)
    if args.command == "settings" and args.markdown:
        print(markdown_table())
        return 0
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warn_unknown_variables()
    configure_logging(settings.log_level, settings.log_format)
    try:
        return _dispatch(args, settings)
    except KafkaUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KafkaConnectionError:
        problem = asyncio.run(diagnose(settings))
        cause = problem.message if problem else f"Kafka is not reachable at " \
                                                f"{settings.kafka_bootstrap}"
        print(f"error: {cause} (start the local one with `make broker-up`, or set "
              "KAFKA_BOOTSTRAP and the KAFKA_* security settings)", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:

    if args.command == "edge":
        from app.edge.app import run_edge

        overrides = {k: v for k, v in (("edge_host", args.host), ("edge_port", args.port))
                     if v is not None}
        if args.workers > 1:
            from app.edge.supervisor import run_edge_processes

            return run_edge_processes(settings.with_overrides(**overrides), args.workers)
        run_edge(settings.with_overrides(**overrides), reuse_port=args.reuse_port)
        return 0
    if args.command == "worker":
        from app.worker.run import run_worker

        overrides = {k: v for k, v in (("worker_web_port", args.web_port),
                                       ("worker_data_dir", args.data_dir and Path(args.data_dir)))
                     if v is not None}
        return run_worker(settings.with_overrides(**overrides))
    if args.command == "keys":
        from app.ops.keys_cli import run_keys_command

        return run_keys_command(settings, args)
    if args.command == "run":
        from app.ops.devstack import run_stack

        return run_stack(settings, workers=args.workers)
    if args.command == "tail":
        from app.ops.tail import tail_topic

        try:
            return asyncio.run(tail_topic(settings, args.topic, args.follow))
        except KeyboardInterrupt:
            return 0
    if args.command == "replay":
        from app.ops.replay_cli import run_replay_command

        return run_replay_command(settings, args)
    if args.command == "settings":
        for name, value in settings.redacted().items():
            print(f"{name}={value}")
        return 0
    if args.command == "topics":
        from app.ops.topics import ensure_topics, list_topics

        if args.action == "create":
            created = asyncio.run(ensure_topics(settings))
            print("created: " + (", ".join(created) if created else "nothing (all exist)"))
        else:
            print("\n".join(asyncio.run(list_topics(settings))))
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
