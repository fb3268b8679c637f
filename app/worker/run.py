"""Run the worker as a process: `python -m app worker`."""

from __future__ import annotations

import logging

from faust.worker import Worker

from app.settings import Settings
from app.worker.app import create_worker_app

log = logging.getLogger("voix.worker")


def run_worker(settings: Settings) -> int:
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app = create_worker_app(settings)
    log.info("worker %s consuming %s from %s (store %s, %s)", settings.worker_id,
             settings.topics.submissions, settings.kafka_bootstrap, settings.worker_store,
             settings.processing_guarantee)
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    # Faust's logging set-up leaves our loggers' level open and filters in the handler, so
    # every disabled record (one per job at INFO) was still built; the level decides here.
    logging.getLogger("voix").setLevel(settings.log_level)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits
    return 0
