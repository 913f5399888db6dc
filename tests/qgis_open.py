"""Open a QGIS project with PyQGIS, report each layer and render the map to a PNG.

Run by tests/test_qgis_project.py with the Python that has PyQGIS (Debian's python3-qgis):
`python3 tests/qgis_open.py PROJECT.qgs OUT.png`, with PGSERVICEFILE naming the database.
Prints one JSON object: per layer table, whether it is valid, its feature count and fields.
"""

from __future__ import annotations

import json
import os
import re
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (
    QgsApplication,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsProject,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def main(project_path: str, png: str) -> None:
    """Open, report, render."""
    app = QgsApplication([], False)
    app.initQgis()
    project = QgsProject.instance()
    if not project.read(project_path):
        sys.exit(f"cannot read {project_path}: {project.error()}")
    layers = {}
    order = [node.layer() for node in project.layerTreeRoot().findLayers()]
    extent = QgsRectangle()
    extent.setMinimal()
    for layer in order:
        match = re.search(r'table="[^"]*"\."([^"]+)"', layer.source())
        table = match.group(1) if match else layer.source()
        count = layer.featureCount() if layer.isValid() else -1
        fields = layer.fields()  # kept: iterating a temporary QgsFields crashes
        layers[table] = {
            "name": layer.name(),
            "valid": layer.isValid(),
            "count": count,
            "fields": list(fields.names()),
            "error": "" if layer.isValid() else layer.source(),
        }
        if layer.isValid() and count > 0:
            extent.combineExtentWith(layer.extent())
    settings = QgsMapSettings()
    settings.setLayers(order)
    settings.setDestinationCrs(order[0].crs() if order else project.crs())
    settings.setBackgroundColor(QColor("#ffffff"))
    settings.setOutputSize(QSize(900, 600))
    if not extent.isEmpty():
        extent.scale(1.2)
        settings.setExtent(extent)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    job.renderedImage().save(png, "png")
    print(json.dumps({"layers": layers, "order": [lyr.name() for lyr in order]}))
    app.exitQgis()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
