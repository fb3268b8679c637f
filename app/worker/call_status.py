"""The worker's read side: GET /calls/{callId} answers a call's state from the table.

Only the worker that consumes the call's partition answers from its table: that is the one
table that merges the call. The partition is Kafka's default partitioner applied to the callId
(the key of every input topic). Another worker answers 421 (Misdirected Request) and the edge
asks the next worker in VOIX_WORKER_URLS. During a rebalance, or while the owner is recovering
its table, the answer is 503; the edge keeps trying until its deadline, then answers 503.

(Faust's own table_route forwarding was tried first; across a rebalance its partition -> host
map did not always agree with the consumer's real assignment, so ownership is decided here
from the consumer's assignment itself.)
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP
from faust.web import Request, Response, View

from app.settings import Settings

MISDIRECTED = 421


def register_lifecycle_view(app: faust.App, calls: Any, settings: Settings,
                            partition_of: Any) -> None:
    submissions = settings.topics.submissions

    @app.page("/calls/{call_id}")
    async def call_state(view: View, request: Request, call_id: str) -> Response:
        call_id = call_id.lower()
        partition = partition_of(call_id, settings.partitions)
        if app.rebalancing or app.tables.recovery.in_recovery:  # type: ignore[attr-defined]
            return view.json({"error": "unavailable",
                              "message": "the worker is rebalancing or recovering its table"},
                             status=503)
        if TP(submissions, partition) not in app.consumer.assignment():
            return view.json({"error": "not_owner",
                              "message": f"partition {partition} is not on this worker"},
                             status=MISDIRECTED)
        teams = calls.get(call_id)
        if not teams:
            return view.json({"error": "not_found", "message": "no such call"}, status=404)
        return view.json({"callId": call_id, "partition": partition, "teams": teams})
