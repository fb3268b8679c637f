"""The submission envelope's own ids and time, made cheaply per request, are what the slow
spellings gave: a random version-4 UUID as str(uuid.uuid4()) writes it, utc_now_iso(), and
the job id job_id_for() makes."""

from __future__ import annotations

import random
import re
import time
import uuid
from datetime import UTC, datetime

from app.contracts.ids import is_rfc3339, is_uuid, job_id_for, utc_now_iso
from app.contracts.messages import Submission, new_job_id, new_submission_id, received_now


def test_submission_ids_are_random_version_4_uuids() -> None:
    ids = [new_submission_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and is_uuid(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every variant digit and every other position takes all its values
    assert {text[19] for text in ids} == set("89ab")
    assert {text[0] for text in ids} == set("0123456789abcdef")


def test_received_now_is_utc_now_iso() -> None:
    for _ in range(2000):
        before = utc_now_iso()
        now = received_now()
        after = utc_now_iso()
        assert before <= now <= after
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", now) and is_rfc3339(now)
    parsed = datetime.fromisoformat(received_now().replace("Z", "+00:00"))
    assert abs(parsed.timestamp() - time.time()) < 1 and parsed.tzinfo == UTC


def test_a_new_submission_uses_them() -> None:
    call = {"callId": "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f61"}
    sub = Submission.new(team_id="8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f60", key_id="k", call=call)
    assert uuid.UUID(sub.submission_id).version == 4 and is_rfc3339(sub.received_at)


def test_the_job_id_is_job_id_for() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        team, call = str(uuid.UUID(int=rng.getrandbits(128))), str(uuid.UUID(
            int=rng.getrandbits(128)))
        if rng.random() < 0.3:
            team, call = team.upper(), call.upper()
        assert new_job_id(team, call) == job_id_for(team, call)
    finishing = {"callId": "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f61",
                 "recordingUrl": "https://x.io/a"}
    team_id = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f60"
    assert Submission.new(team_id=team_id, key_id="k", call=finishing).job_id == job_id_for(
        team_id, finishing["callId"])
