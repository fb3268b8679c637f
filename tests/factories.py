"""Bodies and keys shared by both test tiers."""

from __future__ import annotations

import uuid
from typing import Any

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
