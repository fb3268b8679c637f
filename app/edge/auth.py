"""Who may do what: the API key of a request, and which teams it acts for.

Every rule about keys and tenancy is here, for the edge and for the worker's call-state page:

- `Authorization: Bearer <key>`; no key, an unknown or a revoked key is 401.
- Submitting: a team-scoped key acts for its own team, whatever the body says; a
  workspace-wide key must name `teamId`, a team of its workspace (400 without, 403 outside).
- Reading a call: a team-scoped key sees its own team's call only; a workspace-wide key sees
  its workspace's teams (narrowed with `?teamId=`). Another team's call is the same 404 as no
  call at all, so a key cannot learn which callIds other tenants use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.contracts.api_keys import ApiKey, KeyRing, split_key
from app.contracts.submission import FieldProblem
from app.edge.errors import ApiError, invalid_body
from app.ops.keys import KeySource

_CHALLENGE = 'Bearer realm="voix-ingest"'


class _Verified:
    """Presented keys that authenticated against one ring, so that a client's next request
    skips the hash. Only for that ring: a key made, revoked, limited or moved makes a new
    ring (rings are immutable), and a new ring starts an empty cache, so a hit is always what
    `ring.authenticate` would answer. Only keys that authenticated get in, at most `MAX`."""

    MAX = 4096

    def __init__(self) -> None:
        self.ring: KeyRing | None = None
        self.keys: dict[str, ApiKey] = {}

    def get(self, ring: KeyRing, presented: str) -> ApiKey | None:
        if ring is not self.ring:
            self.ring, self.keys = ring, {}
            return None
        return self.keys.get(presented)

    def add(self, ring: KeyRing, presented: str, key: ApiKey) -> None:
        if ring is self.ring and len(self.keys) < self.MAX:
            self.keys[presented] = key


_verified = _Verified()


async def authenticate(keys: KeySource, authorization: str | None,
                       retry_after_s: int) -> ApiKey:
    """The active key the Authorization header presents; 401 otherwise, 503 while the keys
    are still being loaded (a 401 then could refuse a key that exists)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "Send your API key as 'Authorization: Bearer <key>'.",
                       headers={"WWW-Authenticate": _CHALLENGE})
    if not keys.ready:
        raise ApiError(503, "unavailable", "API keys are still loading; retry shortly.",
                       headers={"Retry-After": str(retry_after_s)})
    ring = keys.current
    key = _verified.get(ring, token)
    if key is not None:
        return key
    key = ring.authenticate(token)
    if key is None:
        parts = split_key(token)
        if parts is not None and parts[0] not in ring.keys:
            await keys.catch_up()  # made a moment ago, on another host?
            ring = keys.current
            key = ring.authenticate(token)
    if key is not None:
        _verified.add(ring, token, key)
    if key is None:
        raise ApiError(401, "unauthorized", "The API key is unknown or has been revoked.",
                       headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'})
    return key


def team_for_submission(keys: KeySource, key: ApiKey, body_team_id: str | None) -> str:
    """The team a submission is stored for."""
    if not key.workspace_wide:
        assert key.team_id is not None
        return key.team_id
    if body_team_id is None:
        raise invalid_body([FieldProblem("teamId", "is required with a workspace-wide API key")])
    if not keys.current.team_in_workspace(key.workspace_id, body_team_id):
        raise ApiError(403, "forbidden", "teamId is not a team of this API key's workspace.",
                       [FieldProblem("teamId", "is not a team of this API key's workspace")])
    return body_team_id


def team_filter(keys: KeySource, key: ApiKey, wanted_team: str | None) -> Callable[[str], bool]:
    """Which teams' state of a call this key may read."""
    if not key.workspace_wide:
        return lambda team: team == key.team_id
    ring = keys.current
    return lambda team: (ring.team_in_workspace(key.workspace_id, team)
                         and wanted_team in (None, team))


def visible_states(keys: KeySource, key: ApiKey, wanted_team: str | None,
                   teams: Mapping[str, Any]) -> dict[str, Any]:
    """The per-team states of a call this key may read (none: answer 404)."""
    allowed = team_filter(keys, key, wanted_team)
    return {team: state for team, state in teams.items() if allowed(team)}
