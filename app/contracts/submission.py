"""The /submit request contract: the JSON Schema in schemas/ and the one place that turns
schema errors into field-by-field problems a client can act on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from jsonschema.validators import extend

from app.contracts.ids import is_rfc3339, is_uuid
from app.contracts.recording_url import recording_url_problem


def _schemas_dir() -> Path:
    """The JSON Schemas: app/schemas in an installed wheel, the top-level schemas/ of a
    source checkout (editable installs)."""
    app_dir = Path(__file__).resolve().parent.parent
    packaged = app_dir / "schemas"
    return packaged if packaged.is_dir() else app_dir.parent / "schemas"


SCHEMAS_DIR = _schemas_dir()
SUBMISSION_SCHEMA_PATH = SCHEMAS_DIR / "submission.schema.json"

_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f]")


def is_http_url(value: object) -> bool:
    if not isinstance(value, str) or _SPACE_OR_CONTROL.search(value):
        return False
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return False
    del port
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _format_checker() -> FormatChecker:
    # Our own checkers, so the formats are enforced without optional jsonschema extras.
    # A format only speaks about strings; a wrong type is reported by "type" alone.
    checker = FormatChecker(formats=())
    for name, check in (("uuid", is_uuid), ("date-time", is_rfc3339), ("uri", is_http_url)):
        checker.checks(name)(lambda value, check=check: not isinstance(value, str) or check(value))
    return checker


def _strict_integer(_checker: Any, instance: object) -> bool:
    # JSON Schema counts 1.0 as an integer; the contract means whole seconds written as such.
    return isinstance(instance, int) and not isinstance(instance, bool)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


_FORMAT_PROBLEMS = {
    "uuid": "must be a UUID such as 1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
    "date-time": "must be an RFC 3339 date-time with a time zone, such as 2026-06-16T09:05:35.000Z",
    "uri": "must be an absolute http:// or https:// URL",
}
_TYPE_NAMES = {"string": "a string", "boolean": "true or false", "integer": "a whole number",
               "object": "a JSON object"}


def load_submission_schema() -> dict[str, Any]:
    with SUBMISSION_SCHEMA_PATH.open("rb") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


class SubmissionValidator:
    """Validates a parsed /submit body against schemas/submission.schema.json."""

    def __init__(self, schema: dict[str, Any] | None = None) -> None:
        self.schema = schema if schema is not None else load_submission_schema()
        Draft202012Validator.check_schema(self.schema)
        strict_cls = extend(
            Draft202012Validator,
            type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
        )
        self._validator = strict_cls(self.schema, format_checker=_format_checker())
        self.allowed_fields: tuple[str, ...] = tuple(self.schema["properties"])
        # The hot path: the same schema compiled to Python code, with the same format checks.
        # It only answers "valid or not"; the error list always comes from the validator
        # above, so the messages clients see do not depend on which path ran.
        self._compiled = fastjsonschema.compile(
            self.schema, formats={"uuid": is_uuid, "date-time": is_rfc3339, "uri": is_http_url})
        # fastjsonschema counts 1.0 as an integer; the strict rule above does not.
        self._integer_fields = tuple(name for name, spec in self.schema["properties"].items()
                                     if spec.get("type") == "integer")

    def is_valid(self, body: object) -> bool:
        """Fast check with the compiled schema; agrees with `problems(body) == []`."""
        try:
            self._compiled(body)
        except fastjsonschema.JsonSchemaValueException:
            return False
        assert isinstance(body, dict)
        url = body.get("recordingUrl")
        if url is not None and recording_url_problem(url) is not None:
            return False  # the SSRF guard is not in the schema; the fast path must apply it too
        return all(type(body[name]) is int for name in self._integer_fields if name in body)

    def problems(self, body: object) -> list[FieldProblem]:
        """Every problem with the body, one entry per field and problem, in field order."""
        if not isinstance(body, dict):
            return [FieldProblem("(body)", "must be a JSON object")]
        if self.is_valid(body):
            return []
        found: list[FieldProblem] = []
        for error in self._validator.iter_errors(body):
            found.extend(self._describe(error, body))
        url = body.get("recordingUrl")
        if isinstance(url, str) and not any(p.field == "recordingUrl" for p in found):
            # The SSRF guard: a URL we will fetch must not point into our own network.
            ssrf = recording_url_problem(url)
            if ssrf is not None:
                found.append(FieldProblem("recordingUrl", ssrf))
        unique = list(dict.fromkeys(found))
        order = {name: i for i, name in enumerate(self.allowed_fields)}
        unique.sort(key=lambda p: (order.get(p.field, len(order)), p.field))
        return unique

    def _describe(self, error: ValidationError, body: dict[str, Any]) -> list[FieldProblem]:
        keyword = error.validator
        if keyword == "required":
            missing = [name for name in error.validator_value if name not in body]
            return [FieldProblem(name, "is required") for name in missing]
        if keyword == "additionalProperties":
            unexpected = [name for name in body if name not in self.allowed_fields]
            return [
                FieldProblem(name, "is not a field of this API; send only: "
                             + ", ".join(self.allowed_fields))
                for name in unexpected
            ]
        field = str(error.absolute_path[0]) if error.absolute_path else "(body)"
        value = error.validator_value
        if keyword == "type":
            return [FieldProblem(field, f"must be {_TYPE_NAMES.get(str(value), str(value))}")]
        if keyword == "format":
            return [FieldProblem(field, _FORMAT_PROBLEMS.get(str(value), f"must be a {value}"))]
        if keyword == "pattern" and field == "recordingUrl":
            return [FieldProblem(field, _FORMAT_PROBLEMS["uri"])]
        if keyword == "minLength":
            text = "must not be empty" if value == 1 else f"must be at least {value} characters"
            return [FieldProblem(field, text)]
        if keyword == "maxLength":
            return [FieldProblem(field, f"must be at most {value} characters")]
        if keyword == "minimum":
            return [FieldProblem(field, f"must be at least {value}")]
        if keyword == "maximum":
            return [FieldProblem(field, f"must be at most {value}")]
        return [FieldProblem(field, error.message)]


@lru_cache(maxsize=1)
def default_validator() -> SubmissionValidator:
    return SubmissionValidator()
