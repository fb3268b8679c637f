"""One log format for every command: time, level, logger, message."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

# aiokafka's client logs every failed (re)connect at ERROR, once per retry: a wrong password
# or a broker that is down would fill the log with the same line several times a second.
REPEAT_WINDOW_S = 60.0


class QuietRepeats(logging.Filter):
    """Passes a message once, then drops the same message for `window_s`; the next copy after
    that says how many were dropped. Our own retry loops name the cause (app.kafka_clients)."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # message -> (last passed, dropped since)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        now = self._clock()
        passed, dropped = self._seen.get(message, (None, 0))
        if passed is not None and now - passed < self.window_s:
            self._seen[message] = (passed, dropped + 1)
            return False
        if len(self._seen) > 256:  # messages with changing details must not grow it forever
            self._seen.clear()
        self._seen[message] = (now, 0)
        if dropped:
            record.msg = f"{message} (and {dropped} more times in the last {self.window_s:.0f} s)"
            record.args = ()
        return True


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    aiokafka = logging.getLogger("aiokafka")  # the logger of aiokafka's client (connects)
    aiokafka.setLevel(max(logging.getLevelName(level), logging.WARNING))
    if not any(isinstance(f, QuietRepeats) for f in aiokafka.filters):
        aiokafka.addFilter(QuietRepeats())
