"""Group commit: pings from concurrent requests are stored in shared transactions.

Requests hand their pings to one writer thread and wait; the writer takes everything queued,
stores it in one transaction, commits, and only then answers each request. While one commit is
in flight the next requests queue up, so batches grow with load without a fixed delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from service.areas.index import GeoCache
from service.auth import Principal
from service.config import Settings
from service.errors import InvalidInput, StoreUnavailable
from service.events.machine import Fix
from service.fixtime import FixTimes
from service.ingest.pipeline import (
    WorkItem,
    alert_fix,
    ingest_items,
    lock_units,
    report_events,
    store_reports,
)
from service.limits import attributes_refusal
from service.metrics import COMMIT_PINGS, COMMIT_SECONDS, WRITER_QUEUE
from service.protocols import DeviceReport
from service.schemas import PingIn, PingResult
from service.store.db import Store
from service.store.models import Event as EventRow

log = logging.getLogger(__name__)

UNAVAILABLE = "database unavailable; nothing was stored, retry later"


@dataclass
class Outcome:
    """What the writer did with one request: a result per ping, a reason (or None) per report."""

    pings: list[PingResult]
    reports: list[str | None]


@dataclass
class _Request:
    """One caller's pings and reports, and how to tell it the outcome.

    A thread waits on `future`; a coroutine on `waiter`, settled on its own loop (the writer
    wakes each loop once per batch, not once per request).
    """

    principal: Principal
    pings: Sequence[tuple[int, PingIn]]
    reports: Sequence[DeviceReport]
    source: str
    detail: bool = True
    future: Future[Outcome] | None = None
    waiter: asyncio.Future[Outcome] | None = None
    abandoned: bool = False  # the coroutine gave up waiting: do not store it if not begun

    @property
    def size(self) -> int:
        return len(self.pings) + len(self.reports)

    def begin(self) -> bool:
        """Whether its caller still waits (a request given up before it was begun is skipped)."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        return not self.abandoned


def _settle(done: Sequence[tuple[_Request, Outcome | BaseException]]) -> None:
    """Hand each request its outcome or error: threads at once, each event loop in one call."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Any]]] = {}
    for request, result in done:
        if request.future is not None:
            _hand(request.future, result)
        elif request.waiter is not None:
            loops.setdefault(request.waiter.get_loop(), []).append((request.waiter, result))
    for loop, waiters in loops.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there any more
            loop.call_soon_threadsafe(_resolve, waiters)


def _resolve(waiters: list[tuple[asyncio.Future[Outcome], Any]]) -> None:
    for waiter, result in waiters:
        _hand(waiter, result)


def _hand(target: Future[Outcome] | asyncio.Future[Outcome], result: Any) -> None:
    """Set a future's outcome or error, unless its caller stopped waiting (it is done)."""
    if target.done():
        return
    if isinstance(result, BaseException):
        target.set_exception(result)
    else:
        target.set_result(result)


def _fail(requests: Sequence[_Request], exc: BaseException) -> None:
    _settle([(request, exc) for request in requests])


def _refusal(exc: Exception) -> Exception:
    """The error to answer when one request's data cannot be stored (it would fail again)."""
    if isinstance(exc, (DataError, IntegrityError, ValueError, OverflowError)):
        log.warning("refused a request whose data the database rejects: %s", exc)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return InvalidInput(f"the database rejected this data: {reason}")
    log.error("storing a request failed", exc_info=exc)
    return StoreUnavailable(UNAVAILABLE)


class GroupCommitter:
    """Stores submitted pings in shared transactions on a dedicated thread."""

    def __init__(
        self,
        store: Store,
        geo: GeoCache,
        settings: Settings,
        max_batch: int = 5000,
        timeout_s: float = 30.0,
        in_transaction: Callable[[Session, list[EventRow]], None] | None = None,
        after_commit: Callable[[list[EventRow]], None] | None = None,
    ) -> None:
        # Hooks: inside each transaction (queue webhooks, notify other workers) and after its
        # commit (wake live-stream clients and the webhook dispatcher).
        self._in_transaction = in_transaction
        self._after_commit = after_commit
        self._timeout_s = timeout_s
        self._store = store
        self._geo = geo
        self._settings = settings
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Lock()
        self.transactions = 0  # how many commits the writer made (for benchmarks and tests)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="patroli-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop the writer thread."""
        with self._closing:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()
        # Anything that slipped in behind the stop marker is refused, never left waiting.
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            if request is not None:
                WRITER_QUEUE.dec()
                _fail([request], StoreUnavailable("the service is shutting down; retry later"))

    def submit(
        self,
        principal: Principal,
        pings: Sequence[tuple[int, PingIn]],
        *,
        reports: Sequence[DeviceReport] = (),
        source: str = "json",
        detail: bool = True,
    ) -> Future[Outcome]:
        """Queue pings (and device reports) of one request; the future resolves after commit.

        Without `detail`, every accepted ping's result is `pipeline.ACCEPTED` (for callers that
        only count them).
        """
        request = _Request(principal, pings, reports, source, detail, future=Future())
        self._enqueue(request)
        assert request.future is not None
        return request.future

    def _enqueue(self, request: _Request) -> None:
        with self._closing:
            running = self._thread is not None and self._thread.is_alive()
            if running:
                WRITER_QUEUE.inc()
                self._queue.put(request)
        if not running:
            _fail([request], StoreUnavailable("the writer is not running; retry later"))

    async def store(
        self,
        principal: Principal,
        pings: Sequence[tuple[int, PingIn]],
        *,
        reports: Sequence[DeviceReport] = (),
        source: str = "json",
        detail: bool = True,
    ) -> Outcome:
        """Queue pings and wait (without blocking the event loop) until they are committed.

        Pings and reports whose attributes are too large are refused here, never queued.
        """
        limit = self._settings.max_attributes_bytes
        refused = {i: r for i, p in pings if (r := attributes_refusal(p.attributes, limit))}
        report_refusals = [attributes_refusal(r.attributes, limit) for r in reports]
        outcome = Outcome([], [])
        queued = [(i, p) for i, p in pings if i not in refused] if refused else pings
        queued_reports = [r for r, why in zip(reports, report_refusals, strict=True) if not why]
        if queued or queued_reports:
            waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            request = _Request(principal, queued, queued_reports, source, detail, waiter=waiter)
            self._enqueue(request)
            try:
                async with asyncio.timeout(self._timeout_s):
                    outcome = await waiter
            except TimeoutError:
                # Not begun yet: it is skipped. Begun: the pings may be stored, which the
                # tracker's retry then reports as duplicates.
                request.abandoned = True
                raise StoreUnavailable("storing took too long; retry later") from None
            except asyncio.CancelledError:
                request.abandoned = True
                raise
        if not refused and not any(report_refusals):
            return outcome
        stored = iter(outcome.pings)
        stored_reports = iter(outcome.reports)
        return Outcome(
            [
                PingResult(index=i, status="rejected", reason=refused[i])
                if i in refused
                else next(stored)
                for i, _ in pings
            ],
            [why if why else next(stored_reports) for why in report_refusals],
        )

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch, size = [first], first.size
            while size < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
                size += nxt.size
            WRITER_QUEUE.dec(len(batch))
            # A request whose caller gave up (cancelled, timed out) is not stored at all.
            batch = [r for r in batch if r.begin()]
            if not batch:
                continue
            try:
                self._write(batch)
            except BaseException as exc:  # the writer must outlive any one batch
                log.exception("writer failed on a batch")
                _fail(batch, StoreUnavailable(UNAVAILABLE))
                if not isinstance(exc, Exception):
                    raise

    def _write(self, batch: list[_Request]) -> None:
        try:
            outcomes = self._commit(batch)
        except OperationalError as exc:
            log.warning("database unavailable, %d request(s) refused: %s", len(batch), exc)
            _fail(batch, StoreUnavailable(UNAVAILABLE))
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, _refusal(exc))
                return
            # One request broke the shared transaction: store each on its own so the others
            # still succeed and only the faulty one fails.
            for request in batch:
                self._write([request])
            return
        _settle(list(zip(batch, outcomes, strict=True)))

    def _commit(self, batch: list[_Request]) -> list[Outcome]:
        items = [
            WorkItem((n, index), ping, request.principal, request.source, detail=request.detail)
            for n, request in enumerate(batch)
            for index, ping in request.pings
        ]
        events: list[EventRow] = []
        alerts: list[tuple[int, Fix]] = []
        times = FixTimes.of(self._settings)
        alerting = {r.device_id for q in batch for r in q.reports if alert_fix(r) is not None}
        began = time.perf_counter()
        try:
            with self._store.write() as session:
                if alerting:  # every unit this batch may step, locked in one ordered statement
                    lock_units(session, items, alerting)
                results = ingest_items(
                    session,
                    self._geo,
                    self._settings,
                    items,
                    auto_register=self._settings.auto_register,
                    events=events,
                )
                reasons = [
                    store_reports(session, r.reports, r.source, r.principal, times, alerts)
                    if r.reports
                    else []
                    for r in batch
                ]
                events += report_events(session, self._geo, self._settings, alerts)
                if self._in_transaction is not None:
                    self._in_transaction(session, events)
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise OperationalError(str(exc), None, exc.orig or exc) from exc
            raise
        self.transactions += 1
        COMMIT_SECONDS.observe(time.perf_counter() - began)
        COMMIT_PINGS.observe(sum(r.size for r in batch))
        if self._after_commit is not None:
            try:
                self._after_commit(events)
            except Exception:  # committed already: a failed wake-up must not fail the request
                log.exception("after-commit hook failed")
        return [
            Outcome([results[(n, index)] for index, _ in request.pings], reasons[n])
            for n, request in enumerate(batch)
        ]
