"""HTTP routes under /api/v1/patrol-routes and /api/v1/geofences, from one definition.

Patrol routes (LineString features) and geofences (Polygon, or Point + radius_m, features) are
served alike: an `Area` holds what differs, and `_routes` builds the routes of one.
"""

# No `from __future__ import annotations`: the routes' annotations use the area they serve.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel
from sqlalchemy.orm import Session

from service.areas import features
from service.errors import BODY_ERRORS, COMMON_ERRORS, error_responses
from service.events.edits import area_edit
from service.fields import Id
from service.geo.validate import GeometryLimits
from service.routes.deps import AdminDep, GeoDep, SettingsDep, StoreDep, ViewerDep
from service.schemas import GeofenceIn, GeofencePatch, GeoJSONDict, PatrolRouteIn, PatrolRoutePatch


@dataclass(frozen=True)
class Area:
    """One kind of area as the API serves it: its names, request parameters and store calls."""

    one: str  # the singular noun; its plural is the OpenAPI tag and (hyphenated) the URL
    many: str
    id_name: str  # the name of the id's path parameter
    created: str  # the description of the create route
    feature_in: type[BaseModel]  # the request body of a create
    patch_in: type[BaseModel]  # the request body of an update
    new: Callable[[Any, GeometryLimits], Any]
    create: Callable[[Session, Any], GeoJSONDict]
    list: Callable[[Session], GeoJSONDict]
    read: Callable[[Session, int], GeoJSONDict]
    changes: Callable[[Session, int, Any, GeometryLimits], object]
    update: Callable[[Session, int, Any, GeometryLimits], GeoJSONDict]
    delete: Callable[[Session, int], None]


def _routes(area: Area) -> APIRouter:
    """The create, list, read, update and delete routes of one kind of area."""
    one, many = (noun.replace(" ", "_") for noun in (area.one, area.many))
    router = APIRouter(
        prefix="/api/v1/" + area.many.replace(" ", "-"),
        tags=[area.many],
        responses=error_responses(*COMMON_ERRORS),
    )
    item = "/{" + area.id_name + "}"

    @router.post(
        "",
        name=f"create_{one}",
        description=area.created,
        status_code=status.HTTP_201_CREATED,
        responses=error_responses(*BODY_ERRORS),
    )
    def create(
        feature: BaseModel,
        store: StoreDep,
        geo: GeoDep,
        settings: SettingsDep,
        _: AdminDep,
    ) -> GeoJSONDict:
        row = area.new(feature, features.geometry_limits(settings))  # before the write lock
        with area_edit(store, geo, settings) as session:
            return area.create(session, row)

    @router.get("", name=f"read_{many}", description=f"All {area.many} as a FeatureCollection.")
    def read_all(store: StoreDep, _: ViewerDep) -> GeoJSONDict:
        with store.read() as session:
            return area.list(session)

    @router.get(
        item,
        name=f"read_{one}",
        description=f"One {area.one} as a Feature.",
        responses=error_responses(404),
    )
    def read(
        area_id: Annotated[Id, Path(alias=area.id_name)], store: StoreDep, _: ViewerDep
    ) -> GeoJSONDict:
        with store.read() as session:
            return area.read(session, area_id)

    @router.patch(
        item,
        name=f"update_{one}",
        description=f"Change a {area.one}'s geometry and/or properties.",
        responses=error_responses(*BODY_ERRORS, 404),
    )
    def update(
        area_id: Annotated[Id, Path(alias=area.id_name)],
        patch: BaseModel,
        store: StoreDep,
        geo: GeoDep,
        settings: SettingsDep,
        _: AdminDep,
    ) -> GeoJSONDict:
        limits = features.geometry_limits(settings)
        with store.read() as session:
            area.changes(session, area_id, patch, limits)  # builds before the write lock
        with area_edit(store, geo, settings) as session:
            return area.update(session, area_id, patch, limits)

    @router.delete(
        item,
        name=f"delete_{one}",
        description=f"Remove a {area.one}.",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(404),
    )
    def delete(
        area_id: Annotated[Id, Path(alias=area.id_name)],
        store: StoreDep,
        geo: GeoDep,
        settings: SettingsDep,
        _: AdminDep,
    ) -> None:
        with area_edit(store, geo, settings) as session:
            area.delete(session, area_id)

    # FastAPI reads and documents a request body by its parameter's annotation: the area's model.
    create.__annotations__["feature"] = area.feature_in
    update.__annotations__["patch"] = area.patch_in
    return router


PATROL_ROUTES = Area(
    one="patrol route",
    many="patrol routes",
    id_name="route_id",
    created=(
        "Create a patrol route from a LineString Feature (properties: name, corridor_m, closed)."
    ),
    feature_in=PatrolRouteIn,
    patch_in=PatrolRoutePatch,
    new=features.new_route,
    create=features.create_route,
    list=features.list_routes,
    read=lambda session, route_id: features.route_feature(features.get_route(session, route_id)),
    changes=features.route_changes,
    update=features.update_route,
    delete=features.delete_route,
)
GEOFENCES = Area(
    one="geofence",
    many="geofences",
    id_name="geofence_id",
    created="Create a geofence: a Polygon Feature, or a Point Feature with properties.radius_m.",
    feature_in=GeofenceIn,
    patch_in=GeofencePatch,
    new=features.new_fence,
    create=features.create_fence,
    list=features.list_fences,
    read=lambda session, fence_id: features.fence_feature(features.get_fence(session, fence_id)),
    changes=features.fence_changes,
    update=features.update_fence,
    delete=features.delete_fence,
)

router = APIRouter()
for _area in (PATROL_ROUTES, GEOFENCES):
    router.include_router(_routes(_area))
