"""The worker's read side: GET /calls/{callId} answers a call's state from the table, to the
holder of an API key that may read it, and to nobody else.

Only the worker that consumes the call's partition answers from its table: that is the one
table that merges the call (the partition is Kafka's default partitioner on the callId, the key
of every input topic). A worker that does not own it forwards the request once, with the
client's Authorization header, to the owner it knows from the consumer group's assignment
(Faust's assignor), so the edge needs only one address for the whole pool (a load-balanced
service name). The owner checks its own assignment before it answers; while the worker is
rebalancing or recovering its table the answer is 503, and a worker that cannot reach the
owner answers 421: the edge asks again until its deadline. So the answer is the owner's or
none, never a stale owner's.

The page authenticates the key itself, with the same rules as the edge (app/edge/auth.py) and
the keys topic, and returns only the teams the key may read: the port can be reached from
other hosts without exposing any tenant's calls.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import faust
from faust.types import TP
from faust.web import Request, Response, View

from app.contracts.ids import is_uuid, normalise_uuid
from app.contracts.messages import partition_for, public_call_state
from app.contracts.topics import CALLS_TABLE
from app.edge import auth
from app.edge.errors import ApiError
from app.ops.keys import KeyDirectory
from app.settings import Settings

log = logging.getLogger("voix.worker")

MISDIRECTED = 421
# Set on a forwarded request: its receiver answers or says 421, it never forwards again.
FORWARDED_HEADER = "X-Voix-Forwarded-By"


def _error(view: View, status: int, code: str, message: str,
           headers: dict[str, str] | None = None) -> Response:
    return view.json({"error": code, "message": message}, status=status, headers=headers)


def owner_of(app: faust.App, partition: int) -> str | None:
    """The URL of the worker that the group's last assignment gave the call table's
    `partition` (Faust's assignor shares every member's URL and changelog partitions). Looked
    up by partition, not by key: the table's changelog keys are JSON-encoded, so hashing them
    (as Faust's router.key_store does) would name the wrong partition."""
    changelog = app.tables[CALLS_TABLE].changelog_topic.get_topic_name()
    for url, topics in app.router.table_metadata(CALLS_TABLE).items():
        if partition in topics.get(changelog, ()):
            return str(url).rstrip("/")
    return None


def register_call_status_view(app: faust.App, calls: Any, settings: Settings) -> KeyDirectory:
    """Serve GET /calls/{callId} on the worker's web port; returns the key directory it
    follows (started with the worker)."""
    submissions = settings.topics.submissions
    keys = KeyDirectory(settings)
    http: dict[str, aiohttp.ClientSession] = {}  # one client for forwarding, made on first use

    @app.task  # type: ignore[misc,untyped-decorator]
    async def follow_api_keys() -> None:
        await keys.start()

    async def forward(owner: str, call_id: str, request: Request) -> tuple[int, Any]:
        if "session" not in http:
            http["session"] = aiohttp.ClientSession()
        async with http["session"].get(
                f"{owner}/calls/{call_id}", params=dict(request.query),
                headers={"Authorization": request.headers.get("Authorization", ""),
                         FORWARDED_HEADER: settings.worker_url},
                timeout=aiohttp.ClientTimeout(total=settings.call_status_timeout_s)) as resp:
            return resp.status, await resp.json(content_type=None)

    @app.page("/calls/{call_id}")  # type: ignore[misc]
    async def call_state(view: View, request: Request, call_id: str) -> Response:
        try:
            key = await auth.authenticate(keys, request.headers.get("Authorization"),
                                    settings.retry_after_s)
        except ApiError as exc:
            return _error(view, exc.status, exc.code, exc.message, exc.headers)
        wanted_team = request.query.get("teamId")
        if not is_uuid(call_id) or (wanted_team is not None and not is_uuid(wanted_team)):
            return _error(view, 400, "invalid_id", "callId and teamId must be UUIDs")
        call_id = normalise_uuid(call_id)
        wanted_team = normalise_uuid(wanted_team) if wanted_team else None
        if app.rebalancing or app.tables.recovery.in_recovery:  # type: ignore[attr-defined]
            return _error(view, 503, "unavailable",
                          "the worker is rebalancing or recovering its table")
        partition = partition_for(call_id, settings.partitions)
        if TP(submissions, partition) in app.consumer.assignment():
            teams = calls.get(call_id) or {}
            visible = auth.visible_states(keys, key, wanted_team, teams)
            if not visible:
                return _error(view, 404, "not_found", "no such call")
            return view.json({"callId": call_id, "partition": partition,
                              "teams": {team: public_call_state(state)
                                        for team, state in visible.items()}})
        if request.headers.get(FORWARDED_HEADER):
            return _error(view, MISDIRECTED, "not_owner",
                          f"partition {partition} is not on this worker")
        owner = owner_of(app, partition)
        if not owner or owner == settings.worker_url:
            return _error(view, MISDIRECTED, "not_owner",
                          f"the owner of partition {partition} is not known yet")
        try:
            status, body = await forward(owner, call_id, request)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("GET /calls: cannot reach the owner %s of partition %d: %r", owner,
                        partition, exc)
            return _error(view, MISDIRECTED, "not_owner", "the owner did not answer")
        return view.json(body, status=status)

    return keys
