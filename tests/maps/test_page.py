"""The JSON data block of a map page: written out verbatim, safe inside <script>."""

from __future__ import annotations

import json
import math

import folium

from service.maps.page import add_feature_info, json_for_script, page_data
from tests.helpers import page_data as read_page_data
from tests.helpers import without_data


def test_json_for_script_cannot_close_the_script() -> None:
    text = json_for_script({"name": "</script><b>&", "line": "a\u2028b\u2029c"})
    assert "</script>" not in text
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"name": "</script><b>&", "line": "a\u2028b\u2029c"}


def test_json_for_script_writes_non_finite_numbers_as_null() -> None:
    text = json_for_script({"speed": math.nan, "list": [1.5, math.inf, -math.inf]})
    assert json.loads(text) == {"speed": None, "list": [1.5, None, None]}


def test_the_data_block_is_never_a_template() -> None:
    fmap = folium.Map(tiles=None)
    page_data(fmap)["config"] = {"name": "S {{7*7}} E {% if %} {#"}
    features = add_feature_info(
        fmap,
        [
            {"type": "Feature", "id": "a", "geometry": None, "properties": {"tip": "{{ 1 }}"}},
            {"type": "Feature", "id": "b", "geometry": None, "properties": {}},
        ],
    )
    assert [f["properties"] for f in features] == [{}, {}]
    page = fmap.get_root().render()
    data = read_page_data(page)
    assert data["config"]["name"] == "S {{7*7}} E {% if %} {#"
    assert data["features"] == {"a": {"tip": "{{ 1 }}"}}
    assert "{{" not in without_data(page) and "S 49 E" not in page
