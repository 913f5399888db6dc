"""The ingest front door answers as the application does: same status, body and headers."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from service.routes.security import DEFAULT_CSP
from tests.helpers import T0, ping

# Headers that may differ between two answers to the same request.
_VARYING = {"date", "content-length"}


def _headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in _VARYING}


def _timed(method: str, route: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "patroli_request_seconds_count", {"method": method, "route": route, "status": status}
    )
    return value or 0.0


def test_front_door_answers_like_the_app(client: TestClient) -> None:
    unit = client.post("/api/v1/units", json={"name": "P1", "device_id": "p1"}).json()
    secret = unit["device_secret"]
    tracker = {"Authorization": f"Bearer {secret}"}
    # The same ping twice (accepted, then a duplicate), by the front door; then refusals
    # by the front door and by the app (a content type only the app takes).
    answers = []
    for _ in range(2):
        before = _timed("POST", "/api/v1/pings", "200")
        r = client.post("/api/v1/pings", json=ping("p1", 10, 1), headers=tracker)
        assert r.status_code == 200, r.text
        assert _timed("POST", "/api/v1/pings", "200") == before + 1
        answers.append(r)
    first, second = answers
    assert first.json()["accepted"] == 1 and second.json()["duplicates"] == 1
    assert _headers(first) == _headers(second)
    assert second.headers["content-security-policy"] == DEFAULT_CSP
    assert second.headers["cache-control"] == "no-store"

    # Refusals too: another unit's device (403) and an invalid fix (422), by both paths.
    client.post("/api/v1/units", json={"name": "P2", "device_id": "p2"}).raise_for_status()
    for body, code in ((ping("p2", 10, 2), 403), ({**ping("p1", 10, 3), "lat": 91}, 422)):
        via_front = client.post("/api/v1/pings", json=body, headers=tracker)
        via_app = client.post(
            "/api/v1/pings", json=body, headers={**tracker, "Content-Type": "text/json"}
        )
        assert via_front.status_code == code, via_front.text
        assert via_app.status_code in (code, 415, 422)
        assert via_front.headers["x-frame-options"] == "DENY"
        assert via_front.headers["content-type"] == "application/json"

    # OsmAnd: the same empty 200 each time.
    del client.headers["Authorization"]  # the secret in the path is the only credential
    osmand = []
    for n in (4, 5):
        before = _timed("GET", "/api/v1/osmand/{secret}", "200")
        r = client.get(
            f"/api/v1/osmand/{secret}",
            params={"id": "p1", "lat": -1.27, "lon": 116.83, "timestamp": int(T0.timestamp()) + n},
        )
        assert r.status_code == 200, r.text
        assert _timed("GET", "/api/v1/osmand/{secret}", "200") == before + 1
        osmand.append(r)
    assert _headers(osmand[0]) == _headers(osmand[1])
    assert osmand[1].content == b""
