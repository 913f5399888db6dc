"""Shared fixtures: every storage/API test runs on SQLite and on a real PostGIS database;
browser tests get headless Chromium and a running server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.app import create_app
from service.config import Settings
from service.store.db import make_engine
from service.store.migrate import upgrade
from service.store.models import Base

ADMIN_KEY = "test-admin-key-0123456789"
# A server where the test role may create databases; a fresh database is made per session.
PG_ADMIN_URL = os.environ.get(
    "PATROLI_TEST_PG_URL", "postgresql+psycopg:///postgres?host=/var/run/postgresql"
)
IN_CI = bool(os.environ.get("CI"))


def _unavailable(message: str) -> None:
    """Skip locally, fail under CI: there the PostGIS tests must run."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def _new_database(prefix: str) -> Iterator[str]:
    """A new database with the PostGIS extension on the test server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        _unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        except Exception as exc:
            _unavailable(f"PostGIS extension not available: {exc}")
        finally:
            engine.dispose()
        yield url
    finally:
        _drop(admin, name)


@pytest.fixture(scope="session")
def postgis_url() -> Iterator[str]:
    """URL of a fresh PostGIS database, migrated to head, dropped after the session."""
    with _new_database("patroli_test") as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture
def empty_postgis_url() -> Iterator[str]:
    """URL of a new database holding only the PostGIS extension (as the PostGIS image makes it)."""
    with _new_database("patroli_empty") as url:
        yield url


def _drop(admin: Any, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend under test."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty, migrated database on the backend under test."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'patroli.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    url = str(request.getfixturevalue("postgis_url"))
    _truncate(url)
    return url


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings for the database under test, with overrides."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": database_url, "admin_key": ADMIN_KEY}
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default settings for the database under test."""
    return make_settings()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An HTTP client for the app (lifespan running), sending the admin key."""
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        yield c


# Browser tests: headless Chromium and a live server.
CHROMIUM = Path(os.environ.get("PATROLI_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture
def live_server() -> Iterator[Callable[[Any], AbstractContextManager[str]]]:
    """The `serve_app` context manager, as a fixture."""
    from tests.helpers import serve_app  # helpers import this module's constants

    yield serve_app


# Module scope: while Playwright's sync API is open it marks its event loop as running in the
# main thread, so `asyncio.run` fails there; closing it with each module keeps later modules
# (e.g. tests/notify/test_stream.py after tests/maps) free of it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's /usr/bin/chromium), shared by a test module."""
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def artifacts_dir() -> Path:
    """Directory for screenshots and other test artifacts (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
