"""Demo scenario: units, patrol routes and geofences, loaded from a GeoJSON file."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from shapely.geometry import LineString, Point, Polygon

PACKAGED_FILE = "balikpapan.geojson"


@dataclass(frozen=True)
class UnitSpec:
    """A patrol unit and the tracker it carries."""

    name: str
    device_id: str
    kind: str


@dataclass(frozen=True)
class RouteSpec:
    """A patrol route (lon/lat) and the corridor half-width around it."""

    name: str
    line: LineString
    corridor_m: float
    closed: bool


@dataclass(frozen=True)
class FenceSpec:
    """A geofence: a circle (Point + radius_m) or a Polygon, in lon/lat."""

    name: str
    kind: str
    geometry: Point | Polygon
    radius_m: float | None
    min_dwell_s: float | None


@dataclass(frozen=True)
class Scenario:
    """Everything the demo needs: who patrols, where, and which places matter."""

    units: tuple[UnitSpec, ...]
    routes: tuple[RouteSpec, ...]
    fences: tuple[FenceSpec, ...]


# Units are people and vehicles, not geometry, so they live here rather than in the GeoJSON.
DEFAULT_UNITS: tuple[UnitSpec, ...] = tuple(
    UnitSpec(f"Polwan Samapta {i:02d}", f"kaltim-samapta-{i:02d}", "motorbike") for i in range(1, 6)
)


def load_scenario(
    path: Path | str | None = None, *, units: Sequence[UnitSpec] | None = None
) -> Scenario:
    """Read a scenario GeoJSON file (default: the packaged Balikpapan demo)."""
    if path is None:
        source = f"packaged {PACKAGED_FILE}"
        text = resources.files("service.demo").joinpath(PACKAGED_FILE).read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{source}: cannot read scenario file: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON: {exc}") from exc
    routes, fences = _parse_collection(data, source)
    unit_specs = tuple(DEFAULT_UNITS if units is None else units)
    if not unit_specs:
        raise ValueError("a scenario needs at least one unit")
    return Scenario(units=unit_specs, routes=tuple(routes), fences=tuple(fences))


def _parse_collection(data: Any, source: str) -> tuple[list[RouteSpec], list[FenceSpec]]:
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ValueError(f"{source}: top level must be a GeoJSON FeatureCollection")
    features = data.get("features")
    if not isinstance(features, list) or not features:
        raise ValueError(f"{source}: FeatureCollection has no features")
    routes: list[RouteSpec] = []
    fences: list[FenceSpec] = []
    seen: set[str] = set()
    for index, feature in enumerate(features):
        label = _label(feature, index)
        item = _parse_feature(feature, f"{source}: {label}")
        if item.name in seen:
            raise ValueError(f"{source}: {label}: duplicate name {item.name!r}")
        seen.add(item.name)
        if isinstance(item, RouteSpec):
            routes.append(item)
        else:
            fences.append(item)
    if not routes:
        raise ValueError(f"{source}: no feature with properties.type 'patrol_route'")
    return routes, fences


def _label(feature: Any, index: int) -> str:
    # Name the feature in errors so the user can find it in a long file.
    props = feature.get("properties") if isinstance(feature, dict) else None
    name = props.get("name") if isinstance(props, dict) else None
    return f"feature #{index} ({name!r})" if isinstance(name, str) else f"feature #{index}"


def _parse_feature(feature: Any, where: str) -> RouteSpec | FenceSpec:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValueError(f"{where}: not a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise ValueError(f"{where}: missing properties object")
    name = props.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: missing properties.name")
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        raise ValueError(f"{where}: missing geometry")
    kind = props.get("type")
    if kind == "patrol_route":
        return _parse_route(name, props, geometry, where)
    if kind == "geofence":
        return _parse_fence(name, props, geometry, where)
    raise ValueError(f"{where}: properties.type must be 'patrol_route' or 'geofence', got {kind!r}")


def _parse_route(
    name: str, props: dict[str, Any], geometry: dict[str, Any], where: str
) -> RouteSpec:
    if geometry.get("type") != "LineString":
        raise ValueError(f"{where}: a patrol_route needs a LineString geometry")
    coords = _positions(geometry.get("coordinates"), where)
    if len(coords) < 2:
        raise ValueError(f"{where}: a LineString needs at least 2 positions")
    corridor = _number(props, "corridor_m", where, required=True, positive=True)
    closed = props.get("closed", False)
    if not isinstance(closed, bool):
        raise ValueError(f"{where}: properties.closed must be true or false")
    if closed and coords[0] != coords[-1]:
        raise ValueError(f"{where}: closed route must end at its first position")
    line = LineString(coords)
    if line.length == 0:
        raise ValueError(f"{where}: route has zero length")
    assert corridor is not None
    return RouteSpec(name=name, line=line, corridor_m=corridor, closed=closed)


def _parse_fence(
    name: str, props: dict[str, Any], geometry: dict[str, Any], where: str
) -> FenceSpec:
    kind = props.get("kind")
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"{where}: missing properties.kind (e.g. 'critical_site', 'checkpoint')")
    min_dwell = _number(props, "min_dwell_s", where, required=False, positive=False)
    gtype = geometry.get("type")
    shape: Point | Polygon
    if gtype == "Point":
        coords = _positions([geometry.get("coordinates")], where)
        shape = Point(coords[0])
        radius = _number(props, "radius_m", where, required=True, positive=True)
    elif gtype == "Polygon":
        rings = geometry.get("coordinates")
        if not isinstance(rings, list) or not rings:
            raise ValueError(f"{where}: Polygon has no rings")
        parsed = [_positions(ring, where) for ring in rings]
        for ring in parsed:
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise ValueError(f"{where}: Polygon ring must be closed with at least 4 positions")
        shape = Polygon(parsed[0], parsed[1:])
        if not shape.is_valid:
            raise ValueError(f"{where}: Polygon is not valid (self-intersecting?)")
        radius = None
    else:
        raise ValueError(f"{where}: a geofence needs a Point or Polygon geometry, got {gtype!r}")
    return FenceSpec(name=name, kind=kind, geometry=shape, radius_m=radius, min_dwell_s=min_dwell)


def _positions(raw: Any, where: str) -> list[tuple[float, float]]:
    if not isinstance(raw, list):
        raise ValueError(f"{where}: coordinates must be a list of [lon, lat] positions")
    out: list[tuple[float, float]] = []
    for pos in raw:
        if not isinstance(pos, list) or len(pos) < 2 or not all(_is_number(v) for v in pos[:2]):
            raise ValueError(f"{where}: bad position {pos!r}; expected [lon, lat]")
        lon, lat = float(pos[0]), float(pos[1])
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise ValueError(f"{where}: position {pos!r} is outside lon/lat range")
        out.append((lon, lat))
    return out


def _number(
    props: dict[str, Any], key: str, where: str, *, required: bool, positive: bool
) -> float | None:
    value = props.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where}: missing properties.{key}")
        return None
    if not _is_number(value):
        raise ValueError(f"{where}: properties.{key} must be a number, got {value!r}")
    number = float(value)
    if number < 0 or (positive and number == 0):
        raise ValueError(f"{where}: properties.{key} must be {'> 0' if positive else '>= 0'}")
    return number


def _is_number(value: Any) -> bool:
    # bool is an int subclass; `true` is not a radius.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
