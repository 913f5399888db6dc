"""No key or secret in any log line: access logs of a real server, our own warnings, SQL errors."""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from service import redact
from service.app import create_app
from service.config import Settings
from service.store.db import make_engine
from tests.conftest import ADMIN_KEY
from tests.helpers import PATROLI, along, cli_env, run_server, serve_app

# ---- the masking rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "masked"),
    [
        ("/api/v1/osmand?id=u1&key=ptl_S3cr-t_x&lat=1", "/api/v1/osmand?id=u1&key=***&lat=1"),
        ("/api/v1/osmand/ptl_S3cr-t_x?id=u1&lat=1", "/api/v1/osmand/***?id=u1&lat=1"),
        ("/api/v1/owntracks/ptl_S3cr-t_x", "/api/v1/owntracks/***"),
        ("/maps/live?lang=en&key=abc", "/maps/live?lang=en&key=***"),
        ("/api/v1/stream?%6Bey=abc&keepalive=5", "/api/v1/stream?%6Bey=***&keepalive=5"),
        ("/x?API_KEY=1&Token=2&password=3&secret=4&auth=5", None),
        ("/x?access_token=1&passwd=2&sig=3;session=4", None),
        ("/api/v1/units?limit=5&keepalive=3&id=7", "/api/v1/units?limit=5&keepalive=3&id=7"),
        ("/api/v1/osmandx/abc", "/api/v1/osmandx/abc"),
        ('"GET /maps/coverage?key=abc HTTP/1.1" 200', '"GET /maps/coverage?key=*** HTTP/1.1" 200'),
    ],
)
def test_redact_masks_secret_parameters_and_path_segments(target: str, masked: str | None) -> None:
    out = redact.redact(target)
    if masked is not None:
        assert out == masked
    else:
        assert out.count("***") == target.count("=") and not any(c.isdigit() for c in out)


def test_filter_masks_uvicorn_and_gunicorn_records() -> None:
    fmt = '%s - "%s %s HTTP/%s" %d'
    record = logging.LogRecord(
        "uvicorn.access", 20, __file__, 1, fmt, ("1.2.3.4", "GET", "/x?key=abc", "1.1", 200), None
    )
    assert redact.RedactSecrets().filter(record)
    assert record.getMessage() == '1.2.3.4 - "GET /x?key=*** HTTP/1.1" 200'
    record = logging.LogRecord("gunicorn.access", 20, __file__, 1, "%(r)s", None, None)
    record.args = {"r": "GET /api/v1/osmand/sekret?id=1 HTTP/1.1", "s": 200}
    redact.RedactSecrets().filter(record)
    assert record.getMessage() == "GET /api/v1/osmand/***?id=1 HTTP/1.1"


def test_install_is_idempotent() -> None:
    redact.install()
    redact.install()
    filters = logging.getLogger("uvicorn.access").filters
    assert sum(isinstance(f, redact.RedactSecrets) for f in filters) == 1


def test_sql_errors_do_not_show_bound_values(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(Exception) as caught, engine.begin() as conn:
            conn.execute(text("INSERT INTO no_such_table VALUES (:v)"), {"v": "WEBHOOK-SECRET"})
    finally:
        engine.dispose()
    assert "no_such_table" in str(caught.value)
    assert "WEBHOOK-SECRET" not in str(caught.value)


# ---- a real server -------------------------------------------------------------------------


def _unit_and_viewer(base: str) -> tuple[str, str]:
    """A unit's device secret and a viewer key, made with the admin key."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    unit = httpx.post(f"{base}/api/v1/units", json={"name": "U1", "device_id": "u1"}, headers=admin)
    viewer = httpx.post(
        f"{base}/api/v1/keys", json={"name": "wall", "role": "viewer"}, headers=admin
    ).json()["key"]
    return unit.json()["device_secret"], viewer


def _traffic(base: str, viewer: str, secret: str) -> int:
    """Requests carrying keys every way a client can; returns how many pings were stored."""
    lon, lat = along(100)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    fix = {"id": "u1", "lat": f"{lat}", "lon": f"{lon}"}
    with httpx.Client(base_url=base, timeout=10) as c:
        basic = base64.b64encode(f"u1:{secret}".encode()).decode()
        answers = [
            c.get("/api/v1/osmand", params={**fix, "timestamp": "1732662000", "key": secret}),
            c.get(f"/api/v1/osmand/{secret}", params={**fix, "timestamp": "1732662010"}),
            c.post(f"/api/v1/osmand/{secret}", data={**fix, "timestamp": "1732662020"}),
            c.get(
                "/api/v1/osmand",
                params={**fix, "timestamp": "1732662030"},
                headers={"Authorization": f"Bearer {secret}"},
            ),
            c.get(
                "/api/v1/osmand",
                params={**fix, "timestamp": "1732662040"},
                headers={"Authorization": f"Basic {basic}"},
            ),
            c.post(
                f"/api/v1/owntracks/{secret}?u=polres&d=hp",
                json={"_type": "location", "lat": lat, "lon": lon, "tst": 1732662050},
            ),
        ]
        assert [r.status_code for r in answers[:5]] == [200] * 5, [r.text for r in answers]
        # Another unit's OwnTracks identity: refused (403), and logged like the others.
        assert answers[5].status_code == 403
        # The key moves into a session cookie (303); the request line with it is logged.
        assert c.get("/maps/live", params={"key": viewer}).status_code == 303
        with c.stream("GET", "/api/v1/stream", params={"key": viewer, "keepalive": 1}) as r:
            assert r.status_code == 200
            next(r.iter_lines())
        assert c.get("/api/v1/units", params={"key": ADMIN_KEY}).status_code == 401
        track = c.get(
            "/api/v1/units/1/track",
            params={"from": "2024-11-26", "to": "2024-11-28"},
            headers=admin,
        ).json()
    return len([f for f in track["features"] if f["properties"]["kind"] == "fix"])


COMMANDS = {
    "patroli serve": [*PATROLI, "serve"],
    "uvicorn --factory": [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"],
}


@pytest.mark.parametrize("runner", list(COMMANDS))
def test_no_key_in_the_access_log_of_a_running_server(
    database_url: str, tmp_path: Path, runner: str
) -> None:
    env = cli_env(database_url, PATROLI_ADMIN_KEY=ADMIN_KEY, PATROLI_AUTO_MIGRATE="true")
    with run_server(COMMANDS[runner], env, tmp_path) as (base, output):
        secret, viewer = _unit_and_viewer(base)
        stored = _traffic(base, viewer, secret)
    assert stored == 5  # key=, path (GET and form POST), bearer and Basic: one fix each
    lines = "\n".join(output)
    assert "/api/v1/osmand/***?id=u1" in lines and "key=***" in lines
    assert "/api/v1/owntracks/***?u=polres" in lines
    for value in (secret, viewer, ADMIN_KEY, secret[4:20], viewer[4:20]):
        assert value not in lines, [line for line in output if value in line]


def test_no_key_in_any_record_of_the_app_in_process(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings())
    # The access log on, and no log config of uvicorn's own: records reach caplog.
    with (
        serve_app(app, access_log=True, log_config=None, log_level="info") as base,
        caplog.at_level(logging.DEBUG),
    ):
        secret, viewer = _unit_and_viewer(base)
        assert _traffic(base, viewer, secret) == 5
    messages = [r.getMessage() for r in caplog.records]
    access = [m for m in messages if "/api/v1/osmand" in m]
    assert len(access) >= 5  # the access log was captured
    for value in (secret, viewer, ADMIN_KEY):
        assert not [m for m in messages if value in m]
