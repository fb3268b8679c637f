"""GET /healthz and GET /readyz on the worker's web port, for container healthchecks and load
balancers (the edge's /healthz and /readyz, for the worker).

- `/healthz`: 200 while the process and its event loop answer (Faust's own `/` says the same).
- `/readyz`: 200 once the worker has joined the consumer group and recovered its table, and is
  not rebalancing or recovering right now; 503 with the reason otherwise. A worker that is not
  ready answers GET /calls with 503 too, so a load balancer should send no traffic to it.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

RETRY_AFTER_S = 2


def readiness(app: Any) -> str | None:
    """None when the worker is ready; else why not, in a few words."""
    recovery = app.tables.recovery
    if not recovery.completed.is_set():
        return "starting: not in the consumer group, or its table not recovered yet"
    if app.rebalancing:
        return "rebalancing"
    if recovery.in_recovery:
        return "recovering its table"
    return None


def register_health_views(app: Any) -> None:
    """Serve /healthz and /readyz on the worker's web port (idempotent)."""
    if getattr(app, "_voix_health_views", False):
        return
    app._voix_health_views = True

    @app.page("/healthz")  # type: ignore[misc,untyped-decorator]
    async def healthz(view: View, request: Request) -> Response:
        return view.json({"status": "ok"})

    @app.page("/readyz")  # type: ignore[misc,untyped-decorator]
    async def readyz(view: View, request: Request) -> Response:
        reason = readiness(app)
        if reason is None:
            return view.json({"status": "ready"})
        return view.json({"status": "not ready", "reason": reason}, status=503,
                         headers={"Retry-After": str(RETRY_AFTER_S)})

    del healthz, readyz
