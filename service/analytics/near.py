"""Investigation query: which units were within a radius of a place in a time window.

Distances are geodesic on the WGS84 ellipsoid: PostGIS geography (ST_DWithin on the
`geom::geography` GiST index, then ST_Distance) on PostgreSQL; on SQLite a latitude/longitude
box selects candidates in SQL and pyproj's geodesic (the same algorithm) measures them. Only
analytics-eligible fixes count (no zero/future/inaccurate/teleport flag). A unit's closest
approach is its nearest fix; equal distances go to the earliest fix.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
from pydantic import BaseModel, Field
from pyproj import Geod
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.analytics.positions import ELIGIBLE
from service.errors import InvalidInput
from service.quality import EXCLUDED
from service.store.models import Ping, Unit
from service.store.types import UTCDateTime
from service.window import Window

GEOD = Geod(ellps="WGS84")
MAX_RADIUS_M = 100_000.0
# Shortest length of one degree: of latitude (110,574 m at the equator) and of longitude at
# latitude phi (111,320 m x cos(phi)); rounded down so the candidate box is never too small.
_M_PER_DEG_LAT = 110_000.0
_M_PER_DEG_LON_EQ = 111_000.0


class ClosestOut(BaseModel):
    """A unit's fix nearest to the place."""

    distance_m: float
    ts: datetime
    lon: float
    lat: float


class NearUnitOut(BaseModel):
    """A unit that was within the radius in the window."""

    unit_id: int
    name: str
    device_id: str
    fixes_inside: int
    closest: ClosestOut


class NearOut(BaseModel):
    """Units within radius_m of (lon, lat) in [from, to), nearest first."""

    lon: float
    lat: float
    radius_m: float
    window_from: datetime = Field(serialization_alias="from")
    window_to: datetime = Field(serialization_alias="to")
    units: list[NearUnitOut]


_PG_SQL = text("""
WITH centre AS (
    SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography AS g
),
hits AS (
    SELECT p.id, p.unit_id, p.ts, p.lon, p.lat, ST_Distance(p.geom::geography, centre.g) AS d
    FROM pings AS p CROSS JOIN centre
    WHERE p.ts >= :start AND p.ts < :end AND (p.flags & :excluded) = 0
      AND ST_DWithin(p.geom::geography, centre.g, :radius_m)
)
SELECT DISTINCT ON (unit_id)
       unit_id, d, ts, lon, lat, count(*) OVER (PARTITION BY unit_id) AS n
FROM hits
ORDER BY unit_id, d, ts, id
""").columns(ts=UTCDateTime())

# (unit_id, distance_m, ts, lon, lat, fixes inside)
Approach = tuple[int, float, datetime, float, float, int]


def _postgis(
    session: Session, lon: float, lat: float, radius_m: float, w: Window
) -> list[Approach]:
    rows = session.execute(
        _PG_SQL,
        {
            "lon": lon,
            "lat": lat,
            "radius_m": radius_m,
            "start": w.start,
            "end": w.end,
            "excluded": int(EXCLUDED),
        },
    ).all()
    return [(int(u), float(d), ts, float(x), float(y), int(n)) for u, d, ts, x, y, n in rows]


def _box(lon: float, lat: float, radius_m: float) -> tuple[float, float, float | None]:
    """Half-sizes (deg) of a lat/lon box holding the circle; no lon bound (None) near poles."""
    dlat = radius_m / _M_PER_DEG_LAT
    lat_far = min(abs(lat) + dlat, 90.0)
    cos_far = math.cos(math.radians(lat_far))
    if cos_far < 1e-6:
        return lat - dlat, lat + dlat, None
    dlon = radius_m / (_M_PER_DEG_LON_EQ * cos_far)
    return lat - dlat, lat + dlat, dlon if dlon < 180.0 else None


def _sqlite(session: Session, lon: float, lat: float, radius_m: float, w: Window) -> list[Approach]:
    lat_lo, lat_hi, dlon = _box(lon, lat, radius_m)
    query = select(Ping.id, Ping.unit_id, Ping.ts, Ping.lon, Ping.lat).where(
        Ping.ts >= w.start,
        Ping.ts < w.end,
        ELIGIBLE,
        Ping.lat >= lat_lo,
        Ping.lat <= lat_hi,
    )
    if dlon is not None:
        lo, hi = lon - dlon, lon + dlon
        if lo >= -180.0 and hi <= 180.0:
            query = query.where(Ping.lon >= lo, Ping.lon <= hi)
        else:  # the box crosses the antimeridian: two longitude ranges
            lo, hi = (lo + 540.0) % 360.0 - 180.0, (hi + 540.0) % 360.0 - 180.0
            query = query.where((Ping.lon >= lo) | (Ping.lon <= hi))
    rows = session.execute(query).all()
    if not rows:
        return []
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    units = np.array([r[1] for r in rows], dtype=np.int64)
    lons = np.array([r[3] for r in rows], dtype=np.float64)
    lats = np.array([r[4] for r in rows], dtype=np.float64)
    ts = np.array([r[2].timestamp() for r in rows], dtype=np.float64)
    _, _, dist = GEOD.inv(np.full(lons.size, lon), np.full(lats.size, lat), lons, lats)
    dist = np.asarray(dist, dtype=np.float64)
    inside = np.flatnonzero(dist <= radius_m)
    if inside.size == 0:
        return []
    # Per unit, nearest first, then earliest, then lowest id: the first row of each unit.
    order = inside[np.lexsort((ids[inside], ts[inside], dist[inside], units[inside]))]
    first = np.flatnonzero(np.r_[True, units[order][1:] != units[order][:-1]])
    counts = np.diff(np.r_[first, order.size])
    return [
        (int(units[i]), float(dist[i]), rows[i][2], float(lons[i]), float(lats[i]), int(n))
        for i, n in zip(order[first], counts, strict=True)
    ]


def units_near(
    session: Session, lon: float, lat: float, radius_m: float, window: Window
) -> NearOut:
    """Units with a fix within radius_m of (lon, lat) in the window, with closest approach."""
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise InvalidInput(f"lon must be within [-180, 180], got {lon!r}")
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise InvalidInput(f"lat must be within [-90, 90], got {lat!r}")
    if not (math.isfinite(radius_m) and 0.0 < radius_m <= MAX_RADIUS_M):
        raise InvalidInput(f"radius_m must be in (0, {MAX_RADIUS_M:.0f}], got {radius_m!r}")
    if session.get_bind().dialect.name == "postgresql":
        found = _postgis(session, lon, lat, radius_m, window)
    else:
        found = _sqlite(session, lon, lat, radius_m, window)
    names = {
        uid: (name, device)
        for uid, name, device in session.execute(
            select(Unit.id, Unit.name, Unit.device_id).where(Unit.id.in_([f[0] for f in found]))
        )
    }
    found.sort(key=lambda f: (f[1], f[0]))
    return NearOut(
        lon=lon,
        lat=lat,
        radius_m=radius_m,
        window_from=window.start,
        window_to=window.end,
        units=[
            NearUnitOut(
                unit_id=uid,
                name=names[uid][0],
                device_id=names[uid][1],
                fixes_inside=n,
                closest=ClosestOut(distance_m=round(d, 3), ts=ts, lon=x, lat=y),
            )
            for uid, d, ts, x, y, n in found
        ],
    )
