"""deploy/qgis/patroli.qgs: its layers are exactly the QGIS views, styled like the web maps,
and (where PyQGIS is installed) QGIS opens every layer from PostGIS."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from service.analytics.qgis import LAYERS, refresh_qgis
from service.areas.index import GeoCache
from service.config import Settings
from service.maps.kit import OVERDUE_COLOR, PRESENCE_COLORS, STALE_COLOR, VISITED_COLOR
from service.store.db import Store
from tests.analytics.test_qgis import backend, qclient, qsettings, scenario  # noqa: F401
from tests.deployfiles import ROOT

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
    assert shutil.which("true")  # the subprocess ran with a minimal PATH
