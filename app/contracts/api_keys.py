"""API keys as they are kept: records on the compacted keys topic, folded into a KeyRing.

A key looks like `vx_<keyId>_<secret>`. The key id is public (logs, the submissions topic);
the secret has 256 bits of entropy and is stored only as its SHA-256 hash, so a fast hash is
enough and the comparison is constant-time. The keys topic (like Schema Registry's `_schemas`)
holds only key ids, hashes, scopes, limits and revocations: every edge and worker reads it
from the beginning and follows it, so a key made on one host works on all of them.

Records (key -> value, JSON):
- `key/<keyId>` -> an `api.key`: workspace, team (null: workspace-wide), label, hash, created
  and revoked times, optional rate limit and burst. A revocation rewrites the record with
  `revokedAt` set, so compaction keeps it.
- `team/<workspaceId>/<teamId>` -> an `api.team`: the team belongs to the workspace.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from app.contracts.ids import is_uuid, normalise_uuid

log = logging.getLogger("voix.keys")

KEY_PREFIX = "vx_"
FORMAT_VERSION = 1
KEY_TYPE = "api.key"
TEAM_TYPE = "api.team"
# Longest presented key we look at (a real one is ~60 characters).
MAX_PRESENTED_LENGTH = 200


class ApiKeyError(ValueError):
    """An API-key operation cannot be done (bad ids, unknown key)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    workspace_id: str
    team_id: str | None  # None: workspace-wide
    label: str
    created_at: str
    revoked_at: str | None
    secret_hash: str = field(repr=False)
    # Per-key limits; None: the edge's defaults (VOIX_RATE_LIMIT_PER_S / _BURST).
    rate_limit_per_s: float | None = None
    rate_limit_burst: int | None = None

    @property
    def workspace_wide(self) -> bool:
        return self.team_id is None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def split_key(presented: str) -> tuple[str, str] | None:
    """`vx_<keyId>_<secret>` -> (keyId, secret), or None if it is not shaped like one of ours."""
    if not presented.startswith(KEY_PREFIX) or len(presented) > MAX_PRESENTED_LENGTH:
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


def new_key(*, workspace_id: str, team_id: str | None, label: str, created_at: str,
            rate_limit_per_s: float | None = None,
            rate_limit_burst: int | None = None) -> tuple[str, ApiKey]:
    """A fresh key: (the presented key, shown once, and what is stored)."""
    if not is_uuid(workspace_id) or (team_id is not None and not is_uuid(team_id)):
        raise ApiKeyError("workspace and team ids must be UUIDs")
    check_limits(rate_limit_per_s, rate_limit_burst)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(key_id=key_id, workspace_id=normalise_uuid(workspace_id),
                 team_id=normalise_uuid(team_id) if team_id else None, label=label,
                 created_at=created_at, revoked_at=None, secret_hash=hash_secret(secret),
                 rate_limit_per_s=rate_limit_per_s, rate_limit_burst=rate_limit_burst)
    return f"{KEY_PREFIX}{key_id}_{secret}", key


def check_limits(rate_limit_per_s: float | None, rate_limit_burst: int | None) -> None:
    if rate_limit_per_s is not None and not rate_limit_per_s > 0:
        raise ApiKeyError("the rate limit must be a positive number of requests per second")
    if rate_limit_burst is not None and rate_limit_burst < 1:
        raise ApiKeyError("the burst must be at least 1")


# ---- records on the keys topic -------------------------------------------------------------

def key_record(key: ApiKey) -> tuple[bytes, bytes]:
    value = {"v": FORMAT_VERSION, "type": KEY_TYPE, "keyId": key.key_id,
             "workspaceId": key.workspace_id, "teamId": key.team_id, "label": key.label,
             "createdAt": key.created_at, "revokedAt": key.revoked_at,
             "hash": key.secret_hash, "rateLimitPerS": key.rate_limit_per_s,
             "rateLimitBurst": key.rate_limit_burst}
    return f"key/{key.key_id}".encode(), orjson.dumps(value)


def team_record(workspace_id: str, team_id: str, added_at: str) -> tuple[bytes, bytes]:
    workspace_id, team_id = normalise_uuid(workspace_id), normalise_uuid(team_id)
    value = {"v": FORMAT_VERSION, "type": TEAM_TYPE, "workspaceId": workspace_id,
             "teamId": team_id, "addedAt": added_at}
    return f"team/{workspace_id}/{team_id}".encode(), orjson.dumps(value)


def _key_from_value(value: dict[str, Any]) -> ApiKey:
    return ApiKey(key_id=str(value["keyId"]), workspace_id=str(value["workspaceId"]),
                  team_id=value.get("teamId"), label=str(value.get("label", "")),
                  created_at=str(value.get("createdAt", "")),
                  revoked_at=value.get("revokedAt"), secret_hash=str(value["hash"]),
                  rate_limit_per_s=value.get("rateLimitPerS"),
                  rate_limit_burst=value.get("rateLimitBurst"))


# ---- the ring: every key and team, folded from the records -----------------------------------

@dataclass(frozen=True, slots=True)
class KeyRing:
    """An immutable snapshot of the keys topic."""

    keys: dict[str, ApiKey] = field(default_factory=dict)
    workspaces: dict[str, frozenset[str]] = field(default_factory=dict)

    def authenticate(self, presented: str) -> ApiKey | None:
        parts = split_key(presented)
        if parts is None:
            return None
        key_id, secret = parts
        key = self.keys.get(key_id)
        # Hash even for an unknown id so timing does not reveal which ids exist.
        digest = hash_secret(secret)
        if key is None or not key.active:
            return None
        return key if hmac.compare_digest(digest, key.secret_hash) else None

    def team_in_workspace(self, workspace_id: str, team_id: str) -> bool:
        return normalise_uuid(team_id) in self.workspaces.get(workspace_id, frozenset())

    def applied(self, records: Iterable[tuple[bytes | None, bytes | None]]) -> KeyRing:
        """A new ring with the records (key bytes, value bytes) applied in order. A record we
        cannot read is skipped with a warning: one bad record must not lock everyone out."""
        keys = dict(self.keys)
        teams = {ws: set(members) for ws, members in self.workspaces.items()}
        for raw_key, raw_value in records:
            name = (raw_key or b"").decode("utf-8", "replace")
            try:
                _apply(keys, teams, name, raw_value)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("skipping unreadable record %r on the keys topic: %r", name, exc)
        return KeyRing(keys=keys, workspaces={ws: frozenset(m) for ws, m in teams.items()})


def _apply(keys: dict[str, ApiKey], teams: dict[str, set[str]], name: str,
           raw_value: bytes | None) -> None:
    kind, _, rest = name.partition("/")
    if raw_value is None:  # a tombstone: the record is gone
        if kind == "key":
            keys.pop(rest, None)
        elif kind == "team":
            workspace, _, team = rest.partition("/")
            teams.get(workspace, set()).discard(team)
        return
    value = orjson.loads(raw_value)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    if value.get("v") != FORMAT_VERSION:
        raise ValueError(f"unsupported format v={value.get('v')!r}")
    if value.get("type") == KEY_TYPE:
        key = _key_from_value(value)
        keys[key.key_id] = key
        teams.setdefault(key.workspace_id, set())
        if key.team_id is not None:  # a team key registers its team in its workspace
            teams[key.workspace_id].add(key.team_id)
    elif value.get("type") == TEAM_TYPE:
        teams.setdefault(str(value["workspaceId"]), set()).add(str(value["teamId"]))
    else:
        raise ValueError(f"unknown record type {value.get('type')!r}")


def revoked(key: ApiKey, at: str) -> ApiKey:
    return key if key.revoked_at is not None else replace(key, revoked_at=at)


def with_limits(key: ApiKey, rate_limit_per_s: float | None,
                rate_limit_burst: int | None) -> ApiKey:
    check_limits(rate_limit_per_s, rate_limit_burst)
    return replace(key, rate_limit_per_s=rate_limit_per_s, rate_limit_burst=rate_limit_burst)


def records_from_key_file(document: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """The records for a key file of the earlier file-based store (`keys import`)."""
    out: list[tuple[bytes, bytes]] = []
    for key_id, item in document.get("keys", {}).items():
        out.append(key_record(ApiKey(
            key_id=key_id, workspace_id=normalise_uuid(str(item["workspaceId"])),
            team_id=normalise_uuid(str(item["teamId"])) if item.get("teamId") else None,
            label=str(item.get("label", "")), created_at=str(item.get("createdAt", "")),
            revoked_at=item.get("revokedAt"), secret_hash=str(item["hash"]))))
    for workspace_id, item in document.get("workspaces", {}).items():
        for team_id in item.get("teams", []):
            out.append(team_record(workspace_id, team_id, added_at=""))
    return out
