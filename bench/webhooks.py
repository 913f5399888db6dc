"""Webhook claim benchmark: what the per-unit order costs the dispatcher's claim query.

For each backend it fills a migrated database with a webhook's delivery history (delivered
rows) and a backlog of pending deliveries spread over many units, as after a receiver outage:
each unit's head has failed and waits for its backoff, the rest wait behind it. It times the
claim query (`WebhookDispatcher.due`: heads of lines only) next to the same query without the
line filter (every pending delivery due, the order-blind claim) in the same run, in two states:
  - "outage": no head is due yet (the query must look at the whole backlog to find nothing);
  - "back": every head is due (what a pass claims once the receiver answers again).

    .venv/bin/python bench/webhooks.py                       # both backends
    .venv/bin/python bench/webhooks.py --backend postgis --pending 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Select, insert, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import for_backends, print_table  # type: ignore[import-not-found]  # noqa: E402
from ingest import make_backend  # type: ignore[import-not-found]  # noqa: E402

from service.config import Settings  # noqa: E402
from service.notify.webhooks import WebhookDispatcher  # noqa: E402
from service.store.db import Store, make_engine  # noqa: E402
from service.store.migrate import upgrade  # noqa: E402
from service.store.models import Event, Unit, Webhook, WebhookDelivery  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 5_000


def fill(store: Store, units: int, pending: int, delivered: int) -> None:
    """A webhook, `units` units and their events: `delivered` old deliveries, then `pending`
    ones; each unit's oldest pending delivery has failed twice and waits until T0 + 1 h."""
    with store.write() as session:
        hook = Webhook(url="http://hooks.example/x", event_types=[], secret="s" * 16, active=True)
        session.add(hook)
        session.add_all(Unit(name=f"U{i}", device_id=f"bench-{i}") for i in range(units))
        session.flush()
        hook_id = hook.id
        unit_ids = list(session.scalars(select(Unit.id).order_by(Unit.id)))
    total = delivered + pending
    for start in range(0, total, CHUNK):
        n = min(CHUNK, total - start)
        with store.write() as session:
            events = [
                {"type": "moving", "unit_id": unit_ids[(start + i) % units], "ts": T0}
                for i in range(n)
            ]
            ids = list(session.scalars(insert(Event).returning(Event.id), events))
            rows = []
            for i, event_id in enumerate(ids):
                k = start + i
                done = k < delivered
                head = not done and k - delivered < units
                rows.append(
                    {
                        "webhook_id": hook_id,
                        "event_id": event_id,
                        "status": "delivered" if done else "pending",
                        "attempts": 1 if done else (2 if head else 0),
                        "next_attempt_at": T0 + timedelta(hours=1) if head else T0,
                        "created_at": T0,
                        "delivered_at": T0 if done else None,
                    }
                )
            session.execute(insert(WebhookDelivery), rows)
    if not store.is_sqlite:
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def blind(dispatcher: WebhookDispatcher, now: datetime) -> Select:  # type: ignore[type-arg]
    """The claim query without the line filter (any due pending delivery)."""
    stmt = (
        select(WebhookDelivery, Webhook, Event, Unit.name)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .outerjoin(Unit, Unit.id == Event.unit_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            Webhook.active.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(dispatcher.batch)
    )
    if not dispatcher.store.is_sqlite:
        stmt = stmt.with_for_update(skip_locked=True, of=WebhookDelivery)
    return stmt


def timed(store: Store, stmt: Select, runs: int) -> tuple[float, int]:  # type: ignore[type-arg]
    """Median milliseconds of the query (rolled back each time) and its row count."""
    times, count = [], 0
    for _ in range(runs):
        with store.read() as session:
            started = time.perf_counter()
            count = len(session.execute(stmt).all())
            times.append((time.perf_counter() - started) * 1000)
            session.rollback()
    return statistics.median(times), count


def run(name: str, workdir: Path, args: argparse.Namespace) -> list[tuple[str, ...]]:
    backend = make_backend(name, workdir)
    try:
        engine = make_engine(backend.url)
        if name == "postgis":
            with engine.begin() as conn:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
        upgrade(engine)
        store = Store(engine)
        fill(store, args.units, args.pending, args.delivered)
        settings = Settings(_env_file=None, database_url=backend.url)  # type: ignore[call-arg]
        dispatcher = WebhookDispatcher(store, settings)
        rows = []
        for state, now in (("outage", T0), ("back", T0 + timedelta(hours=2))):
            ordered_ms, ordered_n = timed(store, dispatcher.due(now), args.runs)
            blind_ms, blind_n = timed(store, blind(dispatcher, now), args.runs)
            rows.append(
                (
                    name,
                    state,
                    f"{args.pending:,}",
                    f"{ordered_ms:.2f} ms ({ordered_n})",
                    f"{blind_ms:.2f} ms ({blind_n})",
                    f"{ordered_ms / blind_ms:.1f}x",
                )
            )
        dispatcher.stop()
        engine.dispose()
        return rows
    finally:
        backend.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgis", "both"], default="both")
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--pending", type=int, default=20_000)
    parser.add_argument("--delivered", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    rows = for_backends(args.backend, lambda name, tmp: run(name, tmp, args))
    print(
        f"{args.units} units, {args.delivered:,} delivered rows; median of {args.runs} runs "
        "(rows returned); batch 10"
    )
    print_table(
        ("backend", "state", "pending", "claim by line", "order-blind claim", "ratio"), rows
    )


if __name__ == "__main__":
    main()
