"""GET /calls/{callId}: a call's merged state and lifecycle, answered by the worker that owns it.

The edge keeps no copy of the state. It asks the workers listed in VOIX_WORKER_URLS, one after
the other, until the one that owns the call's partition answers (200 or 404) from its table;
the others answer 421. A worker that is down, rebalancing or recovering is skipped; when no
owner answers within VOIX_LIFECYCLE_TIMEOUT_S the answer is a clean 503 with Retry-After.

A team sees only its own calls: a call of another team, or no call, is the same 404.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from app.contracts.submission import FieldProblem, is_uuid
from app.edge.errors import ApiError, json_response
from app.edge.handlers import KEYRING, SETTINGS, authenticate
from app.settings import Settings

log = logging.getLogger("voix.edge")

HTTP = web.AppKey("lifecycle_http", aiohttp.ClientSession)

# Fields of the table state that are bookkeeping, not part of the public answer.
INTERNAL_FIELDS = ("jobSource", "v", "type")


class NoWorker(Exception):
    """No worker gave an answer in time."""


def public_view(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in INTERNAL_FIELDS}


async def fetch_call(http: aiohttp.ClientSession, settings: Settings,
                     call_id: str) -> dict[str, Any] | None:
    """The worker's answer ({teamId: state}) or None for no such call; NoWorker if none
    answered. Retries across the workers until the deadline (a rebalance takes seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.lifecycle_timeout_s
    last_problem = "no worker configured"
    while True:
        for base in settings.worker_urls:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NoWorker(last_problem)
            try:
                async with http.get(f"{base}/calls/{call_id}",
                                    timeout=aiohttp.ClientTimeout(total=remaining)) as resp:
                    if resp.status == 404:
                        return None
                    if resp.status == 421:  # not the owner: ask the next worker
                        last_problem = f"{base} does not own the call's partition"
                        continue
                    if resp.status == 200:
                        body = await resp.json(content_type=None)
                        teams = body.get("teams") if isinstance(body, dict) else None
                        if isinstance(teams, dict):
                            return teams
                        last_problem = f"{base} answered an unexpected body"
                    else:
                        last_problem = f"{base} answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                last_problem = f"{base}: {exc!r}"
        await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))


async def get_call(request: web.Request) -> web.Response:
    key = authenticate(request)
    call_id = request.match_info["call_id"]
    if not is_uuid(call_id):
        raise ApiError(400, "invalid_call_id", "callId must be a UUID.",
                       [FieldProblem("callId", "must be a UUID such as "
                                               "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed")])
    call_id = call_id.lower()
    ring = request.app[KEYRING].current
    wanted_team = request.query.get("teamId", "").lower() or None
    if "teamId" in request.query and not is_uuid(wanted_team):
        raise ApiError(400, "invalid_body", "teamId must be a UUID.",
                       [FieldProblem("teamId", "must be a UUID such as "
                                               "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed")])

    def visible(team: str) -> bool:
        if not key.workspace_wide:
            return team == key.team_id
        return ring.team_in_workspace(key.workspace_id, team) and wanted_team in (None, team)
    settings = request.app[SETTINGS]
    try:
        teams = await fetch_call(request.app[HTTP], settings, call_id)
    except NoWorker as exc:
        log.warning("GET /calls/%s: no worker answered: %s", call_id, exc)
        raise ApiError(503, "unavailable", "The call state is not reachable right now; "
                       "retry later.", headers={"Retry-After": str(settings.retry_after_s)},
                       ) from None
    mine = {team: state for team, state in (teams or {}).items() if visible(team)}
    if not mine:
        raise ApiError(404, "not_found", f"No call {call_id} for this API key.")
    if len(mine) > 1:
        raise ApiError(400, "ambiguous_call", "Several teams of this workspace have this "
                       "callId; name one with ?teamId=.",
                       [FieldProblem("teamId", "is required: several teams have this call")])
    [state] = mine.values()
    return json_response(public_view(state))


def setup_lifecycle(app: web.Application) -> None:
    """Register GET /calls/{callId} and its HTTP client (one per edge, not per request)."""

    async def http_client(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            app[HTTP] = session
            yield

    app.cleanup_ctx.append(http_client)
    app.router.add_get("/calls/{call_id}", get_call)
