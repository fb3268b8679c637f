"""Settings: read once from the environment, validated, frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError


def test_defaults_when_unset_or_empty() -> None:
    assert Settings.from_env({}) == Settings()
    # `make` exports empty variables; empty means default, not "connect to ''".
    assert Settings.from_env({"KAFKA_BOOTSTRAP": "", "VOIX_KEYS_FILE": ""}) == Settings()


def test_values_are_read_and_topics_prefixed() -> None:
    s = Settings.from_env({"KAFKA_BOOTSTRAP": "k:1", "VOIX_TOPIC_PREFIX": "t.",
                           "VOIX_PARTITIONS": "3", "VOIX_KEYS_FILE": "/x/keys.json",
                           "VOIX_PRODUCE_TIMEOUT_S": "0.5"})
    assert s.kafka_bootstrap == "k:1" and s.partitions == 3
    assert s.topics.submissions == "t.calls.submissions" and s.topics.jobs == "t.transcription.jobs"
    assert s.keys_file == Path("/x/keys.json") and s.produce_timeout_s == 0.5


@pytest.mark.parametrize(("name", "value"), [("VOIX_PARTITIONS", "0"), ("VOIX_PARTITIONS", "x"),
                                             ("VOIX_PRODUCE_TIMEOUT_S", "-1"),
                                             ("VOIX_PROCESSING_GUARANTEE", "maybe")])
def test_bad_values_are_rejected_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().edge_port = 1  # type: ignore[misc]
