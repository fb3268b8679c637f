"""API keys: hashed at rest, constant-time checked, revocable without a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.ops.keys import KeyStore, KeyStoreError, ReloadingKeyRing, split_key

WS = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f60"
TEAM = "8a1f0c3e-7d2b-4c5a-9e6f-1b2c3d4e5f61"


def test_create_authenticate_revoke(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    presented, key = store.create(workspace_id=WS, team_id=TEAM, label="pbx")
    ring = store.load()
    assert ring.authenticate(presented) == key
    assert key.team_id == TEAM and not key.workspace_wide
    store.revoke(key.key_id)
    assert store.load().authenticate(presented) is None


def test_secret_is_never_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    presented, _ = store.create(workspace_id=WS, team_id=TEAM)
    _, secret = split_key(presented) or ("", "")
    text = (tmp_path / "keys.json").read_text()
    assert secret and secret not in text and presented not in text
    assert oct((tmp_path / "keys.json").stat().st_mode & 0o777) == "0o600"


def test_wrong_secret_and_malformed_keys_fail(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    presented, _ = store.create(workspace_id=WS, team_id=TEAM)
    ring = store.load()
    assert ring.authenticate(presented[:-1] + ("A" if presented[-1] != "A" else "B")) is None
    for bad in ["", "vx_", "vx__", "Bearer", "sk_live_123", presented.replace("vx_", "xx_")]:
        assert ring.authenticate(bad) is None


def test_workspace_key_and_team_membership(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    _, key = store.create(workspace_id=WS, team_id=None)
    assert key.workspace_wide
    store.create(workspace_id=WS, team_id=TEAM)  # a team key registers its team
    ring = store.load()
    assert ring.team_in_workspace(WS, TEAM)
    assert ring.team_in_workspace(WS, TEAM.upper())
    assert not ring.team_in_workspace(WS, WS)


def test_ids_must_be_uuids(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(KeyStoreError):
        store.create(workspace_id="acme", team_id=None)
    with pytest.raises(KeyStoreError):
        store.revoke("nope")


def test_reloading_ring_sees_new_and_revoked_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    ring = ReloadingKeyRing(store, interval_s=0)
    presented, key = store.create(workspace_id=WS, team_id=TEAM)
    assert ring.current.authenticate(presented) is not None
    store.revoke(key.key_id)
    # mtime granularity can hide a same-size rewrite within one tick; size differs here anyway
    os.utime(store.path, ns=(1, 1))
    assert ring.current.authenticate(presented) is None


def test_broken_file_keeps_previous_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    presented, _ = store.create(workspace_id=WS, team_id=TEAM)
    ring = ReloadingKeyRing(store, interval_s=0)
    store.path.write_text("{not json")
    assert ring.current.authenticate(presented) is not None


def test_new_key_works_at_once_despite_throttle(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    store.create(workspace_id=WS, team_id=TEAM)
    ring = ReloadingKeyRing(store, interval_s=3600)
    presented, _ = store.create(workspace_id=WS, team_id=TEAM)
    assert ring.current.authenticate(presented) is None  # the throttled snapshot is stale
    assert ring.authenticate(presented) is not None  # an unknown id forces a re-check
