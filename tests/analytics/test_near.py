"""Investigation query: units within a radius of a place in a window, on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.routes import positions as position_routes
from tests.conftest import ADMIN_KEY
from tests.helpers import along, ping, window

PATH = "/api/v1/positions/near"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An HTTP client for the app with the analytics routes, sending the admin key."""
    app = create_app(settings)
    if PATH not in {getattr(r, "path", None) for r in app.routes}:
        app.include_router(position_routes.router)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


@pytest.fixture
def centre(client: TestClient) -> dict[str, float]:
    for n in (1, 2, 3):
        client.post("/api/v1/units", json={"name": f"U{n}", "device_id": f"u{n}"})
    pings = [
        # u1: 40 m north and 70 m south of the centre (both inside 100 m), 120 m north (out).
        ping("u1", 500, 0, offset_m=120),
        ping("u1", 500, 10, offset_m=40),
        ping("u1", 500, 20, offset_m=-70),
        # u2: 80 m and 110 m along the same geodesic; a fix at the centre after the window.
        ping("u2", 420, 5),
        ping("u2", 610, 15),
        ping("u2", 500, 7200),
        # u3: at the centre but inaccurate (excluded), and far away.
        ping("u3", 500, 30, accuracy_m=500),
        ping("u3", 900, 40),
    ]
    assert client.post("/api/v1/pings", json=pings).status_code == 200
    lon, lat = along(500)
    return {"lon": lon, "lat": lat}


def test_units_near_closest_approach(client: TestClient, centre: dict[str, float]) -> None:
    r = client.get(PATH, params={**centre, "radius_m": 100, **window()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["radius_m"] == 100 and body["from"] == "2024-11-26T23:00:00Z"
    units = body["units"]
    assert [u["name"] for u in units] == ["U1", "U2"]
    u1, u2 = units
    assert u1["fixes_inside"] == 2 and u2["fixes_inside"] == 1
    # Geodesic offsets laid out with pyproj: exactly 40 m and 80 m to the millimetre.
    assert u1["closest"]["distance_m"] == pytest.approx(40.0, abs=1e-3)
    assert u1["closest"]["ts"] == "2024-11-26T23:00:10Z"
    assert (u1["closest"]["lon"], u1["closest"]["lat"]) == pytest.approx(along(500, 40))
    assert u2["closest"]["distance_m"] == pytest.approx(80.0, abs=1e-3)
    assert u2["closest"]["ts"] == "2024-11-26T23:00:05Z"


def test_units_near_radius_and_window(client: TestClient, centre: dict[str, float]) -> None:
    wide = client.get(PATH, params={**centre, "radius_m": 115, **window()}).json()
    assert [(u["name"], u["fixes_inside"]) for u in wide["units"]] == [("U1", 2), ("U2", 2)]
    narrow = client.get(PATH, params={**centre, "radius_m": 39.99, **window()}).json()
    assert narrow["units"] == []
    later = client.get(PATH, params={**centre, "radius_m": 10, **window(3)}).json()
    assert [u["name"] for u in later["units"]] == ["U2"]
    assert later["units"][0]["closest"]["distance_m"] == pytest.approx(0.0, abs=1e-3)
    assert client.get(PATH, params={**centre, "radius_m": 0}).status_code == 422
    assert client.get(PATH, params={"lat": 91, "lon": 0, "radius_m": 5}).status_code == 422
    assert client.get(PATH, params={"lat": 0, "lon": 0}).status_code == 422
