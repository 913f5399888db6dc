"""Time windows and shared parameters of the analytics endpoints: bad values get a clear 422."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.helpers import LAT, LON0, circle_feature, route_feature, window


@pytest.fixture
def ids(client: TestClient) -> dict[str, int]:
    route = client.post("/api/v1/patrol-routes", json=route_feature()).json()["id"]
    site = client.post(
        "/api/v1/geofences", json=circle_feature(LON0, LAT, kind="critical_site")
    ).json()["id"]
    return {"route": route, "site": site}


def _urls(ids: dict[str, int]) -> list[str]:
    return [
        f"/api/v1/coverage/patrol-routes/{ids['route']}",
        f"/api/v1/presence/geofences/{ids['site']}",
        "/api/v1/reports/units",
        "/maps/coverage",
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2024-11-01T00:00:00Z", "to": "2024-12-15T00:00:00Z"}, "at most 31 days"),
        ({"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}, "1970-2199"),
        ({"from": "2024-11-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}, "1970-2199"),
        ({"from": "2299-01-01T00:00:00Z"}, "1970-2199"),
        ({"to": "-99999999999"}, "neither Unix seconds nor Unix milliseconds"),
        ({"to": "7258118400000000"}, "neither Unix seconds nor Unix milliseconds"),
        ({"from": "2024-11-01T00:00:00Z", "to": "9999-12-31T23:59:59-01:00"}, "out of range"),
        ({"from": "0001-01-01T00:00:00+01:00"}, "out of range"),
        ({"from": "1960-01-01T00:00:00Z", "to": "1960-01-02T00:00:00Z"}, "1970-2199"),
    ],
)
def test_out_of_range_windows_are_refused(
    client: TestClient, ids: dict[str, int], params: dict[str, str], message: str
) -> None:
    for url in _urls(ids):
        r = client.get(url, params=params)
        assert r.status_code == 422, (url, r.text)
        assert message in r.json()["detail"], (url, r.text)


def test_window_in_the_future_is_refused_and_to_is_clipped_at_now(
    client: TestClient, ids: dict[str, int]
) -> None:
    future = datetime.now(UTC) + timedelta(days=2)
    r = client.get(_urls(ids)[0], params={"from": future.isoformat()})
    assert r.status_code == 422 and "in the future" in r.json()["detail"]
    start = datetime.now(UTC) - timedelta(hours=2)
    r = client.get(_urls(ids)[1], params={"from": start.isoformat(), "to": future.isoformat()})
    assert r.status_code == 200, r.text
    # The hours still to come are not reported as uncovered: the window ends now.
    body = r.json()
    to = datetime.fromisoformat(body["window"]["to"].replace("Z", "+00:00"))
    assert start < to <= datetime.now(UTC)
    assert body["covered_s"] == 0 and body["coverage_ratio"] == 0
    [gap] = body["uncovered_intervals"]
    assert gap["duration_s"] == pytest.approx((to - start).total_seconds(), abs=1)


def test_window_length_counts_after_clipping_at_now(
    client: TestClient, ids: dict[str, int]
) -> None:
    now = datetime.now(UTC)
    params = {
        "from": (now - timedelta(days=30)).isoformat(),
        "to": (now + timedelta(days=2)).isoformat(),
    }
    r = client.get(_urls(ids)[0], params=params)
    assert r.status_code == 200, r.text  # 30 days up to now: within the 31-day limit


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-5", "100000"])
def test_max_gap_s_must_be_a_sensible_number(
    client: TestClient, ids: dict[str, int], value: str
) -> None:
    for url in _urls(ids)[:2]:
        r = client.get(url, params={**window(), "max_gap_s": value})
        assert r.status_code == 422, (url, value, r.text)


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "2024-13-01"])
def test_shift_report_date_must_be_a_real_operation_day(client: TestClient, day: str) -> None:
    r = client.get("/api/v1/reports/shifts", params={"date": day})
    assert r.status_code == 422, r.text
    assert "date=" in r.json()["detail"]
