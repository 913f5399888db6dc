"""/maps/coverage is drawn once per window and kept until what it shows changes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers import ping, route_feature, window


def test_coverage_page_is_kept_until_its_data_changes(client: TestClient) -> None:
    client.post("/api/v1/patrol-routes", json=route_feature()).raise_for_status()
    unit = client.post("/api/v1/units", json={"name": "Polwan 01", "device_id": "p01"}).json()
    client.post("/api/v1/pings", json=[ping("p01", 100, 0)]).raise_for_status()

    def page() -> str:
        r = client.get("/maps/coverage", params=window())
        assert r.status_code == 200, r.text
        return r.text

    first = page()
    # Folium gives every drawing fresh element ids: an identical page was not drawn again.
    assert page() == first
    # A new fix, a renamed unit, a new geofence each draw the page again.
    client.post("/api/v1/pings", json=[ping("p01", 300, 30)]).raise_for_status()
    second = page()
    assert second != first
    assert page() == second
    client.patch(f"/api/v1/units/{unit['id']}", json={"name": "Polwan 07"}).raise_for_status()
    third = page()
    assert "Polwan 07" in third and "Polwan 07" not in second
    fence = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [116.84, -1.2683]},
        "properties": {"name": "Pos Jaga", "radius_m": 50},
    }
    client.post("/api/v1/geofences", json=fence).raise_for_status()
    assert "Pos Jaga" in page()
    # Another window is its own page.
    assert client.get("/maps/coverage", params=window(2)).text != third
