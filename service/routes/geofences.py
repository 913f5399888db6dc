"""HTTP routes for geofences (Polygon, or Point + radius_m, features)."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.areas import features as areas
from service.errors import BODY_ERRORS, COMMON_ERRORS, error_responses
from service.events.runner import reconcile_units
from service.fields import Id
from service.routes.deps import AdminDep, GeoDep, SettingsDep, StoreDep, ViewerDep
from service.schemas import GeofenceIn, GeofencePatch, GeoJSONDict

router = APIRouter(
    prefix="/api/v1/geofences", tags=["geofences"], responses=error_responses(*COMMON_ERRORS)
)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(*BODY_ERRORS))
def create_geofence(
    feature: GeofenceIn, store: StoreDep, geo: GeoDep, settings: SettingsDep, _: AdminDep
) -> GeoJSONDict:
    """Create a geofence: a Polygon Feature, or a Point Feature with properties.radius_m."""
    row = areas.new_fence(feature, areas.geometry_limits(settings))  # before the write lock
    with store.write() as session:
        result = areas.create_fence(session, row)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
    return result


@router.get("")
def read_geofences(store: StoreDep, _: ViewerDep) -> GeoJSONDict:
    """All geofences as a FeatureCollection."""
    with store.read() as session:
        return areas.list_fences(session)


@router.get("/{geofence_id}", responses=error_responses(404))
def read_geofence(geofence_id: Id, store: StoreDep, _: ViewerDep) -> GeoJSONDict:
    """One geofence as a Feature."""
    with store.read() as session:
        return areas.fence_feature(areas.get_fence(session, geofence_id))


@router.patch("/{geofence_id}", responses=error_responses(*BODY_ERRORS, 404))
def update_geofence(
    geofence_id: Id,
    patch: GeofencePatch,
    store: StoreDep,
    geo: GeoDep,
    settings: SettingsDep,
    _: AdminDep,
) -> GeoJSONDict:
    """Change a geofence's geometry and/or properties."""
    limits = areas.geometry_limits(settings)
    with store.read() as session:
        areas.fence_changes(session, geofence_id, patch, limits)  # builds before the write lock
    with store.write() as session:
        result = areas.update_fence(session, geofence_id, patch, limits)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
    return result


@router.delete(
    "/{geofence_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404)
)
def delete_geofence(
    geofence_id: Id, store: StoreDep, geo: GeoDep, settings: SettingsDep, _: AdminDep
) -> None:
    """Remove a geofence."""
    with store.write() as session:
        areas.delete_fence(session, geofence_id)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
