"""Area edits: the one write transaction of every route, geofence, unit and assignment edit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from service.areas.index import GeoCache
from service.config import Settings
from service.events.runner import reconcile_units
from service.store.db import Store


@contextmanager
def area_edit(store: Store, geo: GeoCache, settings: Settings | None = None) -> Iterator[Session]:
    """Write an area edit; with settings, reconcile the units' machines; then drop the cache.

    Reconciling updates each machine's membership silently (edits never fire events). The
    geometry cache is invalidated only once the edit is committed.
    """
    with store.write() as session:
        yield session
        if settings is not None:
            reconcile_units(session, settings)
    geo.invalidate()
