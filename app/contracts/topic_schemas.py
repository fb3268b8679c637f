"""The published JSON Schemas of every topic value (schemas/topics/), loaded with the request
schema they refer to, and a validator per topic. Tests check that what the code writes
matches them; downstream teams can use the same files."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from app.contracts.submission import SCHEMAS_DIR, SUBMISSION_SCHEMA_PATH, _format_checker

TOPIC_SCHEMAS_DIR = SCHEMAS_DIR / "topics"
# Default topic name -> schema file (prefixes and renames do not change the format).
TOPIC_SCHEMA_FILES = {
    "calls.submissions": "calls.submissions.schema.json",
    "calls.records": "calls.records.schema.json",
    "transcription.jobs": "transcription.jobs.schema.json",
    "transcription.status": "transcription.status.schema.json",
    "calls.commands": "calls.commands.schema.json",
    "calls.deadletter": "calls.deadletter.schema.json",
    "voix.api-keys": "voix.api-keys.schema.json",
}


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


@lru_cache(maxsize=1)
def _registry() -> Registry:
    schemas = [_load(SUBMISSION_SCHEMA_PATH)] + [
        _load(TOPIC_SCHEMAS_DIR / name) for name in TOPIC_SCHEMA_FILES.values()]
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas)


@cache
def topic_validator(topic: str) -> Draft202012Validator:
    """The validator for the values of a topic, by its default name (e.g. transcription.jobs)."""
    schema = _load(TOPIC_SCHEMAS_DIR / TOPIC_SCHEMA_FILES[topic])
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry(), format_checker=_format_checker())


def schema_errors(topic: str, value: Any) -> list[str]:
    """Every way `value` breaks the topic's schema ([] when it is valid)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(value)'}: {e.message}"
            for e in topic_validator(topic).iter_errors(value)]
