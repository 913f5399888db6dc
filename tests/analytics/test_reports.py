"""Unit and shift reports through the API: JSON, CSV and GeoJSON."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pyproj import Geod

from service.analytics.reports import to_csv
from tests.helpers import T0, along, circle_feature, ping, route_feature, window

GEOD = Geod(ellps="WGS84")
SITE = along(500, 200)  # 200 m north of the route: off its 30 m corridor


@pytest.fixture
def scene(client: TestClient) -> dict[str, int]:
    route = int(client.post("/api/v1/patrol-routes", json=route_feature()).json()["id"])
    u1 = client.post(
        "/api/v1/units", json={"name": "Samapta 1", "device_id": "u1", "patrol_route_ids": [route]}
    )
    u2 = client.post("/api/v1/units", json={"name": "Samapta 2", "device_id": "u2"})
    assert u1.status_code == 201 and u2.status_code == 201, u1.text + u2.text
    fence = client.post("/api/v1/geofences", json=circle_feature(*SITE, radius_m=50))
    assert fence.status_code == 201, fence.text
    return {
        "route": route,
        "u1": u1.json()["id"],
        "u2": u2.json()["id"],
        "site": fence.json()["id"],
    }


def at(device: str, where: tuple[float, float], seconds: float) -> dict:
    """A ping at a position, `seconds` after T0."""
    ts = (T0 + timedelta(seconds=seconds)).isoformat()
    return {"device_id": device, "lon": where[0], "lat": where[1], "ts": ts}


def u1_pings() -> list[dict]:
    # 0 -> 900 m along the route, 100 m every 20 s; 20 min later, 100 m more (not counted).
    drive = [ping("u1", 100.0 * k, 20.0 * k) for k in range(10)]
    return [*drive, ping("u1", 900, 180 + 1200), ping("u1", 1000, 180 + 1220)]


def u2_pings() -> list[dict]:
    # Standing at the site for 6 minutes (a stop and a sambang), wobbling by 2 m.
    wobble = along(500, 202)
    return [at("u2", SITE if k % 2 else wobble, 30.0 * k) for k in range(13)]


def post(client: TestClient, pings: list[dict]) -> None:
    r = client.post("/api/v1/pings", json=pings)
    assert r.status_code == 200 and r.json()["accepted"] == len(pings), r.text


def expected_distance(pings: list[dict], skip: set[int]) -> float:
    total = 0.0
    for k in range(1, len(pings)):
        if k in skip:
            continue
        a, b = pings[k - 1], pings[k]
        total += GEOD.inv(a["lon"], a["lat"], b["lon"], b["lat"])[2]
    return total


def test_units_report_json(client: TestClient, scene: dict[str, int]) -> None:
    post(client, u1_pings() + u2_pings())
    r = client.get("/api/v1/reports/units", params=window())
    assert r.status_code == 200, r.text
    units = {u["unit_name"]: u for u in r.json()["units"]}
    one, two = units["Samapta 1"], units["Samapta 2"]
    # The 20-minute gap (index 10) is not interpolated.
    assert one["distance_m"] == pytest.approx(expected_distance(u1_pings(), {10}), rel=0.01)
    assert one["distance_m"] == pytest.approx(1000, rel=0.01)
    assert one["time_on_route_s"] == 180 + 20
    assert one["stops"] == 0
    assert one["first_fix"] == "2024-11-26T23:00:00Z"
    assert one["last_fix"] == "2024-11-26T23:23:20Z"
    assert two["stops"] == 1
    assert two["time_on_route_s"] == 0
    assert two["distance_m"] == pytest.approx(expected_distance(u2_pings(), set()), rel=0.01)
    assert two["time_in_geofences"] == [
        {"geofence_id": scene["site"], "name": "Kantor KPU", "present_s": 360.0}
    ]
    assert one["time_in_geofences"][0]["present_s"] == 0


def test_units_report_csv(client: TestClient, scene: dict[str, int]) -> None:
    post(client, u1_pings() + u2_pings())
    r = client.get("/api/v1/reports/units", params={**window(), "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == [
        "unit_id",
        "unit_name",
        "fixes",
        "distance_m",
        "time_on_route_s",
        "time_in_Kantor KPU_s",
        "stops",
        "first_fix",
        "last_fix",
    ]
    assert len(rows) == 3
    by_name = {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert float(by_name["Samapta 2"]["time_in_Kantor KPU_s"]) == 360.0
    assert by_name["Samapta 1"]["fixes"] == "12"


def test_units_report_geojson(client: TestClient, scene: dict[str, int]) -> None:
    post(client, u1_pings() + u2_pings())
    r = client.get("/api/v1/reports/units", params={**window(), "format": "geojson"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "FeatureCollection"
    assert len(body["features"]) == 2
    for feature in body["features"]:
        assert feature["type"] == "Feature"
        assert feature["geometry"]["type"] == "LineString"
        coords = feature["geometry"]["coordinates"]
        assert 2 <= len(coords) <= 2000
        assert all(len(c) == 2 for c in coords)
        assert {"unit_id", "distance_m", "stops"} <= feature["properties"].keys()
    first = next(f for f in body["features"] if f["properties"]["unit_name"] == "Samapta 1")
    assert len(first["geometry"]["coordinates"]) == 12


def test_long_track_is_simplified(client: TestClient, scene: dict[str, int]) -> None:
    # 2500 fixes zig-zagging 5 m off the centerline, every 1 s.
    post(client, [ping("u2", k * 0.4, k, offset_m=5 if k % 2 else -5) for k in range(2500)])
    r = client.get("/api/v1/reports/units", params={**window(), "format": "geojson"})
    feature = next(f for f in r.json()["features"] if f["properties"]["unit_name"] == "Samapta 2")
    assert feature["properties"]["fixes"] == 2500
    assert 2 <= len(feature["geometry"]["coordinates"]) <= 2000


def test_shift_report_splits_at_local_times(client: TestClient, scene: dict[str, int]) -> None:
    # 2024-11-27 07:00 WITA = 2024-11-26 23:00Z = T0; 19:00 WITA = 11:00Z.
    post(client, [at("u2", SITE, 30.0 * k) for k in range(21)])  # day: 07:00-07:10
    evening = 12 * 3600.0
    post(client, [at("u1", SITE, evening + 30.0 * k) for k in range(-1, 11)])  # 18:59:30-19:05
    r = client.get("/api/v1/reports/shifts", params={"date": "2024-11-27"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["date"] == "2024-11-27"
    day, night = body["shifts"]
    assert day["shift"] == "day" and night["shift"] == "night"
    assert day["window"]["from"] == "2024-11-26T23:00:00Z"
    assert day["window"]["to"] == "2024-11-27T11:00:00Z"
    assert night["window"]["to"] == "2024-11-27T23:00:00Z"
    fixes = {(s["shift"], u["unit_name"]): u["fixes"] for s in body["shifts"] for u in s["units"]}
    assert fixes == {
        ("day", "Samapta 1"): 1,
        ("day", "Samapta 2"): 21,
        ("night", "Samapta 1"): 11,
        ("night", "Samapta 2"): 0,
    }
    site = day["critical_sites"][0]
    assert site["name"] == "Kantor KPU"
    assert site["covered_s"] == 600 + 30  # 07:00-07:10 and 18:59:30-19:00
    assert site["uncovered_intervals"][0] == {
        "from": "2024-11-26T23:10:00Z",
        "to": "2024-11-27T10:59:30Z",
        "duration_s": 42570.0,
    }
    assert night["critical_sites"][0]["covered_s"] == 300
    assert [p["name"] for p in day["patrol_routes"]] == ["Jl. Sudirman"]
    assert 0 <= day["patrol_routes"][0]["coverage_ratio"] <= 1

    later = client.get(
        "/api/v1/reports/shifts",
        params={"date": "2024-11-27", "day_start": "08:00", "night_start": "18:00"},
    ).json()
    assert later["shifts"][0]["window"]["from"] == "2024-11-27T00:00:00Z"
    assert later["shifts"][1]["window"]["from"] == "2024-11-27T10:00:00Z"

    r = client.get("/api/v1/reports/shifts", params={"date": "2024-11-27", "format": "csv"})
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:6] == ["shift", "shift_from", "shift_to", "record", "id", "name"]
    assert rows[0][-3:] == ["coverage_ratio", "covered_s", "uncovered_intervals"]
    kinds = [(row[0], row[3]) for row in rows[1:]]
    assert kinds == [
        ("day", "unit"), ("day", "unit"), ("day", "patrol_route"), ("day", "critical_site"),
        ("night", "unit"), ("night", "unit"), ("night", "patrol_route"), ("night", "critical_site"),
    ]  # fmt: skip
    day_site = dict(zip(rows[0], rows[4], strict=True))
    assert day_site["name"] == "Kantor KPU" and float(day_site["covered_s"]) == 630
    assert day_site["uncovered_intervals"].startswith("2024-11-26T23:10:00Z/2024-11-27T10:59:30Z")
    day_unit = dict(zip(rows[0], rows[2], strict=True))
    assert day_unit["name"] == "Samapta 2" and day_unit["fixes"] == "21"

    r = client.get("/api/v1/reports/shifts", params={"date": "2024-11-27", "format": "geojson"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    features = r.json()["features"]
    records = [(f["properties"]["shift"], f["properties"]["record"]) for f in features]
    assert records == [(k, v) for k, v in kinds]
    site = next(f for f in features if f["properties"]["record"] == "critical_site")
    assert site["geometry"]["type"] == "Point" and site["properties"]["radius_m"] == 50
    assert site["properties"]["uncovered_intervals"][0]["duration_s"] == 42570.0
    route = next(f for f in features if f["properties"]["record"] == "patrol_route")
    assert route["geometry"]["type"] == "LineString"
    track = next(
        f for f in features
        if f["properties"]["record"] == "unit" and f["properties"]["unit_name"] == "Samapta 2"
    )  # fmt: skip
    assert track["properties"]["shift"] == "day" and track["geometry"]["type"] == "LineString"


def test_csv_is_safe_for_spreadsheets_and_tells_geofences_apart(
    client: TestClient, scene: dict[str, int]
) -> None:
    client.post("/api/v1/units", json={"name": '=HYPERLINK("http://x")', "device_id": "u3"})
    twin = client.post("/api/v1/geofences", json=circle_feature(*along(100, 0), radius_m=30))
    post(client, [at("u3", SITE, 0.0)])
    r = client.get("/api/v1/reports/units", params={**window(), "format": "csv"})
    rows = list(csv.reader(io.StringIO(r.text)))
    fences = [c for c in rows[0] if c.startswith("time_in_")]
    assert fences == [
        f"time_in_Kantor KPU #{scene['site']}_s",
        f"time_in_Kantor KPU #{twin.json()['id']}_s",
    ]
    names = [row[1] for row in rows[1:]]
    assert '\'=HYPERLINK("http://x")' in names


# Cells a spreadsheet would run as formulas, also behind a line break, tab or blank.
FORMULAS = ["=1+1", " @SUM(A1)", "+1", " =2+2", "-3+3", "\uff1dcmd|' /C calc'!A0"]


def _lines_are_safe(text: str) -> None:
    """No physical line of the CSV text (split on any line break) starts with a formula."""
    assert "\r" not in text
    for line in text.splitlines():
        assert not line.lstrip().startswith(("=", "+", "-", "@", "\uff1d")), repr(line)


def test_names_with_line_breaks_are_refused_at_the_door(client: TestClient) -> None:
    for name in ["\r=1+1", "\n=1+1", "\r\n@SUM(A1)", "\t+1"]:
        r = client.post("/api/v1/units", json={"name": name, "device_id": "x"})
        assert r.status_code == 422 and "control characters" in r.text, r.text
        r = client.post("/api/v1/geofences", json=circle_feature(*SITE, name=name))
        assert r.status_code == 422 and "control characters" in r.text, r.text


def test_csv_cells_from_older_rows_with_line_breaks_stay_one_safe_line() -> None:
    # Names stored before the door refused control characters still come out as one safe line.
    text = to_csv(["time_in_\r=9+9_s"], [["\r=1+1"], ["\r\n@SUM(A1)"], ["\t+1"], [3]])
    _lines_are_safe(text)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["time_in_ =9+9_s"], ["' =1+1"], ["'  @SUM(A1)"], ["' +1"], ["3"]]


def test_units_csv_cannot_smuggle_a_formula(client: TestClient, scene: dict[str, int]) -> None:
    for n, name in enumerate(FORMULAS):
        r = client.post("/api/v1/units", json={"name": name, "device_id": f"f{n}"})
        assert r.status_code == 201, r.text
        post(client, [at(f"f{n}", SITE, 10.0 * n)])
    fence = client.post("/api/v1/geofences", json=circle_feature(*along(100, 0), name="=9+9"))
    assert fence.status_code == 201, fence.text
    r = client.get("/api/v1/reports/units", params={**window(), "format": "csv"})
    assert r.status_code == 200, r.text
    _lines_are_safe(r.text)
    rows = list(csv.reader(io.StringIO(r.text)))
    assert len(rows) == 1 + 2 + len(FORMULAS)
    assert "time_in_=9+9_s" in rows[0]
    names = {row[1] for row in rows[1:]}
    assert {"'=1+1", "' @SUM(A1)", "'+1", "' =2+2", "'-3+3"} <= names
    assert "'\uff1dcmd|' /C calc'!A0" in names
    # The JSON report keeps the names as they are.
    body = client.get("/api/v1/reports/units", params=window()).json()
    assert {u["unit_name"] for u in body["units"]} >= set(FORMULAS)


def test_shift_csv_cannot_smuggle_a_formula(client: TestClient, scene: dict[str, int]) -> None:
    fence = client.post("/api/v1/geofences", json=circle_feature(*SITE, name="=1+1"))
    assert fence.status_code == 201, fence.text
    client.post("/api/v1/units", json={"name": " @cmd", "device_id": "f1"})
    post(client, [at("f1", SITE, 0.0), at("f1", SITE, 60.0)])
    r = client.get("/api/v1/reports/shifts", params={"date": "2024-11-27", "format": "csv"})
    assert r.status_code == 200, r.text
    _lines_are_safe(r.text)
    rows = list(csv.reader(io.StringIO(r.text)))
    assert "time_in_=1+1_s" in rows[0]
    assert "'=1+1" in {row[5] for row in rows[1:] if row[3] == "critical_site"}
    assert "' @cmd" in {row[5] for row in rows[1:] if row[3] == "unit"}
    assert all(len(row) == len(rows[0]) for row in rows)


@pytest.mark.parametrize(
    "params",
    [
        {"date": "27-11-2024"},
        {"date": "2024-11-27", "day_start": "7am"},
        {"date": "2024-11-27", "day_start": "20:00"},
        {"date": "2024-11-27", "format": "xml"},
    ],
)
def test_shift_report_rejects_bad_input(client: TestClient, params: dict[str, str]) -> None:
    assert client.get("/api/v1/reports/shifts", params=params).status_code == 422


def test_units_without_fixes(client: TestClient, scene: dict[str, int]) -> None:
    body = client.get("/api/v1/reports/units", params=window()).json()
    assert body["window"]["timezone"] == "Asia/Makassar"
    assert all(u["first_fix"] is None and u["distance_m"] == 0 for u in body["units"])


def test_shift_report_stops_at_now(client: TestClient, scene: dict[str, int]) -> None:
    r = client.get("/api/v1/reports/shifts", params={"date": "2199-06-01"})
    assert r.status_code == 422 and "has started yet" in r.json()["detail"]
    today = datetime.now(ZoneInfo("Asia/Makassar")).date().isoformat()
    r = client.get("/api/v1/reports/shifts", params={"date": today})
    if r.status_code == 422:  # before 07:00 WITA: neither shift of today has begun
        assert "has started yet" in r.json()["detail"]
        return
    now = datetime.now(UTC)
    for shift in r.json()["shifts"]:
        to = datetime.fromisoformat(shift["window"]["to"].replace("Z", "+00:00"))
        assert to <= now
        for site in shift["critical_sites"]:  # nothing uncovered after now
            for gap in site["uncovered_intervals"]:
                assert datetime.fromisoformat(gap["to"].replace("Z", "+00:00")) <= now
