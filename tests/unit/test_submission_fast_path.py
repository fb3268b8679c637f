"""The compiled fast path must agree with the jsonschema validator on every body: it may only
ever say "valid" where the full validator finds no problem, and vice versa."""

from __future__ import annotations

import random
from typing import Any

from app.contracts.submission import SubmissionValidator

UUID = "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"
VALID: dict[str, Any] = {
    "callId": UUID, "from": "+31612345678", "to": "+31201234567",
    "startTime": "2026-06-16T09:05:35.000Z", "outgoing": False, "duration": 42,
    "recordingUrl": "https://example.com/rec/1.wav", "teamId": UUID, "userId": UUID,
}
UUIDS = [UUID, UUID.upper(), "not-a-uuid", UUID + "0", UUID[:-1], "", 123, None, True]
CANDIDATES: dict[str, list[Any]] = {
    "callId": UUIDS, "teamId": UUIDS, "userId": UUIDS,
    "recordingUrl": ["https://x.example/a.wav", "HTTP://A.B/c", "ftp://x.example/a", "https://",
                     "https://exa mple.com/", "https://a.example:99999/", "//x.example/a",
                     "https://a.example/" + "x" * 2040, 5, None],
    "from": ["", "a", "a" * 64, "a" * 65, 5, None, ["a"]],
    "to": ["", "b", "b" * 64, "b" * 65, 5.5, {}],
    "startTime": ["2026-06-16T09:05:35.000Z", "2026-06-16t09:05:35z", "2026-06-16T09:05:35",
                  "2026-02-30T00:00:00Z", "2026-06-16T25:00:00+02:00",
                  "2026-06-16T09:05:35.123456789-05:30", "yesterday", 1718528735, None],
    "outgoing": [True, False, "true", 0, 1, None],
    "duration": [0, 1, 604800, 604801, -1, 1.0, 42.5, True, "5", 10**30, None],
}


def bodies(count: int) -> list[Any]:
    rng = random.Random(20260616)
    out: list[Any] = [VALID, {}, [], "text", 5, None]
    fields = list(CANDIDATES)
    for _ in range(count):
        body = dict(VALID)
        for name in rng.sample(fields, rng.randint(1, 3)):
            body[name] = rng.choice(CANDIDATES[name])
        for name in rng.sample(list(body), rng.randint(0, 2)):
            if rng.random() < 0.3:
                del body[name]
        if rng.random() < 0.1:
            body["language"] = "nl"
        out.append(body)
    return out


def test_fast_path_agrees_with_the_full_validator() -> None:
    validator = SubmissionValidator()
    full = validator._validator  # the jsonschema validator the error messages come from
    valid_seen = invalid_seen = 0
    for body in bodies(3000):
        full_says_valid = isinstance(body, dict) and not list(full.iter_errors(body))
        fast_says_valid = isinstance(body, dict) and validator.is_valid(body)
        assert fast_says_valid == full_says_valid, body
        valid_seen += full_says_valid
        invalid_seen += not full_says_valid
    # Both outcomes must be well represented, or the comparison proves little.
    assert valid_seen > 300 and invalid_seen > 300


def test_problems_still_come_from_the_full_validator() -> None:
    validator = SubmissionValidator()
    body = dict(VALID, duration=1.0, callId="nope")
    problems = {p.field: p.problem for p in validator.problems(body)}
    assert problems == {"callId": "must be a UUID such as 1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
                        "duration": "must be a whole number"}
