"""Run the worker as a process: `python -m app worker`."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError
from faust.worker import Worker

from app.kafka_clients import KafkaUnusable, describe, wait_until_usable
from app.ops.topics import Replication, cluster_replication
from app.settings import Settings
from app.worker.app import create_worker_app

log = logging.getLogger("voix.worker")

# Exit code when the cluster cannot be used with these settings (sysexits EX_UNAVAILABLE).
KAFKA_UNAVAILABLE_EXIT_CODE = 69
# How long a starting worker waits for a broker that is down (a permanent problem such as a
# wrong password ends the wait at once).
STARTUP_WAIT_S = 60.0


async def _preflight(settings: Settings) -> Replication:
    """Faust itself would retry a refused login silently for ever; we check first, and learn
    the cluster's size for the replication of the topics Faust creates."""
    await wait_until_usable(settings, STARTUP_WAIT_S)
    return await cluster_replication(settings)


def run_worker(settings: Settings) -> int:
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    try:
        replication = asyncio.run(_preflight(settings))
    except (KafkaUnusable, KafkaError) as exc:
        log.critical("worker cannot use Kafka at %s: %s", describe(settings), exc)
        return KAFKA_UNAVAILABLE_EXIT_CODE
    app = create_worker_app(settings, replication)
    log.info("worker %s consuming %s from %s (store %s, %s, replication %d, web %s bound to %s)",
             settings.worker_id, settings.topics.submissions, describe(settings),
             settings.worker_store, settings.processing_guarantee, replication.factor,
             settings.worker_url, settings.worker_web_host)
    # override_logging=False: keep our log format (app.ops.logging), not mode's own.
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
                    override_logging=False)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits
    return 0
