"""Identifier and time rules shared by every topic and endpoint: what a UUID and an RFC 3339
time look like, the one spelling of a UUID (lower case) and the deterministic job id.

UUIDs are case-insensitive on input; they are normalised to lower case once, where they enter
(the edge's request body and path, the CLI's arguments, a record read from a topic), so keys,
hashes and job ids never depend on how a client spelt them.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# RFC 3339 section 5.6 date-time: the offset is mandatory.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

# Fixed namespace so that jobIds are the same on every edge, worker and replay.
JOB_ID_NAMESPACE = uuid.UUID("6f1c2b0e-3f7a-5d4e-9a61-7c0b8e2d4f10")


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and _UUID.match(value) is not None


def normalise_uuid(value: str) -> str:
    """The one spelling of a UUID we store and key by (callers have checked is_uuid)."""
    return value.lower()


def is_rfc3339(value: object) -> bool:
    if not isinstance(value, str) or _RFC3339.match(value) is None:
        return False
    try:
        # The regex checks the shape; this checks the calendar (no 2026-02-30, no 25:00).
        parse_time(value)
    except ValueError:
        return False
    return True


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_id_for(team_id: str, call_id: str, attempt: int = 1) -> str:
    """Deterministic per (team, call, attempt): every retry of a finishing beat gets the same id."""
    name = f"{normalise_uuid(team_id)}/{normalise_uuid(call_id)}/{attempt}"
    return str(uuid.uuid5(JOB_ID_NAMESPACE, name))
