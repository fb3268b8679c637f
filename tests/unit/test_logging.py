"""One log format: JSON lines with the request id, and Kafka outages folded to two lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from app.ops import logging as voix_logging
from app.ops.logging import RequestContext, configure_logging, handling, kafka_reachable


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(voix_logging, "_OUTAGE", voix_logging._KafkaOutage())
    configure_logging("INFO", "json")
    yield stream
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_fields_and_request_id(captured: io.StringIO) -> None:
    log = logging.getLogger("voix.edge")
    log.info("outside any request")
    with handling(RequestContext("req-1", "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                          "00f067aa0ba902b7-01")):
        log.info("accepted call %s", "c1", extra={"call_id": "c1"})
    first, second = lines(captured)
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert first["level"] == "INFO" and first["logger"] == "voix.edge"
    assert "request_id" not in first and str(first["time"]).endswith("Z")
    assert second["message"] == "accepted call c1" and second["call_id"] == "c1"
    assert second["request_id"] == "req-1"
    assert second["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_text_format_names_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("INFO", "text")
    with handling(RequestContext("req-2")):
        logging.getLogger("voix.worker").warning("merged")
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])
    assert stream.getvalue().rstrip().endswith("voix.worker: merged [request req-2]")


def test_a_kafka_outage_is_two_lines_not_hundreds(captured: io.StringIO) -> None:
    client = logging.getLogger("aiokafka.client")
    for _ in range(100):
        client.error('Unable connect to "127.0.0.1:9092": [Errno 111] Connect call failed')
    logging.getLogger("aiokafka.producer").error("something unrelated went wrong")
    kafka_reachable()
    kafka_reachable()  # nothing to say the second time
    client.error('Unable connect to "127.0.0.1:9092": again')
    got = lines(captured)
    assert [g["logger"] for g in got] == ["voix.kafka", "aiokafka.producer", "voix.kafka",
                                          "voix.kafka"]
    assert "became unreachable" in str(got[0]["message"])
    assert "reachable again" in str(got[2]["message"]) and got[2]["suppressed"] == 99
    assert "became unreachable" in str(got[3]["message"])
