"""area_edit: the edit is committed, the machines reconciled, then the geometry cache dropped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from shapely.geometry import LineString, Point
from sqlalchemy import delete

from service.areas.index import GeoCache
from service.config import Settings
from service.events.edits import area_edit
from service.store.db import Store
from service.store.migrate import upgrade
from service.store.models import Geofence, PatrolRoute, Unit, UnitPatrolRoute


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store.from_url(database_url)
    upgrade(store.engine)
    yield store
    store.dispose()


def _fences(store: Store, geo: GeoCache) -> list[int]:
    with store.read() as session:
        return [f.id for f in geo.get(session).fences]


@pytest.mark.parametrize("reconcile", [False, True])
def test_an_edit_is_seen_at_once(store: Store, settings: Settings, reconcile: bool) -> None:
    geo = GeoCache(check_s=3600)
    assert _fences(store, geo) == []
    with area_edit(store, geo, settings if reconcile else None) as session:
        fence = Geofence(name="post", kind="critical_site", radius_m=50.0, geom=Point(106.8, -6.2))
        session.add(fence)
    assert _fences(store, geo) == [fence.id]


def test_a_failed_edit_leaves_the_cache(store: Store, settings: Settings) -> None:
    geo = GeoCache(check_s=3600)
    _fences(store, geo)
    with pytest.raises(RuntimeError), area_edit(store, geo, settings) as session:
        session.add(Geofence(name="post", kind="critical_site", radius_m=50.0, geom=Point(1, 1)))
        raise RuntimeError("refused")
    assert _fences(store, geo) == []


def test_another_workers_assignment_edit_is_seen_by_the_next_batch_of_that_unit(
    store: Store, settings: Settings
) -> None:
    """Ingest checks only its batch's units' assignments: an edit made elsewhere (here: a swap
    of two units' routes, which keeps every count and sum) is still seen for those units."""
    with store.write() as session:
        routes = [
            PatrolRoute(name=n, corridor_m=30.0, geom=LineString([(106.8, -6.2), (106.81, -6.2)]))
            for n in ("A", "B")
        ]
        units = [Unit(name=f"Polwan {i}", device_id=f"edit-{i}") for i in range(3)]
        session.add_all([*routes, *units])
        session.flush()
        a, b = (r.id for r in routes)
        u1, u2, u3 = (u.id for u in units)
        session.add_all(
            [
                UnitPatrolRoute(unit_id=u1, patrol_route_id=a),
                UnitPatrolRoute(unit_id=u2, patrol_route_id=b),
            ]
        )
    here, other = GeoCache(check_s=3600), GeoCache(check_s=3600)  # two workers
    with store.read() as session:
        assert other.get(session, fresh=True, units=[u1]).assigned[u1] == {a}
    with area_edit(store, here, settings) as session:  # only this worker's cache is dropped
        session.execute(delete(UnitPatrolRoute))
        session.add_all(
            [
                UnitPatrolRoute(unit_id=u1, patrol_route_id=b),
                UnitPatrolRoute(unit_id=u2, patrol_route_id=a),
            ]
        )
    with store.read() as session:
        assert other.get(session, fresh=True, units=[u3]).assigned.get(u3, set()) == set()
        index = other.get(session, fresh=True, units=[u1])
    assert index.assigned[u1] == {b} and index.assigned[u2] == {a}
    with area_edit(store, here, settings) as session:  # a new route: counts for every unit
        session.add(
            PatrolRoute(name="C", corridor_m=30.0, geom=LineString([(106.8, -6.3), (106.81, -6.3)]))
        )
    with store.read() as session:
        assert len(other.get(session, fresh=True, units=[u3]).routes) == 3
