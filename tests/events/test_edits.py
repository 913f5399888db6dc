"""area_edit: the edit is committed, the machines reconciled, then the geometry cache dropped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from shapely.geometry import Point

from service.areas.index import GeoCache
from service.config import Settings
from service.events.edits import area_edit
from service.store.db import Store
from service.store.migrate import upgrade
from service.store.models import Geofence


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
