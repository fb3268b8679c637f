"""The command-line face of app/ops/replay.py: arguments in, a plan and a summary out."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.contracts.ids import is_uuid, normalise_uuid
from app.ops.replay import (
    REPLAY,
    ReplayError,
    Selection,
    describe,
    make_plan,
    parse_time,
    send_commands,
)
from app.settings import Settings


def _selection(args: argparse.Namespace) -> Selection:
    call_ids: set[str] | None = None
    if args.call_ids or args.call_ids_file:
        call_ids = {normalise_uuid(c.strip()) for c in args.call_ids or []}
        if args.call_ids_file:
            call_ids |= {normalise_uuid(line.strip()) for line in
                         Path(args.call_ids_file).read_text().splitlines() if line.strip()}
        bad = sorted(c for c in call_ids if not is_uuid(c))
        if bad:
            raise ReplayError(f"not a callId (UUID): {', '.join(bad[:5])}")
    if args.team is not None and not is_uuid(args.team):
        raise ReplayError(f"--team must be a UUID, got {args.team!r}")
    return Selection(since=parse_time(args.since), until=parse_time(args.until),
                     team_id=normalise_uuid(args.team) if args.team else None,
                     call_ids=frozenset(call_ids) if call_ids is not None else None)


def run_replay_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        selection = _selection(args)
        plan = asyncio.run(make_plan(settings, selection, show_progress=not args.no_progress))
    except (ReplayError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(plan, args.mode, settings.topics.submissions), flush=True)
    commands = plan.commands(args.mode)
    if args.dry_run:
        print(f"dry run: would send {len(commands)} {args.mode} commands to "
              f"{settings.topics.commands}; nothing sent")
        return 0
    sent = asyncio.run(send_commands(settings, commands, show_progress=not args.no_progress))
    what = "merges" if args.mode == REPLAY else "new jobs"
    print(f"sent {sent} {args.mode} commands to {settings.topics.commands}; the workers apply "
          f"them in order per call ({what}); follow with `python -m app tail "
          f"{settings.topics.jobs}`")
    return 0
