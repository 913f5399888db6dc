"""In-process evaluation of pings against patrol routes and geofences (the hot path)."""

from __future__ import annotations

import threading
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import shapely
from shapely import Point as ShapelyPoint
from shapely import Polygon as ShapelyPolygon
from shapely import STRtree
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Select, bindparam, func, select, true
from sqlalchemy.orm import Session

from service.geo.corridor import Corridor, RouteCheck
from service.geo.fence import Fence
from service.schemas import Evaluation, GeofenceHit, RouteEvaluation
from service.store.models import Geofence, PatrolRoute, UnitPatrolRoute


@dataclass
class Where:
    """Where one point lies: checks of its relevant routes by id, ids of fences holding it."""

    routes: dict[int, RouteCheck]
    fences: list[int]


@dataclass(frozen=True)
class RouteEntry:
    """A patrol route ready for checks."""

    id: int
    name: str
    corridor: Corridor
    off_route_after_s: float | None = None
    revisit_s: float | None = None


@dataclass(frozen=True)
class FenceEntry:
    """A geofence ready for containment checks."""

    id: int
    name: str
    kind: str
    min_dwell_s: float | None
    fence: Fence
    hysteresis_m: float | None = None
    revisit_s: float | None = None


T = TypeVar("T")


class SharedGeometry:
    """Built corridors and fences by the values that define them, shared while in use.

    Building one (projection, spatial grid) is the costly step of a route or geofence: the
    index, the maps and the reports all use the same object for as long as any of them holds
    it. The few most recently built are also held here, so one built before a transaction
    (outside the write lock) is found again inside it.
    """

    def __init__(self, keep: int = 4) -> None:
        self._lock = threading.Lock()
        self._items: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()
        self._recent: deque[Any] = deque(maxlen=keep)

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The shared object for `key`, built (outside the lock) when there is none."""
        with self._lock:
            item = self._items.get(key)
        if item is None:
            item = build()
            with self._lock:
                item = self._items.setdefault(key, item)
                self._recent.append(item)
        return item


SHARED = SharedGeometry()


def route_corridor(line: BaseGeometry, corridor_m: float, closed: bool) -> Corridor:
    """The (shared) corridor of a patrol route centerline."""
    key = ("route", shapely.to_wkb(line), float(corridor_m), bool(closed))
    return SHARED.get(key, lambda: Corridor(line, corridor_m, closed=closed))


def fence_geometry(geom: BaseGeometry, radius_m: float | None) -> Fence:
    """The (shared) fence of a geofence: a circle (point + radius) or a polygon."""
    if isinstance(geom, ShapelyPoint):
        if radius_m is None:
            raise ValueError("a point geofence needs radius_m")
        lon, lat, radius = geom.x, geom.y, float(radius_m)
        return SHARED.get(("circle", lon, lat, radius), lambda: Fence.circle(lon, lat, radius))
    if not isinstance(geom, ShapelyPolygon):
        raise ValueError(f"unsupported geofence geometry {geom.geom_type}")
    return SHARED.get(("polygon", shapely.to_wkb(geom)), lambda: Fence.polygon(geom))


def fence_from_row(row: Geofence) -> Fence:
    """The geometry of a stored geofence: a circle (point + radius) or a polygon."""
    try:
        return fence_geometry(row.geom, row.radius_m)
    except ValueError as exc:
        raise ValueError(f"geofence {row.id}: {exc}") from None


def corridor_from_row(row: PatrolRoute) -> Corridor:
    """The geometry of a stored patrol route."""
    return route_corridor(row.geom, row.corridor_m, row.closed)


class GeoIndex:
    """Patrol routes and geofences with spatial indexes, for evaluating many pings."""

    def __init__(
        self,
        routes: Iterable[RouteEntry],
        fences: Iterable[FenceEntry],
        assignments: dict[int, list[tuple[int, str | None, str | None]]] | None = None,
    ) -> None:
        self.routes = list(routes)
        # (patrol route id, shift start, shift end) by unit id; shifts are local HH:MM or None.
        self.assignments = assignments or {}
        self.assigned = {u: {a[0] for a in rows} for u, rows in self.assignments.items()}
        self.fences = list(fences)
        self.route_by_id = {r.id: r for r in self.routes}
        self.fence_by_id = {f.id: f for f in self.fences}
        # The tree tests bounding boxes only: a corridor's box is all it needs.
        self._route_tree = STRtree([shapely.box(*r.corridor.bounds) for r in self.routes])
        self._fence_tree = STRtree([f.fence.outline for f in self.fences])

    def assignment_rows(self, units: Collection[int]) -> tuple[tuple[Any, ...], ...]:
        """The units' assignments as `area_revision` lists them: (unit, route, start, end)."""
        return tuple(
            (u, route, start, end)
            for u in sorted(units)
            for route, start, end in self.assignments.get(u, ())
        )

    def evaluate(self, lon: float, lat: float, assigned: Iterable[int] = ()) -> Evaluation:
        """Route checks (assigned routes and any whose corridor holds the point) and geofences."""
        return self.evaluate_many(np.array([lon]), np.array([lat]), [assigned])[0]

    def evaluate_many(
        self, lons: np.ndarray, lats: np.ndarray, assigned: Sequence[Iterable[int]]
    ) -> list[Evaluation]:
        """`evaluate` for many points at once, vectorised per route and per geofence."""
        return [self.as_evaluation(where) for where in self.locate_many(lons, lats, assigned)]

    def as_evaluation(self, where: Where) -> Evaluation:
        """The answer's evaluation of one located point."""
        routes = []
        for rid in sorted(where.routes):
            check = where.routes[rid]
            routes.append(
                RouteEvaluation.model_construct(
                    patrol_route_id=rid,
                    name=self.route_by_id[rid].name,
                    distance_m=round(check.distance_m, 2),
                    on_route=check.on_route,
                    chainage_m=round(check.chainage_m, 2),
                )
            )
        fences = [
            GeofenceHit.model_construct(geofence_id=f.id, name=f.name, kind=f.kind)
            for f in (self.fence_by_id[fid] for fid in where.fences)
        ]
        return Evaluation.model_construct(patrol_routes=routes, geofences=fences)

    def locate_many(
        self, lons: np.ndarray, lats: np.ndarray, assigned: Sequence[Iterable[int]]
    ) -> list[Where]:
        """Where each point lies: its relevant routes (assigned, or whose corridor holds it)
        checked, and the geofences containing it; vectorised per route and per geofence."""
        n = len(lons)
        points = shapely.points(lons, lats)
        wheres = [Where({}, []) for _ in range(n)]

        # Which (point, route) pairs to check: corridor envelope hits and assigned routes.
        pairs: dict[int, set[int]] = defaultdict(set)
        if self.routes:
            pt_idx, tree_idx = self._route_tree.query(points)
            for p, r in zip(pt_idx.tolist(), tree_idx.tolist(), strict=True):
                pairs[self.routes[r].id].add(p)
        assigned_sets = [set(a) for a in assigned]
        for p, route_ids in enumerate(assigned_sets):
            for rid in route_ids:
                if rid in self.route_by_id:
                    pairs[rid].add(p)
        for rid in sorted(pairs):
            entry = self.route_by_id[rid]
            idx = np.fromiter(sorted(pairs[rid]), dtype=np.intp)
            dist, on_route, chainage = entry.corridor.check_many(lons[idx], lats[idx])
            for p, d, on, c in zip(
                idx.tolist(), dist.tolist(), on_route.tolist(), chainage.tolist(), strict=True
            ):
                if not on and rid not in assigned_sets[p]:
                    continue  # inside the corridor's envelope only: not relevant
                wheres[p].routes[rid] = RouteCheck(d, bool(on), c)

        if self.fences:
            pt_idx, tree_idx = self._fence_tree.query(points)
            by_fence: dict[int, list[int]] = defaultdict(list)
            for p, f in zip(pt_idx.tolist(), tree_idx.tolist(), strict=True):
                by_fence[f].append(p)
            for f in sorted(by_fence):
                fence = self.fences[f]
                idx = np.array(by_fence[f], dtype=np.intp)
                inside = fence.fence.contains_many(lons[idx], lats[idx])
                for p in idx[inside].tolist():
                    wheres[p].fences.append(fence.id)
        return wheres


def load_index(session: Session) -> GeoIndex:
    """Build the index from the stored patrol routes and geofences."""
    routes = [
        RouteEntry(r.id, r.name, corridor_from_row(r), r.off_route_after_s, r.revisit_s)
        for r in session.scalars(select(PatrolRoute).order_by(PatrolRoute.id))
    ]
    fences = [
        FenceEntry(
            f.id, f.name, f.kind, f.min_dwell_s, fence_from_row(f), f.hysteresis_m, f.revisit_s
        )
        for f in session.scalars(select(Geofence).order_by(Geofence.id))
    ]
    assignments: dict[int, list[tuple[int, str | None, str | None]]] = defaultdict(list)
    for row in session.scalars(select(UnitPatrolRoute).order_by(UnitPatrolRoute.patrol_route_id)):
        assignments[row.unit_id].append((row.patrol_route_id, row.shift_start, row.shift_end))
    return GeoIndex(routes, fences, dict(assignments))


def _revision_query(of_units: bool) -> Select[Any]:
    """The fingerprint query: every assignment row, or (of_units) those of `:units`."""
    routes = select(
        func.count(PatrolRoute.id).label("n"),
        func.max(PatrolRoute.updated_at).label("at"),
        func.sum(PatrolRoute.id).label("ids"),
    ).subquery()
    fences = select(
        func.count(Geofence.id).label("n"),
        func.max(Geofence.updated_at).label("at"),
        func.sum(Geofence.id).label("ids"),
    ).subquery()
    links = UnitPatrolRoute.__table__
    on = links.c.unit_id.in_(bindparam("units", expanding=True)) if of_units else true()
    return (
        select(
            routes.c.n,
            routes.c.at,
            routes.c.ids,
            fences.c.n,
            fences.c.at,
            fences.c.ids,
            links.c.unit_id,
            links.c.patrol_route_id,
            links.c.shift_start,
            links.c.shift_end,
        )
        .select_from(routes.join(fences, true()).outerjoin(links, on))
        .order_by(links.c.unit_id, links.c.patrol_route_id)
    )


# Built once: ingest runs one of them in every transaction (SQLAlchemy caches their SQL).
_REVISION = _revision_query(of_units=False)
_REVISION_OF_UNITS = _revision_query(of_units=True)


def area_revision(session: Session, units: Collection[int] | None = None) -> tuple[Any, ...]:
    """A cheap fingerprint that changes when a route, geofence or assignment changes.

    One round trip (ingest asks for it in every transaction): the routes' and geofences'
    count, latest edit and id sum, joined to every assignment row, or with `units` only to
    those units' rows (so the check costs what the batch names, not the whole fleet).
    """
    # On the session's connection: a Core query needs none of the ORM's per-call setup.
    conn = session.connection()
    if units is None:
        rows = conn.execute(_REVISION).all()
    else:
        rows = conn.execute(_REVISION_OF_UNITS, {"units": sorted(units)}).all()
    # Assignments are few: compare them whole (a count or sum could miss a swap).
    assigned = tuple(tuple(row[6:]) for row in rows if row[6] is not None)
    return (*_norm(rows[0][:6]), assigned)


def _norm(row: Any) -> tuple[Any, ...]:
    return tuple(v.isoformat() if isinstance(v, datetime) else v for v in row)


class GeoCache:
    """Keeps the GeoIndex current across edits made by any worker.

    Edits made through this worker take effect at once (`invalidate`); edits made by other
    workers are noticed within `check_s` seconds.
    """

    def __init__(self, check_s: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._check_s = check_s
        self._checked = 0.0
        self._revision: tuple[Any, ...] | None = None
        self._index: GeoIndex | None = None
        self._stale = True

    def invalidate(self) -> None:
        """Reload on next use (after a route, geofence or assignment edit)."""
        # The old index is kept until the new one is built: the routes and geofences that did
        # not change are taken over from it instead of being built again.
        with self._lock:
            self._stale = True

    def get(
        self, session: Session, *, fresh: bool = False, units: Collection[int] | None = None
    ) -> GeoIndex:
        """The index matching what is stored (rebuilt only after an edit).

        `fresh` checks the stored revision now instead of trusting a check made within the
        last `check_s` seconds: ingest does so after locking its units, so it always sees an
        edit committed before it (edits lock the same unit rows). With `units`, that check
        reads only those units' assignments (the routes and geofences always).
        """
        with self._lock:
            now = time.monotonic()
            recent = now - self._checked < self._check_s
            current = self._index is not None and not self._stale
            if current and recent and not fresh:
                assert self._index is not None
                return self._index
            if current and units is not None and self._revision is not None:
                assert self._index is not None
                part = area_revision(session, units)
                if part[:-1] == self._revision[:-1] and part[-1] == self._index.assignment_rows(
                    units
                ):
                    return self._index  # the other units' assignments were not looked at
            revision = area_revision(session)
            if self._index is None or self._stale or revision != self._revision:
                self._index = load_index(session)
                self._revision = revision
                self._stale = False
            self._checked = now
            return self._index
