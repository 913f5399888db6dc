"""Test data: a straight route and a circle near the KPUD Balikpapan office."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pyproj import Geod

GEOD = Geod(ellps="WGS84")
LAT = -1.2680
LON0, LON1 = 116.8300, 116.8390  # a straight east-west line of about 1 km
T0 = datetime(2024, 11, 26, 23, 0, tzinfo=UTC)  # 07:00 WITA


def route_feature(name: str = "Jl. Sudirman", corridor_m: float = 30, **props: Any) -> dict:
    """A GeoJSON Feature for a straight patrol route along LAT."""
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[LON0, LAT], [LON1, LAT]]},
        "properties": {"name": name, "corridor_m": corridor_m, **props},
    }


def circle_feature(lon: float, lat: float, radius_m: float = 150, **props: Any) -> dict:
    """A GeoJSON Feature for a circular geofence."""
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "name": "Kantor KPU",
            "kind": "critical_site",
            "radius_m": radius_m,
            **props,
        },
    }


def along(chainage_m: float, offset_m: float = 0.0) -> tuple[float, float]:
    """(lon, lat) at a chainage along the test route, offset north by offset_m."""
    lon, lat, _ = GEOD.fwd(LON0, LAT, 90.0, chainage_m)
    if offset_m:
        lon, lat, _ = GEOD.fwd(lon, lat, 0.0 if offset_m > 0 else 180.0, abs(offset_m))
    return lon, lat


def ping(
    device_id: str, chainage_m: float, seconds: float, offset_m: float = 0.0, **kw: Any
) -> dict:
    """A JSON ping at a chainage of the test route, `seconds` after T0."""
    lon, lat = along(chainage_m, offset_m)
    ts = (T0 + timedelta(seconds=seconds)).isoformat()
    return {"device_id": device_id, "lat": lat, "lon": lon, "ts": ts, **kw}


def window(hours: float = 1.0) -> dict[str, str]:
    """Query parameters for [T0, T0 + hours)."""
    return {"from": T0.isoformat(), "to": (T0 + timedelta(hours=hours)).isoformat()}


_DATA_BLOCK = re.compile(
    r'<script type="application/json" id="patroli-data">(.*?)</script>', re.DOTALL
)


def page_data(page: str) -> dict[str, Any]:
    """The JSON data block of a rendered map page."""
    match = _DATA_BLOCK.search(page)
    assert match is not None, "the page has no data block"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def without_data(page: str) -> str:
    """A rendered map page without its JSON data block (what Folium's templates made)."""
    stripped, count = _DATA_BLOCK.subn("", page)
    assert count == 1, f"{count} data blocks"
    return stripped


def csp_violations(page: Any, found: list[str] | None = None) -> list[str]:
    """Console reports of Content-Security-Policy violations on a Playwright page, as they come.

    They are appended to `found` (a new list by default), which is returned.
    """
    found = [] if found is None else found

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            found.append(message.text)

    page.on("console", on_console)
    return found


def zigzag_positions(n: int, lon: float = LON0, lat: float = LAT) -> list[list[float]]:
    """n positions zig-zagging east from (lon, lat): steps of ~24 m, teeth 15 m high.

    20,000 of them make the largest patrol route the default limits allow (~484 km).
    """
    east = np.arange(n) * (19.0 / 111_300.0)
    north = np.where(np.arange(n) % 2 == 1, 15.0 / 110_600.0, 0.0)
    return np.column_stack((lon + east, lat + north)).round(7).tolist()


def line_feature(positions: list[list[float]], name: str = "Jalur", **props: Any) -> dict:
    """A patrol route Feature from positions."""
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": positions},
        "properties": {"name": name, **props},
    }


def polygon_feature(rings: list[list[list[float]]], name: str = "Wilayah", **props: Any) -> dict:
    """A polygon geofence Feature from rings."""
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": rings},
        "properties": {"name": name, **props},
    }


def box_ring(lon: float, lat: float, width_deg: float, height_deg: float) -> list[list[float]]:
    """A closed rectangular ring with its south-west corner at (lon, lat)."""
    east, north = lon + width_deg, lat + height_deg
    return [[lon, lat], [east, lat], [east, north], [lon, north], [lon, lat]]
