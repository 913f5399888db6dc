"""Patrol routes and geofences: GeoJSON features in, validated and stored, features out."""

from __future__ import annotations

from typing import Any

from shapely.geometry import Point, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import InvalidGeometry, NotFound
from service.evaluate import corridor_from_row
from service.geo.validate import check_coordinates, validate_line, validate_polygon
from service.schemas import (
    GeofenceIn,
    GeofencePatch,
    GeoJSONDict,
    PatrolRouteIn,
    PatrolRoutePatch,
)
from service.store.models import Geofence, PatrolRoute, utcnow


def _to_shape(geometry: Any) -> BaseGeometry:
    return shape(geometry.model_dump(exclude_none=True))


def _route_geom(geometry: Any) -> BaseGeometry:
    return validate_line(_to_shape(geometry))


def _fence_geom(geometry: Any, radius_m: float | None) -> BaseGeometry:
    geom = _to_shape(geometry)
    if isinstance(geom, Point):
        check_coordinates(geom)
        if radius_m is None:
            raise InvalidGeometry("a Point geofence is a circle: give properties.radius_m")
        return Point(geom.x, geom.y)
    if isinstance(geom, Polygon):
        if radius_m is not None:
            raise InvalidGeometry("radius_m only applies to a Point (circle) geofence")
        return validate_polygon(geom)
    raise InvalidGeometry(f"a geofence is a Polygon or a Point, not {geom.geom_type}")


def route_feature(row: PatrolRoute) -> GeoJSONDict:
    """A stored patrol route as a GeoJSON Feature."""
    return {
        "type": "Feature",
        "id": row.id,
        "geometry": mapping(row.geom),
        "properties": {
            "id": row.id,
            "name": row.name,
            "corridor_m": row.corridor_m,
            "closed": row.closed,
            "off_route_after_s": row.off_route_after_s,
            "revisit_s": row.revisit_s,
            "length_m": round(corridor_from_row(row).length_m, 2),
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
        },
    }


def fence_feature(row: Geofence) -> GeoJSONDict:
    """A stored geofence as a GeoJSON Feature (a circle is its centre Point with radius_m)."""
    return {
        "type": "Feature",
        "id": row.id,
        "geometry": mapping(row.geom),
        "properties": {
            "id": row.id,
            "name": row.name,
            "kind": row.kind,
            "radius_m": row.radius_m,
            "min_dwell_s": row.min_dwell_s,
            "hysteresis_m": row.hysteresis_m,
            "revisit_s": row.revisit_s,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
        },
    }


def collection(features: list[GeoJSONDict]) -> GeoJSONDict:
    """A GeoJSON FeatureCollection."""
    return {"type": "FeatureCollection", "features": features}


def get_route(session: Session, route_id: int) -> PatrolRoute:
    """A stored patrol route, or NotFound."""
    row = session.get(PatrolRoute, route_id)
    if row is None:
        raise NotFound(f"patrol route {route_id} not found")
    return row


def get_fence(session: Session, fence_id: int) -> Geofence:
    """A stored geofence, or NotFound."""
    row = session.get(Geofence, fence_id)
    if row is None:
        raise NotFound(f"geofence {fence_id} not found")
    return row


def create_route(session: Session, feature: PatrolRouteIn) -> GeoJSONDict:
    """Validate and store a patrol route."""
    props = feature.properties
    assert props is not None
    row = PatrolRoute(
        name=props.name,
        corridor_m=props.corridor_m,
        closed=props.closed,
        off_route_after_s=props.off_route_after_s,
        revisit_s=props.revisit_s,
        geom=_route_geom(feature.geometry),
    )
    session.add(row)
    session.flush()
    return route_feature(row)


def list_routes(session: Session) -> GeoJSONDict:
    """All patrol routes as a FeatureCollection."""
    rows = session.scalars(select(PatrolRoute).order_by(PatrolRoute.id))
    return collection([route_feature(r) for r in rows])


def update_route(session: Session, route_id: int, patch: PatrolRoutePatch) -> GeoJSONDict:
    """Change a patrol route's geometry and/or properties."""
    row = get_route(session, route_id)
    if patch.geometry is not None:
        row.geom = _route_geom(patch.geometry)
    if patch.properties is not None:
        for name, value in patch.properties.model_dump(exclude_unset=True).items():
            if value is not None:
                setattr(row, name, value)
    row.updated_at = utcnow()
    session.flush()
    return route_feature(row)


def delete_route(session: Session, route_id: int) -> None:
    """Remove a patrol route (its assignments go with it)."""
    session.delete(get_route(session, route_id))


def create_fence(session: Session, feature: GeofenceIn) -> GeoJSONDict:
    """Validate and store a geofence."""
    props = feature.properties
    assert props is not None
    row = Geofence(
        name=props.name,
        kind=props.kind,
        radius_m=props.radius_m,
        min_dwell_s=props.min_dwell_s,
        hysteresis_m=props.hysteresis_m,
        revisit_s=props.revisit_s,
        geom=_fence_geom(feature.geometry, props.radius_m),
    )
    session.add(row)
    session.flush()
    return fence_feature(row)


def list_fences(session: Session) -> GeoJSONDict:
    """All geofences as a FeatureCollection."""
    rows = session.scalars(select(Geofence).order_by(Geofence.id))
    return collection([fence_feature(r) for r in rows])


def update_fence(session: Session, fence_id: int, patch: GeofencePatch) -> GeoJSONDict:
    """Change a geofence's geometry and/or properties."""
    row = get_fence(session, fence_id)
    changes = patch.properties.model_dump(exclude_unset=True) if patch.properties else {}
    radius = changes.get("radius_m", row.radius_m)
    if patch.geometry is not None:
        if patch.geometry.type == "Polygon" and "radius_m" not in changes:
            radius = changes["radius_m"] = None  # a circle redrawn as a polygon drops its radius
        row.geom = _fence_geom(patch.geometry, radius)
    elif "radius_m" in changes:
        if not isinstance(row.geom, Point):
            raise InvalidGeometry("radius_m only applies to a Point (circle) geofence")
        if radius is None:
            raise InvalidGeometry("a circle geofence needs radius_m")
    for name, value in changes.items():
        if value is not None or name in ("radius_m", "min_dwell_s", "hysteresis_m", "revisit_s"):
            setattr(row, name, value)
    row.updated_at = utcnow()
    session.flush()
    return fence_feature(row)


def delete_fence(session: Session, fence_id: int) -> None:
    """Remove a geofence."""
    session.delete(get_fence(session, fence_id))
