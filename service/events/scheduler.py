"""Time-driven work: `offline` for silent units, `revisit_overdue`/`revisited` for places, and
the upkeep of time partitions and retention (service/store/retention.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from service.analytics.qgis import refresh_qgis
from service.analytics.running import RunningCoverage
from service.areas.index import GeoCache
from service.config import Settings
from service.events.overdue import overdue_events, read_visits
from service.events.runner import offline_events
from service.metrics import SCHEDULER_RUNS, SCHEDULER_SECONDS
from service.store.db import Store
from service.store.models import Event as EventRow
from service.store.retention import Upkeep, maintain

log = logging.getLogger(__name__)


class Scheduler:
    """Checks for silent units every `tick_s`; with several workers, each unit fires once.

    Also rewrites the QGIS coverage layer every `qgis_refresh_s` on PostgreSQL.

    The unit rows are taken with `FOR UPDATE SKIP LOCKED`, and the machine state records that
    `offline` fired, so a second worker (or a second pass) finds nothing left to fire. Every
    `upkeep_every_s` (and on the first pass) it creates the partitions ahead and applies
    retention, each step under an advisory lock that only one instance gets.
    """

    def __init__(
        self,
        store: Store,
        geo: GeoCache,
        settings: Settings,
        *,
        in_transaction: Callable[[Session, list[EventRow]], None] | None = None,
        after_commit: Callable[[list[EventRow]], None] | None = None,
        tick_s: float = 5.0,
        overdue_every_s: float = 30.0,
        upkeep_every_s: float = 3600.0,
    ) -> None:
        self._upkeep_every_s = upkeep_every_s
        self._next_upkeep = datetime.min.replace(tzinfo=UTC)
        self.last_upkeep: Upkeep | None = None
        self._overdue_every_s = overdue_every_s
        self._next_overdue = datetime.min.replace(tzinfo=UTC)
        self._next_qgis = datetime.min.replace(tzinfo=UTC)
        # Each reads only what is new at each pass.
        self._qgis_coverage = RunningCoverage()
        self._overdue_visits = RunningCoverage()
        self._store, self._geo, self._settings = store, geo, settings
        self._in_transaction = in_transaction
        self._after_commit = after_commit
        self._tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: datetime | None = None) -> list[EventRow]:
        """One pass: store and return the events that are due."""
        now = now or datetime.now(UTC)
        # Offline: a short transaction locking only the units that went silent.
        with self._store.write() as session:
            events = offline_events(session, self._geo.get(session), self._settings, now)
            self._store_events(session, events)
        if now >= self._next_overdue:
            # Overdue: the visits are read first, outside the write transaction.
            with self._store.read() as session:
                index = self._geo.get(session, fresh=True)
                visits = read_visits(session, index, self._settings, now, self._overdue_visits)
            if visits is not None:
                with self._store.write() as session:
                    overdue = overdue_events(session, index, self._settings, now, visits)
                    self._store_events(session, overdue)
                events += overdue
            self._next_overdue = now + timedelta(seconds=self._overdue_every_s)
        if events and self._after_commit is not None:
            self._after_commit(events)
        if not self._store.is_sqlite and now >= self._next_qgis:
            self._next_qgis = now + timedelta(seconds=self._settings.qgis_refresh_s)
            self.refresh_qgis(now)
        if now >= self._next_upkeep:
            self._next_upkeep = now + timedelta(seconds=self._upkeep_every_s)
            try:
                self.last_upkeep = maintain(self._store, self._settings, now)
            except Exception:  # e.g. a lock not granted in time: tried again next time
                log.warning("partition upkeep failed", exc_info=True)
                self._next_upkeep = now + timedelta(seconds=min(60.0, self._upkeep_every_s))
        return events

    def refresh_qgis(self, now: datetime) -> None:
        """Rewrite the QGIS coverage layer (PostGIS only; one writer across instances)."""
        try:
            with self._store.write() as session:
                index = self._geo.get(session, fresh=True)
                refresh_qgis(session, index, self._settings, now, coverage=self._qgis_coverage)
        except Exception:  # the layer waits for the next interval; events are not held up
            log.warning("QGIS layer refresh failed", exc_info=True)

    def _store_events(self, session: Session, events: list[EventRow]) -> None:
        if events:
            session.add_all(events)
            session.flush()
            if self._in_transaction is not None:
                self._in_transaction(session, events)

    def start(self) -> None:
        """Start the background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="patroli-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            began = time.perf_counter()
            try:
                self.run_once()
            except Exception:  # a failed pass (database down) is retried on the next tick
                log.warning("scheduler pass failed", exc_info=True)
                SCHEDULER_RUNS.labels(outcome="failed").inc()
            else:
                SCHEDULER_RUNS.labels(outcome="ok").inc()
            SCHEDULER_SECONDS.observe(time.perf_counter() - began)
