"""The `patroli` command as a user runs it: migrate, keys create, serve, demo."""

from __future__ import annotations

from pathlib import Path

import httpx

from service.store.migrate import head_revision
from tests.helpers import (
    PATROLI,
    along,
    circle_feature,
    cli_env,
    ping,
    route_feature,
    run_patroli,
    run_server,
    window,
)


def test_migrate_keys_and_serve(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url)
    migrated = run_patroli("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert f"revision {head_revision()}" in migrated.stdout
    created = run_patroli("keys", "create", "--role", "admin", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ptl_") and " " not in key

    with (
        run_server([*PATROLI, "serve"], env, tmp_path) as (base, _),
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http,
    ):
        rid = http.post("/api/v1/patrol-routes", json=route_feature()).json()["id"]
        lon, lat = along(100)
        http.post("/api/v1/geofences", json=circle_feature(lon, lat)).raise_for_status()
        http.post(
            "/api/v1/units", json={"name": "Polwan 05", "device_id": "p05"}
        ).raise_for_status()
        r = http.post("/api/v1/pings", json=ping("p05", 120, 0))
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["evaluation"]["geofences"][0]["name"] == "Kantor KPU"
        latest = http.get("/api/v1/positions/latest").json()["features"][0]
        assert latest["properties"]["name"] == "Polwan 05"
        cov = http.get(f"/api/v1/coverage/patrol-routes/{rid}", params=window()).json()
        assert [s["index"] for s in cov["segments"] if s["visited"]] == [2]
        page = http.get("/maps/coverage", params=window())
        assert page.status_code == 200
        assert "Polwan 05" in page.text and "/static/leaflet/leaflet.js" in page.text
        assert http.get("/static/leaflet/leaflet.js").status_code == 200


def test_keys_create_rejects_tracker_without_unit(tmp_path: Path) -> None:
    env = cli_env(f"sqlite:///{tmp_path / 'k.db'}")
    result = run_patroli("keys", "create", "--role", "tracker", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "unit_id" in result.stderr


def test_demo_seeds_and_exits(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = run_patroli(
        "demo",
        "--database",
        f"sqlite:///{db}",
        "--hours",
        "2",
        "--no-serve",
        env=cli_env("sqlite:///unused.db"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "5 units" in out and "pings stored" in out
    assert "/maps/coverage?from=" in out
    assert "/reports/shift?date=" in out and "&shift=" in out
    for role in ("admin", "operator", "viewer", "tracker"):
        assert f"{role} key" in out
    stored = int(out.split("pings stored")[0].split(":")[-1].strip())
    assert stored > 5 * 2 * 360 * 0.7  # 5 units, 2 h, every 10 s, minus gaps
    assert not (tmp_path / "unused.db").exists()
