"""Request and response models of API v1 (GeoJSON per RFC 7946: lon, lat order)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from geojson_pydantic import Feature, LineString, Point, Polygon
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from service.fields import Id, Line, check_json_text
from service.fixtime import DEFAULT_FIX_TIMES, FixTimes, to_utc

Role = Literal["admin", "operator", "viewer", "tracker"]
ALARM_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,39}$"
G = TypeVar("G")
P = TypeVar("P", bound=BaseModel)


def alarm_name(value: Any) -> str | None:
    """A tracker's alarm value if it is a valid PingIn.alarm name, else None."""
    if isinstance(value, str) and re.fullmatch(ALARM_PATTERN, value):
        return value
    return None


def _aware(value: datetime) -> datetime:
    # Times without an offset are taken as UTC (trackers and GPX mostly send UTC).
    return to_utc(value)


UtcDatetime = Annotated[datetime, AfterValidator(_aware)]


# ---- units ---------------------------------------------------------------------------------


class UnitCreate(BaseModel):
    """A unit to register."""

    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1, max_length=200)
    device_id: Line = Field(min_length=1, max_length=200, description="What the tracker sends.")
    kind: Line = Field("motorbike", min_length=1, max_length=50)
    patrol_route_ids: list[Id] = Field(default_factory=list, max_length=1000)


class UnitUpdate(BaseModel):
    """Fields of a unit to change."""

    model_config = ConfigDict(extra="forbid")

    name: Line | None = Field(None, min_length=1, max_length=200)
    device_id: Line | None = Field(None, min_length=1, max_length=200)
    kind: Line | None = Field(None, min_length=1, max_length=50)
    patrol_route_ids: list[Id] | None = Field(None, max_length=1000)


HHMM = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["19:00"])]


class AssignmentIn(BaseModel):
    """A patrol route a unit is assigned to, optionally only during a daily shift."""

    model_config = ConfigDict(extra="forbid")

    patrol_route_id: Id
    shift_start: HHMM | None = Field(None, description="Local (display time zone) start, HH:MM")
    shift_end: HHMM | None = Field(None, description="Local end, HH:MM (may wrap midnight)")


class AssignmentOut(AssignmentIn):
    """An assignment of a unit to a patrol route."""

    unit_id: int


class UnitPublic(BaseModel):
    """A registered unit."""

    id: int
    name: str
    device_id: str
    kind: str
    patrol_route_ids: list[int]
    created_at: datetime


class UnitCreated(UnitPublic):
    """A new unit with its device secret (shown only once)."""

    device_secret: str = Field(description="Tracker key for this unit; store it now.")


# ---- patrol routes -------------------------------------------------------------------------


class PatrolRouteProperties(BaseModel):
    """Properties of a patrol route feature."""

    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1, max_length=200)
    corridor_m: float = Field(
        30.0, gt=0, allow_inf_nan=False, description="At most PATROLI_MAX_CORRIDOR_M (m)."
    )
    closed: bool = False
    off_route_after_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    revisit_s: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Every segment visited this often (s)."
    )


class PatrolRoutePropertiesPatch(BaseModel):
    """Properties of a patrol route to change."""

    model_config = ConfigDict(extra="forbid")

    name: Line | None = Field(None, min_length=1, max_length=200)
    corridor_m: float | None = Field(None, gt=0, allow_inf_nan=False)
    closed: bool | None = None
    off_route_after_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    revisit_s: float | None = Field(None, gt=0, allow_inf_nan=False)


class PatrolRouteIn(Feature[LineString, PatrolRouteProperties]):
    """A patrol route: a LineString Feature (positions up to PATROLI_MAX_GEOMETRY_VERTICES)."""

    geometry: LineString
    properties: PatrolRouteProperties


class FeaturePatch(BaseModel, Generic[G, P]):
    """A partial feature: new geometry and/or properties."""

    type: Literal["Feature"] = "Feature"
    geometry: G | None = None
    properties: P | None = None


class PatrolRoutePatch(FeaturePatch[LineString, PatrolRoutePropertiesPatch]):
    """A partial patrol route feature: new geometry and/or properties."""


# ---- geofences -----------------------------------------------------------------------------


class GeofenceProperties(BaseModel):
    """Properties of a geofence feature (radius_m is required for a Point: a circle)."""

    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1, max_length=200)
    kind: Line = Field("critical_site", min_length=1, max_length=50)
    radius_m: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="At most PATROLI_MAX_RADIUS_M (m)."
    )
    min_dwell_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    hysteresis_m: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="At most PATROLI_MAX_HYSTERESIS_M (m)."
    )
    revisit_s: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="A unit present this often (s)."
    )


class GeofencePropertiesPatch(BaseModel):
    """Properties of a geofence to change."""

    model_config = ConfigDict(extra="forbid")

    name: Line | None = Field(None, min_length=1, max_length=200)
    kind: Line | None = Field(None, min_length=1, max_length=50)
    radius_m: float | None = Field(None, gt=0, allow_inf_nan=False)
    min_dwell_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    hysteresis_m: float | None = Field(None, ge=0, allow_inf_nan=False)
    revisit_s: float | None = Field(None, gt=0, allow_inf_nan=False)


# Told apart by "type", so a wrong geometry gets one error naming the types allowed.
FenceGeometry = Annotated[Polygon | Point, Field(discriminator="type")]


class GeofenceIn(Feature[FenceGeometry, GeofenceProperties]):
    """A geofence: a Polygon Feature, or a Point Feature with properties.radius_m (a circle)."""

    geometry: FenceGeometry
    properties: GeofenceProperties


class GeofencePatch(FeaturePatch[FenceGeometry, GeofencePropertiesPatch]):
    """A partial geofence feature: new geometry and/or properties."""


# ---- pings ---------------------------------------------------------------------------------


class PingIn(BaseModel):
    """One GPS fix as posted by a tracker or integration."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    device_id: Line | None = Field(None, min_length=1, max_length=200)
    unit_id: Id | None = None
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    ts: Annotated[
        UtcDatetime,
        WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}),
    ] = Field(
        description="Device time: ISO 8601 (no offset means UTC), or a Unix time in seconds "
        "or milliseconds (see the README's time rule)."
    )
    speed_mps: float | None = Field(None, ge=0)
    heading: float | None = Field(None, ge=0, le=360)
    accuracy_m: float | None = Field(None, ge=0)
    altitude_m: float | None = None
    battery: float | None = Field(None, ge=0, le=100)
    ping_id: Line | None = Field(
        None, min_length=1, max_length=200, description="Client id making retries idempotent."
    )
    alarm: str | None = Field(
        None,
        pattern=ALARM_PATTERN,
        examples=["sos"],
        description="An alarm the tracker raises with this fix: a name of 1 to 40 letters, "
        "digits, `_` or `-`, starting with a letter (Traccar's names: sos, general, "
        "lowBattery, ...). Fires one `alarm` event per occurrence.",
    )
    attributes: Annotated[dict[str, Any], AfterValidator(check_json_text)] | None = Field(
        None, description="Extra tracker data kept with the ping (cell towers, odometer, ...)."
    )

    @field_validator("ts", mode="before")
    @classmethod
    def _numeric_ts(cls, value: Any, info: ValidationInfo) -> Any:
        """Numbers (and numeric strings) follow the time rule: Unix seconds or milliseconds."""
        if isinstance(value, bool):
            raise ValueError("must be an ISO 8601 time or a Unix time, not a boolean")
        number: float | None = None
        if isinstance(value, int | float):
            number = value
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return value
        if number is None:
            return value
        context = info.context if isinstance(info.context, dict) else {}
        times: FixTimes = context.get("fix_times") or DEFAULT_FIX_TIMES
        now: datetime = context.get("now") or datetime.now(UTC)
        return times.from_number(number, "ts", now)


class RouteEvaluation(BaseModel):
    """A ping checked against one patrol route."""

    patrol_route_id: int
    name: str
    distance_m: float
    on_route: bool
    chainage_m: float


class GeofenceHit(BaseModel):
    """A geofence containing a ping."""

    geofence_id: int
    name: str
    kind: str


class Evaluation(BaseModel):
    """How a ping relates to patrol routes and geofences."""

    patrol_routes: list[RouteEvaluation]
    geofences: list[GeofenceHit]


class PingResult(BaseModel):
    """What happened to one posted ping."""

    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    id: int | None = None
    unit_id: int | None = None
    ts: datetime | None = None
    flags: list[str] = Field(default_factory=list)
    evaluation: Evaluation | None = None


class PingBatchResult(BaseModel):
    """Outcome of a ping request: counts and one result per ping, in request order."""

    accepted: int
    duplicates: int
    rejected: int
    results: list[PingResult]


# ---- keys ----------------------------------------------------------------------------------


class KeyCreate(BaseModel):
    """An API key to issue."""

    model_config = ConfigDict(extra="forbid")

    name: Line = Field(min_length=1, max_length=200)
    role: Role
    unit_id: Id | None = Field(None, description="Required for tracker keys.")


class KeyPublic(BaseModel):
    """An issued API key (without the secret)."""

    id: int
    name: str
    role: str
    prefix: str
    unit_id: int | None
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    """A new API key with its secret (shown only once)."""

    key: str


# ---- coverage ------------------------------------------------------------------------------


class SegmentOut(BaseModel):
    """One stretch of a patrol route and when it was visited in the window."""

    index: int
    start_m: float
    end_m: float
    visited: bool
    visits: int
    first_visit: datetime | None
    last_visit: datetime | None


class RouteWindowOut(BaseModel):
    """What an answer about a patrol route over a window [from, to) starts with."""

    patrol_route_id: int
    name: str
    unit_id: int | None
    window_from: datetime = Field(serialization_alias="from")
    window_to: datetime = Field(serialization_alias="to")


class RouteCoverageOut(RouteWindowOut):
    """Coverage of a patrol route over a window [from, to)."""

    unit_id: int | None = Field(default=None, description="Only this unit's visits, when set")
    segment_m: float
    max_gap_s: float
    length_m: float
    visited_m: float
    coverage_ratio: float
    segments: list[SegmentOut]


GeoJSONDict = dict[str, Any]
