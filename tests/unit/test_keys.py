"""API keys: hashed at rest, constant-time checked, revocable, folded from the keys topic."""

from __future__ import annotations

import orjson
import pytest

from app.contracts.api_keys import (
    ApiKeyError,
    KeyRing,
    key_record,
    new_key,
    records_from_key_file,
    revoked,
    split_key,
    team_record,
    with_limits,
)
from app.ops.keys import read_key_file
from tests.factories import MemoryKeys

WS = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f60"
TEAM = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f61"
NOW = "2026-12-02T10:00:00.000Z"


def test_create_authenticate_revoke() -> None:
    keys = MemoryKeys()
    presented, key = keys.create(workspace_id=WS, team_id=TEAM, label="pbx")
    assert keys.current.authenticate(presented) == key
    assert key.team_id == TEAM and not key.workspace_wide
    keys.revoke(key.key_id)
    assert keys.current.authenticate(presented) is None


def test_the_record_holds_the_hash_never_the_secret() -> None:
    presented, key = new_key(workspace_id=WS, team_id=TEAM, label="pbx", created_at=NOW)
    _, secret = split_key(presented) or ("", "")
    record_key, value = key_record(key)
    assert record_key == f"key/{key.key_id}".encode()
    assert secret and secret.encode() not in value and presented.encode() not in value
    assert set(orjson.loads(value)) == {"v", "type", "keyId", "workspaceId", "teamId", "label",
                                        "createdAt", "revokedAt", "hash", "rateLimitPerS",
                                        "rateLimitBurst"}
    assert secret not in repr(key) and key.secret_hash not in repr(key)


def test_wrong_secret_and_malformed_keys_fail() -> None:
    keys = MemoryKeys()
    presented, _ = keys.create(workspace_id=WS, team_id=TEAM)
    ring = keys.current
    assert ring.authenticate(presented[:-1] + ("A" if presented[-1] != "A" else "B")) is None
    for bad in ["", "vx_", "vx__", "Bearer", "sk_live_123", presented.replace("vx_", "xx_"),
                presented + "x" * 300]:
        assert ring.authenticate(bad) is None


def test_workspace_key_and_team_membership() -> None:
    keys = MemoryKeys()
    _, key = keys.create(workspace_id=WS, team_id=None)
    assert key.workspace_wide
    keys.create(workspace_id=WS, team_id=TEAM)  # a team key registers its team
    assert keys.current.team_in_workspace(WS, TEAM)
    assert keys.current.team_in_workspace(WS, TEAM.upper())
    assert not keys.current.team_in_workspace(WS, WS)
    other = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f6f"
    keys.add_team(WS.upper(), other.upper())  # ids are stored in one spelling
    assert keys.current.team_in_workspace(WS, other)


def test_ids_must_be_uuids_and_limits_positive() -> None:
    with pytest.raises(ApiKeyError):
        new_key(workspace_id="acme", team_id=None, label="", created_at=NOW)
    with pytest.raises(ApiKeyError):
        new_key(workspace_id=WS, team_id="team-1", label="", created_at=NOW)
    with pytest.raises(ApiKeyError):
        new_key(workspace_id=WS, team_id=TEAM, label="", created_at=NOW, rate_limit_per_s=0)
    _, key = new_key(workspace_id=WS, team_id=TEAM, label="", created_at=NOW)
    with pytest.raises(ApiKeyError):
        with_limits(key, 10, 0)


def test_ring_fold_is_the_latest_record_per_key() -> None:
    presented, key = new_key(workspace_id=WS, team_id=TEAM, label="", created_at=NOW)
    limited = with_limits(key, 5.0, 10)
    ring = KeyRing().applied([key_record(key), key_record(limited)])
    assert ring.keys[key.key_id].rate_limit_per_s == 5.0
    ring = ring.applied([key_record(revoked(limited, NOW))])
    assert ring.authenticate(presented) is None
    # compaction may leave only the last record: the same ring
    assert KeyRing().applied([key_record(revoked(limited, NOW))]).keys == ring.keys
    # a tombstone removes the key
    assert key.key_id not in ring.applied([(f"key/{key.key_id}".encode(), None)]).keys


def test_an_unreadable_record_is_skipped_not_fatal() -> None:
    presented, key = new_key(workspace_id=WS, team_id=TEAM, label="", created_at=NOW)
    ring = KeyRing().applied([(b"key/x", b"{not json"), (b"key/y", b'{"v": 9}'),
                              (None, b"[]"), key_record(key)])
    assert ring.authenticate(presented) == key


def test_key_file_of_the_file_store_migrates(tmp_path: object) -> None:
    presented, key = new_key(workspace_id=WS, team_id=TEAM, label="old", created_at=NOW)
    document = {"version": 1, "workspaces": {WS: {"teams": [TEAM]}},
                "keys": {key.key_id: {"workspaceId": WS, "teamId": TEAM, "label": "old",
                                      "createdAt": NOW, "revokedAt": None,
                                      "hash": key.secret_hash}}}
    ring = KeyRing().applied(records_from_key_file(document))
    assert ring.authenticate(presented) == key
    assert ring.team_in_workspace(WS, TEAM)
    assert team_record(WS, TEAM, "")[0] == f"team/{WS}/{TEAM}".encode()


def test_reading_a_bad_key_file_names_the_problem(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "keys.json"
    with pytest.raises(ApiKeyError, match="cannot read"):
        read_key_file(path)
    path.write_text("{not json")
    with pytest.raises(ApiKeyError, match="not a key file"):
        read_key_file(path)
    path.write_text('{"keys": {"k": {"teamId": null}}}')
    with pytest.raises(ApiKeyError, match="not a key file"):
        read_key_file(path)
