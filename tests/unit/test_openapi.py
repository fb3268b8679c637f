"""GET /openapi.json is built from schemas/submission.schema.json, not copied from it."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from app.contracts.submission import load_submission_schema
from app.edge.app import create_app
from app.edge.openapi import build_openapi
from app.settings import Settings
from tests.factories import MemoryKeys
from tests.unit.test_edge import RecordingPublisher


def test_request_schema_is_the_submission_schema() -> None:
    doc = build_openapi()
    embedded = doc["components"]["schemas"]["Submission"]
    source = load_submission_schema()
    assert embedded == {k: v for k, v in source.items() if k not in ("$schema", "$id")}
    body = doc["paths"]["/submit"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Submission"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    responses = doc["paths"]["/submit"]["post"]["responses"]
    assert {"202", "400", "401", "403", "408", "413", "415", "429", "503"} <= set(responses)
    assert "Retry-After" in responses["503"]["headers"]


def test_a_schema_change_shows_in_the_document() -> None:
    changed = load_submission_schema()
    changed["properties"]["language"] = {"type": "string"}
    assert "language" in build_openapi(changed)["components"]["schemas"]["Submission"][
        "properties"]


async def test_served_at_openapi_json() -> None:
    app = create_app(Settings(), publisher=RecordingPublisher(), keys=MemoryKeys())
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/openapi.json")
        assert resp.status == 200
        assert (await resp.json()) == build_openapi()
