"""API keys: stored only as SHA-256 hashes in a JSON file, managed by `python -m app keys`.

A key looks like `vx_<keyId>_<secret>`. The key id is public (it shows in logs and on the
submissions topic); the secret has 256 bits of entropy, so a fast hash is enough, and the
comparison is constant-time. The edge re-reads the file when it changes, so create and revoke
take effect without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from app.contracts.messages import utc_now_iso
from app.contracts.submission import is_uuid

KEY_PREFIX = "vx_"
STORE_VERSION = 1


class KeyStoreError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    workspace_id: str
    team_id: str | None  # None: workspace-wide
    label: str
    created_at: str
    revoked_at: str | None
    secret_hash: str

    @property
    def workspace_wide(self) -> bool:
        return self.team_id is None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def split_key(presented: str) -> tuple[str, str] | None:
    """`vx_<keyId>_<secret>` -> (keyId, secret), or None if it is not shaped like one of ours."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX):].partition("_")
    if not sep or not key_id or not secret or len(presented) > 200:
        return None
    return key_id, secret


@dataclass(frozen=True, slots=True)
class KeyRing:
    """An immutable snapshot of the key file."""

    keys: dict[str, ApiKey]
    workspaces: dict[str, frozenset[str]]

    def authenticate(self, presented: str) -> ApiKey | None:
        parts = split_key(presented)
        if parts is None:
            return None
        key_id, secret = parts
        key = self.keys.get(key_id)
        # Hash even for an unknown id so timing does not reveal which ids exist.
        digest = _hash_secret(secret)
        if key is None or not key.active:
            return None
        return key if hmac.compare_digest(digest, key.secret_hash) else None

    def team_in_workspace(self, workspace_id: str, team_id: str) -> bool:
        return team_id.lower() in self.workspaces.get(workspace_id, frozenset())

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> KeyRing:
        keys = {
            key_id: ApiKey(
                key_id=key_id,
                workspace_id=item["workspaceId"],
                team_id=item.get("teamId"),
                label=item.get("label", ""),
                created_at=item.get("createdAt", ""),
                revoked_at=item.get("revokedAt"),
                secret_hash=item["hash"],
            )
            for key_id, item in doc.get("keys", {}).items()
        }
        workspaces = {
            ws: frozenset(t.lower() for t in item.get("teams", []))
            for ws, item in doc.get("workspaces", {}).items()
        }
        return cls(keys=keys, workspaces=workspaces)


EMPTY_RING = KeyRing(keys={}, workspaces={})


class KeyStore:
    """The key file on disk. Writes are atomic (temp file + rename) under an flock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> KeyRing:
        return KeyRing.from_document(self._read())

    def _read(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {"version": STORE_VERSION, "workspaces": {}, "keys": {}}
        except orjson.JSONDecodeError as exc:
            raise KeyStoreError(f"{self.path} is not valid JSON: {exc}") from None
        return doc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            doc = self._read()
            yield doc
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)

    def create(
        self, *, workspace_id: str, team_id: str | None, label: str = ""
    ) -> tuple[str, ApiKey]:
        """Create a key; returns the full key (shown once) and its record."""
        if not is_uuid(workspace_id) or (team_id is not None and not is_uuid(team_id)):
            raise KeyStoreError("workspace and team ids must be UUIDs")
        workspace_id = workspace_id.lower()
        team_id = team_id.lower() if team_id else None
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self._locked() as doc:
            if team_id is not None:
                self._add_team(doc, workspace_id, team_id)
            else:
                doc.setdefault("workspaces", {}).setdefault(workspace_id, {"teams": []})
            item = {
                "workspaceId": workspace_id,
                "teamId": team_id,
                "label": label,
                "createdAt": utc_now_iso(),
                "revokedAt": None,
                "hash": _hash_secret(secret),
            }
            doc.setdefault("keys", {})[key_id] = item
        return f"{KEY_PREFIX}{key_id}_{secret}", KeyRing.from_document(
            {"keys": {key_id: item}}).keys[key_id]

    def revoke(self, key_id: str) -> ApiKey:
        with self._locked() as doc:
            item = doc.get("keys", {}).get(key_id)
            if item is None:
                raise KeyStoreError(f"no key with id {key_id!r}")
            if item.get("revokedAt") is None:
                item["revokedAt"] = utc_now_iso()
            return KeyRing.from_document({"keys": {key_id: item}}).keys[key_id]

    def add_team(self, workspace_id: str, team_id: str) -> None:
        if not is_uuid(workspace_id) or not is_uuid(team_id):
            raise KeyStoreError("workspace and team ids must be UUIDs")
        with self._locked() as doc:
            self._add_team(doc, workspace_id.lower(), team_id.lower())

    @staticmethod
    def _add_team(doc: dict[str, Any], workspace_id: str, team_id: str) -> None:
        teams = doc.setdefault("workspaces", {}).setdefault(workspace_id, {"teams": []})["teams"]
        if team_id not in teams:
            teams.append(team_id)


class ReloadingKeyRing:
    """What the edge holds: the current KeyRing, re-read when the file's mtime or size changes.

    The stat is throttled to once per `interval_s`, so a burst costs one syscall a second.
    """

    def __init__(self, store: KeyStore, interval_s: float = 1.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self._ring = EMPTY_RING
        self._signature: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        self.refresh(force=True)

    def refresh(self, force: bool = False, throttle: bool = True) -> KeyRing:
        now = time.monotonic()
        if not force and throttle and now - self._checked_at < self.interval_s:
            return self._ring
        self._checked_at = now
        try:
            st = self.store.path.stat()
            signature: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            signature = None
        if force or signature != self._signature:
            # A half-written file cannot be seen (atomic rename); a broken one keeps the old ring.
            with contextlib.suppress(KeyStoreError):
                self._ring = self.store.load() if signature else EMPTY_RING
                self._signature = signature
        return self._ring

    @property
    def current(self) -> KeyRing:
        return self.refresh()

    def authenticate(self, presented: str) -> ApiKey | None:
        """A key id we have never seen triggers an immediate re-check of the file (one stat),
        so a key created a moment ago works at once; revocations apply within interval_s."""
        ring = self.current
        key = ring.authenticate(presented)
        parts = split_key(presented)
        if key is None and parts is not None and parts[0] not in ring.keys:
            key = self.refresh(throttle=False).authenticate(presented)
        return key
