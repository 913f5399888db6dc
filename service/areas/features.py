"""Patrol routes and geofences: GeoJSON features in, validated and stored, features out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import shapely
from shapely.geometry import Point, mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.areas.index import corridor_from_row, fence_geometry, route_corridor
from service.config import Settings
from service.errors import InvalidGeometry, NotFound
from service.geo.validate import (
    GeometryLimits,
    check_at_most,
    check_route_length,
    fence_point,
    fence_polygon,
    route_line,
)
from service.schemas import (
    GeofenceIn,
    GeofencePatch,
    GeoJSONDict,
    PatrolRouteIn,
    PatrolRoutePatch,
)
from service.store.models import Geofence, PatrolRoute, utcnow

Area = TypeVar("Area", PatrolRoute, Geofence)

# Stored properties a feature shows (after id and name).
_ROUTE_PROPERTIES = ("corridor_m", "closed", "off_route_after_s", "revisit_s")
_FENCE_PROPERTIES = ("kind", "radius_m", "min_dwell_s", "hysteresis_m", "revisit_s")
# Properties a geofence patch may set back to null (the others keep their value on null).
_NULLABLE_FENCE = ("radius_m", "min_dwell_s", "hysteresis_m", "revisit_s")


def geometry_limits(settings: Settings) -> GeometryLimits:
    """The limits on one patrol route or geofence, from the settings."""
    return settings.pick(
        GeometryLimits, env_prefix=str(settings.model_config.get("env_prefix", ""))
    )


def _fence_geom(geometry: Any, radius_m: float | None, limits: GeometryLimits) -> BaseGeometry:
    if geometry.type == "Point":
        if radius_m is None:
            raise InvalidGeometry("a Point geofence is a circle: give properties.radius_m")
        return fence_point(geometry.coordinates)
    if radius_m is not None:
        raise InvalidGeometry("radius_m only applies to a Point (circle) geofence")
    return fence_polygon(geometry.coordinates, limits)


def _check_fence_values(values: dict[str, Any], limits: GeometryLimits) -> None:
    for name in ("radius_m", "hysteresis_m"):
        if values.get(name) is not None:
            check_at_most(values[name], name, f"max_{name}", limits)


def _feature(row: PatrolRoute | Geofence, names: tuple[str, ...], **more: Any) -> GeoJSONDict:
    return {
        "type": "Feature",
        "id": row.id,
        "geometry": mapping(row.geom),
        "properties": {
            "id": row.id,
            "name": row.name,
            **{name: getattr(row, name) for name in names},
            **more,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
        },
    }


def route_feature(row: PatrolRoute) -> GeoJSONDict:
    """A stored patrol route as a GeoJSON Feature."""
    length_m = round(corridor_from_row(row).length_m, 2)
    return _feature(row, _ROUTE_PROPERTIES, length_m=length_m)


def fence_feature(row: Geofence) -> GeoJSONDict:
    """A stored geofence as a GeoJSON Feature (a circle is its centre Point with radius_m)."""
    return _feature(row, _FENCE_PROPERTIES)


def collection(features: list[GeoJSONDict]) -> GeoJSONDict:
    """A GeoJSON FeatureCollection."""
    return {"type": "FeatureCollection", "features": features}


def _get(session: Session, model: type[Area], row_id: int, what: str) -> Area:
    row = session.get(model, row_id)
    if row is None:
        raise NotFound(f"{what} {row_id} not found")
    return row


def _add(session: Session, row: Area, feature: Callable[[Area], GeoJSONDict]) -> GeoJSONDict:
    session.add(row)
    session.flush()
    return feature(row)


def _list(
    session: Session, model: type[Area], feature: Callable[[Area], GeoJSONDict]
) -> GeoJSONDict:
    rows = session.scalars(select(model).order_by(model.id))
    return collection([feature(r) for r in rows])


def _change(
    session: Session, row: Area, changes: dict[str, Any], feature: Callable[[Area], GeoJSONDict]
) -> GeoJSONDict:
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.flush()
    return feature(row)


def get_route(session: Session, route_id: int) -> PatrolRoute:
    """A stored patrol route, or NotFound."""
    return _get(session, PatrolRoute, route_id, "patrol route")


def get_fence(session: Session, fence_id: int) -> Geofence:
    """A stored geofence, or NotFound."""
    return _get(session, Geofence, fence_id, "geofence")


def new_route(feature: PatrolRouteIn, limits: GeometryLimits) -> PatrolRoute:
    """A checked, unsaved patrol route; its corridor is built (and shared) here.

    Called before the write transaction, so the costly build holds no lock that storing pings
    needs; the transaction (reconcile_units, the ingest index) then finds it built.
    """
    props = feature.properties
    check_at_most(props.corridor_m, "corridor_m", "max_corridor_m", limits)
    line = route_line(feature.geometry.coordinates, props.closed, limits)
    row = PatrolRoute(**props.model_dump(), geom=line)
    route_corridor(line, props.corridor_m, props.closed)
    return row


def route_changes(
    session: Session, route_id: int, patch: PatrolRoutePatch, limits: GeometryLimits
) -> dict[str, Any]:
    """The checked changes a patch makes to a stored route; the new corridor is built here.

    Called before the write transaction as well as in it (see `new_route`): the checks are
    cheap, and the one in the transaction sees the route as it is then.
    """
    row = get_route(session, route_id)
    changes = {
        name: value
        for name, value in (
            patch.properties.model_dump(exclude_unset=True) if patch.properties else {}
        ).items()
        if value is not None
    }
    closed = changes.get("closed", row.closed)
    corridor_m = changes.get("corridor_m", row.corridor_m)
    if "corridor_m" in changes:
        check_at_most(corridor_m, "corridor_m", "max_corridor_m", limits)
    if patch.geometry is not None:
        changes["geom"] = route_line(patch.geometry.coordinates, closed, limits)
    elif closed and not row.closed:
        check_route_length(shapely.get_coordinates(row.geom), closed, limits)
    route_corridor(changes.get("geom", row.geom), corridor_m, closed)
    return changes


def new_fence(feature: GeofenceIn, limits: GeometryLimits) -> Geofence:
    """A checked, unsaved geofence; its fence is built (and shared) here (see `new_route`)."""
    props = feature.properties
    values = props.model_dump()
    _check_fence_values(values, limits)
    geom = _fence_geom(feature.geometry, props.radius_m, limits)
    row = Geofence(**values, geom=geom)
    fence_geometry(geom, props.radius_m)
    return row


def fence_changes(
    session: Session, fence_id: int, patch: GeofencePatch, limits: GeometryLimits
) -> dict[str, Any]:
    """The checked changes a patch makes to a stored geofence; the new fence is built here."""
    row = get_fence(session, fence_id)
    changes = patch.properties.model_dump(exclude_unset=True) if patch.properties else {}
    _check_fence_values(changes, limits)
    radius = changes.get("radius_m", row.radius_m)
    geom = row.geom
    if patch.geometry is not None:
        if patch.geometry.type == "Polygon" and "radius_m" not in changes:
            radius = changes["radius_m"] = None  # a circle redrawn as a polygon drops its radius
        geom = _fence_geom(patch.geometry, radius, limits)
    elif "radius_m" in changes:
        if not isinstance(row.geom, Point):
            raise InvalidGeometry("radius_m only applies to a Point (circle) geofence")
        if radius is None:
            raise InvalidGeometry("a circle geofence needs radius_m")
    changes = {
        name: value
        for name, value in changes.items()
        if value is not None or name in _NULLABLE_FENCE
    }
    if patch.geometry is not None:
        changes["geom"] = geom
    fence_geometry(geom, radius)
    return changes


def create_route(session: Session, row: PatrolRoute) -> GeoJSONDict:
    """Store a patrol route made by `new_route`."""
    return _add(session, row, route_feature)


def create_fence(session: Session, row: Geofence) -> GeoJSONDict:
    """Store a geofence made by `new_fence`."""
    return _add(session, row, fence_feature)


def list_routes(session: Session) -> GeoJSONDict:
    """All patrol routes as a FeatureCollection."""
    return _list(session, PatrolRoute, route_feature)


def list_fences(session: Session) -> GeoJSONDict:
    """All geofences as a FeatureCollection."""
    return _list(session, Geofence, fence_feature)


def update_route(
    session: Session, route_id: int, patch: PatrolRoutePatch, limits: GeometryLimits
) -> GeoJSONDict:
    """Change a patrol route's geometry and/or properties."""
    changes = route_changes(session, route_id, patch, limits)
    return _change(session, get_route(session, route_id), changes, route_feature)


def update_fence(
    session: Session, fence_id: int, patch: GeofencePatch, limits: GeometryLimits
) -> GeoJSONDict:
    """Change a geofence's geometry and/or properties."""
    changes = fence_changes(session, fence_id, patch, limits)
    return _change(session, get_fence(session, fence_id), changes, fence_feature)


def delete_route(session: Session, route_id: int) -> None:
    """Remove a patrol route (its assignments go with it)."""
    session.delete(get_route(session, route_id))


def delete_fence(session: Session, fence_id: int) -> None:
    """Remove a geofence."""
    session.delete(get_fence(session, fence_id))
