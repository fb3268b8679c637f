"""The edge's app factory and runner."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from app.contracts.submission import default_validator
from app.edge import handlers
from app.edge.errors import MAX_BODY_KEY, error_middleware
from app.edge.guards import RateLimiter
from app.edge.lifecycle import setup_lifecycle
from app.edge.openapi import OPENAPI, build_openapi, openapi_handler
from app.edge.publisher import KafkaPublisher, Publisher
from app.ops.keys import KeyStore, ReloadingKeyRing
from app.ops.metrics import edge_metrics_middleware, metrics_page
from app.settings import Settings

log = logging.getLogger("voix.edge")


def create_app(settings: Settings, publisher: Publisher | None = None) -> web.Application:
    """Build the edge. `publisher` defaults to the Kafka publisher; unit tests pass their own."""
    app = web.Application(middlewares=[edge_metrics_middleware, error_middleware],
                          client_max_size=settings.max_body_bytes)
    app[handlers.SETTINGS] = settings
    app[MAX_BODY_KEY] = settings.max_body_bytes
    app[handlers.KEYRING] = ReloadingKeyRing(KeyStore(settings.keys_file))
    app[handlers.VALIDATOR] = default_validator()
    app[OPENAPI] = build_openapi(app[handlers.VALIDATOR].schema)
    app[handlers.RATE_LIMITER] = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)

    if publisher is None:
        kafka = KafkaPublisher(settings)
        app[handlers.PUBLISHER] = kafka

        async def kafka_producer(_app: web.Application) -> AsyncIterator[None]:
            await kafka.start()
            yield
            await kafka.stop()

        app.cleanup_ctx.append(kafka_producer)
    else:
        app[handlers.PUBLISHER] = publisher

    app.router.add_post("/submit", handlers.submit)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/openapi.json", openapi_handler)
    setup_lifecycle(app)
    app.router.add_get("/metrics", metrics_page)
    return app


def run_edge(settings: Settings, reuse_port: bool = False) -> None:
    log.info("edge listening on http://%s:%d (kafka %s, topic %s)", settings.edge_host,
             settings.edge_port, settings.kafka_bootstrap, settings.topics.submissions)
    web.run_app(create_app(settings), host=settings.edge_host, port=settings.edge_port,
                access_log=None, print=None, shutdown_timeout=10,
                # Also bounds a connection that never finishes sending its request headers.
                keepalive_timeout=settings.client_timeout_s,
                reuse_port=reuse_port or None)
