"""POST /api/v1/pings?brief=true: the same counts, only the pings not accepted listed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers import ping, route_feature


def _unit(client: TestClient) -> dict[str, str]:
    client.post("/api/v1/patrol-routes", json=route_feature()).raise_for_status()
    unit = client.post("/api/v1/units", json={"name": "U1", "device_id": "u1"}).json()
    return {"Authorization": f"Bearer {unit['device_secret']}"}


def test_brief_batch_lists_only_what_was_not_accepted(client: TestClient) -> None:
    tracker = _unit(client)
    batch = [ping("u1", 100, 0), ping("u1", 110, 5), ping("u1", 100, 0), {"device_id": "u1"}]
    for _ in range(2):  # the second time the tracker key is known to the worker's cache
        client.post("/api/v1/pings", json=[ping("u1", 500, 900)], headers=tracker)
    r = client.post("/api/v1/pings?brief=true", json=batch, headers=tracker)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 1)
    assert [(x["index"], x["status"]) for x in body["results"]] == [
        (2, "duplicate"),
        (3, "rejected"),
    ]
    assert "lat" in body["results"][1]["reason"]
    # Without the option the answer is the full one, every ping with its evaluation.
    again = client.post("/api/v1/pings", json=[ping("u1", 120, 10)], headers=tracker).json()
    assert again["results"][0]["status"] == "accepted"
    assert again["results"][0]["evaluation"]["patrol_routes"][0]["on_route"] is True


def test_brief_single_ping_and_refusals(client: TestClient) -> None:
    tracker = _unit(client)
    r = client.post("/api/v1/pings?brief=true", json=ping("u1", 100, 0), headers=tracker)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": 0, "results": []}
    # Refusals are answered as without the option.
    bad = client.post(
        "/api/v1/pings?brief=true", json={"device_id": "u1", "lat": 1}, headers=tracker
    )
    assert bad.status_code == 422
    assert "lon" in bad.json()["detail"]
    other = client.post("/api/v1/pings?brief=true", json=ping("zz", 100, 0), headers=tracker)
    assert other.status_code == 403
    assert client.post("/api/v1/pings?brief=maybe", json=ping("u1", 1, 1)).status_code == 422


def _timed(client: TestClient, method: str, route: str) -> float:
    """How many requests /metrics has timed under a route template (status 200)."""
    name = f'patroli_request_seconds_count{{method="{method}",route="{route}",status="200"}} '
    lines = [x for x in client.get("/metrics").text.splitlines() if x.startswith(name)]
    return float(lines[0].removeprefix(name)) if lines else 0.0


def test_fast_doors_are_timed_under_their_route(client: TestClient) -> None:
    tracker = _unit(client)
    secret = tracker["Authorization"].removeprefix("Bearer ")
    routes = [("POST", "/api/v1/pings"), ("GET", "/api/v1/osmand/{secret}")]
    before = [_timed(client, *r) for r in routes]
    for n in range(2):  # the first request resolves the key in the route, the second does not
        r = client.post("/api/v1/pings?brief=true", json=ping("u1", 100, n), headers=tracker)
        assert r.status_code == 200, r.text
        q = {"id": "u1", "lat": -1.2683, "lon": 116.84, "timestamp": 1732662000 + 60 + n}
        assert client.get(f"/api/v1/osmand/{secret}", params=q).status_code == 200
    assert [_timed(client, *r) - b for r, b in zip(routes, before, strict=True)] == [2, 2]
