"""The data of a map page, kept out of Folium's templates.

Folium (through branca) compiles the rendered output of every map element again as a Jinja2
template, so text placed in any element would be run as template code. User-supplied text
(names and kinds of units, routes and geofences, event details) therefore never goes into a
Folium element: it goes into one JSON data block per page, `<script type="application/json"
id="patroli-data">`, that is written out verbatim, and the page scripts read it from there.
"""

from __future__ import annotations

import json
import math
from typing import Any

import folium
from branca.element import Element

DATA_ID = "patroli-data"

# Characters that could end the <script> element or start markup, and the line separators
# that old JavaScript parsers take for line ends: written as JSON escapes instead.
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _finite(value: Any) -> Any:
    """`value` with NaN and infinite floats replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_for_script(data: Any) -> str:
    """`data` as compact JSON that is safe inside an HTML <script> element."""
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN or infinity somewhere: written as null
        text = json.dumps(_finite(data), separators=(",", ":"), ensure_ascii=False)
    return text.translate(_SCRIPT_ESCAPES)


class DataBlock(Element):
    """A `<script type="application/json">` element written out as is, never as a template."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self._name = "PatroliData"
        self.element_id = element_id
        self.data: dict[str, Any] = {}

    def render(self, **kwargs: Any) -> str:
        """The element's HTML."""
        return (
            f'<script type="application/json" id="{self.element_id}">'
            f"{json_for_script(self.data)}</script>"
        )


class Verbatim(Element):
    """An element whose text is written out as is, never compiled as a template."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def render(self, **kwargs: Any) -> str:
        """The element's text."""
        return self.text


def page_data(fmap: folium.Map) -> dict[str, Any]:
    """The JSON data of `fmap`'s page (its data block is added on first use)."""
    header = fmap.get_root().header  # type: ignore[attr-defined]
    block = header._children.get(DATA_ID)
    if not isinstance(block, DataBlock):
        block = DataBlock(DATA_ID)
        header.add_child(block, name=DATA_ID)
    return block.data


def add_feature_info(fmap: folium.Map, features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Move the properties of GeoJSON `features` into the page data, keyed by feature id.

    Returns the features with empty properties, for Folium: their tooltips, popups and
    data-* attributes are bound by the page script (`PatroliCommon.bindFeature`).
    """
    info = page_data(fmap).setdefault("features", {})
    bare = []
    for feature in features:
        properties = feature.get("properties") or {}
        if properties:
            info[str(feature["id"])] = properties
        bare.append({**feature, "properties": {}})
    return bare
