"""The OpenAPI document: FastAPI's, plus what route signatures cannot say.

Routes that read their request themselves (the ping batch, the tracker protocols) describe it
here, and models those descriptions refer to are added to the document's components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from service.errors import ErrorOut
from service.schemas import PingIn

REF = "#/components/schemas/{model}"

# Models referred to only from hand-written parts of the document.
EXTRA_MODELS: tuple[type[BaseModel], ...] = (PingIn, ErrorOut)

PING_BODY: dict[str, Any] = {
    "oneOf": [
        {"$ref": REF.format(model="PingIn")},
        {"type": "array", "minItems": 1, "items": {"$ref": REF.format(model="PingIn")}},
    ]
}


def _field(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "description": description, "schema": schema}


_NUMBER = {"type": "number"}
_TEXT = {"type": "string"}

# OsmAnd parameters as Traccar Client, OsmAnd and GPSLogger send them; others become attributes.
OSMAND_FIELDS: list[dict[str, Any]] = [
    _field("id", "Device id (the unit's device_id).", _TEXT),
    _field("deviceid", "Device id, when `id` is absent.", _TEXT),
    _field(
        "timestamp",
        "Device time: Unix seconds or milliseconds, or ISO 8601 (README: time rule). Default: now.",
        _TEXT,
    ),
    _field("lat", "Latitude (WGS84).", _NUMBER),
    _field("lon", "Longitude (WGS84).", _NUMBER),
    _field("location", "`lat,lon`, instead of lat and lon.", _TEXT),
    _field("speed", "Speed in PATROLI_OSMAND_SPEED_UNIT (knots by default).", _NUMBER),
    _field("bearing", "Course over ground (degrees).", _NUMBER),
    _field("heading", "Course, when `bearing` is absent.", _NUMBER),
    _field("altitude", "Altitude (m).", _NUMBER),
    _field("accuracy", "Horizontal accuracy (m).", _NUMBER),
    _field("hdop", "Horizontal dilution of precision.", _NUMBER),
    _field("batt", "Battery level (%).", _NUMBER),
    _field("charge", "Charging: true, false, 1 or 0.", _TEXT),
    _field("valid", "Whether the fix is valid: true, false, 1 or 0.", _TEXT),
]

OSMAND_GET: dict[str, Any] = {
    "parameters": [{**field, "in": "query", "required": False} for field in OSMAND_FIELDS]
}

# Traccar Client 9: the background-geolocation location object (or a list) under `location`.
TRACCAR_JSON: dict[str, Any] = {
    "type": "object",
    "required": ["device_id", "location"],
    "properties": {
        "device_id": {"type": "string"},
        "location": {
            "oneOf": [
                {"$ref": "#/components/schemas/TraccarLocation"},
                {"type": "array", "items": {"$ref": "#/components/schemas/TraccarLocation"}},
            ]
        },
    },
}
TRACCAR_LOCATION: dict[str, Any] = {
    "type": "object",
    "properties": {
        "timestamp": {"type": "string", "format": "date-time"},
        "uuid": {"type": "string"},
        "coords": {
            "type": "object",
            "properties": {
                key: {"type": "number"}
                for key in ("latitude", "longitude", "speed", "heading", "accuracy", "altitude")
            },
        },
        "battery": {
            "type": "object",
            "properties": {"level": {"type": "number"}, "is_charging": {"type": "boolean"}},
        },
    },
}

# The OsmAnd parameters as one flat object (a form, or an element of a JSON list of positions).
OSMAND_OBJECT: dict[str, Any] = {
    "type": "object",
    "properties": {
        field["name"]: {**field["schema"], "description": field["description"]}
        for field in OSMAND_FIELDS
    },
}

# One element of a JSON list of positions: values as in a query string, or JSON numbers/booleans.
OSMAND_JSON_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        field["name"]: {
            "type": ["string", "number", "boolean"],
            "description": field["description"],
        }
        for field in OSMAND_FIELDS
    },
}

OSMAND_POST: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": OSMAND_OBJECT},
            "application/json": {
                "schema": {
                    "oneOf": [
                        TRACCAR_JSON,
                        {
                            "type": "array",
                            "description": "A list of positions (Traccar Client's upload of "
                            "stored fixes), each read like one OsmAnd request; at most "
                            "PATROLI_MAX_BATCH.",
                            "minItems": 1,
                            "items": OSMAND_JSON_ITEM,
                        },
                    ]
                }
            },
        },
    }
}

OWNTRACKS_POST: dict[str, Any] = {
    "parameters": [
        {**_field("X-Limit-U", "OwnTracks user name.", _TEXT), "in": "header"},
        {**_field("X-Limit-D", "OwnTracks device name.", _TEXT), "in": "header"},
        {**_field("u", "User name, when the header is absent.", _TEXT), "in": "query"},
        {**_field("d", "Device name, when the header is absent.", _TEXT), "in": "query"},
    ],
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "description": "An OwnTracks message (`_type`: location, transition, ...), "
                    "an array of them, or nothing.",
                    "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
                }
            }
        },
    },
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document (built once), with the extra component schemas."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in EXTRA_MODELS:
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["TraccarLocation"] = TRACCAR_LOCATION
    app.openapi_schema = document
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve `build_openapi` as the app's OpenAPI document."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
