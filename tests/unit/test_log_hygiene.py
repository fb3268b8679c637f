"""A Kafka that refuses us is said once per process, in one line naming the cause: aiokafka's
per-retry connect errors are folded, and the edge's producer and key directory do not both say
the same cause."""

from __future__ import annotations

import logging

import pytest

from app import kafka_clients
from app.ops.logging import configure_logging
from app.settings import Settings


def test_configure_logging_folds_aiokafka_repeats(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ops import logging as voix_logging

    monkeypatch.setattr(voix_logging, "_OUTAGE", voix_logging._KafkaOutage())
    configure_logging("INFO", "text")
    configure_logging("INFO", "text")  # twice: still one handler
    assert len(logging.getLogger().handlers) == 1
    for name in ("aiokafka", "aiokafka.conn", "aiokafka.client"):
        for _ in range(5):
            logging.getLogger(name).error('Unable connect to "%s": %s', "127.0.0.1:9",
                                          "refused (test)")
    assert capsys.readouterr().err.count("refused (test)") == 1
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])


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
