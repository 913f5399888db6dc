"""Revisit compliance of a patrol route through the API, and its gap arithmetic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from service.geo.compliance import segment_gaps
from service.routes import coverage as coverage_routes
from tests.conftest import ADMIN_KEY
from tests.helpers import T0, ping, route_feature, window

PATH = "/api/v1/coverage/patrol-routes/{}/compliance"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An HTTP client for the app with the analytics routes, sending the admin key."""
    app = create_app(settings)
    paths = {getattr(r, "path", None) for r in app.routes}
    if PATH.format("{route_id}") not in paths:
        app.include_router(coverage_routes.router)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


@pytest.fixture
def route_id(client: TestClient) -> int:
    for n in (1, 2):
        client.post("/api/v1/units", json={"name": f"U{n}", "device_id": f"u{n}"})
    # Four passes of u1 from 60 m to 260 m, 1000 s apart; one lone fix of u2 at 510 m.
    pings = [
        p for k in range(4) for p in (ping("u1", 60, 1000 * k), ping("u1", 260, 1000 * k + 30))
    ]
    pings.append(ping("u2", 510, 100))
    assert client.post("/api/v1/pings", json=pings).status_code == 200
    return int(client.post("/api/v1/patrol-routes", json=route_feature()).json()["id"])


def _since_t0(value: str) -> float:
    return (datetime.fromisoformat(value) - T0).total_seconds()


def _unit_id(client: TestClient, device_id: str) -> int:
    units = client.get("/api/v1/units").json()
    items = units["items"] if isinstance(units, dict) else units
    return int(next(u["id"] for u in items if u["device_id"] == device_id))


def test_segment_gaps_merge_overlapping_visits() -> None:
    visits = np.array([[30.0, 50.0], [10.0, 40.0], [45.0, 60.0], [80.0, 80.0]])
    g0, g1 = segment_gaps(visits, 0.0, 100.0)
    assert g0.tolist() == [0.0, 60.0, 80.0]
    assert g1.tolist() == [10.0, 80.0, 100.0]
    g0, g1 = segment_gaps(np.zeros((0, 2)), 0.0, 100.0)
    assert (g0.tolist(), g1.tolist()) == ([0.0], [100.0])


def test_compliance_gaps_between_visits(client: TestClient, route_id: int) -> None:
    r = client.get(PATH.format(route_id), params={**window(), "revisit_s": 1200})
    assert r.status_code == 200, r.text
    body = r.json()
    length = body["length_m"]
    segs = body["segments"]
    assert len(segs) == 21
    assert [s["index"] for s in segs if s["complies"]] == [1, 2, 3, 4, 5]
    assert body["compliance_ratio"] == pytest.approx(250 / length)
    assert body["coverage_ratio"] == pytest.approx(300 / length)
    # Segment 3 (150-200 m) is crossed from t+13.5 s to t+21 s of each pass.
    s3 = segs[3]
    assert s3["visits"] == 4
    # (UTM chainage differs from the test's geodesic chainage by a few centimetres.)
    assert _since_t0(s3["first_visit"]) == pytest.approx(13.5, abs=0.05)
    assert _since_t0(s3["last_visit"]) == pytest.approx(3021, abs=0.05)
    assert s3["longest_gap_s"] == pytest.approx(992.5, abs=0.1)
    assert not s3["overdue_now"]
    # Segment 1 holds the first fix of each pass: visits [1000k, 1000k + 6].
    assert segs[1]["longest_gap_s"] == pytest.approx(994, abs=0.1)
    # u2's lone fix at t=100 s: 3500 s unvisited until the window end.
    s10 = segs[10]
    assert (s10["visits"], s10["complies"], s10["overdue_now"]) == (1, False, True)
    assert s10["longest_gap_s"] == pytest.approx(3500)
    never = segs[0]
    assert (never["visits"], never["longest_gap_s"], never["overdue_now"]) == (0, 3600, True)
    overdue = [o["index"] for o in body["overdue_now"]]
    assert overdue == [0, *range(6, 21)]
    by_index = {o["index"]: o for o in body["overdue_now"]}
    assert _since_t0(by_index[10]["overdue_since"]) == pytest.approx(1300, abs=0.01)
    assert by_index[0]["overdue_since"] is None
    gaps = body["longest_gaps"]
    assert len(gaps) == 10
    assert [g["index"] for g in gaps] == [0, 6, 7, 8, 9, 11, 12, 13, 14, 15]
    assert all(g["gap_s"] == 3600 for g in gaps)
    assert gaps[0]["from"] == "2024-11-26T23:00:00Z" and gaps[0]["to"] == "2024-11-27T00:00:00Z"


def test_stricter_revisit_and_per_unit(client: TestClient, route_id: int) -> None:
    body = client.get(PATH.format(route_id), params={**window(), "revisit_s": 500}).json()
    assert not any(s["complies"] for s in body["segments"])
    assert body["compliance_ratio"] == 0
    assert body["segments"][1]["overdue_now"]  # last exit 3006 s: 594 s before the end
    u2 = _unit_id(client, "u2")
    only = client.get(
        PATH.format(route_id), params={**window(), "revisit_s": 1200, "unit": u2}
    ).json()
    assert only["unit_id"] == u2
    assert [s["index"] for s in only["segments"] if s["visits"]] == [10]
    assert only["coverage_ratio"] == pytest.approx(50 / only["length_m"])
    assert only["compliance_ratio"] == 0
    # A window shorter than revisit_s: nothing can have been left unvisited too long.
    short = client.get(
        PATH.format(route_id), params={**window(0.25), "revisit_s": 1200, "unit": u2}
    ).json()
    assert short["compliance_ratio"] == pytest.approx(1.0)


def test_route_default_revisit_and_errors(client: TestClient, route_id: int) -> None:
    r = client.get(PATH.format(route_id), params=window())
    assert r.status_code == 422 and "revisit_s" in r.json()["detail"]
    other = client.post("/api/v1/patrol-routes", json=route_feature("B", revisit_s=1200)).json()
    body = client.get(PATH.format(other["id"]), params=window()).json()
    assert body["revisit_s"] == 1200
    assert [s["index"] for s in body["segments"] if s["complies"]] == [1, 2, 3, 4, 5]
    assert client.get(PATH.format(999), params={**window(), "revisit_s": 60}).status_code == 404
    r = client.get(PATH.format(route_id), params={**window(), "revisit_s": 60, "unit": 999})
    assert r.status_code == 404
    r = client.get(PATH.format(route_id), params={**window(), "revisit_s": 0})
    assert r.status_code == 422
