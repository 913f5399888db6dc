"""The FastAPI application: routers, error handlers, static assets, and the store's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from sqlalchemy.exc import OperationalError
from starlette.types import Receive, Scope, Send

from service import metrics, redact
from service.areas.index import GeoCache
from service.auth import KeyCache
from service.config import Settings, get_settings
from service.errors import add_exception_handlers
from service.events.scheduler import Scheduler
from service.events.types import EVENT_TYPES
from service.ingest.writer import GroupCommitter
from service.limits import BodySizeLimit
from service.maps.assets import mount_assets
from service.maps.data import PageCache
from service.maps.pdf import PdfPrinter
from service.metrics import RequestTimer
from service.notify.fanout import Fanout
from service.notify.stream import Broker
from service.notify.webhooks import WebhookDispatcher
from service.routes import sessions
from service.routes.api import api_router
from service.routes.fastpath import FastIngest
from service.routes.openapi import install_openapi
from service.routes.security import SecurityHeaders
from service.store.db import Store, open_failure
from service.store.migrate import upgrade

log = logging.getLogger(__name__)


class PatroliApp(FastAPI):
    """The FastAPI application behind the ingest front door (service.routes.fastpath)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._front = FastIngest(partial(FastAPI.__call__, self), self.state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request: the hot ingest doors directly, the rest through the app."""
        await self._front(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for the given settings (read from the environment by default)."""
    settings = settings or get_settings()
    # However the app is served (patroli serve, uvicorn --factory, gunicorn), keys in request
    # URLs never reach the access log.
    redact.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.init_event_types(EVENT_TYPES)
        store = Store.from_url(settings.database_url)
        if settings.migrate_on_start:
            try:
                upgrade(store.engine)
            except OperationalError as exc:
                log.error("cannot open the database: %s", open_failure(store.engine, exc))
                raise
        geo = GeoCache()
        # On PostgreSQL a revocation in any process empties this worker's key cache at once.
        broker = Broker(on_revocation=app.state.keys.clear)
        broker.start(asyncio.get_running_loop(), settings.database_url)
        # A revocation in this worker makes its open streams check their keys at once.
        unsubscribe = app.state.keys.subscribe(broker.wake)
        dispatcher = WebhookDispatcher(store, settings)
        fanout = Fanout(broker, dispatcher)
        writer = GroupCommitter(
            store,
            geo,
            settings,
            in_transaction=fanout.in_transaction,
            after_commit=fanout.after_commit,
        )
        scheduler = Scheduler(
            store,
            geo,
            settings,
            in_transaction=fanout.in_transaction,
            after_commit=fanout.after_commit,
        )
        for part in (writer, scheduler, dispatcher):
            part.start()
        app.state.store, app.state.geo, app.state.writer = store, geo, writer
        app.state.scheduler, app.state.webhooks, app.state.broker = scheduler, dispatcher, broker
        app.state.fanout = fanout
        try:
            yield
        finally:
            scheduler.stop()
            writer.stop()
            dispatcher.stop()
            unsubscribe()
            broker.stop()
            store.dispose()
            metrics.worker_exit()

    app = PatroliApp(
        title="Patroli",
        summary="Live patrol tracking: pings, patrol-route corridors, geofences, coverage maps.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by service.routes.docs instead: behind a viewer key, from local assets.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.keys = KeyCache(settings.key_cache_s)
    app.state.printer = PdfPrinter(
        settings.chromium_path, settings.pdf_timeout_s, settings.pdf_concurrency
    )
    app.state.coverage_pages = PageCache()
    add_exception_handlers(app)
    sessions.install(app, settings)
    app.add_middleware(RequestTimer)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(SecurityHeaders)
    app.include_router(api_router)
    mount_assets(app)
    install_openapi(app)
    return app
