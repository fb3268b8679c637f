"""HTTP handlers: POST /submit, GET /healthz, GET /readyz."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from app.contracts.messages import Submission, dumps
from app.contracts.submission import FieldProblem, SubmissionValidator
from app.edge.errors import ApiError, invalid_body, json_response
from app.edge.guards import RateLimiter, read_body
from app.edge.publisher import BrokerUnavailable, Publisher
from app.ops.keys import ApiKey, ReloadingKeyRing
from app.settings import Settings

log = logging.getLogger("voix.edge")

SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", Publisher)  # type: ignore[type-abstract]
KEYRING = web.AppKey("keyring", ReloadingKeyRing)
VALIDATOR = web.AppKey("validator", SubmissionValidator)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)

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


# ---- auth and tenancy -------------------------------------------------------------------

def authenticate(request: web.Request) -> ApiKey:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized",
                       "Send your API key as 'Authorization: Bearer <key>'.",
                       headers={"WWW-Authenticate": 'Bearer realm="voix-ingest"'})
    key = request.app[KEYRING].authenticate(token.strip())
    if key is None:
        raise ApiError(401, "unauthorized", "The API key is unknown or has been revoked.",
                       headers={"WWW-Authenticate": 'Bearer realm="voix-ingest", '
                                                    'error="invalid_token"'})
    return key


def resolve_team(request: web.Request, key: ApiKey, body: dict[str, Any]) -> str:
    """Team-scoped key: its own team, whatever the body says. Workspace key: the body's teamId,
    which must belong to the key's workspace."""
    if not key.workspace_wide:
        assert key.team_id is not None
        return key.team_id
    team_id = body.get("teamId")
    if team_id is None:
        raise invalid_body([FieldProblem("teamId", "is required with a workspace-wide API key")])
    if not request.app[KEYRING].current.team_in_workspace(key.workspace_id, team_id):
        raise ApiError(403, "forbidden", "teamId is not a team of this API key's workspace.",
                       [FieldProblem("teamId", "is not a team of this API key's workspace")])
    return str(team_id)


# ---- handlers ---------------------------------------------------------------------------

async def submit(request: web.Request) -> web.Response:
    key = authenticate(request)
    request.app[RATE_LIMITER].check(key.key_id)
    if request.content_type != "application/json" or request.charset not in (None, "utf-8"):
        raise ApiError(415, "unsupported_media_type",
                       "Send the body as JSON with 'Content-Type: application/json'.")
    raw = await read_body(request, request.app[SETTINGS].client_timeout_s)
    try:
        body = parse_json_body(raw)
    except _BodyError as exc:
        raise ApiError(400, "malformed_json", str(exc)) from None
    problems = request.app[VALIDATOR].problems(body)
    if problems:
        raise invalid_body(problems)
    for name in UUID_FIELDS:  # UUIDs are case-insensitive; one spelling keeps keys stable
        if name in body:
            body[name] = body[name].lower()
    team_id = resolve_team(request, key, body)
    call = {k: v for k, v in body.items() if k != "teamId"}
    submission = Submission.new(team_id=team_id, key_id=key.key_id, call=call)

    settings = request.app[SETTINGS]
    try:
        await request.app[PUBLISHER].publish(
            settings.topics.submissions, submission.call_id.encode(), dumps(submission.to_value())
        )
    except BrokerUnavailable as exc:
        raise ApiError(503, "unavailable",
                       "The call was not stored; retry the same request later.",
                       headers={"Retry-After": str(settings.retry_after_s)}) from exc

    log.info("accepted call=%s team=%s key=%s beat=%s", submission.call_id, team_id,
             key.key_id, "finishing" if submission.job_id else "started")
    if submission.job_id is None:
        return json_response({"status": "received", "callId": submission.call_id}, 202)
    return json_response({"status": "transcribing", "callId": submission.call_id,
                          "jobId": submission.job_id}, 202)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if await request.app[PUBLISHER].check():
        return json_response({"status": "ready"})
    return json_response({"status": "not ready", "reason": "kafka not reachable"}, 503,
                         headers={"Retry-After": str(request.app[SETTINGS].retry_after_s)})
