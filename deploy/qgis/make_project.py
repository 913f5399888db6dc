"""Write deploy/qgis/patroli.qgs with PyQGIS: the four QGIS layers, styled like the web maps.

Run with the Python that has PyQGIS (Debian: `apt-get install python3-qgis qgis-providers`),
against a migrated Patroli PostGIS database reachable as the `patroli` service of a
pg_service.conf (QGIS reads each layer's fields when the project is written):

    PGSERVICEFILE=/path/pg_service.conf /usr/bin/python3 deploy/qgis/make_project.py

The colours are read from service/maps/kit.py (parsed, not imported: the PyQGIS Python need not
have Patroli's dependencies).
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import contextlib

from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDataSourceUri,
    QgsFillSymbol,
    QgsLineSymbol,
    QgsMarkerSymbol,
    QgsPalLayerSettings,
    QgsProject,
    QgsProperty,
    QgsRectangle,
    QgsReferencedRectangle,
    QgsRendererCategory,
    QgsSymbolLayer,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QColor

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "patroli.qgs"
SERVICE = "patroli"


def kit_constants() -> dict[str, object]:
    """Module-level literal constants of service/maps/kit.py."""
    tree = ast.parse((ROOT / "service" / "maps" / "kit.py").read_text())
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                value = node.value
                if isinstance(value, ast.Name) and value.id in found:
                    found[target.id] = found[value.id]
                    continue
                if isinstance(value, ast.Dict):
                    found[target.id] = {
                        ast.literal_eval(k): (
                            found[v.id] if isinstance(v, ast.Name) else ast.literal_eval(v)
                        )
                        for k, v in zip(value.keys, value.values, strict=True)
                        if k is not None
                    }
                    continue
                with contextlib.suppress(ValueError):
                    found[target.id] = ast.literal_eval(value)
    return found


def layer(table: str, name: str, wkb: QgsWkbTypes.Type) -> QgsVectorLayer:
    """A PostGIS layer of one of the views or tables, keyed on `id`."""
    uri = QgsDataSourceUri(f"service='{SERVICE}'")
    uri.setDataSource("public", table, "geom", "", "id")
    uri.setSrid("4326")
    uri.setWkbType(wkb)
    uri.setParam("checkPrimaryKeyUnicity", "0")
    found = QgsVectorLayer(uri.uri(False), name, "postgres")
    if not found.isValid():
        sys.exit(f"{table}: not a valid layer on service {SERVICE!r}; is the database migrated?")
    return found


def main() -> None:
    """Build and write the project."""
    c = kit_constants()
    app = QgsApplication([], False)
    app.initQgis()
    project = QgsProject.instance()
    project.setTitle("Patroli")
    project.setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))

    geofences = layer("qgis_geofences", "Geofences (today)", QgsWkbTypes.MultiPolygon)
    categories = []
    for level, label in (
        ("good", "Presence ≥ 90 %"),
        ("fair", "Presence ≥ 50 %"),
        ("poor", "Presence < 50 %"),
    ):
        colour = QColor(c["PRESENCE_COLORS"][level])
        fill = QColor(colour)
        fill.setAlphaF(0.2)
        symbol = QgsFillSymbol.createSimple(
            {
                "color": fill.name(QColor.HexArgb),
                "outline_color": colour.name(),
                "outline_width": "0.6",
            }
        )
        # As on the web maps: critical sites solid and bolder, other geofences dashed.
        outline = symbol.symbolLayer(0)
        outline.setDataDefinedProperty(
            QgsSymbolLayer.PropertyStrokeStyle,
            QgsProperty.fromExpression(
                "CASE WHEN \"kind\" = 'critical_site' THEN 'solid' ELSE 'dash' END"
            ),
        )
        outline.setDataDefinedProperty(
            QgsSymbolLayer.PropertyStrokeWidth,
            QgsProperty.fromExpression(
                "CASE WHEN \"kind\" = 'critical_site' THEN 0.8 ELSE 0.5 END"
            ),
        )
        categories.append(QgsRendererCategory(level, symbol, label))
    geofences.setRenderer(QgsCategorizedSymbolRenderer("presence", categories))

    tracks = layer("qgis_tracks_today", "Tracks today", QgsWkbTypes.LineString)
    track = QgsLineSymbol.createSimple(
        {"line_width": "0.8", "capstyle": "round", "joinstyle": "round"}
    )
    track.setOpacity(0.75)
    track.symbolLayer(0).setDataDefinedProperty(
        QgsSymbolLayer.PropertyStrokeColor, QgsProperty.fromField("color")
    )
    tracks.renderer().setSymbol(track)

    segments = layer(
        "qgis_coverage_segments", "Coverage segments (current shift)", QgsWkbTypes.LineString
    )
    categories = []
    for status, colour, label in (
        ("fresh", c["VISITED_COLOR"], "Visited < 30 min ago"),
        ("stale", c["STALE_COLOR"], "Visited < revisit interval ago"),
        ("overdue", c["OVERDUE_COLOR"], "Overdue or not visited"),
    ):
        symbol = QgsLineSymbol.createSimple({"line_color": colour, "line_width": "1.2"})
        categories.append(QgsRendererCategory(status, symbol, label))
    segments.setRenderer(QgsCategorizedSymbolRenderer("status", categories))

    positions = layer("qgis_latest_positions", "Latest positions", QgsWkbTypes.Point)
    marker = QgsMarkerSymbol.createSimple(
        {"name": "circle", "size": "3.5", "outline_color": "#ffffff", "outline_width": "0.5"}
    )
    marker.symbolLayer(0).setDataDefinedProperty(
        QgsSymbolLayer.PropertyFillColor, QgsProperty.fromField("color")
    )
    positions.renderer().setSymbol(marker)
    labels = QgsPalLayerSettings()
    labels.fieldName = "name"
    text = QgsTextFormat()
    text.setSize(9)
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setColor(QColor("#ffffff"))
    text.setBuffer(buffer)
    labels.setFormat(text)
    positions.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    positions.setLabelsEnabled(True)

    # Top to bottom as on the coverage map: units, segments, tracks under them, sites below.
    for item, refresh_s in ((geofences, 60), (tracks, 30), (segments, 60), (positions, 10)):
        item.setAutoRefreshInterval(refresh_s * 1000)
        item.setAutoRefreshEnabled(True)
        project.addMapLayer(item)
    lat, lon = c["DEFAULT_CENTER"]
    project.viewSettings().setDefaultViewExtent(view_extent(lon, lat, project.crs()))
    if not project.write(str(OUT)):
        sys.exit(f"could not write {OUT}")
    app.exitQgis()
    print(f"wrote {OUT}")


def view_extent(
    lon: float, lat: float, crs: QgsCoordinateReferenceSystem
) -> QgsReferencedRectangle:
    """About 4 km around a WGS84 point, in the project CRS."""
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    box = QgsRectangle(lon - 0.02, lat - 0.02, lon + 0.02, lat + 0.02)
    transform = QgsCoordinateTransform(wgs84, crs, QgsProject.instance())
    return QgsReferencedRectangle(transform.transformBoundingBox(box), crs)


if __name__ == "__main__":
    main()
