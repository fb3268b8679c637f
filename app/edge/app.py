"""The edge's app factory and runner."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

from aiohttp import web

from app.contracts.submission import default_validator
from app.edge.call_status import worker_http_client
from app.edge.guards import RateLimiter
from app.edge.middleware import edge_middleware
from app.edge.openapi import build_openapi
from app.edge.publisher import KafkaPublisher, Publisher
from app.edge.routes import setup_routes
from app.edge.typedefs import (
    KEYS,
    OPENAPI,
    PUBLISHER,
    RATE_LIMITER,
    SETTINGS,
    SUBMISSIONS_TOPIC,
    VALIDATOR,
)
from app.kafka_clients import describe
from app.ops.keys import KeyDirectory, KeySource
from app.settings import Settings

log = logging.getLogger("voix.edge")


def create_app(settings: Settings, publisher: Publisher | None = None,
               keys: KeySource | None = None) -> web.Application:
    """Build the edge. `publisher` and `keys` default to Kafka's (the submissions producer,
    the keys topic); unit tests pass their own."""
    app = web.Application(middlewares=[edge_middleware(settings.max_body_bytes)],
                          client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[SUBMISSIONS_TOPIC] = settings.topics.submissions
    app[VALIDATOR] = default_validator()
    app[OPENAPI] = build_openapi(app[VALIDATOR].schema)
    app[RATE_LIMITER] = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)

    app[PUBLISHER] = (publisher if publisher is not None
                      else _started_with(app, KafkaPublisher(settings)))
    app[KEYS] = keys if keys is not None else _started_with(app, KeyDirectory(settings))
    app.cleanup_ctx.append(worker_http_client)
    setup_routes(app)
    return app


class _Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


def _started_with(app: web.Application, service: S) -> S:
    """`service`, started and stopped with the app (a cleanup_ctx)."""

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    app.cleanup_ctx.append(lifetime)
    return service


def run_edge(settings: Settings, reuse_port: bool = False) -> None:
    log.info("edge listening on http://%s:%d (kafka %s, topic %s)", settings.edge_host,
             settings.edge_port, describe(settings), settings.topics.submissions)
    web.run_app(create_app(settings), host=settings.edge_host, port=settings.edge_port,
                access_log=None, print=None, shutdown_timeout=10,
                # Also bounds a connection that never finishes sending its request headers.
                keepalive_timeout=settings.client_timeout_s,
                reuse_port=reuse_port or None)
