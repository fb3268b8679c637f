"""Every typed key of the edge's aiohttp application, in one place (aiohttp's AppKey)."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from app.contracts.submission import SubmissionValidator
from app.edge.guards import RateLimiter
from app.edge.publisher import Publisher
from app.ops.keys import KeySource
from app.ops.logging import RequestContext
from app.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", Publisher)  # type: ignore[type-abstract]
KEYS = web.AppKey("keys", KeySource)  # type: ignore[type-abstract]
VALIDATOR = web.AppKey("validator", SubmissionValidator)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
OPENAPI = web.AppKey("openapi", dict[str, Any])
# The topic /submit writes to (settings.topics builds every name on each call).
SUBMISSIONS_TOPIC = web.AppKey("submissions_topic", str)
# Per request: its request id and trace context (app/edge/tracing.py).
REQUEST = web.RequestKey("request_context", RequestContext)
# One HTTP client per edge process for asking the workers (GET /calls), not one per request.
WORKER_HTTP = web.AppKey("worker_http", aiohttp.ClientSession)
