"""Database engine and transactions for both backends."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a SQLite file or PostgreSQL URL, tuned for durable writes."""
    # Error messages (which are logged) never show bound values: they can be webhook secrets.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        _tune_sqlite(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # A stuck row lock must not stall the ingest writer forever: fail (503) and let it retry.
    kwargs.setdefault("connect_args", {"options": "-c lock_timeout=15000"})
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


IDLE_PING_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle for `IDLE_PING_S` or more.

    A pre-ping on every checkout is a round trip per transaction (the ingest writer makes
    dozens a second); a connection in use a moment ago is checked by using it. One that broke
    since fails its statement, the pool drops every connection made before, and the caller
    gets the usual 503.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return  # new, or in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if not engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise
            alive = False
        if not alive:  # the pool opens a new connection and tries again
            raise DisconnectionError("pooled connection was closed while idle")


def _tune_sqlite(engine: Engine) -> None:
    """WAL for concurrent readers, FULL sync so a commit survives power loss."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how a transaction starts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front; a deferred upgrade could fail with BUSY.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def open_failure(engine: Engine, exc: Exception) -> str:
    """Why the database cannot be opened, for an operator: the file and its file system for
    SQLite (read-only, full), the driver's message for PostgreSQL (no password in it)."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        return f"{engine.url.render_as_string(hide_password=True)}: {reason}"
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fs = os.statvfs(folder)
    except OSError as err:
        return f"SQLite database {path}: {reason} (folder {folder}: {err.strerror})"
    if fs.f_flag & os.ST_RDONLY:
        reason += f"; the file system of {folder} is read-only"
    elif fs.f_bavail * fs.f_frsize < 1 << 20:
        reason += f"; the file system of {folder} is full"
    return f"SQLite database {path}: {reason}"


class Store:
    """Opens read and write transactions on the configured database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # SQLite allows one writer: serialise writers of this process in Python, not in busy loops.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @classmethod
    def from_url(cls, url: str) -> Store:
        """A store for a database URL."""
        return cls(make_engine(url))

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back at the end."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work is committed (durably) when the block ends without error."""
        if self._write_lock is None:
            with self._sessions() as session, session.begin():
                yield session
            return
        with self._write_lock:
            bind = self.engine.execution_options(sqlite_immediate=True)
            with Session(bind, expire_on_commit=False) as session, session.begin():
                yield session

    def ping(self) -> None:
        """Check that the database answers."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
