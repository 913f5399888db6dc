"""The OpenAPI document describes the API: valid, every reference resolves, every error status
and content type a route answers is documented, and error bodies match the one error model."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from service.app import create_app
from service.config import Settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    refs = set(_refs(document))
    assert "#/components/schemas/PingIn" in refs
    missing = {r for r in refs if r.removeprefix("#/components/schemas/") not in schemas}
    assert not missing


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids))


def test_errors_are_documented_with_the_one_error_model(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    open_paths = {"/healthz", "/readyz"}
    for path, method, op in _operations(document):
        responses = op["responses"]
        expected = set() if path in open_paths else {"401", "403", "422", "503"}
        if "{" in path:
            expected.add("404")
        if "requestBody" in op:
            expected |= {"400", "408", "413"}
        assert expected <= set(responses), (method, path, expected - set(responses))
        for code, response in responses.items():
            if code.startswith(("4", "5")) and path not in open_paths:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, code)


def test_content_types_are_documented(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for report in ("/api/v1/reports/units", "/api/v1/reports/shifts"):
        content = paths[report]["get"]["responses"]["200"]["content"]
        assert {"application/json", "text/csv", "application/geo+json"} <= set(content)
    gpx = paths["/api/v1/units/{unit_id}/track.gpx"]["get"]["responses"]["200"]["content"]
    assert set(gpx) == {"application/gpx+xml"}
    assert "text/html" in paths["/maps/live"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in paths["/api/v1/stream"]["get"]["responses"]["200"]["content"]
    ping_body = paths["/api/v1/pings"]["post"]["requestBody"]["content"]["application/json"]
    assert ping_body["schema"]["oneOf"][0] == {"$ref": "#/components/schemas/PingIn"}


def test_the_osmand_json_bodies_validate_against_the_document(document: dict[str, Any]) -> None:
    """Both JSON bodies the OsmAnd door takes: Traccar Client's object and a list of positions."""
    body = document["paths"]["/api/v1/osmand"]["post"]["requestBody"]["content"]
    schema = {**body["application/json"]["schema"], "components": document["components"]}
    traccar = {"device_id": "1", "location": {"coords": {"latitude": -1.2, "longitude": 116.8}}}
    positions = [{"id": "1", "lat": -1.2, "lon": 116.8, "timestamp": 1732672800}]
    for valid in (traccar, positions):
        jsonschema.validate(valid, schema)
    for invalid in ([], [1], {"location": {}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(invalid, schema)


def test_ids_are_documented_with_their_range(document: dict[str, Any]) -> None:
    [param] = document["paths"]["/api/v1/units/{unit_id}"]["get"]["parameters"]
    assert (param["schema"]["minimum"], param["schema"]["maximum"]) == (1, 2**31 - 1)


def test_error_bodies_match_the_documented_model(
    client: TestClient, document: dict[str, Any]
) -> None:
    schema = {**document["components"]["schemas"]["ErrorOut"], "components": document["components"]}
    schema = jsonschema.validators.validator_for({})(schema)  # type: ignore[assignment]
    responses = [
        client.get("/api/v1/units/3000000000"),  # 422 from request validation
        client.post("/api/v1/pings", json={"device_id": "x", "lat": 1, "lon": 1, "ts": 5}),
        client.get("/api/v1/units/7"),  # 404
        client.get("/api/v1/units", headers={"Authorization": "Bearer nope"}),  # 401
        client.post("/api/v1/units", content=b"\xff", headers={"Content-Type": "application/json"}),
    ]
    for r in responses:
        assert r.status_code >= 400
        body = r.json()
        assert isinstance(body["detail"], str)
        schema.validate(body)  # type: ignore[attr-defined]
