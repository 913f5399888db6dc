"""`patroli demo`: seed the Balikpapan scenario, simulate patrols, serve the API and maps."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

from shapely.geometry import mapping
from sqlalchemy.engine import make_url

from service.areas import features as areas
from service.areas import units
from service.areas.index import GeoCache
from service.auth import Principal, create_key
from service.config import Settings
from service.demo.city import generate_city, simulate_city
from service.demo.scenario import Scenario, load_scenario
from service.demo.simulate import SimPing, simulate
from service.ingest.pipeline import ingest
from service.schemas import GeofenceIn, PatrolRouteIn, PingIn, UnitCreate
from service.store.db import Store
from service.store.migrate import upgrade

ADMIN = Principal(role="admin")
BATCH = 2000


def _reset_sqlite(url: str) -> None:
    """Delete a SQLite demo database so every demo starts from the same state."""
    path = make_url(url).database
    if path and path != ":memory:":
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(path + suffix).unlink(missing_ok=True)


def seed(
    store: Store,
    scenario: Scenario,
    settings: Settings,
    unit_routes: Sequence[int] | None = None,
) -> dict[str, str]:
    """Store the scenario's routes, geofences and units; returns demo keys by role.

    Unit i rides route `unit_routes[i]` (an index into scenario.routes); by default the first.
    """
    limits = areas.geometry_limits(settings)
    with store.write() as session:
        route_ids = []
        for r in scenario.routes:
            feature = PatrolRouteIn.model_validate(
                {
                    "type": "Feature",
                    "geometry": mapping(r.line),
                    "properties": {"name": r.name, "corridor_m": r.corridor_m, "closed": r.closed},
                }
            )
            route_ids.append(areas.create_route(session, areas.new_route(feature, limits))["id"])
        for f in scenario.fences:
            props = {"name": f.name, "kind": f.kind, "radius_m": f.radius_m}
            if f.min_dwell_s is not None:
                props["min_dwell_s"] = f.min_dwell_s
            fence = GeofenceIn.model_validate(
                {"type": "Feature", "geometry": mapping(f.geometry), "properties": props}
            )
            areas.create_fence(session, areas.new_fence(fence, limits))
        keys = {}
        for i, u in enumerate(scenario.units):
            assigned = route_ids[:1] if unit_routes is None else [route_ids[unit_routes[i]]]
            created = units.create_unit(
                session,
                UnitCreate(
                    name=u.name, device_id=u.device_id, kind=u.kind, patrol_route_ids=assigned
                ),
            )
            if i == 0:
                keys["tracker"] = created.device_secret
        keys["admin"] = create_key(session, role="admin", name="demo admin")[1]
        keys["viewer"] = create_key(session, role="viewer", name="demo viewer")[1]
        keys["operator"] = create_key(session, role="operator", name="demo operator")[1]
    return keys


def post(store: Store, geo: GeoCache, settings: Settings, pings: Iterable[SimPing]) -> int:
    """Ingest simulated pings through the regular ingest path; returns how many were stored."""
    items = [PingIn(**asdict(p)) for p in pings]
    stored = 0
    for i in range(0, len(items), BATCH):
        chunk = list(enumerate(items[i : i + BATCH]))
        results = ingest(store, geo, settings, ADMIN, chunk, source="demo")
        stored += sum(r.status == "accepted" for r in results)
    return stored


def _live_feed(
    store: Store, settings: Settings, pings: list[SimPing], stop: threading.Event
) -> None:
    """Post simulated pings as their device time comes, as trackers would."""
    geo = GeoCache()
    i = 0
    while not stop.is_set() and i < len(pings):
        now = datetime.now(UTC)
        j = i
        while j < len(pings) and pings[j].ts <= now:
            j += 1
        if j > i:
            post(store, geo, settings, pings[i:j])
            i = j
        stop.wait(1.0)


def last_shift(start: datetime, now: datetime, settings: Settings) -> tuple[str, str]:
    """Local date and name of the latest whole day or night shift in [start, now].

    Shifts as the shift report's defaults (day 07:00-19:00, night 19:00-07:00); the shift
    running now when no whole one fits.
    """
    local = now.astimezone(settings.tz)
    begun: list[tuple[datetime, str, str]] = []
    for days in (0, 1, 2):
        day = (local - timedelta(days=days)).date()
        for name, at in (("night", clock(19)), ("day", clock(7))):
            began = datetime.combine(day, at, settings.tz)
            if start <= began <= now:
                begun.append((began, day.isoformat(), name))
    begun.sort(reverse=True)
    whole = [b for b in begun if b[0] + timedelta(hours=12) <= now]
    pick = (whole or begun or [(now, local.date().isoformat(), "day")])[0]
    return pick[1], pick[2]


def _z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Seed, simulate the last `hours`, print URLs and keys, then serve until interrupted."""
    url = args.database
    if url.startswith("sqlite") and not args.keep:
        _reset_sqlite(url)
    settings = settings.model_copy(update={"database_url": url})
    city = generate_city() if args.scenario == "city" else None
    scenario = city.scenario if city is not None else load_scenario(args.scenario)
    store = Store.from_url(url)
    upgrade(store.engine)

    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=args.hours)
    print(
        f"Seeding {len(scenario.units)} units, {len(scenario.routes)} patrol routes, "
        f"{len(scenario.fences)} geofences into "
        f"{make_url(url).render_as_string(hide_password=True)}"
    )
    keys = seed(store, scenario, settings, None if city is None else city.unit_routes)
    began = time.perf_counter()
    # One continuous simulation: the past is stored now, the rest is fed live as time passes.
    # The city's 200 units feed live for 2 h rather than a day: that many pings stay in memory.
    span = args.hours * 3600.0 + (24 if city is None else 2) * 3600.0
    if city is None:
        timeline = simulate(scenario, start, span, seed=7)
    else:
        timeline = sorted(
            (p for part in simulate_city(city, start, span, interval_s=10.0) for p in part),
            key=lambda p: (p.ts, p.device_id),
        )
    history = [p for p in timeline if p.ts < now]
    live = [p for p in timeline if p.ts >= now]
    stored = post(store, GeoCache(), settings, history)
    print(
        f"Simulated {args.hours:g} h of patrols: {stored} pings stored "
        f"in {time.perf_counter() - began:.1f} s"
    )

    base = f"http://{args.host}:{args.port}"
    win = f"from={_z(start)}&to={_z(now)}"
    print()
    print(f"  API docs        {base}/docs")
    print(f"  Live map        {base}/maps/live?key={keys['viewer']}")
    print(f"  (acknowledging) {base}/maps/live?key={keys['operator']}")
    print(f"  Coverage map    {base}/maps/coverage?{win}&key={keys['viewer']}")
    print(f"  Replay          {base}/maps/replay?{win}&key={keys['viewer']}")
    day, shift = last_shift(start, now, settings)
    report = f"{base}/reports/shift?date={day}&shift={shift}&key={keys['viewer']}"
    print(f"  Shift report    {report}   (PDF: /reports/shift.pdf?…)")
    print(
        f"  Latest          {base}/api/v1/positions/latest   (Authorization: Bearer <viewer key>)"
    )
    print(f"  Route coverage  {base}/api/v1/coverage/patrol-routes/1?{win}")
    print()
    print(f"  admin key       {keys['admin']}")
    print(f"  operator key    {keys['operator']}")
    print(f"  viewer key      {keys['viewer']}")
    print(f"  tracker key     {keys['tracker']}   ({scenario.units[0].device_id})")
    print()
    if args.no_serve:
        store.dispose()
        return 0

    import uvicorn

    from service.app import create_app
    from service.limits import server_options

    stop = threading.Event()
    feeder = None
    if not args.no_live:
        feeder = threading.Thread(
            target=_live_feed, args=(store, settings, live, stop), name="demo-feed", daemon=True
        )
        feeder.start()
        print("Live simulation running: units keep reporting every 10 s. Ctrl+C stops.")
    try:
        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            timeout_graceful_shutdown=10,
            **server_options(settings),
        )
    finally:
        stop.set()
        if feeder is not None:
            feeder.join(5)
        store.dispose()
    return 0
