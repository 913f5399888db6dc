"""The `patroli` command: serve, migrate, retention, demo, keys, units."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy.orm import Session

from service.config import Settings, get_settings
from service.store.db import Store
from service.store.migrate import current_revision, upgrade

# Where the worker processes keep their metrics (prometheus_client's multi-process mode).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """PROMETHEUS_MULTIPROC_DIR for the workers, empty at start: /metrics adds up every worker.

    The folder named by the variable is emptied of an earlier run's files; without it, with
    several workers, a new temporary folder is used and removed at the end. This runs before
    anything imports prometheus_client, which picks its mode (and makes its files) on import.
    """
    import os
    import shutil
    import tempfile
    from pathlib import Path

    given = os.environ.get(MULTIPROC_ENV)
    if not given and workers <= 1:
        yield
        return
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="patroli-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)  # inherited by the worker processes
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(path, ignore_errors=True)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service import redact

    redact.install()  # before the first request line is logged (workers install it again)
    from service.limits import server_options

    if args.workers > 1:
        if settings.is_sqlite:
            print("error: SQLite allows one writer process; use --workers 1", file=sys.stderr)
            return 2
        with _metrics_dir(args.workers):
            uvicorn.run(
                "service.app:create_app",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                timeout_graceful_shutdown=10,  # open live streams must not hold up a restart
                **server_options(settings),
            )
        return 0
    with _metrics_dir(1):
        return _serve_one(args, settings)


def _serve_one(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.limits import server_options

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=10,
        **server_options(settings),
    )
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from service.store.retention import ensure_partitions

    store = Store.from_url(settings.database_url)
    try:
        upgrade(store.engine, args.revision)
        print(f"database schema at revision {current_revision(store.engine)}")
        for table, name, moved in ensure_partitions(store, settings, datetime.now(UTC)):
            print(f"created partition {name} of {table} ({moved} rows moved from the default)")
    finally:
        store.dispose()
    return 0


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from service.store.retention import (
        apply_retention,
        ensure_partitions,
        plan_retention,
        retention_cutoff,
    )

    if args.days is not None and args.days < 0:
        print("error: --days must be 0 or more", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    cutoff = retention_cutoff(settings, now, args.days)
    if cutoff is None:
        print("retention is off (PATROLI_RETENTION_DAYS unset or 0): everything is kept")
        return 0
    store = Store.from_url(settings.database_url)
    try:
        if settings.migrate_on_start:
            upgrade(store.engine)
        if args.dry_run:
            removals = plan_retention(store, cutoff)
            verb = "would remove"
        else:
            ensure_partitions(store, settings, now)
            removals = apply_retention(store, cutoff, settings.retention_batch)
            verb = "removed"
    finally:
        store.dispose()
    days = (now - cutoff).days
    print(f"retention: {days} days, cutoff {cutoff.isoformat().replace('+00:00', 'Z')}")
    for removal in removals:
        print(removal.describe(dry_run=args.dry_run))
    total = sum(r.rows for r in removals)
    print(f"{verb} {total} rows" + (" (dry run: nothing changed)" if args.dry_run else ""))
    return 0


@contextmanager
def _writing(settings: Settings) -> Iterator[Session]:
    """A write session of the configured store (migrated first where that is automatic)."""
    store = Store.from_url(settings.database_url)
    try:
        if settings.migrate_on_start:
            upgrade(store.engine)
        with store.write() as session:
            yield session
    finally:
        store.dispose()


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from service.auth import create_key

    with _writing(settings) as session:
        row, key = create_key(
            session, role=args.role, name=args.name or f"{args.role} key", unit_id=args.unit
        )
        print(f"created {row.role} key #{row.id} ({row.name}); it is shown only once:")
    print(key)
    return 0


ENROLL_TITLES = {
    "traccar": "Traccar Client (Settings: scan the QR code)",
    "owntracks": "OwnTracks (scan with the phone's camera, or open the link on the phone)",
    "owntracks-mqtt": "OwnTracks in MQTT mode, through the broker (scan it instead of the above)",
}


def _units_enroll(args: argparse.Namespace, settings: Settings) -> int:
    from service.areas.enroll import enrol

    with _writing(settings) as session:
        enrolment = enrol(session, args.unit, settings)
    print(
        f"unit #{enrolment.unit_id} ({enrolment.name}, device {enrolment.device_id}): a new "
        "device secret was issued; the previous one no longer works (running servers refuse "
        "it at once on PostgreSQL, within PATROLI_KEY_CACHE_S on SQLite)."
    )
    for link in enrolment.links:
        print(f"\n{ENROLL_TITLES[link.app]}:\n{link.url}\n")
        print(link.terminal())
    for note in enrolment.notes:
        print(f"note: {note}")
    return 0


def _mqtt(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import logging
    import signal

    from service.areas.index import GeoCache
    from service.ingest.mqtt import Bridge
    from service.ingest.writer import GroupCommitter
    from service.notify.fanout import Fanout
    from service.notify.stream import Broker
    from service.notify.webhooks import WebhookDispatcher

    if settings.mqtt_url is None:
        print("error: set PATROLI_MQTT_URL (mqtt://user:password@host:1883)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store = Store.from_url(settings.database_url)
    if settings.migrate_on_start:
        upgrade(store.engine)
    dispatcher = WebhookDispatcher(store, settings)
    # Live streams of `patroli serve` learn of the commits through the database (PostgreSQL).
    fanout = Fanout(Broker(), dispatcher)
    writer = GroupCommitter(
        store,
        GeoCache(),
        settings,
        in_transaction=fanout.in_transaction,
        after_commit=fanout.after_commit,
    )

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        bridge = Bridge(writer, settings, store)
        bridge.start()
        try:
            await stopping.wait()
        finally:
            bridge.stop()

    writer.start()
    dispatcher.start()
    try:
        asyncio.run(run())
    finally:
        writer.stop()
        dispatcher.stop()
        store.dispose()
    return 0


def _mqtt_users(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from sqlalchemy import select

    from service.areas.broker import acl, add_users, phones, write_private
    from service.store.models import Unit

    store = Store.from_url(settings.database_url)
    try:
        with store.read() as session:
            device_ids = list(session.scalars(select(Unit.device_id)))
    finally:
        store.dispose()
    prefix = settings.mqtt_topic_prefix.strip("/")
    Path(args.acl).write_text(acl(device_ids, args.patroli_user, prefix))
    passwords = Path(args.passwords)
    existing = passwords.read_text() if passwords.exists() else ""
    text, added = add_users(existing, [args.patroli_user, *phones(device_ids)])
    write_private(passwords, text)
    print(f"wrote {args.acl}; {len(added)} new user(s) in {args.passwords}")
    if added:
        print("new passwords (stored hashed; shown only now):")
        for user, password in added.items():
            print(f"{user} {password}")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from service.demo.run import run_demo

    return run_demo(args, settings)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="patroli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API and maps")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (PostgreSQL)")
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(func=_migrate)

    retention = sub.add_parser(
        "retention",
        help="remove pings, events and device reports older than PATROLI_RETENTION_DAYS now "
        "(PostgreSQL: drop whole partitions)",
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="print what would go, change nothing"
    )
    retention.add_argument(
        "--days", type=int, help="keep this many days instead of PATROLI_RETENTION_DAYS"
    )
    retention.set_defaults(func=_retention)

    demo = sub.add_parser("demo", help="seed the Balikpapan scenario, simulate 24 h, serve")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument(
        "--database",
        default="sqlite:///patroli-demo.db",
        help="database for the demo (recreated when it is a SQLite file, unless --keep)",
    )
    demo.add_argument("--keep", action="store_true", help="keep an existing demo database")
    demo.add_argument(
        "--scenario",
        help="GeoJSON file with your own routes and geofences, or 'city' for the generated "
        "election-day city (1,000 polling stations, 20 routes, 200 units)",
    )
    demo.add_argument("--hours", type=float, default=24.0, help="hours of patrols to simulate")
    demo.add_argument("--no-serve", action="store_true", help="seed and exit")
    demo.add_argument("--no-live", action="store_true", help="do not keep simulating live pings")
    demo.set_defaults(func=_demo)

    mqtt = sub.add_parser("mqtt", help="store OwnTracks messages from an MQTT broker")
    mqtt.set_defaults(func=_mqtt)
    users = sub.add_parser("mqtt-users", help="write Mosquitto ACL and password file per unit")
    users.add_argument("--acl", required=True, help="ACL file to write (acl_file)")
    users.add_argument(
        "--passwords", required=True, help="password file (password_file) to add new users to"
    )
    users.add_argument("--patroli-user", default="patroli", help="the user of `patroli mqtt`")
    users.set_defaults(func=_mqtt_users)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="issue a key (printed alone on the last line)")
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer", "tracker"])
    create.add_argument("--name")
    create.add_argument("--unit", type=int, help="unit id (tracker keys)")
    create.set_defaults(func=_keys_create)

    units = sub.add_parser("units", help="manage units")
    units_sub = units.add_subparsers(dest="units_command", required=True)
    enroll = units_sub.add_parser(
        "enroll",
        help="issue a unit a new device secret and print the links and QR codes that set up "
        "its phone (Traccar Client, OwnTracks); the previous secret stops working",
    )
    enroll.add_argument("unit", type=int, help="unit id")
    enroll.set_defaults(func=_units_enroll)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `patroli` console script."""
    args = build_parser().parse_args(argv)
    from service.errors import PatroliError

    try:
        return int(args.func(args, get_settings()))
    except PatroliError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
