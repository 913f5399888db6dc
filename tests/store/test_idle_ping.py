"""Pooled PostgreSQL connections are checked before use only after sitting idle."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service.store import db
from service.store.db import Store


@pytest.fixture
def stores(postgis_url: str) -> Iterator[tuple[Store, Store]]:
    """A store under test and a second one to end its connections from."""
    store, admin = Store.from_url(postgis_url), Store.from_url(postgis_url)
    yield store, admin
    store.dispose()
    admin.dispose()


def _backend_pid(store: Store) -> int:
    with store.read() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(admin: Store, pid: int) -> None:
    with admin.write() as session:
        session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_connection_that_broke_while_idle_is_replaced_unseen(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "IDLE_PING_S", 0.2)
    store, admin = stores
    pid = _backend_pid(store)
    _terminate(admin, pid)
    time.sleep(0.3)
    # Idle longer than IDLE_PING_S: checked, found closed, replaced before use.
    assert _backend_pid(store) != pid


def test_a_connection_in_use_a_moment_ago_is_not_checked(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "IDLE_PING_S", 60.0)
    store, admin = stores
    _terminate(admin, _backend_pid(store))
    # Not checked (no round trip before each transaction): its statement fails ...
    with pytest.raises(OperationalError), store.read() as session:
        session.execute(text("SELECT 1"))
    # ... and the pool drops it: the next transaction runs on a new connection.
    with store.read() as session:
        assert session.execute(text("SELECT 1")).scalar_one() == 1
