"""A Kafka that refuses us is said once per process, in one line naming the cause: aiokafka's
per-retry connect errors are folded, and the edge's producer and key directory do not both say
the same cause."""

from __future__ import annotations

import logging

import pytest

from app import kafka_clients
from app.ops.logging import QuietRepeats, configure_logging
from app.settings import Settings


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, message, args, None)


def test_quiet_repeats_passes_a_message_once_per_window() -> None:
    now = [0.0]
    quiet = QuietRepeats(window_s=60, clock=lambda: now[0])
    refused = ('Unable connect to "%s": %s', "127.0.0.1:1", "SaslAuthenticationFailed")
    assert quiet.filter(record(*refused))
    for t in (0.3, 1.0, 59.0):
        now[0] = t
        assert not quiet.filter(record(*refused))
    assert quiet.filter(record("another message"))  # a different cause is said at once
    now[0] = 61.0
    again = record(*refused)
    assert quiet.filter(again)
    assert again.getMessage() == ('Unable connect to "127.0.0.1:1": SaslAuthenticationFailed '
                                  "(and 3 more times in the last 60 s)")


def test_configure_logging_folds_aiokafka_repeats(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    configure_logging("INFO")  # twice: still one filter
    aiokafka = logging.getLogger("aiokafka")
    assert sum(isinstance(f, QuietRepeats) for f in aiokafka.filters) == 1
    for _ in range(5):
        aiokafka.error('Unable connect to "%s": %s', "127.0.0.1:9", "refused (test)")
    assert capsys.readouterr().err.count("refused (test)") == 1


def test_a_cause_is_said_once_per_process_until_recovered() -> None:
    kafka_clients.said_recovered()
    assert kafka_clients.first_time_said("wrong password")
    assert not kafka_clients.first_time_said("wrong password")  # the other component
    assert kafka_clients.first_time_said("wrong CA")  # the cause changed
    kafka_clients.said_recovered()
    assert kafka_clients.first_time_said("wrong CA")
    kafka_clients.said_recovered()


async def test_cause_of_names_why_a_connection_failed() -> None:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

    from tests.harness import free_port

    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    cause = await kafka_clients.cause_of(settings, KafkaConnectionError("Unable to bootstrap"))
    assert cause == f"Kafka is not reachable at {settings.kafka_bootstrap}: connection refused"
    assert (await kafka_clients.cause_of(settings, KafkaTimeoutError("no ack"))
            == "KafkaTimeoutError: no ack")
    assert await kafka_clients.cause_of(settings, ValueError("odd")) == "ValueError: odd"
