"""GET /openapi.json: the edge's OpenAPI 3.1 description, built at startup from schemas/: the
request body the edge validates with (schemas/submission.schema.json) and the call record
GET /calls answers (schemas/topics/calls.records.schema.json), so they cannot drift apart."""

from __future__ import annotations

from typing import Any

from app import __version__
from app.contracts.submission import load_submission_schema
from app.contracts.topic_schemas import CALL_SCHEMA_FILE, TOPIC_SCHEMA_FILES, load_schema

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A stable machine-readable code."},
        "message": {"type": "string", "description": "What went wrong, for humans."},
        "fields": {
            "type": "array",
            "items": {"type": "object", "required": ["field", "problem"],
                      "properties": {"field": {"type": "string"},
                                     "problem": {"type": "string"}}},
        },
    },
}
_ACCEPTED = {
    "type": "object",
    "required": ["status", "callId"],
    "properties": {
        "status": {"type": "string", "enum": ["received", "transcribing"]},
        "callId": {"type": "string", "format": "uuid"},
        "jobId": {"type": "string", "format": "uuid",
                  "description": "Present when status is transcribing; the same on every retry."},
    },
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer", "minimum": 1}}}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = _RETRY_AFTER
    return response


def _as_component(schema: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A schema document as an OpenAPI component: its meta keywords dropped (the dialect is
    declared once for the document) and its references to other documents pointed at their
    components (`<$id>#/properties/x` -> `#/components/schemas/<Name>/properties/x`)."""
    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {k: rewrite(v) for k, v in node.items() if k not in ("$schema", "$id")}
        ref = out.get("$ref")
        if isinstance(ref, str):
            target, _, pointer = ref.partition("#")
            if target in names:
                out["$ref"] = f"#/components/schemas/{names[target]}{pointer}"
        return out
    rewritten: dict[str, Any] = rewrite(schema)
    return rewritten


def schema_components(submission_schema: dict[str, Any]) -> dict[str, Any]:
    """The request body, the downstream call and the call record, from schemas/."""
    documents = {"Submission": submission_schema,
                 "Call": load_schema(CALL_SCHEMA_FILE),
                 "CallRecord": load_schema(TOPIC_SCHEMA_FILES["calls.records"])}
    names = {doc["$id"]: name for name, doc in documents.items() if "$id" in doc}
    names.setdefault(load_submission_schema()["$id"], "Submission")
    return {name: _as_component(doc, names) for name, doc in documents.items()}


def build_openapi(submission_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    components = schema_components(submission_schema or load_submission_schema())
    status = {"type": "object", "required": ["status"],
              "properties": {"status": {"type": "string"}, "reason": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": "voix-ingest", "version": __version__,
                 "description": "POST /submit: one or two beats per call, stitched by callId."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "vx_<keyId>_<secret>"}},
            "schemas": {**components, "Accepted": _ACCEPTED, "Error": _ERROR},
        },
        "paths": {
            "/submit": {"post": {
                "operationId": "submit",
                "summary": "Submit one beat of a call",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Submission"}}}},
                "responses": {
                    "202": {"description": "Stored (acknowledged by the broker).",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "400": _error("Malformed JSON or a field problem; `fields` names them."),
                    "401": _error("No key, or an unknown or revoked key."),
                    "403": _error("A workspace key named a team outside its workspace."),
                    "408": _error("The body did not arrive in time."),
                    "413": _error("The body is larger than the cap."),
                    "415": _error("The body is not application/json."),
                    "429": _error("Too many requests for this key.", retry_after=True),
                    "503": _error("The broker did not acknowledge; the call may not be stored.",
                                  retry_after=True),
                },
            }},
            "/calls/{callId}": {"get": {
                "operationId": "getCall",
                "summary": "A call's merged state and lifecycle (received, transcribing, "
                           "transcribed or failed, with the time of each transition)",
                "security": [{"bearer": []}],
                "parameters": [
                    {"name": "callId", "in": "path", "required": True,
                     "schema": {"type": "string", "format": "uuid"}},
                    {"name": "teamId", "in": "query", "required": False,
                     "description": "Only with a workspace-wide key whose teams share the "
                                    "callId.",
                     "schema": {"type": "string", "format": "uuid"}},
                ],
                "responses": {
                    "200": {"description": "The call as the worker merged it: the same value "
                                           "as its latest record on calls.records.",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/CallRecord"}}}},
                    "400": _error("callId or teamId is not a UUID, or teamId is needed."),
                    "401": _error("No key, or an unknown or revoked key."),
                    "404": _error("No such call for this key (other teams' calls included)."),
                    "429": _error("Too many requests for this key.", retry_after=True),
                    "503": _error("No worker answered in time, or the API keys are still "
                                  "loading.", retry_after=True),
                },
            }},
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                                 "responses": {"200": {"description": "Alive.", "content": {
                                     "application/json": {"schema": status}}}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness",
                                "responses": {
                                    "200": {"description": "Keys loaded, Kafka reachable.",
                                            "content": {"application/json": {
                                                "schema": status}}},
                                    "503": {"description": "Kafka not reachable, or the API "
                                                           "keys not loaded yet.",
                                            "headers": _RETRY_AFTER, "content": {
                                                "application/json": {"schema": status}}}}}},
            "/metrics": {"get": {"operationId": "metrics",
                                 "summary": "Prometheus metrics of the edge processes",
                                 "responses": {"200": {"description": "Text exposition.",
                                                       "content": {"text/plain": {"schema": {
                                                           "type": "string"}}}}}}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1.",
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
        },
    }

