"""City scenario of an election day: ~1,000 polling stations, 20 routes, 200 units (seeded).

The positions are generated, not surveyed: stations spread around six illustrative district
centres of Balikpapan, at least MIN_SPACING_M apart. Every route is a loop through the stations
of one sector of its district; ten units ride each route. The KPU office is the critical site,
where the packaged demo scenario puts it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from pyproj import Geod
from shapely.geometry import LineString, Point

from service.demo.scenario import FenceSpec, RouteSpec, Scenario, UnitSpec
from service.demo.simulate import SimPing, simulate

# lon_min, lat_min, lon_max, lat_max: every generated position lies inside.
CITY_EXTENT = (116.80, -1.30, 117.00, -1.10)
KPU_NAME = "Kantor KPU Kota Balikpapan"
KPU_LONLAT = (116.834, -1.2683)
STATION_RADIUS_M = 50.0
STATION_KIND = "polling_station"
MIN_SPACING_M = 110.0
CORRIDOR_M = 40.0
STOPS_PER_ROUTE = 10
UNITS_PER_ROUTE = 10


@dataclass(frozen=True)
class District:
    """An illustrative district: centre, half-extent in degrees, stations and routes."""

    name: str
    lon: float
    lat: float
    half_deg: float
    stations: int
    routes: int


DISTRICTS: tuple[District, ...] = (
    District("Balikpapan Kota", 116.836, -1.262, 0.014, 130, 3),
    District("Balikpapan Selatan", 116.882, -1.255, 0.020, 230, 4),
    District("Balikpapan Tengah", 116.848, -1.236, 0.013, 150, 3),
    District("Balikpapan Utara", 116.872, -1.195, 0.025, 200, 4),
    District("Balikpapan Timur", 116.950, -1.225, 0.028, 120, 3),
    District("Balikpapan Barat", 116.822, -1.205, 0.018, 170, 3),
)

_GEOD = Geod(ellps="WGS84")
_M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class City:
    """The generated scenario plus which route each unit rides and each station's district."""

    scenario: Scenario
    unit_routes: tuple[int, ...]  # index into scenario.routes, one per unit
    route_districts: tuple[str, ...]

    @property
    def stations(self) -> tuple[FenceSpec, ...]:
        """The polling-station geofences."""
        return tuple(f for f in self.scenario.fences if f.kind == STATION_KIND)

    @property
    def critical_site(self) -> FenceSpec:
        """The KPU office geofence."""
        return next(f for f in self.scenario.fences if f.kind == "critical_site")


def _stations(
    rng: np.random.Generator, district: District, taken: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Station positions around a district centre, MIN_SPACING_M from all others, in the city."""
    out: list[tuple[float, float]] = []
    lon0, lat0, lon1, lat1 = CITY_EXTENT
    spacing_deg = MIN_SPACING_M / _M_PER_DEG
    tries = 0
    while len(out) < district.stations:
        tries += 1
        if tries > district.stations * 200:
            raise RuntimeError(f"cannot place {district.stations} stations in {district.name}")
        dx, dy = rng.normal(0.0, district.half_deg / 1.8, 2)
        lon = district.lon + float(np.clip(dx, -district.half_deg, district.half_deg))
        lat = district.lat + float(np.clip(dy, -district.half_deg, district.half_deg))
        if not (lon0 < lon < lon1 and lat0 < lat < lat1):
            continue
        lon, lat = round(lon, 6), round(lat, 6)
        if any(math.hypot(lon - x, lat - y) < spacing_deg for x, y in taken):
            continue
        out.append((lon, lat))
        taken.append((lon, lat))
    return out


def _route(
    district: District, points: list[tuple[float, float]], sector: int
) -> list[tuple[float, float]]:
    """A loop through the STOPS_PER_ROUTE stations nearest the middle of one sector."""
    width = 2 * math.pi / district.routes
    mid = (sector + 0.5) * width
    cx = district.lon + 0.55 * district.half_deg * math.cos(mid)
    cy = district.lat + 0.55 * district.half_deg * math.sin(mid)
    nearest = sorted(points, key=lambda p: math.hypot(p[0] - cx, p[1] - cy))[:STOPS_PER_ROUTE]
    mx = sum(p[0] for p in nearest) / len(nearest)
    my = sum(p[1] for p in nearest) / len(nearest)
    # Ordered by angle around their middle: a simple (non-crossing) loop.
    loop = sorted(nearest, key=lambda p: math.atan2(p[1] - my, p[0] - mx))
    return [*loop, loop[0]]


def generate_city(seed: int = 2024) -> City:
    """The city scenario; the same seed gives the same scenario."""
    rng = np.random.default_rng(seed)
    fences: list[FenceSpec] = [
        FenceSpec(KPU_NAME, "critical_site", Point(KPU_LONLAT), 150.0, 300.0)
    ]
    routes: list[RouteSpec] = []
    route_districts: list[str] = []
    number = 0
    taken: list[tuple[float, float]] = [KPU_LONLAT]
    for district in DISTRICTS:
        points = _stations(rng, district, taken)
        short = district.name.removeprefix("Balikpapan ")
        for lon, lat in points:
            number += 1
            fences.append(
                FenceSpec(
                    f"TPS {number:04d} {short}", STATION_KIND, Point(lon, lat),
                    STATION_RADIUS_M, 120.0,
                )
            )  # fmt: skip
        for sector in range(district.routes):
            line = LineString(_route(district, points, sector))
            routes.append(RouteSpec(f"Rute {short} {sector + 1}", line, CORRIDOR_M, True))
            route_districts.append(district.name)
    units: list[UnitSpec] = []
    unit_routes: list[int] = []
    for r, route in enumerate(routes):
        for k in range(UNITS_PER_ROUTE):
            n = r * UNITS_PER_ROUTE + k + 1
            units.append(UnitSpec(f"{route.name} / {k + 1:02d}", f"city-{n:03d}", "motorbike"))
            unit_routes.append(r)
    scenario = Scenario(units=tuple(units), routes=tuple(routes), fences=tuple(fences))
    return City(scenario, tuple(unit_routes), tuple(route_districts))


def route_length_m(route: RouteSpec) -> float:
    """Geodesic length of a route in metres."""
    return float(_GEOD.geometry_length(route.line))


def route_scenario(city: City, index: int) -> Scenario:
    """One route, its units and a site to guard, as the simulator takes them.

    The simulator needs a critical site within 500 m of the route: the KPU office where it is
    that near, otherwise the route's first station.
    """
    route = city.scenario.routes[index]
    pairs = zip(city.scenario.units, city.unit_routes, strict=True)
    units = tuple(u for u, r in pairs if r == index)
    kpu = city.critical_site
    if _GEOD.inv(*KPU_LONLAT, *_nearest_vertex(route, KPU_LONLAT))[2] <= 400:
        site = kpu
    else:
        lon, lat = route.line.coords[0]
        site = FenceSpec(f"{route.name} post", "critical_site", Point(lon, lat), 50.0, None)
    return Scenario(units=units, routes=(route,), fences=(site,))


def _nearest_vertex(route: RouteSpec, lonlat: tuple[float, float]) -> tuple[float, float]:
    coords = list(route.line.coords)
    best = min(coords, key=lambda c: math.hypot(c[0] - lonlat[0], c[1] - lonlat[1]))
    return float(best[0]), float(best[1])


def simulate_city(
    city: City, start: datetime, duration_s: float, *, seed: int = 7, interval_s: float = 5.0
) -> Iterator[list[SimPing]]:
    """Each route's pings over the window (one list per route, sorted by time)."""
    for index in range(len(city.scenario.routes)):
        yield simulate(
            route_scenario(city, index), start, duration_s, seed=seed + index, interval_s=interval_s
        )
