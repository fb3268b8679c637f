"""`python -m app keys ...`: the API keys on the keys topic, from the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.contracts.api_keys import ApiKeyError
from app.contracts.ids import normalise_uuid
from app.ops.keys import KeyAdmin
from app.settings import Settings


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser(
        "keys", help="create, list, limit and revoke API keys",
        description="Manage API keys. They live on the compacted keys topic (VOIX_TOPIC_KEYS): "
                    "every edge and worker on the same Kafka sees a change within a second; no "
                    "restart, no shared files.")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it once",
                                description="Create a key; the full key is printed once (stdout) "
                                            "and only its hash is stored.")
    create.add_argument("--workspace", required=True, help="workspace UUID")
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--team", help="team UUID: a team-scoped key")
    scope.add_argument("--workspace-wide", action="store_true",
                       help="a workspace-wide key (requests must name teamId)")
    create.add_argument("--label", default="", help="a note for humans (no secrets)")
    _limit_arguments(create)
    actions.add_parser("list", help="list keys (never the secrets)",
                       description="List every key with its scope, state and limits.")
    revoke = actions.add_parser("revoke", help="revoke a key by its id",
                                description="Revoke a key; every edge refuses it within a "
                                            "second.")
    revoke.add_argument("key_id", help="the key id (the part after vx_)")
    limit = actions.add_parser("set-limit", help="set or clear a key's own rate limit",
                               description="Give a key its own rate limit and burst (per edge "
                                           "process), or --default to use the edge's defaults.")
    limit.add_argument("key_id", help="the key id")
    _limit_arguments(limit)
    limit.add_argument("--default", action="store_true",
                       help="clear the key's own limits (use VOIX_RATE_LIMIT_PER_S/_BURST)")
    add_team = actions.add_parser("add-team", help="add a team to a workspace",
                                  description="Let the workspace's wide keys act for this team.")
    add_team.add_argument("--workspace", required=True, help="workspace UUID")
    add_team.add_argument("--team", required=True, help="team UUID")
    migrate = actions.add_parser(
        "import", help="copy a key file of the earlier file-based store into the topic",
        description="Migrate keys from a keys.json of the file-based store (VOIX_KEYS_FILE in "
                    "versions before 0.2): hashes, scopes and revocations are copied, so the "
                    "keys keep working. Safe to run twice.")
    migrate.add_argument("file", type=Path, help="the keys.json to import")


def _limit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate-limit", type=float, metavar="PER_S",
                        help="requests per second for this key, per edge process "
                             "(default VOIX_RATE_LIMIT_PER_S)")
    parser.add_argument("--burst", type=int,
                        help="burst for this key, per edge process (default "
                             "VOIX_RATE_LIMIT_BURST)")


def run_keys_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(KeyAdmin(settings), args))
    except ApiKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _limits(key: object) -> str:
    rate, burst = getattr(key, "rate_limit_per_s", None), getattr(key, "rate_limit_burst", None)
    if rate is None and burst is None:
        return "default"
    return f"{rate if rate is not None else 'default'}/s burst {burst or 'default'}"


async def _run(admin: KeyAdmin, args: argparse.Namespace) -> int:
    command = args.keys_command
    if command == "create":
        team = None if args.workspace_wide else args.team
        full_key, key = await admin.create(workspace_id=args.workspace, team_id=team,
                                           label=args.label, rate_limit_per_s=args.rate_limit,
                                           rate_limit_burst=args.burst)
        scope = "workspace-wide" if key.workspace_wide else f"team {key.team_id}"
        print(f"created key {key.key_id} ({scope}, workspace {key.workspace_id}, limit "
              f"{_limits(key)})", file=sys.stderr)
        print("store it now; it is not shown again:", file=sys.stderr)
        print(full_key)
    elif command == "list":
        ring = await admin.load()
        print(f"{'KEY ID':14} {'STATE':8} {'WORKSPACE':36} {'TEAM':36} {'CREATED':24} "
              f"{'LIMIT':22} LABEL")
        for key in sorted(ring.keys.values(), key=lambda k: k.created_at):
            state = "active" if key.active else "revoked"
            team = key.team_id or "(workspace-wide)"
            print(f"{key.key_id:14} {state:8} {key.workspace_id:36} {team:36} "
                  f"{key.created_at:24} {_limits(key):22} {key.label}")
    elif command == "revoke":
        key = await admin.revoke(args.key_id)
        print(f"revoked {key.key_id} at {key.revoked_at}")
    elif command == "set-limit":
        if args.default and (args.rate_limit is not None or args.burst is not None):
            raise ApiKeyError("--default clears the limits; do not combine it with "
                              "--rate-limit or --burst")
        if not args.default and args.rate_limit is None and args.burst is None:
            raise ApiKeyError("give --rate-limit and/or --burst, or --default")
        key = await admin.set_limit(args.key_id, args.rate_limit, args.burst)
        print(f"key {key.key_id}: limit {_limits(key)}")
    elif command == "add-team":
        await admin.add_team(args.workspace, args.team)
        print(f"team {normalise_uuid(args.team)} is in workspace "
              f"{normalise_uuid(args.workspace)}")
    elif command == "import":
        count = await admin.import_file(args.file)
        print(f"imported {count} records from {args.file} into {admin.settings.topics.keys}")
    return 0
