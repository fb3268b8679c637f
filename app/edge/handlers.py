"""HTTP handlers: POST /submit, GET /healthz, GET /readyz, GET /openapi.json."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from app.contracts.ids import normalise_uuid
from app.contracts.messages import Submission, call_key, dumps
from app.edge import auth
from app.edge.errors import ApiError, invalid_body, json_response
from app.edge.guards import read_body
from app.edge.publisher import BrokerUnavailable
from app.edge.tracing import kafka_headers
from app.edge.typedefs import (
    KEYS,
    OPENAPI,
    PUBLISHER,
    RATE_LIMITER,
    REQUEST,
    SETTINGS,
    SUBMISSIONS_TOPIC,
    VALIDATOR,
)

log = logging.getLogger("voix.edge")

UUID_FIELDS = ("callId", "teamId", "userId")


# ---- request body -----------------------------------------------------------------------

class _BodyError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _BodyError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise _BodyError(f"{name} is not valid JSON")


def parse_json_body(raw: bytes) -> Any:
    """Strict JSON: UTF-8 only, no duplicate keys, no NaN/Infinity. Errors are client errors.

    The stdlib parser is used (not orjson) because only it can report duplicate keys.
    """
    if not raw.strip():
        raise _BodyError("the body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise _BodyError("the body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _BodyError(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from None
    except RecursionError:
        raise _BodyError("the body is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python will convert
        raise _BodyError(f"the body is not acceptable JSON: {exc}") from None


# ---- handlers ---------------------------------------------------------------------------

async def submit(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SETTINGS]
    keys = app[KEYS]
    key = await auth.authenticate(keys, request.headers.get("Authorization"),
                                  settings.retry_after_s)
    app[RATE_LIMITER].check(key)
    if request.headers.get("Content-Type") != "application/json" and (  # else parse it
            request.content_type != "application/json"
            or request.charset not in (None, "utf-8")):
        raise ApiError(415, "unsupported_media_type",
                       "Send the body as JSON with 'Content-Type: application/json'.")
    raw = await read_body(request, settings.client_timeout_s)
    try:
        body = parse_json_body(raw)
    except _BodyError as exc:
        raise ApiError(400, "malformed_json", str(exc)) from None
    problems = app[VALIDATOR].problems(body)
    if problems:
        raise invalid_body(problems)
    for name in UUID_FIELDS:  # UUIDs are case-insensitive; one spelling keeps keys stable
        if name in body:
            body[name] = normalise_uuid(body[name])
    team_id = auth.team_for_submission(keys, key, body.pop("teamId", None))
    submission = Submission.new(team_id=team_id, key_id=key.key_id, call=body)
    call_id = submission.call_id

    try:
        await app[PUBLISHER].publish(app[SUBMISSIONS_TOPIC], call_key(call_id),
                                     dumps(submission.to_value()),
                                     kafka_headers(request[REQUEST]))
    except BrokerUnavailable as exc:
        raise ApiError(503, "unavailable",
                       "The call may not have been stored; retry the same request later "
                       "(callId makes a retry safe).",
                       headers={"Retry-After": str(settings.retry_after_s)}) from exc

    job_id = submission.job_id
    if log.isEnabledFor(logging.INFO):
        beat = "finishing" if job_id else "started"
        log.info("accepted call %s (%s beat) for team %s with key %s", call_id, beat,
                 team_id, key.key_id, extra={"call_id": call_id, "team_id": team_id,
                                             "key_id": key.key_id, "beat": beat})
    if job_id is None:
        return json_response({"status": "received", "callId": call_id}, 202)
    return json_response({"status": "transcribing", "callId": call_id, "jobId": job_id}, 202)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the API keys are loaded and the producer reaches the cluster."""
    if not request.app[KEYS].ready:
        reason = "API keys not loaded yet"
    elif not await request.app[PUBLISHER].check():
        reason = "kafka not reachable"
    else:
        return json_response({"status": "ready"})
    return json_response({"status": "not ready", "reason": reason}, 503,
                         headers={"Retry-After": str(request.app[SETTINGS].retry_after_s)})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])
