"""GET /calls/{callId}: a call's merged state and status history, read from the worker that
owns it (the edge keeps no copy).

The edge authenticates the key, then asks the worker pool (VOIX_WORKER_URLS: one load-balanced
address, or several workers) with the client's own Authorization header. Any worker answers:
the owner of the call's partition from its table, another one by forwarding to the owner it
knows from the consumer group's assignment, and the owner checks its assignment again before
it answers. A worker that is not the owner and cannot reach it answers 421 and the edge asks
again (the next URL, or the same pool address); when no owner answered within
VOIX_CALL_STATUS_TIMEOUT_S, the answer is 503 with Retry-After. The worker returns only the
teams the key may read; the edge checks that again before it answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from app.contracts.ids import is_uuid, normalise_uuid
from app.contracts.submission import FieldProblem
from app.edge import auth
from app.edge.errors import ApiError, json_response
from app.edge.typedefs import KEYS, SETTINGS, WORKER_HTTP
from app.settings import Settings

log = logging.getLogger("voix.edge")

MISDIRECTED = 421
_UUID_EXAMPLE = "must be a UUID such as 1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"


class NoWorker(Exception):
    """No owner gave an answer in time."""


async def fetch_call(http: aiohttp.ClientSession, settings: Settings, call_id: str,
                     authorization: str, team_id: str | None) -> dict[str, Any] | None:
    """The owner's answer ({teamId: state} of the teams the key may read) or None for no such
    call; NoWorker if no owner answered in time. Retries until the deadline (a rebalance
    takes seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.call_status_timeout_s
    last_problem = "no worker configured"
    params = {"teamId": team_id} if team_id else {}
    headers = {"Authorization": authorization}
    while True:
        for base in settings.worker_urls:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise NoWorker(last_problem)
            try:
                async with http.get(f"{base}/calls/{call_id}", params=params, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=remaining)) as resp:
                    if resp.status == 404:
                        return None
                    if resp.status == 200:
                        body = await resp.json(content_type=None)
                        teams = body.get("teams") if isinstance(body, dict) else None
                        if isinstance(teams, dict):
                            return teams
                        last_problem = f"{base} answered an unexpected body"
                    elif resp.status == MISDIRECTED:
                        last_problem = f"{base} is not the owner and could not reach it"
                    else:
                        last_problem = f"{base} answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                last_problem = f"{base}: {exc!r}"
        await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))


def _uuid_param(value: str, field: str, code: str) -> str:
    if not is_uuid(value):
        raise ApiError(400, code, f"{field} must be a UUID.", [FieldProblem(field, _UUID_EXAMPLE)])
    return normalise_uuid(value)


async def get_call(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    keys = request.app[KEYS]
    key = await auth.authenticate(keys, request.headers.get("Authorization"),
                                  settings.retry_after_s)
    call_id = _uuid_param(request.match_info["call_id"], "callId", "invalid_call_id")
    wanted_team = (_uuid_param(request.query["teamId"], "teamId", "invalid_body")
                   if "teamId" in request.query else None)
    try:
        teams = await fetch_call(request.app[WORKER_HTTP], settings, call_id,
                                 request.headers["Authorization"], wanted_team)
    except NoWorker as exc:
        log.warning("GET /calls/%s: no owner answered: %s", call_id, exc)
        raise ApiError(503, "unavailable", "The call state is not reachable right now; "
                       "retry later.", headers={"Retry-After": str(settings.retry_after_s)},
                       ) from None
    mine = auth.visible_states(keys, key, wanted_team, teams or {})
    if not mine:
        raise ApiError(404, "not_found", f"No call {call_id} for this API key.")
    if len(mine) > 1:
        raise ApiError(400, "ambiguous_call", "Several teams of this workspace have this "
                       "callId; name one with ?teamId=.",
                       [FieldProblem("teamId", "is required: several teams have this call")])
    [state] = mine.values()
    return json_response(state)


async def worker_http_client(app: web.Application) -> AsyncIterator[None]:
    """The edge's HTTP client for the workers, for the app's lifetime (a cleanup_ctx)."""
    async with aiohttp.ClientSession() as session:
        app[WORKER_HTTP] = session
        yield
