"""The worker's read side: GET /calls/{callId} answers a call's state from the table.

Any worker can be asked. Faust's table_route hashes the table key (the raw callId bytes, the
same bytes as the input topics' key) to the changelog partition and forwards the request to
the worker that owns it, so the answer always comes from the one table that merges the call.
During a rebalance, or while the owner is still recovering its partition, the answer is 503
(the edge turns that into its own 503 after trying the other workers).
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.types import TP
from faust.web import Request, Response, View

from app.settings import Settings


def register_lifecycle_view(app: faust.App, calls: Any, settings: Settings) -> None:
    changelog = calls.changelog_topic.get_topic_name()

    def owned_and_ready(call_id: str) -> bool:
        partition = (murmur2(call_id.encode()) & 0x7FFFFFFF) % settings.partitions
        recovering = app.tables.recovery.in_recovery  # type: ignore[attr-defined]
        return (not app.rebalancing and not recovering
                and TP(changelog, partition) in app.assignor.assigned_actives())

    @app.page("/calls/{call_id}")
    @app.table_route(table=calls, match_info="call_id")
    async def call_state(view: View, request: Request, call_id: str) -> Response:
        call_id = call_id.lower()
        if not owned_and_ready(call_id):
            return view.json({"error": "unavailable",
                              "message": "the worker owning this call is rebalancing"},
                             status=503)
        teams = calls.get(call_id)
        if not teams:
            return view.json({"error": "not_found", "message": "no such call"}, status=404)
        return view.json({"callId": call_id, "teams": teams})
