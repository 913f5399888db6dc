"""In-process evaluation of pings against patrol routes and geofences (the hot path)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from shapely import Point as ShapelyPoint
from shapely import Polygon as ShapelyPolygon
from shapely import STRtree
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.geo.corridor import Corridor
from service.geo.fence import Fence
from service.schemas import Evaluation, GeofenceHit, RouteEvaluation
from service.store.models import Geofence, PatrolRoute


@dataclass(frozen=True)
class RouteEntry:
    """A patrol route ready for checks."""

    id: int
    name: str
    corridor: Corridor


@dataclass(frozen=True)
class FenceEntry:
    """A geofence ready for containment checks."""

    id: int
    name: str
    kind: str
    min_dwell_s: float | None
    fence: Fence


def fence_from_row(row: Geofence) -> Fence:
    """The geometry of a stored geofence: a circle (point + radius) or a polygon."""
    if isinstance(row.geom, ShapelyPoint):
        if row.radius_m is None:
            raise ValueError(f"geofence {row.id} is a point without radius_m")
        return Fence.circle(row.geom.x, row.geom.y, row.radius_m)
    if not isinstance(row.geom, ShapelyPolygon):
        raise ValueError(f"geofence {row.id} has unsupported geometry {row.geom.geom_type}")
    return Fence.polygon(row.geom)


def corridor_from_row(row: PatrolRoute) -> Corridor:
    """The geometry of a stored patrol route."""
    return Corridor(row.geom, row.corridor_m, closed=row.closed)


class GeoIndex:
    """Patrol routes and geofences with spatial indexes, for evaluating many pings."""

    def __init__(self, routes: Iterable[RouteEntry], fences: Iterable[FenceEntry]) -> None:
        self.routes = list(routes)
        self.fences = list(fences)
        self.route_by_id = {r.id: r for r in self.routes}
        self.fence_by_id = {f.id: f for f in self.fences}
        self._route_tree = STRtree([r.corridor.area for r in self.routes])
        self._fence_tree = STRtree([f.fence.outline for f in self.fences])

    def evaluate(self, lon: float, lat: float, assigned: Iterable[int] = ()) -> Evaluation:
        """Route checks (assigned routes and any whose corridor holds the point) and geofences."""
        point = shapely.points(lon, lat)
        candidates = {self.routes[i].id for i in self._route_tree.query(point)}
        route_ids = sorted(candidates | {rid for rid in assigned if rid in self.route_by_id})
        checks = []
        for rid in route_ids:
            entry = self.route_by_id[rid]
            check = entry.corridor.check(lon, lat)
            if rid in candidates and not check.on_route and rid not in assigned:
                continue  # near the corridor's envelope but outside it: not relevant
            checks.append(
                RouteEvaluation(
                    patrol_route_id=rid,
                    name=entry.name,
                    distance_m=round(check.distance_m, 2),
                    on_route=check.on_route,
                    chainage_m=round(check.chainage_m, 2),
                )
            )
        hits = [
            GeofenceHit(geofence_id=f.id, name=f.name, kind=f.kind)
            for f in (self.fences[i] for i in sorted(self._fence_tree.query(point)))
            if f.fence.contains(lon, lat)
        ]
        return Evaluation(patrol_routes=checks, geofences=hits)

    def fences_containing(self, lons: np.ndarray, lats: np.ndarray) -> dict[int, np.ndarray]:
        """For each geofence, which of the points it contains."""
        return {f.id: f.fence.contains_many(lons, lats) for f in self.fences}


def load_index(session: Session) -> GeoIndex:
    """Build the index from the stored patrol routes and geofences."""
    routes = [
        RouteEntry(r.id, r.name, corridor_from_row(r))
        for r in session.scalars(select(PatrolRoute).order_by(PatrolRoute.id))
    ]
    fences = [
        FenceEntry(f.id, f.name, f.kind, f.min_dwell_s, fence_from_row(f))
        for f in session.scalars(select(Geofence).order_by(Geofence.id))
    ]
    return GeoIndex(routes, fences)


def _revision(session: Session) -> tuple[Any, ...]:
    """A cheap fingerprint that changes whenever a route or geofence is added, edited or removed."""
    routes = session.execute(
        select(
            func.count(PatrolRoute.id), func.max(PatrolRoute.updated_at), func.sum(PatrolRoute.id)
        )
    ).one()
    fences = session.execute(
        select(func.count(Geofence.id), func.max(Geofence.updated_at), func.sum(Geofence.id))
    ).one()
    return (*_norm(routes), *_norm(fences))


def _norm(row: Any) -> tuple[Any, ...]:
    return tuple(v.isoformat() if isinstance(v, datetime) else v for v in row)


class GeoCache:
    """Keeps the GeoIndex current across edits made by any worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision: tuple[Any, ...] | None = None
        self._index: GeoIndex | None = None

    def get(self, session: Session) -> GeoIndex:
        """The index matching what is stored now (rebuilt only after an edit)."""
        revision = _revision(session)
        with self._lock:
            if self._index is None or revision != self._revision:
                self._index = load_index(session)
                self._revision = revision
            return self._index
