"""The published JSON Schemas of every topic value (schemas/topics/), loaded with the request
schema they refer to, and a validator per topic.

The published schemas are open: a consumer that validates with them keeps working when we add
a field (the policy: additive changes keep `v`; consumers ignore fields they do not know). Our
own tests validate what the code writes in the *strict* mode, where every object that lists
its properties admits only those: a field we write but did not document fails a test, so the
open schemas stay complete.
"""

from __future__ import annotations

import copy
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
    "calls.routed": "calls.routed.schema.json",
}
# Topics whose schema describes the record's headers (as name -> UTF-8 text), not its value:
# a dead letter's value is the original bytes.
HEADER_SCHEMA_TOPICS = frozenset({"calls.deadletter"})
# Shared by several topic schemas: a call's fields as they travel downstream.
CALL_SCHEMA_FILE = "call.schema.json"


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def load_schema(name: str) -> dict[str, Any]:
    """A schema document of schemas/topics by file name."""
    return _load(TOPIC_SCHEMAS_DIR / name)


def _closed(schema: Any) -> Any:
    """A copy where every object schema (`"type": "object"` with `properties`) admits no
    other properties. Conditional parts (`if`/`then`, a branch without a type) only narrow a
    field and are left open, since additionalProperties only sees its own siblings."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if (closed.get("type") == "object" and "properties" in closed
            and "additionalProperties" not in closed):
        closed["additionalProperties"] = False
    return closed


def all_schemas() -> list[dict[str, Any]]:
    """Every schema document: the request body, the shared call, one per topic."""
    return [_load(SUBMISSION_SCHEMA_PATH), _load(TOPIC_SCHEMAS_DIR / CALL_SCHEMA_FILE)] + [
        _load(TOPIC_SCHEMAS_DIR / name) for name in TOPIC_SCHEMA_FILES.values()]


@lru_cache(maxsize=2)
def _registry(strict: bool) -> Registry:
    schemas = [_closed(s) if strict else s for s in all_schemas()]
    return Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas)


@cache
def topic_validator(topic: str, strict: bool = False) -> Draft202012Validator:
    """The validator for the values of a topic, by its default name (e.g. transcription.jobs);
    `strict`: undocumented fields are errors (how our tests check what we write)."""
    schema = _load(TOPIC_SCHEMAS_DIR / TOPIC_SCHEMA_FILES[topic])
    Draft202012Validator.check_schema(schema)
    if strict:
        schema = _closed(copy.deepcopy(schema))
    return Draft202012Validator(schema, registry=_registry(strict),
                                format_checker=_format_checker())


def schema_errors(topic: str, value: Any, strict: bool = True) -> list[str]:
    """Every way `value` breaks the topic's schema ([] when it is valid). Strict by default:
    this is what we check our own writes with."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(value)'}: {e.message}"
            for e in topic_validator(topic, strict).iter_errors(value)]
