"""`python -m app keys ...`: the key store from the command line."""

from __future__ import annotations

import argparse
import sys

from app.ops.keys import KeyStore, KeyStoreError
from app.settings import Settings


def run_keys_command(settings: Settings, args: argparse.Namespace) -> int:
    store = KeyStore(settings.keys_file)
    try:
        if args.keys_command == "create":
            team = None if args.workspace_wide else args.team
            full_key, key = store.create(workspace_id=args.workspace, team_id=team,
                                         label=args.label)
            scope = "workspace-wide" if key.workspace_wide else f"team {key.team_id}"
            print(f"created key {key.key_id} ({scope}, workspace {key.workspace_id})",
                  file=sys.stderr)
            print("store it now; it is not shown again:", file=sys.stderr)
            print(full_key)
        elif args.keys_command == "list":
            ring = store.load()
            print(f"{'KEY ID':14} {'STATE':8} {'WORKSPACE':36} {'TEAM':36} {'CREATED':24} LABEL")
            for key in sorted(ring.keys.values(), key=lambda k: k.created_at):
                state = "active" if key.active else "revoked"
                team = key.team_id or "(workspace-wide)"
                print(f"{key.key_id:14} {state:8} {key.workspace_id:36} {team:36} "
                      f"{key.created_at:24} {key.label}")
        elif args.keys_command == "revoke":
            key = store.revoke(args.key_id)
            print(f"revoked {key.key_id} at {key.revoked_at}")
        elif args.keys_command == "add-team":
            store.add_team(args.workspace, args.team)
            print(f"team {args.team.lower()} is in workspace {args.workspace.lower()}")
    except KeyStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
