"""Bodies and keys shared by both test tiers."""

from __future__ import annotations

import uuid
from typing import Any

from app.contracts.api_keys import ApiKey, KeyRing, key_record, new_key, revoked, team_record
from app.contracts.ids import utc_now_iso

START = "2026-06-16T09:05:35.000Z"


def beat1(call_id: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "callId": call_id or str(uuid.uuid4()),
        "from": "+31612345678",
        "to": "+31201234567",
        "startTime": START,
        "outgoing": False,
    }
    body.update(extra)
    return body


def beat2(call_id: str, **extra: Any) -> dict[str, Any]:
    body = beat1(call_id, duration=42,
                 recordingUrl=f"https://recordings.example.com/{call_id}.wav?sig=secret")
    body.update(extra)
    return body


class MemoryKeys:
    """An in-memory keys topic for unit tests: the records the admin would write, folded into
    a ring exactly as the edge's directory folds the topic."""

    def __init__(self) -> None:
        self.ring = KeyRing()
        self.ready = True

    @property
    def current(self) -> KeyRing:
        return self.ring

    async def catch_up(self) -> None:
        return None

    def create(self, *, workspace_id: str, team_id: str | None, label: str = "",
               **limits: Any) -> tuple[str, ApiKey]:
        presented, key = new_key(workspace_id=workspace_id, team_id=team_id, label=label,
                                 created_at=utc_now_iso(), **limits)
        self.ring = self.ring.applied([key_record(key)])
        return presented, key

    def revoke(self, key_id: str) -> None:
        self.ring = self.ring.applied([key_record(revoked(self.ring.keys[key_id],
                                                          utc_now_iso()))])

    def add_team(self, workspace_id: str, team_id: str) -> None:
        self.ring = self.ring.applied([team_record(workspace_id, team_id, utc_now_iso())])
