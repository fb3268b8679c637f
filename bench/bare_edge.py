"""The HTTP ceiling for `make bench`: a bare aiohttp handler that only parses the body (the
edge's own strict parser), validates it (the edge's own schema validator) and answers 202.
No API key, no Kafka. Run several with --reuse-port to match the edge's process count."""

from __future__ import annotations

import argparse

from aiohttp import web

from app.contracts.submission import default_validator
from app.edge.errors import json_response
from app.edge.handlers import _BodyError, parse_json_body


async def submit(request: web.Request) -> web.Response:
    try:
        body = parse_json_body(await request.read())
    except _BodyError as exc:
        return json_response({"error": "malformed_json", "message": str(exc)}, 400)
    problems = default_validator().problems(body)
    if problems:
        return json_response({"error": "invalid_body",
                              "fields": [p.as_dict() for p in problems]}, 400)
    assert isinstance(body, dict)
    return json_response({"status": "received", "callId": body["callId"].lower()}, 202)


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    app = web.Application(client_max_size=16 * 1024)
    app.router.add_post("/submit", submit)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None,
                reuse_port=args.reuse_port or None)


if __name__ == "__main__":
    main()
