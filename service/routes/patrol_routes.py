"""HTTP routes for patrol routes (GeoJSON LineString features)."""

from __future__ import annotations

from fastapi import APIRouter, status

from service.areas import features as areas
from service.errors import BODY_ERRORS, COMMON_ERRORS, error_responses
from service.events.runner import reconcile_units
from service.fields import Id
from service.routes.deps import AdminDep, GeoDep, SettingsDep, StoreDep, ViewerDep
from service.schemas import GeoJSONDict, PatrolRouteIn, PatrolRoutePatch

router = APIRouter(
    prefix="/api/v1/patrol-routes",
    tags=["patrol routes"],
    responses=error_responses(*COMMON_ERRORS),
)


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(*BODY_ERRORS))
def create_patrol_route(
    feature: PatrolRouteIn, store: StoreDep, geo: GeoDep, settings: SettingsDep, _: AdminDep
) -> GeoJSONDict:
    """Create a patrol route from a LineString Feature (properties: name, corridor_m, closed)."""
    row = areas.new_route(feature, areas.geometry_limits(settings))  # before the write lock
    with store.write() as session:
        result = areas.create_route(session, row)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
    return result


@router.get("")
def read_patrol_routes(store: StoreDep, _: ViewerDep) -> GeoJSONDict:
    """All patrol routes as a FeatureCollection."""
    with store.read() as session:
        return areas.list_routes(session)


@router.get("/{route_id}", responses=error_responses(404))
def read_patrol_route(route_id: Id, store: StoreDep, _: ViewerDep) -> GeoJSONDict:
    """One patrol route as a Feature."""
    with store.read() as session:
        return areas.route_feature(areas.get_route(session, route_id))


@router.patch("/{route_id}", responses=error_responses(*BODY_ERRORS, 404))
def update_patrol_route(
    route_id: Id,
    patch: PatrolRoutePatch,
    store: StoreDep,
    geo: GeoDep,
    settings: SettingsDep,
    _: AdminDep,
) -> GeoJSONDict:
    """Change a patrol route's geometry and/or properties."""
    limits = areas.geometry_limits(settings)
    with store.read() as session:
        areas.route_changes(session, route_id, patch, limits)  # builds before the write lock
    with store.write() as session:
        result = areas.update_route(session, route_id, patch, limits)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
    return result


@router.delete(
    "/{route_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404)
)
def delete_patrol_route(
    route_id: Id, store: StoreDep, geo: GeoDep, settings: SettingsDep, _: AdminDep
) -> None:
    """Remove a patrol route."""
    with store.write() as session:
        areas.delete_route(session, route_id)
        reconcile_units(session, settings)  # edits never fire events
    geo.invalidate()
