"""The request schema and its error messages: the one validation boundary of the edge."""

from __future__ import annotations

import pytest

from app.contracts.ids import is_rfc3339, is_uuid
from app.contracts.submission import SubmissionValidator, is_http_url
from tests.factories import beat1, beat2

validator = SubmissionValidator()


def fields_of(body: object) -> dict[str, str]:
    return {p.field: p.problem for p in validator.problems(body)}


def test_contract_examples_are_valid() -> None:
    assert validator.problems(beat1("1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed")) == []
    assert validator.problems(beat2("1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed")) == []


def test_every_documented_field_is_accepted() -> None:
    body = beat2("1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
                 teamId="3f2504e0-4f89-41d3-9a0c-0305e82c3301",
                 userId="3f2504e0-4f89-41d3-9a0c-0305e82c3302")
    assert validator.problems(body) == []
    assert set(body) == set(validator.allowed_fields)


def test_schema_is_strict() -> None:
    assert validator.schema["additionalProperties"] is False
    problems = fields_of(beat1(language="nl", speakers=2))
    assert set(problems) == {"language", "speakers"}
    assert "not a field of this API" in problems["language"]


@pytest.mark.parametrize("missing", ["callId", "from", "to", "startTime"])
def test_required_fields(missing: str) -> None:
    body = beat1()
    del body[missing]
    assert fields_of(body) == {missing: "is required"}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("callId", "not-a-uuid", "must be a UUID"),
        ("callId", "1b9d6bcdbbfd4b2d9b5dab8dfbbd4bed", "must be a UUID"),
        ("callId", 12, "must be a string"),
        ("startTime", "2026-06-16", "RFC 3339"),
        ("startTime", "2026-06-16T09:05:35", "RFC 3339"),  # no offset
        ("startTime", "2026-02-30T09:05:35Z", "RFC 3339"),  # no such day
        ("startTime", "16/06/2026 09:05", "RFC 3339"),
        ("recordingUrl", "ftp://example.com/a.wav", "http:// or https://"),
        ("recordingUrl", "https://", "http:// or https://"),
        ("recordingUrl", "https://exa mple.com/a.wav", "http:// or https://"),
        ("recordingUrl", "/relative/a.wav", "http:// or https://"),
        ("outgoing", "false", "true or false"),
        ("duration", -1, "at least 0"),
        ("duration", 1.5, "whole number"),
        ("duration", 42.0, "whole number"),
        ("duration", True, "whole number"),
        ("from", "", "must not be empty"),
        ("to", "x" * 65, "at most 64"),
        ("teamId", "team-1", "must be a UUID"),
        ("userId", None, "must be a string"),
    ],
)
def test_bad_values_name_the_field(field: str, value: object, expected: str) -> None:
    problems = fields_of(beat1(None, **{field: value}))
    assert list(problems) == [field]
    assert expected in problems[field]


def test_all_problems_are_reported_at_once() -> None:
    body = {"callId": "x", "from": 1, "startTime": "yesterday", "extra": True}
    assert set(fields_of(body)) == {"callId", "from", "to", "startTime", "extra"}


@pytest.mark.parametrize("body", [[], "text", 1, None])
def test_non_object_body(body: object) -> None:
    assert fields_of(body) == {"(body)": "must be a JSON object"}


def test_format_checkers_really_enforce() -> None:
    # If a checker were silently not registered, the parametrized cases above would pass
    # vacuously for formats; test the functions themselves too.
    assert is_uuid("1B9D6BCD-BBFD-4B2D-9B5D-AB8DFBBD4BED")
    assert not is_uuid("1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4be")
    assert is_rfc3339("2026-06-16T09:05:35.000Z")
    assert is_rfc3339("2026-06-16T09:05:35+02:00")
    assert not is_rfc3339("2026-06-16T25:05:35Z")
    assert is_http_url("http://example.com:8080/a?b=c")
    assert not is_http_url("https://example.com:99999/")
    assert not is_http_url("javascript:alert(1)")
