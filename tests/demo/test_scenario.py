"""Loading the demo scenario GeoJSON: the packaged file, user files, and broken files."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pyproj import Geod
from shapely.geometry import Point, Polygon

from service.demo.scenario import DEFAULT_UNITS, UnitSpec, load_scenario

PACKAGED = Path(__file__).resolve().parents[2] / "service" / "demo" / "balikpapan.geojson"
GEOD = Geod(ellps="WGS84")
MAIN_ROUTE = "Rute Sudirman \u2013 KPU"  # en dash, as in the GeoJSON


def _packaged_json() -> dict[str, Any]:
    return json.loads(PACKAGED.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "scenario.geojson"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_packaged_scenario_loads() -> None:
    sc = load_scenario()
    assert [u.name for u in sc.units] == [f"Polwan Samapta {i:02d}" for i in range(1, 6)]
    assert [u.device_id for u in sc.units] == [f"kaltim-samapta-{i:02d}" for i in range(1, 6)]
    assert {u.kind for u in sc.units} == {"motorbike"}

    kpu = next(f for f in sc.fences if f.kind == "critical_site")
    assert kpu.name == "Kantor KPU Kota Balikpapan"
    assert isinstance(kpu.geometry, Point)
    assert (kpu.radius_m, kpu.min_dwell_s) == (150, 300)
    assert kpu.geometry.y == pytest.approx(-1.2683, abs=1e-3)
    assert kpu.geometry.x == pytest.approx(116.834, abs=1e-3)
    checkpoint = next(f for f in sc.fences if f.kind == "checkpoint")
    assert isinstance(checkpoint.geometry, Polygon) and checkpoint.radius_m is None
    assert any(f.kind == "polling_station" for f in sc.fences)

    main = next(r for r in sc.routes if not r.closed)
    assert main.name == MAIN_ROUTE and main.corridor_m == 40
    assert 10 <= len(main.line.coords) <= 30
    assert 3000 <= GEOD.geometry_length(main.line) <= 5000
    # The route passes the office: its nearest vertex is a few tens of metres away.
    nearest = min(GEOD.inv(kpu.geometry.x, kpu.geometry.y, x, y)[2] for x, y in main.line.coords)
    assert nearest < 60
    loop = next(r for r in sc.routes if r.closed)
    assert loop.line.coords[0] == loop.line.coords[-1]
    assert 1000 <= GEOD.geometry_length(loop.line) <= 1500


def test_packaged_file_says_coordinates_are_illustrative() -> None:
    data = _packaged_json()
    assert "Illustrative" in data["note"]
    assert all("Illustrative" in f["properties"]["note"] for f in data["features"])


def test_user_file_loads(tmp_path: Path) -> None:
    data = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"type": "patrol_route", "name": "Rute A", "corridor_m": 25},
                "geometry": {"type": "LineString", "coordinates": [[116.9, -1.2], [116.91, -1.2]]},
            },
            {
                "type": "Feature",
                "properties": {
                    "type": "geofence",
                    "name": "Kantor X",
                    "kind": "critical_site",
                    "radius_m": 80,
                },
                "geometry": {"type": "Point", "coordinates": [116.905, -1.2003]},
            },
        ],
    }
    units = [UnitSpec("Unit A", "dev-a", "car")]
    sc = load_scenario(_write(tmp_path, data), units=units)
    assert sc.units == tuple(units)
    assert sc.routes[0].name == "Rute A" and sc.routes[0].closed is False
    assert sc.fences[0].radius_m == 80 and sc.fences[0].min_dwell_s is None
    # A string path works too, and the default units apply when none are given.
    assert load_scenario(str(tmp_path / "scenario.geojson")).units == DEFAULT_UNITS


def _broken(mutate: Any) -> dict[str, Any]:
    data = copy.deepcopy(_packaged_json())
    mutate(data)
    return data


def _feature(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in data["features"] if f["properties"]["name"] == name)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: _feature(d, "Kantor KPU Kota Balikpapan")["properties"].pop("radius_m"),
            r"'Kantor KPU Kota Balikpapan'.*radius_m",
        ),
        (
            lambda d: _feature(d, MAIN_ROUTE)["properties"].pop("corridor_m"),
            rf"'{MAIN_ROUTE}'.*corridor_m",
        ),
        (
            lambda d: _feature(d, "Rute Keliling Blok KPU")["geometry"]["coordinates"].pop(),
            r"'Rute Keliling Blok KPU'.*closed route",
        ),
        (
            lambda d: _feature(d, "Pos Pam Sudirman Timur")["geometry"]["coordinates"][0].pop(),
            r"'Pos Pam Sudirman Timur'.*ring must be closed",
        ),
        (
            lambda d: _feature(d, "TPS 012 Klandasan Ilir")["properties"].pop("kind"),
            r"'TPS 012 Klandasan Ilir'.*properties.kind",
        ),
        (
            lambda d: _feature(d, "TPS 012 Klandasan Ilir")["properties"].update(radius_m=True),
            r"'TPS 012 Klandasan Ilir'.*radius_m must be a number",
        ),
        (
            lambda d: _feature(d, "TPS 012 Klandasan Ilir").update(geometry=None),
            r"'TPS 012 Klandasan Ilir'.*missing geometry",
        ),
        (
            lambda d: _feature(d, "TPS 012 Klandasan Ilir")["geometry"].update(
                coordinates=[-1.27, 216.8]
            ),
            r"'TPS 012 Klandasan Ilir'.*outside lon/lat range",
        ),
        (
            lambda d: _feature(d, "TPS 012 Klandasan Ilir")["properties"].update(type="road"),
            r"'TPS 012 Klandasan Ilir'.*properties.type",
        ),
        (
            lambda d: _feature(d, "TPS 012 Klandasan Ilir")["properties"].update(
                name="Kantor KPU Kota Balikpapan"
            ),
            r"duplicate name",
        ),
        (lambda d: d.update(type="Feature"), r"FeatureCollection"),
        (
            lambda d: d.update(
                features=[f for f in d["features"] if f["properties"]["type"] != "patrol_route"]
            ),
            r"patrol_route",
        ),
    ],
)
def test_broken_file_gives_clear_error(tmp_path: Path, mutate: Any, message: str) -> None:
    path = _write(tmp_path, _broken(mutate))
    with pytest.raises(ValueError, match=message):
        load_scenario(path)


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_scenario(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_scenario(tmp_path / "missing.geojson")
