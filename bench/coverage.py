"""Coverage benchmark: analytics and the coverage map next to merely reading the pings.

Loads 24 h of 5 s pings of 50 units patrolling a 20 km route (864,000 pings) and a critical
site with the store's bulk insert (COPY on PostGIS, executemany on SQLite), then times, on the
same window:
  read                  eligible_fixes(): the window's eligible pings as arrays (the floor);
  coverage              route coverage as served: located in SQL on PostGIS (a lon/lat grid of
                        route pieces, ST_LineLocatePoint), Shapely/NumPy on SQLite;
  compliance            revisit compliance as served (coverage visits plus gap analysis);
  presence              the critical site's presence report;
  unit report           every unit's report (distance, time on route, stops, ...);
  coverage map (HTML)   building and rendering /maps/coverage (its size is printed too);
  shift report (HTML)   building and rendering /reports/shift for the window (size printed);
  map page, unchanged   /maps/coverage again for the same window and data: the rendered page is
                        kept per window and data version (one query checks the version);
  NumPy path            on PostGIS also coverage the SQLite way: every fix read, located in NumPy.
Each figure is the best of --repeat runs; the ratio is to the read time of the same run.
Finally it serves the app and loads /maps/coverage for the window in headless Chromium
(/usr/bin/chromium via Playwright, every non-local request aborted), printing how long the
server took to answer and how long the page took to load and draw after its HTML arrived.

    .venv/bin/python bench/coverage.py                       # both backends
    .venv/bin/python bench/coverage.py --backend postgis --units 50 --hours 24
    PATROLI_BENCH_PG_URL=postgresql+psycopg://... .venv/bin/python bench/coverage.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import (  # type: ignore[import-not-found]  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    for_backends,
    print_table,
    serve,
)
from dataset import T0, backend_url, best, load  # type: ignore[import-not-found]  # noqa: E402

from service.analytics.compliance import patrol_route_compliance  # noqa: E402
from service.analytics.positions import eligible_fixes  # noqa: E402
from service.analytics.presence import geofence_presence  # noqa: E402
from service.analytics.reports import units_report  # noqa: E402
from service.analytics.shift import Shift  # noqa: E402
from service.analytics.tracks import stored_route_coverage  # noqa: E402
from service.app import create_app  # noqa: E402
from service.areas.features import get_route  # noqa: E402
from service.areas.index import corridor_from_row  # noqa: E402
from service.config import Settings  # noqa: E402
from service.maps.coverage import render_coverage_map  # noqa: E402
from service.maps.data import PageCache, coverage_map_view, coverage_page  # noqa: E402
from service.maps.shift_report import render_shift_report, shift_report_view  # noqa: E402
from service.store.db import Store  # noqa: E402
from service.store.models import Geofence  # noqa: E402
from service.window import Window  # noqa: E402


def browser_load(url: str, window: Window) -> dict[str, float] | None:
    """Load /maps/coverage of the window in headless Chromium; milliseconds of each phase."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).exists():
        return None
    settings = Settings(_env_file=None, database_url=url, open_read=True)  # type: ignore[call-arg]
    query = f"from={window.start.isoformat()}&to={window.end.isoformat()}".replace("+", "%2B")
    with serve(create_app(settings)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            # Nothing may come from the internet: tiles are aborted, everything else is local.
            page.route(
                "**/*", lambda r: r.continue_() if r.request.url.startswith(base) else r.abort()
            )
            page.goto(f"{base}/maps/coverage?{query}", wait_until="load", timeout=120_000)
            page.wait_for_function(
                "document.querySelectorAll('path.leaflet-interactive').length > 0"
            )
            rendered = page.evaluate("performance.now()")
            timing = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
        finally:
            browser.close()
    nav = json.loads(timing)
    return {
        "server": nav["responseStart"] - nav["requestStart"],
        "page": nav["loadEventEnd"] - nav["responseEnd"],
        "rendered": rendered - nav["responseEnd"],
    }


def bench(name: str, args: argparse.Namespace, workdir: Path) -> list[tuple[str, ...]]:
    """Load one backend and time read, coverage and compliance on the whole window."""
    with backend_url(name, workdir) as url:
        store = Store.from_url(url)
        started = time.perf_counter()
        route_id, stored = load(store, args.units, args.hours, args.interval)
        print(f"{name}: loaded {stored:,} pings in {time.perf_counter() - started:.1f} s")
        window = Window(T0, T0 + timedelta(hours=args.hours))
        with store.read() as session:
            corridor = corridor_from_row(get_route(session, route_id))

            def read() -> object:
                return eligible_fixes(session, window.start, window.end)

            def coverage(method: Any = "auto") -> Callable[[], object]:
                return lambda: stored_route_coverage(session, corridor, window, 50.0, 60.0, method)

            def compliance() -> object:
                return patrol_route_compliance(session, route_id, window, 1800.0, 50.0, 60.0)

            ratio = stored_route_coverage(session, corridor, window, 50.0, 60.0).coverage_ratio
            t_read = best(args.repeat, read)
            rows: list[tuple[str, ...]] = [
                (name, f"{stored:,}", "read (eligible_fixes)", f"{t_read * 1e3:,.0f}", "1.00")
            ]
            settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
            site_id = session.scalars(select(Geofence.id)).one()
            html: list[str] = []

            def presence() -> object:
                return geofence_presence(session, site_id, window, 60.0, settings)

            def report() -> object:
                return units_report(session, window, settings)

            def coverage_map() -> object:
                html[:] = [render_coverage_map(coverage_map_view(session, settings, window))]
                return html

            shift = Shift(window.start.astimezone(settings.tz).date(), "bench", window, False)
            report_html: list[str] = []

            def shift_report() -> object:
                report_html[:] = [render_shift_report(shift_report_view(session, settings, shift))]
                return report_html

            pages = PageCache()

            def coverage_map_page() -> object:
                # What /maps/coverage serves: drawn once, then kept while its data is unchanged.
                return coverage_page(session, settings, window, cache=pages)

            figures = [
                ("coverage", coverage()),
                ("compliance", compliance),
                ("presence (one site)", presence),
                ("unit report", report),
                ("coverage map (HTML), drawn", coverage_map),
                ("coverage map page, data unchanged", coverage_map_page),
                ("shift report (HTML)", shift_report),
            ]
            if name == "postgis":
                figures.append(("coverage, NumPy path", coverage("numpy")))
            for label, work in figures:
                t = best(args.repeat, work)
                rows.append((name, f"{stored:,}", label, f"{t * 1e3:,.0f}", f"{t / t_read:.2f}"))
            size = len(html[0].encode()) if html else 0
            print(f"{name}: coverage map HTML {size / 1e6:.2f} MB")
            size = len(report_html[0].encode()) if report_html else 0
            print(f"{name}: shift report HTML {size / 1e6:.2f} MB")
        timing = browser_load(url, window)
        if timing is None:
            print(f"{name}: no Chromium/Playwright here, map page load not measured")
        else:
            print(
                f"{name}: /maps/coverage in Chromium: server {timing['server']:,.0f} ms, then "
                f"page load {timing['page']:,.0f} ms, map drawn {timing['rendered']:,.0f} ms "
                "after the HTML"
            )
        print(f"{name}: coverage_ratio {ratio:.3f}")
        store.dispose()
        return rows


def main() -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgis", "both"], default="both")
    parser.add_argument("--units", type=int, default=50)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between pings")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = for_backends(args.backend, lambda name, tmp: bench(name, args, tmp))
    header = ("backend", "pings", "computation", "ms", "x read")
    print_table(header, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
