"""One log format for every command: time, level, logger, message."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    # aiokafka logs every reconnect attempt at ERROR; our own retry loop says it once.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
