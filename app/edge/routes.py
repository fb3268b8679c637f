"""Every route of the edge, in one place."""

from __future__ import annotations

from aiohttp import web

from app.edge import call_status, handlers
from app.edge.metrics import metrics_page


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/submit", handlers.submit)
    app.router.add_get("/calls/{call_id}", call_status.get_call)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/openapi.json", handlers.openapi)
    app.router.add_get("/metrics", metrics_page)
