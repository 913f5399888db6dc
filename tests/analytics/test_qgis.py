"""The QGIS layers on PostGIS: they exist, hold valid SRID 4326 geometry, and agree with the API;
deploy/qgis/patroli.qgs reads exactly them, styled like the web maps, and QGIS opens it.

The scenario is laid out around the real clock (the views read `now()`): the time zone is
picked so that it is early afternoon there, which puts every fix in today's local date and in
the day shift, and a fix of yesterday evening (local) before it.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import shapely
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from service.analytics.qgis import (
    LAYERS,
    SEGMENT_ID_BASE,
    current_shift,
    refresh_qgis,
    segment_status,
)
from service.analytics.running import RunningCoverage
from service.app import create_app
from service.areas.index import GeoCache
from service.config import Settings
from service.events.scheduler import Scheduler
from service.maps.coverage import segment_age
from service.maps.kit import (
    OVERDUE_COLOR,
    PRESENCE_COLORS,
    STALE_COLOR,
    VISITED_COLOR,
    unit_color,
)
from service.store.db import Store
from service.store.migrate import alembic_config, upgrade
from tests.conftest import ADMIN_KEY
from tests.deployfiles import ROOT
from tests.helpers import along, box_ring, circle_feature, polygon_feature, route_feature

SITE = along(515)


def _afternoon_zone(now: datetime) -> str:
    """A fixed-offset zone where it is between 12:30 and 13:30 now."""
    offset = round(13 - (now.hour + now.minute / 60))
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    # POSIX sign: Etc/GMT-8 is UTC+8.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.fixture
def backend() -> str:
    """The QGIS layers exist on PostGIS only."""
    return "postgis"


@pytest.fixture
def qsettings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(timezone=_afternoon_zone(datetime.now(UTC)))


@pytest.fixture
def qclient(qsettings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(qsettings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


def _fix(device: str, at: datetime, where: tuple[float, float], **kw: Any) -> dict[str, Any]:
    return {"device_id": device, "lon": where[0], "lat": where[1], "ts": at.isoformat(), **kw}


def _post(client: TestClient, pings: list[dict[str, Any]]) -> None:
    r = client.post("/api/v1/pings", json=pings)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == len(pings), r.text


@pytest.fixture
def scenario(qclient: TestClient) -> dict[str, Any]:
    """A route, a circle and a polygon geofence, three units (two reporting) around now."""
    c = qclient
    # The test refreshes the layers itself, at the scenario's time.
    c.app.state.scheduler.stop()  # type: ignore[attr-defined]
    now = datetime.now(UTC).replace(microsecond=0)
    r = c.post("/api/v1/patrol-routes", json=route_feature("Jl. Sudirman", revisit_s=1800))
    assert r.status_code == 201, r.text
    route = r.json()["id"]
    r = c.post("/api/v1/geofences", json=circle_feature(*SITE, radius_m=110))
    assert r.status_code == 201, r.text
    circle = r.json()["id"]
    lon, lat = along(100)
    r = c.post(
        "/api/v1/geofences",
        json=polygon_feature([box_ring(lon - 0.0005, lat - 0.0005, 0.001, 0.001)], kind="pos"),
    )
    assert r.status_code == 201, r.text
    box = r.json()["id"]
    units = {}
    for name, device, routes in (
        ("Samapta 1", "u1", [route]),
        ("Samapta 2", "u2", []),
        ("Samapta 3", "u3", []),
    ):
        r = c.post(
            "/api/v1/units",
            json={
                "name": name,
                "device_id": device,
                "kind": "motorbike",
                "patrol_route_ids": routes,
            },
        )
        assert r.status_code == 201, r.text
        units[device] = r.json()["id"]
    start = now - timedelta(minutes=40)
    # Yesterday evening, local time: in no layer of today.
    _post(c, [_fix("u1", now - timedelta(hours=14), along(900))])
    # u1 rides 0 -> 600 m at 2 m/s (a fix every 10 s), then waits at 605 m.
    u1 = [_fix("u1", start + timedelta(seconds=10 * k), along(20 * k)) for k in range(31)]
    u1 += [_fix("u1", start + timedelta(seconds=310 + 30 * k), along(605)) for k in range(5)]
    # u2 stands at the site for 20 minutes, leaves for 5, comes back for one fix; an inaccurate
    # fix far away is in no track.
    u2 = [_fix("u2", start + timedelta(minutes=5, seconds=30 * k), SITE) for k in range(41)]
    u2 += [_fix("u2", start + timedelta(minutes=26), along(900), accuracy_m=500)]
    u2 += [_fix("u2", start + timedelta(minutes=26, seconds=30), along(950, 200))]
    u2 += [_fix("u2", start + timedelta(minutes=31), SITE, speed_mps=1.5)]
    _post(c, u1)
    _post(c, u2)
    return {"now": now, "route": route, "circle": circle, "box": box, "units": units}


def _rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    store = Store.from_url(url)
    try:
        with store.read() as session:
            return [dict(r._mapping) for r in session.execute(text(sql), params)]
    finally:
        store.dispose()


def _refresh(
    settings: Settings, now: datetime, coverage: RunningCoverage | None = None
) -> int | None:
    store = Store.from_url(settings.database_url)
    try:
        with store.write() as session:
            index = GeoCache().get(session)
            return refresh_qgis(session, index, settings, now, force=True, coverage=coverage)
    finally:
        store.dispose()


def _layer(settings: Settings) -> list[dict[str, Any]]:
    return _rows(settings.database_url, "SELECT * FROM qgis_coverage_segments ORDER BY id")


def test_layers_are_geometry_relations_qgis_can_key(postgis_url: str) -> None:
    rows = _rows(
        postgis_url,
        "SELECT f_table_name AS name, f_geometry_column AS col, srid, type "
        "FROM geometry_columns WHERE f_table_name LIKE 'qgis\\_%' ORDER BY 1",
    )
    assert {r["name"]: (r["col"], r["srid"], r["type"]) for r in rows} == {
        "qgis_coverage_segments": ("geom", 4326, "LINESTRING"),
        "qgis_geofences": ("geom", 4326, "MULTIPOLYGON"),
        "qgis_latest_positions": ("geom", 4326, "POINT"),
        "qgis_tracks_today": ("geom", 4326, "LINESTRING"),
    }
    assert {r["name"] for r in rows} == set(LAYERS)
    ids = _rows(
        postgis_url,
        "SELECT table_name, data_type FROM information_schema.columns "
        "WHERE table_name LIKE 'qgis\\_%' AND column_name = 'id'",
    )
    assert {r["table_name"]: r["data_type"] for r in ids if r["table_name"] in LAYERS} == {
        "qgis_coverage_segments": "bigint",
        "qgis_geofences": "integer",
        "qgis_latest_positions": "integer",
        "qgis_tracks_today": "integer",
    }


def test_latest_positions_and_tracks_today(
    qclient: TestClient, scenario: dict[str, Any], qsettings: Settings
) -> None:
    _refresh(qsettings, scenario["now"])  # writes the time zone the views read
    url = qsettings.database_url
    latest = {
        r["name"]: r
        for r in _rows(
            url,
            "SELECT *, ST_IsValid(geom) AS valid, ST_SRID(geom) AS srid, ST_X(geom) AS lon, "
            "ST_Y(geom) AS lat FROM qgis_latest_positions",
        )
    }
    assert set(latest) == {"Samapta 1", "Samapta 2"}  # Samapta 3 never reported
    api = {
        f["properties"]["name"]: f
        for f in qclient.get("/api/v1/positions/latest").json()["features"]
    }
    for name, row in latest.items():
        assert row["valid"] and row["srid"] == 4326
        assert [row["lon"], row["lat"]] == api[name]["geometry"]["coordinates"]
        assert row["id"] == api[name]["properties"]["unit_id"]
        assert row["kind"] == "motorbike"
        assert row["fix_time"] == datetime.fromisoformat(api[name]["properties"]["ts"])
        assert row["offline"] == (row["age_s"] >= 300) and row["age_s"] >= 9 * 60
        assert row["color"] == unit_color(row["id"])
    assert latest["Samapta 1"]["route_status"] == "on_route"
    assert latest["Samapta 1"]["patrol_routes"] == "Jl. Sudirman"
    assert latest["Samapta 1"]["speed_kmh"] is None  # its last fix carried no speed
    assert latest["Samapta 2"]["route_status"] is None  # no route assigned
    assert (latest["Samapta 2"]["speed_mps"], latest["Samapta 2"]["speed_kmh"]) == (1.5, 5.4)
    local_fix = scenario["now"] - timedelta(minutes=9)
    assert latest["Samapta 2"]["fix_time_local"] == local_fix.astimezone(qsettings.tz).strftime(
        "%Y-%m-%d %H:%M:%S"
    )

    tracks = {
        r["name"]: r
        for r in _rows(
            url,
            "SELECT *, ST_IsValid(geom) AS valid, ST_SRID(geom) AS srid, "
            "ST_AsBinary(geom) AS wkb, ST_IsValidReason(geom) AS reason FROM qgis_tracks_today",
        )
    }
    assert set(tracks) == {"Samapta 1", "Samapta 2"}
    today = scenario["now"].astimezone(qsettings.tz).date()
    day_from = datetime.combine(today, datetime.min.time(), qsettings.tz)
    for row in tracks.values():
        assert (row["valid"], row["srid"], row["day"]) == (True, 4326, today), row["reason"]
        r = qclient.get(
            f"/api/v1/units/{row['id']}/track",
            params={"from": day_from.isoformat(), "to": (day_from + timedelta(days=1)).isoformat()},
        )
        line = r.json()["features"][0]
        coords = line["geometry"]["coordinates"]
        distinct = [p for i, p in enumerate(coords) if i == 0 or p != coords[i - 1]]
        assert shapely.get_coordinates(shapely.from_wkb(bytes(row["wkb"]))).tolist() == distinct
        assert row["fixes"] == line["properties"]["points"]
    # Yesterday's fix and the inaccurate one are left out, the late one too is not today's.
    assert tracks["Samapta 1"]["fixes"] == 36
    assert tracks["Samapta 2"]["fixes"] == 43
    assert tracks["Samapta 1"]["length_m"] == pytest.approx(605, abs=1)


def test_coverage_segments_agree_with_the_api(
    qclient: TestClient, scenario: dict[str, Any], qsettings: Settings
) -> None:
    now = scenario["now"]
    written = _refresh(qsettings, now)
    shift = current_shift(now, qsettings)
    assert shift.name == "day" and shift.window.start < now - timedelta(hours=5)
    r = qclient.get(
        f"/api/v1/coverage/patrol-routes/{scenario['route']}",
        params={"from": shift.window.start.isoformat(), "to": now.isoformat()},
    )
    assert r.status_code == 200, r.text
    api = r.json()["segments"]
    rows = _rows(
        qsettings.database_url,
        "SELECT *, ST_IsValid(geom) AS valid, ST_SRID(geom) AS srid, "
        "ST_Length(geom::geography) AS geo_length FROM qgis_coverage_segments ORDER BY id",
    )
    assert written == len(rows) == len(api) == 21  # 1 km and a bit: 20 x 50 m and a sliver
    for row, seg in zip(rows, api, strict=True):
        assert row["id"] == scenario["route"] * SEGMENT_ID_BASE + seg["index"]
        assert row["segment"] == seg["index"] and row["route_name"] == "Jl. Sudirman"
        assert (row["start_m"], row["end_m"]) == (seg["start_m"], seg["end_m"])
        assert row["covered"] == seg["visited"] and row["visits"] == seg["visits"]
        for key in ("first_visit", "last_visit"):
            want = seg[key] and datetime.fromisoformat(seg[key])
            assert row[key] == want or abs((row[key] - want).total_seconds()) < 1e-3
        assert row["valid"] and row["srid"] == 4326
        assert row["geo_length"] == pytest.approx(seg["end_m"] - seg["start_m"], rel=0.01)
        assert (row["shift"], row["shift_from"], row["as_of"]) == ("day", shift.window.start, now)
    covered = [row["segment"] for row in rows if row["covered"]]
    assert covered == list(range(13))  # 0-605 m: segments 0 to 12
    # Samapta 2 stood on segment 10 until 9 minutes ago: fresh; Samapta 1 rode 0-600 m over
    # half an hour ago, longer than revisit_s: overdue, as the coverage map shows them.
    assert {row["segment"]: row["status"] for row in rows} == {
        k: "fresh" if k == 10 else "overdue" for k in range(21)
    }


def test_refreshes_read_only_what_is_new_and_equal_a_whole_reading(
    qclient: TestClient, scenario: dict[str, Any], qsettings: Settings
) -> None:
    """A refresh that keeps its RunningCoverage writes what one reading the whole shift writes,
    whatever arrived between: a visit going on, a late upload, a new unit, a fix ahead of the
    clock, a deleted unit."""
    coverage = RunningCoverage(chunk=7)  # units' fixes split across the pieces read
    _refresh(qsettings, scenario["now"], coverage)

    def same_as_whole(now: datetime) -> list[dict[str, Any]]:
        _refresh(qsettings, now, coverage)
        kept = _layer(qsettings)
        _refresh(qsettings, now)
        assert kept == _layer(qsettings)
        return kept

    now = datetime.now(UTC)
    start = scenario["now"] - timedelta(minutes=40)
    # u1 rides on from 605 m (where it waited, fixes 30 s apart) to 900 m; u2's tracker
    # uploads fixes from before its last one; u3 reports for the first time; one fix of u1
    # lies 2 minutes ahead of the clock (within the tolerance: stored as it is).
    ride = [
        _fix("u1", start + timedelta(seconds=460 + 10 * k), along(605 + 15 * k)) for k in range(21)
    ]
    _post(qclient, [*ride, _fix("u1", now + timedelta(minutes=2), along(990))])
    _post(
        qclient, [_fix("u2", start + timedelta(minutes=28), along(700 + 10 * k)) for k in range(3)]
    )
    _post(
        qclient,
        [_fix("u3", now - timedelta(seconds=60 - 10 * k), along(100 + 8 * k)) for k in range(6)],
    )
    rows = same_as_whole(now)
    assert {row["segment"] for row in rows if row["covered"]} >= set(range(18))
    # u3 is deleted with its pings; later the fix ahead of the clock falls due.
    r = qclient.delete(f"/api/v1/units/{scenario['units']['u3']}")
    assert r.status_code == 204, r.text
    same_as_whole(datetime.now(UTC))
    later = same_as_whole(now + timedelta(minutes=3))
    assert [row["segment"] for row in later if row["covered"]][-1] == 19  # 990 m: the fix due


def test_geofences_presence_agrees_with_the_api(
    qclient: TestClient, scenario: dict[str, Any], qsettings: Settings
) -> None:
    now = scenario["now"]
    _refresh(qsettings, now)
    day_from = datetime.combine(
        now.astimezone(qsettings.tz).date(), datetime.min.time(), qsettings.tz
    )
    rows = {
        r["id"]: r
        for r in _rows(
            qsettings.database_url,
            "SELECT *, ST_IsValid(geom) AS valid, ST_SRID(geom) AS srid, "
            "ST_Area(geom::geography) AS area FROM qgis_geofences",
        )
    }
    assert set(rows) == {scenario["circle"], scenario["box"]}
    for fence_id, row in rows.items():
        assert row["valid"] and row["srid"] == 4326
        r = qclient.get(
            f"/api/v1/presence/geofences/{fence_id}",
            params={"from": day_from.isoformat(), "to": datetime.now(UTC).isoformat()},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert row["inside_s"] == pytest.approx(body["covered_s"], abs=1e-3)
        assert row["visits"] == len(body["visits"])
        assert row["sambang"] == sum(v["sambang"] for v in body["visits"])
        last = max((v["to"] for v in body["visits"]), default=None)
        assert row["last_visit"] == (last and datetime.fromisoformat(last))
    circle = rows[scenario["circle"]]
    # u1 rode through (420-600 m) and waited at 605 m for 2 min: 210 s .. 430 s; u2 stood there
    # 300 s .. 1500 s, then came back for an instant.
    assert circle["inside_s"] == pytest.approx(1290)
    assert (circle["visits"], circle["sambang"], circle["units"]) == (3, 1, 2)
    assert circle["last_unit"] == "Samapta 2" and circle["presence"] == "poor"
    assert circle["last_visit"] == now - timedelta(minutes=9)
    assert circle["area"] == pytest.approx(3.1416 * 110**2, rel=0.01)  # a 72-gon of 110 m
    box = rows[scenario["box"]]
    assert box["visits"] == 1 and box["last_unit"] == "Samapta 1" and box["kind"] == "pos"


def test_one_writer_across_instances(scenario: dict[str, Any], qsettings: Settings) -> None:
    store = Store.from_url(qsettings.database_url)
    now = scenario["now"]
    try:
        with store.write() as first:
            assert refresh_qgis(first, GeoCache().get(first), qsettings, now, force=True) == 21
            # While the first holds the lock, a second instance leaves the layer alone.
            with store.write() as second:
                index = GeoCache().get(second)
                assert refresh_qgis(second, index, qsettings, now, force=True) is None
        # Refreshed a moment ago: skipped until half the interval has passed, unless forced.
        with store.write() as again:
            assert refresh_qgis(again, GeoCache().get(again), qsettings, now) is None
        later = now + timedelta(seconds=qsettings.qgis_refresh_s)
        scheduler = Scheduler(store, GeoCache(), qsettings)
        scheduler.run_once(later)
        as_of = _rows(qsettings.database_url, "SELECT DISTINCT as_of FROM qgis_coverage_segments")
        assert as_of == [{"as_of": later}]
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("age_s", "revisit_s"), [(None, None), (60, None), (1799, 1800), (2000, None), (4000, None)]
)
def test_segment_status_is_the_coverage_maps(age_s: float | None, revisit_s: float | None) -> None:
    end = datetime(2024, 11, 27, 3, 0, tzinfo=UTC)
    last = None if age_s is None else end - timedelta(seconds=age_s)
    assert segment_status(
        None if last is None else last.timestamp(), end.timestamp(), revisit_s
    ) == segment_age(last, end, revisit_s)


def _relations(url: str) -> set[str]:
    rows = _rows(url, "SELECT relname FROM pg_class WHERE relname LIKE 'qgis\\_%'")
    return {r["relname"] for r in rows}


def test_downgrade_removes_the_layers(empty_postgis_url: str) -> None:
    store = Store.from_url(empty_postgis_url)
    try:
        upgrade(store.engine)
        assert set(LAYERS) | {"qgis_settings"} <= _relations(empty_postgis_url)
        cfg = alembic_config(empty_postgis_url)
        below = ScriptDirectory.from_config(cfg).get_revision("0007").down_revision
        command.downgrade(cfg, str(below))
        assert _relations(empty_postgis_url) == set()
        upgrade(store.engine)
        assert set(LAYERS) <= _relations(empty_postgis_url)
    finally:
        store.dispose()


def test_sqlite_migrates_without_the_layers(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = Store.from_url(url)
    try:
        upgrade(store.engine)
        cfg = alembic_config(url)
        below = ScriptDirectory.from_config(cfg).get_revision("0007").down_revision
        command.downgrade(cfg, str(below))
        upgrade(store.engine)
        names = _rows(url, "SELECT name FROM sqlite_master WHERE name LIKE 'qgis%'")
        assert names == []
    finally:
        store.dispose()


PROJECT = ROOT / "deploy" / "qgis" / "patroli.qgs"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _layers() -> dict[str, ET.Element]:
    """The project's map layers by the table or view they read."""
    tree = ET.parse(PROJECT)
    assert tree.getroot().tag == "qgis"
    found = {}
    for layer in tree.getroot().iter("maplayer"):
        assert layer.findtext("provider") == "postgres"
        source = layer.findtext("datasource") or ""
        match = re.search(r'table="public"\."([^"]+)" \(geom\)', source)
        assert match, source
        assert "service='patroli'" in source and "key='id'" in source and "srid=4326" in source
        assert "password" not in source and "dbname" not in source
        found[match.group(1)] = layer
    return found


def _rgb(hex_colour: str) -> str:
    return ",".join(str(int(hex_colour[i : i + 2], 16)) for i in (1, 3, 5))


def _categories(layer: ET.Element) -> tuple[str, dict[str, set[str]]]:
    """The categorised renderer's field and, per category value, the colours of its symbol."""
    renderer = layer.find("renderer-v2")
    assert renderer is not None and renderer.get("type") == "categorizedSymbol"
    symbols = {s.get("name"): s for s in renderer.iter("symbol")}
    colours: dict[str, set[str]] = {}
    for category in renderer.iter("category"):
        symbol = symbols[category.get("symbol")]
        colours[str(category.get("value"))] = {
            str(o.get("value")).rsplit(",", 1)[0]
            for o in symbol.iter("Option")
            if o.get("name") in ("color", "line_color", "outline_color")
        }
    return str(renderer.get("attr")), colours


def test_project_references_exactly_the_views_that_exist(postgis_url: str) -> None:
    layers = _layers()
    assert set(layers) == set(LAYERS)
    store = Store.from_url(postgis_url)
    try:
        with store.read() as session:
            relations = {
                name: kind
                for name, kind in session.execute(
                    text(
                        "SELECT f_table_name, type FROM geometry_columns "
                        "WHERE f_table_schema = 'public' AND f_geometry_column = 'geom'"
                    )
                )
            }
    finally:
        store.dispose()
    for table, layer in layers.items():
        source = layer.findtext("datasource") or ""
        assert table in relations, table
        declared = re.search(r"type=(\w+)", source)
        assert declared and declared.group(1).upper() == relations[table], source


def test_project_is_styled_like_the_web_maps() -> None:
    layers = _layers()
    attr, colours = _categories(layers["qgis_coverage_segments"])
    assert attr == "status"
    assert colours == {
        "fresh": {_rgb(VISITED_COLOR)},
        "stale": {_rgb(STALE_COLOR)},
        "overdue": {_rgb(OVERDUE_COLOR)},
    }
    attr, colours = _categories(layers["qgis_geofences"])
    assert attr == "presence"
    assert colours == {level: {_rgb(c)} for level, c in PRESENCE_COLORS.items()}
    # Units keep their web-map colour: the views' `color` column drives the symbol.
    for table in ("qgis_latest_positions", "qgis_tracks_today"):
        fields = [
            o.get("value")
            for o in layers[table].iter("Option")
            if o.get("name") == "field" and o.get("value")
        ]
        assert "color" in fields, table


def _has_pyqgis() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import qgis.core"], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _has_pyqgis(), reason="PyQGIS (Debian python3-qgis) not installed")
def test_qgis_opens_every_layer(
    scenario: dict[str, Any], qsettings: Settings, tmp_path: Path, artifacts_dir: Path
) -> None:
    store = Store.from_url(qsettings.database_url)
    try:
        with store.write() as session:
            refresh_qgis(session, GeoCache().get(session), qsettings, scenario["now"], force=True)
        with store.read() as session:
            counts = {
                t: session.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in LAYERS
            }
    finally:
        store.dispose()
    url = store.engine.url
    services = tmp_path / "pg_service.conf"
    services.write_text(
        f"[patroli]\nhost={url.query.get('host') or url.host or 'localhost'}\n"
        f"dbname={url.database}\n" + (f"user={url.username}\n" if url.username else "")
    )
    png = artifacts_dir / "qgis_project.png"
    run = subprocess.run(
        [str(SYSTEM_PYTHON), str(ROOT / "tests" / "qgis_open.py"), str(PROJECT), str(png)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PGSERVICEFILE": str(services), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["order"] == [
        "Latest positions",
        "Coverage segments (current shift)",
        "Tracks today",
        "Geofences (today)",
    ]
    for table in LAYERS:
        layer = report["layers"][table]
        assert layer["valid"], (table, layer["error"])
        assert layer["count"] == counts[table] > 0, table
    assert "route_status" in report["layers"]["qgis_latest_positions"]["fields"]
    assert png.stat().st_size > 10_000


def test_a_read_only_role_reads_the_layers_and_nothing_else(
    scenario: dict[str, Any], qsettings: Settings
) -> None:
    role = f"patroli_qgis_{uuid.uuid4().hex[:8]}"
    _refresh(qsettings, scenario["now"])
    store = Store.from_url(qsettings.database_url)
    try:
        with store.engine.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" NOLOGIN'))
            conn.commit()
            try:
                # As README grants it: SELECT on the four layers (the views read as their owner)
                # and EXECUTE on the function behind qgis_geofences (it too runs as its owner).
                conn.execute(text(f'GRANT SELECT ON {", ".join(LAYERS)} TO "{role}"'))
                conn.execute(text(f'GRANT EXECUTE ON FUNCTION qgis_geofences_rows() TO "{role}"'))
                conn.execute(text(f'SET ROLE "{role}"'))
                for layer in LAYERS:
                    assert conn.execute(text(f"SELECT count(*) FROM {layer}")).scalar()
                with pytest.raises(ProgrammingError, match="permission denied"):
                    conn.execute(text("SELECT count(*) FROM api_keys"))
            finally:
                conn.rollback()
                conn.execute(text(f'DROP OWNED BY "{role}"'))
                conn.execute(text(f'DROP ROLE "{role}"'))
                conn.commit()
    finally:
        store.dispose()


def test_shift_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="shift_day_start must be earlier"):
        Settings(_env_file=None, shift_day_start="19:00", shift_night_start="07:00")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="shift_day_start"):
        Settings(_env_file=None, shift_day_start="7:00")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="qgis_refresh_s"):
        Settings(_env_file=None, qgis_refresh_s=1)  # type: ignore[call-arg]
    night = Settings(_env_file=None, timezone="Asia/Makassar")  # type: ignore[call-arg]
    # 02:00 WITA belongs to the night shift that began at 19:00 the day before.
    shift = current_shift(datetime(2024, 11, 26, 18, 0, tzinfo=UTC), night)
    assert shift.name == "night"
    assert shift.window.start == datetime(2024, 11, 26, 11, 0, tzinfo=UTC)
    assert shift.window.end == datetime(2024, 11, 26, 23, 0, tzinfo=UTC)
