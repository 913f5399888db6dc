"""Every ingest door (JSON, GPX import, OsmAnd) counts its pings in patroli_pings_total."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import LAT, LON0, T0, ping

GPX = b"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
  <trk><trkseg>
    <trkpt lat="-1.2683" lon="116.8340"><time>2024-11-27T07:00:00+08:00</time></trkpt>
    <trkpt lat="-1.2684" lon="116.8345"><time>2024-11-27T07:00:10+08:00</time></trkpt>
    <trkpt lat="-1.2685" lon="116.8350"><time>2024-11-27T07:00:20+08:00</time></trkpt>
  </trkseg></trk>
</gpx>"""


def pings_total(client: TestClient) -> dict[tuple[str, str], float]:
    """The value of patroli_pings_total by status and door, as /metrics shows it now."""
    families = text_string_to_metric_families(client.get("/metrics").text)
    return {
        (sample.labels["status"], sample.labels["door"]): sample.value
        for family in families
        if family.name == "patroli_pings"
        for sample in family.samples
        if sample.name == "patroli_pings_total"
    }


def growth(
    client: TestClient, before: dict[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    """How much each status and door of patroli_pings_total grew since `before`."""
    after = pings_total(client)
    return {s: n - before.get(s, 0) for s, n in after.items() if n != before.get(s, 0)}


@pytest.fixture
def unit(client: TestClient) -> dict[str, Any]:
    r = client.post("/api/v1/units", json={"name": "Samapta 1", "device_id": "d1"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_gpx_import_counts_each_point(client: TestClient, unit: dict[str, Any]) -> None:
    before = pings_total(client)
    r = client.post(f"/api/v1/units/{unit['id']}/gpx", files={"file": ("pagi.gpx", GPX)})
    assert r.status_code == 200, r.text
    assert growth(client, before) == {("accepted", "gpx"): 3}
    before = pings_total(client)
    again = client.post(f"/api/v1/units/{unit['id']}/gpx", files={"file": ("pagi.gpx", GPX)})
    assert again.json()["duplicates"] == 3
    assert growth(client, before) == {("duplicate", "gpx"): 3}


def test_a_json_batch_counts_each_ping(client: TestClient, unit: dict[str, Any]) -> None:
    before = pings_total(client)
    batch = [ping("d1", 100, 0), ping("d1", 200, 30), {"device_id": "d1", "lat": 91}]
    r = client.post("/api/v1/pings", json=batch)
    assert r.status_code == 200, r.text
    assert growth(client, before) == {("accepted", "json"): 2, ("rejected", "json"): 1}


def test_an_osmand_ping_is_counted_stored_or_refused(
    client: TestClient, unit: dict[str, Any]
) -> None:
    fix = {"lat": LAT, "lon": LON0, "timestamp": int(T0.timestamp())}
    before = pings_total(client)
    assert client.get("/api/v1/osmand", params={"id": "d1", **fix}).status_code == 200
    assert growth(client, before) == {("accepted", "osmand"): 1}
    before = pings_total(client)
    assert client.get("/api/v1/osmand", params={"id": "nobody", **fix}).status_code == 404
    assert growth(client, before) == {("rejected", "osmand"): 1}
