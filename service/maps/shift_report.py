"""The printable shift report: one HTML page (A4 print styles) with SVG map, charts and tables.

Everything the page shows is computed here as plain values (numbers, path data, texts) and put
into the package template `templates/shift_report.html` by Jinja2 with autoescape on: names
typed by users are only ever template data, escaped, never template source. The map is drawn by
the server in Web Mercator (no tiles), the charts and the timeline are SVG too, and the page
runs no script, so a browser prints it as it is and headless Chromium makes the PDF of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.analytics.reports import MAX_STEP_GAP_S
from service.analytics.shift import Shift, ShiftFigures, shift_figures
from service.config import Settings
from service.geo.projection import web_mercator
from service.maps.coverage import segment_age, thin_track, track_point_cap
from service.maps.kit import (
    CORRIDOR_COLOR,
    CRITICAL_COLOR,
    CRITICAL_KIND,
    FENCE_COLOR,
    OVERDUE_COLOR,
    PRESENCE_COLORS,
    STALE_COLOR,
    VISITED_COLOR,
    presence_level,
    unit_color,
)
from service.maps.labels import (
    EN_DASH,
    event_labels,
    format_decimal,
    format_duration,
    format_percent,
    format_time,
    format_window,
    normalize_lang,
    report_labels,
    zone_label,
)
from service.store.models import Event, Geofence, PatrolRoute, Unit
from service.window import Window

MAP_W, MAP_H, MAP_MIN_H = 1000.0, 640.0, 360.0
MAP_PAD = 0.06  # of the drawn extent, on every side
CHART_W, CHART_H = 1000.0, 130.0
TIMELINE_W, TIMELINE_LABEL_W, TIMELINE_ROW_H = 1000.0, 230.0, 22.0
TRACK_BUDGET = 20_000  # track points drawn in all
MAX_ALERTS = 200  # newest alerts listed; older ones are counted
LABEL_CHARS = 34  # longest name written in a chart's label column (the full name is its title)
AGE_COLORS = {"fresh": VISITED_COLOR, "stale": STALE_COLOR, "overdue": OVERDUE_COLOR}


# ---- view -------------------------------------------------------------------------------


@dataclass
class Path:
    """An SVG path: its data, colour and hover title."""

    d: str
    color: str
    title: str = ""
    stroke: str = ""  # outline colour, when it differs from the fill


@dataclass
class Dot:
    """A unit's last position on the map."""

    x: float
    y: float
    color: str
    title: str


@dataclass
class ScaleBar:
    """A map scale bar from x1 to x2 at height y."""

    x1: float
    x2: float
    y: float
    label: str


@dataclass
class MapPicture:
    """The static map of the window, in SVG user units (MAP_W x MAP_H)."""

    width: float = MAP_W
    height: float = MAP_H
    corridors: list[Path] = field(default_factory=list)
    segments: list[Path] = field(default_factory=list)
    fences: list[Path] = field(default_factory=list)
    tracks: list[Path] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    scale: ScaleBar | None = None


@dataclass
class Bar:
    """One hour's bar of a presence chart."""

    x: float
    y: float
    w: float
    h: float
    color: str
    hour: str
    value: str
    title: str


@dataclass
class SiteChart:
    """Presence per hour at one critical site."""

    name: str
    ratio: str
    bars: list[Bar]
    width: float = CHART_W
    height: float = CHART_H


@dataclass
class Gap:
    """An uncovered interval on a timeline row."""

    x: float
    w: float
    title: str


@dataclass
class TimelineRow:
    """One route or site on the timeline."""

    label: str
    title: str
    y: float
    gaps: list[Gap]


@dataclass
class Timeline:
    """Uncovered intervals per route and site along the window."""

    rows: list[TimelineRow]
    ticks: list[tuple[float, str]]
    width: float = TIMELINE_W
    height: float = 0.0
    label_w: float = TIMELINE_LABEL_W
    row_h: float = TIMELINE_ROW_H


@dataclass
class Table:
    """A table as plain text cells; `numeric` marks the right-aligned columns."""

    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    more: int = 0  # rows left out (alerts beyond MAX_ALERTS)


@dataclass
class ShiftReportView:
    """Everything the shift report page shows."""

    lang: str
    t: dict[str, str]
    operation: str
    shift_label: str
    window_text: str
    zone: str
    generated: str
    running: bool
    map: MapPicture
    legend: list[tuple[str, str]]
    routes: Table
    sites: Table
    charts: list[SiteChart]
    timeline: Timeline
    units: Table
    alerts: Table
    unit_legend: list[tuple[str, str]]
    pdf_href: str | None = None


# ---- the map ----------------------------------------------------------------------------


def _num(v: float) -> str:
    """A coordinate in SVG path data (one decimal)."""
    return f"{v:.1f}"


class _Frame:
    """Fits Web Mercator metres into the map's SVG box (north up, same scale both ways)."""

    def __init__(self, box: tuple[float, float, float, float], width: float, height: float):
        minx, miny, maxx, maxy = box
        dx, dy = max(maxx - minx, 1.0), max(maxy - miny, 1.0)
        minx, maxx = minx - dx * MAP_PAD, maxx + dx * MAP_PAD
        miny, maxy = miny - dy * MAP_PAD, maxy + dy * MAP_PAD
        self.scale = min(width / (maxx - minx), height / (maxy - miny))
        self.x0 = (minx + maxx) / 2 - width / 2 / self.scale
        self.y0 = (miny + maxy) / 2 + height / 2 / self.scale

    def px(self, lons: Any, lats: Any) -> tuple[np.ndarray, np.ndarray]:
        """SVG x, y of WGS84 longitudes and latitudes."""
        mx, my = web_mercator(lons, lats)
        return (mx - self.x0) * self.scale, (self.y0 - my) * self.scale


def _ring_d(frame: _Frame, coords: np.ndarray, close: bool) -> str:
    """Path data of one line or ring."""
    if coords.shape[0] < 2:
        return ""
    x, y = frame.px(coords[:, 0], coords[:, 1])
    pts = " L".join(f"{_num(a)},{_num(b)}" for a, b in zip(x.tolist(), y.tolist(), strict=True))
    return f"M{pts}{' Z' if close else ''}"


def _polygon_d(frame: _Frame, poly: Polygon) -> str:
    """Path data of a polygon with its holes (drawn with fill-rule evenodd)."""
    rings = [poly.exterior, *poly.interiors]
    return " ".join(_ring_d(frame, np.asarray(r.coords)[:, :2], True) for r in rings)


def _extent(
    geoms: Iterable[Any], tracks: Iterable[np.ndarray]
) -> tuple[float, float, float, float] | None:
    """Web Mercator bounding box of the geometries and tracks, or None when there is nothing."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for geom in geoms:
        if geom is None or geom.is_empty:
            continue
        coords = shapely.get_coordinates(geom)
        xs.append(coords[:, 0])
        ys.append(coords[:, 1])
    for coords in tracks:
        if coords.shape[0]:
            xs.append(coords[:, 0])
            ys.append(coords[:, 1])
    if not xs:
        return None
    mx, my = web_mercator(np.concatenate(xs), np.concatenate(ys))
    ok = np.isfinite(mx) & np.isfinite(my)
    if not ok.any():
        return None
    return (float(mx[ok].min()), float(my[ok].min()), float(mx[ok].max()), float(my[ok].max()))


def _scale_bar(frame: _Frame, lat: float, height: float, lang: str) -> ScaleBar:
    """A scale bar of a round length about a fifth of the map's width."""
    ground_per_px = np.cos(np.radians(lat)) / frame.scale
    target = MAP_W / 5 * ground_per_px
    length = 1.0
    for exp in range(0, 7):
        for step in (1, 2, 5):
            if step * 10**exp <= target:
                length = float(step * 10**exp)
    px = length / ground_per_px
    label = f"{format_decimal(length / 1000, 1, lang)} km" if length >= 1000 else f"{length:g} m"
    return ScaleBar(20.0, 20.0 + px, height - 20.0, label)


def _track_pieces(t: np.ndarray, coords: np.ndarray, cap: int) -> list[np.ndarray]:
    """A unit's track cut where fixes are over 10 minutes apart, each piece simplified."""
    cuts = np.flatnonzero(np.diff(t) > MAX_STEP_GAP_S) + 1
    pieces = []
    for piece_t, piece in zip(np.split(t, cuts), np.split(coords, cuts), strict=True):
        if piece.shape[0] < 2:
            continue
        share = max(2, int(cap * piece_t.size / max(t.size, 1)))
        pieces.append(np.asarray(thin_track([tuple(p) for p in piece.tolist()], max_points=share)))
    return pieces


def _map_picture(
    figures: ShiftFigures, names: dict[int, str], segment_m: float, lang: str
) -> MapPicture:
    """Routes coloured by segment age, corridors, geofences by presence, tracks, last fixes."""
    fixes = figures.fixes
    runs: list[tuple[int, np.ndarray, np.ndarray]] = []
    if fixes.t.size:
        starts = np.flatnonzero(np.r_[True, fixes.unit_id[1:] != fixes.unit_id[:-1]])
        ends = np.r_[starts[1:], fixes.unit_id.size]
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            coords = np.column_stack((fixes.lon[a:b], fixes.lat[a:b]))
            runs.append((int(fixes.unit_id[a]), fixes.t[a:b], coords))
    geoms = [r.corridor.area for r in figures.routes] + [f.fence.outline for f in figures.fences]
    box = _extent(geoms, (c for _, _, c in runs))
    picture = MapPicture()
    if box is None:
        return picture
    # As tall as the drawn extent needs (with its margins) at the full width, within limits.
    dx, dy = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    picture.height = round(min(MAP_H, max(MAP_MIN_H, MAP_W * dy / dx)), 1)
    frame = _Frame(box, MAP_W, picture.height)
    end = figures.window.end
    for route in figures.routes:
        picture.corridors.append(
            Path(_polygon_d(frame, route.corridor.area), CORRIDOR_COLOR, route.row.name)
        )
        by_age: dict[str, list[str]] = {"fresh": [], "stale": [], "overdue": []}
        lines = route.corridor.segment_lines(segment_m)
        for seg, line in zip(route.coverage.segments, lines, strict=True):
            if line is None or line.is_empty:
                continue
            last = (
                datetime.fromtimestamp(seg.last_visit, UTC)
                if seg.visited and seg.last_visit is not None
                else None
            )
            age = segment_age(last, end, route.row.revisit_s)
            by_age[age].append(_ring_d(frame, np.asarray(LineString(line).coords)[:, :2], False))
        for age, parts in by_age.items():
            if parts:
                picture.segments.append(Path(" ".join(parts), AGE_COLORS[age], route.row.name))
    for f in figures.fences:
        if f.fence.outline.is_empty:
            continue
        critical = f.row.kind == CRITICAL_KIND
        color = PRESENCE_COLORS[presence_level(f.presence.coverage_ratio)]
        outline = CRITICAL_COLOR if critical else FENCE_COLOR
        title = f"{f.row.name} · {format_percent(f.presence.coverage_ratio, lang)}"
        picture.fences.append(Path(_polygon_d(frame, f.fence.outline), color, title, outline))
    cap = track_point_cap(len(runs), TRACK_BUDGET)
    for unit_id, t, coords in runs:
        name = names.get(unit_id, f"unit {unit_id}")
        color = unit_color(unit_id)
        d = " ".join(_ring_d(frame, piece, False) for piece in _track_pieces(t, coords, cap))
        if d:
            picture.tracks.append(Path(d, color, name))
        x, y = frame.px(coords[-1:, 0], coords[-1:, 1])
        picture.dots.append(Dot(float(x[0]), float(y[0]), color, name))
    centre_lat = float(np.degrees(2 * np.arctan(np.exp(((box[1] + box[3]) / 2) / 6378137.0))) - 90)
    picture.scale = _scale_bar(frame, centre_lat, picture.height, lang)
    return picture


# ---- charts -----------------------------------------------------------------------------


def _hhmm(t: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(t, UTC).astimezone(tz).strftime("%H:%M")


def _span_text(lo: float, hi: float, tz: ZoneInfo) -> str:
    return f"{_hhmm(lo, tz)}{EN_DASH}{_hhmm(hi, tz)} ({format_duration(hi - lo)})"


def _charts(figures: ShiftFigures, lang: str, tz: ZoneInfo) -> list[SiteChart]:
    """A presence-per-hour bar chart for each critical site."""
    start, end = figures.window.start.timestamp(), figures.window.end.timestamp()
    span = max(end - start, 1.0)
    left, bottom, top = 40.0, 22.0, 16.0
    plot_w, plot_h = CHART_W - left - 8.0, CHART_H - bottom - top
    charts = []
    for f in figures.fences:
        if f.row.kind != CRITICAL_KIND:
            continue
        bars = []
        for lo, hi, hour, share in f.hours:
            x = left + (lo - start) / span * plot_w
            w = (hi - lo) / span * plot_w
            h = share * plot_h
            pct = format_percent(share, lang)
            bars.append(
                Bar(
                    x=x + w * 0.1,
                    y=top + plot_h - h,
                    w=w * 0.8,
                    h=h,
                    color=PRESENCE_COLORS[presence_level(share)],
                    hour=f"{hour:02d}",
                    value=f"{round(share * 100)}",
                    title=f"{_span_text(lo, hi, tz)}: {pct}",
                )
            )
        ratio = format_percent(f.presence.coverage_ratio, lang)
        charts.append(SiteChart(f.row.name, ratio, bars))
    return charts


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "\u2026"


def _timeline(figures: ShiftFigures, t: dict[str, str], tz: ZoneInfo) -> Timeline:
    """Uncovered intervals of every route, then of every critical site."""
    start, end = figures.window.start.timestamp(), figures.window.end.timestamp()
    span = max(end - start, 1.0)
    plot_w = TIMELINE_W - TIMELINE_LABEL_W - 8.0
    top = 22.0

    def gaps(intervals: np.ndarray) -> list[Gap]:
        return [
            Gap(
                TIMELINE_LABEL_W + (lo - start) / span * plot_w,
                max((hi - lo) / span * plot_w, 0.5),
                _span_text(lo, hi, tz),
            )
            for lo, hi in intervals.tolist()
        ]

    items: list[tuple[str, np.ndarray]] = [
        (f"{t['route']}: {r.row.name}", r.uncovered) for r in figures.routes
    ]
    items += [
        (f"{t['critical_site']}: {f.row.name}", f.presence.uncovered)
        for f in figures.fences
        if f.row.kind == CRITICAL_KIND
    ]
    rows = [
        TimelineRow(_short(name), name, top + i * TIMELINE_ROW_H, gaps(intervals))
        for i, (name, intervals) in enumerate(items)
    ]
    ticks = []
    hours = np.arange(np.ceil(start / 3600.0) * 3600.0, end + 1e-9, 3600.0)
    step = max(1, int(np.ceil(hours.size / 12)))  # at most about a dozen labels
    for h in hours.tolist():
        local = datetime.fromtimestamp(h, UTC).astimezone(tz)
        if local.minute != 0 or local.hour % step:
            continue
        ticks.append((TIMELINE_LABEL_W + (h - start) / span * plot_w, local.strftime("%H:%M")))
    height = top + max(len(rows), 1) * TIMELINE_ROW_H + 4.0
    return Timeline(rows, ticks, height=height)


# ---- tables -----------------------------------------------------------------------------


def _longest(intervals: np.ndarray, tz: ZoneInfo, none: str) -> str:
    if intervals.shape[0] == 0:
        return none
    lo, hi = intervals[int(np.argmax(intervals[:, 1] - intervals[:, 0]))].tolist()
    return _span_text(lo, hi, tz)


def _route_table(figures: ShiftFigures, t: dict[str, str], lang: str, tz: ZoneInfo) -> Table:
    rows = [
        [
            r.row.name,
            format_percent(r.coverage.coverage_ratio, lang),
            format_duration(float((r.uncovered[:, 1] - r.uncovered[:, 0]).sum())),
            _longest(r.uncovered, tz, t["none"]),
        ]
        for r in figures.routes
    ]
    columns = [t["col_route"], t["col_coverage"], t["col_uncovered"], t["col_longest"]]
    return Table(columns, rows, [False, True, True, False])


def _site_table(figures: ShiftFigures, t: dict[str, str], lang: str, tz: ZoneInfo) -> Table:
    rows = [
        [
            f.row.name,
            format_percent(f.presence.coverage_ratio, lang),
            format_duration(float((f.presence.uncovered[:, 1] - f.presence.uncovered[:, 0]).sum())),
            _longest(f.presence.uncovered, tz, t["none"]),
        ]
        for f in figures.fences
        if f.row.kind == CRITICAL_KIND
    ]
    columns = [t["col_site"], t["presence"], t["col_uncovered"], t["col_longest"]]
    return Table(columns, rows, [False, True, True, False])


def _unit_table(figures: ShiftFigures, t: dict[str, str], lang: str, tz: ZoneInfo) -> Table:
    """Per unit: distance, time on and off route, stops, last fix."""
    rows = []
    for u in figures.units:
        rep = u.report
        last = (
            "\u2014"
            if rep.last_fix is None
            else format_time(datetime.fromtimestamp(rep.last_fix, UTC), tz, with_zone=False)
        )
        rows.append(
            [
                rep.name,
                format_decimal(rep.distance_m / 1000.0, 2, lang),
                format_duration(rep.time_on_route_s),
                "\u2014" if u.time_off_route_s is None else format_duration(u.time_off_route_s),
                str(rep.stops),
                last,
            ]
        )
    columns = [
        t["col_unit"],
        t["col_distance"],
        t["col_on_route"],
        t["col_off_route"],
        t["col_stops"],
        t["col_last_fix"],
    ]
    return Table(columns, rows, [False, True, True, True, True, False])


def _detail(event: Event, t: dict[str, str], lang: str) -> str:
    """A short reading of an event's details."""
    details = event.details or {}
    parts = []
    if isinstance(details.get("alarm"), str):
        parts.append(details["alarm"])
    battery = details.get("battery")
    if isinstance(battery, int | float) and not isinstance(battery, bool):
        parts.append(f"{t['battery']} {format_decimal(float(battery), 0, lang)}%")
    if details.get("late") is True:
        parts.append(t["late"])
    return ", ".join(parts)


def alert_rows(
    session: Session, window: Window, lang: str, tz: ZoneInfo, limit: int = MAX_ALERTS
) -> Table:
    """The alerts table: the window's events, newest first, at most `limit` (older counted).

    The one place that decides the alerts' columns and cells (plain text): a column added here
    (its header and one cell per row) shows on the page and in the PDF as it is.
    """
    t = report_labels(lang)
    names = event_labels(lang)
    # An acknowledgement is shown with the alert it handles, not as an alert of its own.
    in_window = (Event.ts >= window.start) & (Event.ts < window.end) & (Event.type != "ack")
    total = int(session.scalar(select(func.count()).select_from(Event).where(in_window)) or 0)
    stmt = (
        select(Event, Unit.name, PatrolRoute.name, Geofence.name)
        .outerjoin(Unit, Unit.id == Event.unit_id)
        .outerjoin(PatrolRoute, PatrolRoute.id == Event.patrol_route_id)
        .outerjoin(Geofence, Geofence.id == Event.geofence_id)
        .where(in_window)
        .order_by(Event.ts.desc(), Event.id.desc())
        .limit(limit)
    )
    rows = []
    for event, unit, route, fence in session.execute(stmt):
        rows.append(
            [
                format_time(event.ts, tz, with_zone=False),
                names.get(event.type, event.type),  # type: ignore[call-overload]
                unit or "",
                " · ".join(n for n in (route, fence) if n),
                _detail(event, t, lang),
                _handled(event, t, tz),
            ]
        )
    columns = [
        t["col_time"],
        t["col_type"],
        t["col_unit"],
        t["col_place"],
        t["col_detail"],
        t["col_handled"],
    ]
    return Table(columns, rows, [False] * len(columns), more=max(0, total - len(rows)))


def _handled(event: Event, t: dict[str, str], tz: ZoneInfo) -> str:
    """Who acknowledged an alert, when, and their note; empty when nobody has."""
    if event.acked_at is None:
        return ""
    who = f"{format_time(event.acked_at, tz, with_zone=False)} {t['by']} {event.acked_by or '?'}"
    return f"{who}: {event.ack_note}" if event.ack_note else who


# ---- page -------------------------------------------------------------------------------


def _shift_label(shift: Shift, t: dict[str, str]) -> str:
    if shift.name == "day":
        return t["shift_day"]
    if shift.name == "night":
        return t["shift_night"]
    return f"{t['shift_span']} {shift.name.replace('-', EN_DASH)}"


def shift_report_view(
    session: Session,
    settings: Settings,
    shift: Shift,
    *,
    lang: str | None = None,
    pdf_href: str | None = None,
) -> ShiftReportView:
    """The shift report of `shift`, in `lang` (default: the setting)."""
    code = normalize_lang(lang or settings.language)
    t = report_labels(code)
    tz = settings.tz
    figures = shift_figures(session, shift.window, settings)
    names = {u.report.unit_id: u.report.name for u in figures.units}
    legend = [
        (VISITED_COLOR, t["seg_fresh"]),
        (STALE_COLOR, t["seg_stale"]),
        (OVERDUE_COLOR, t["seg_overdue"]),
        (CORRIDOR_COLOR, t["corridor"]),
        (CRITICAL_COLOR, t["critical_site"]),
        (FENCE_COLOR, t["geofence"]),
        (PRESENCE_COLORS["good"], t["presence_good"]),
        (PRESENCE_COLORS["fair"], t["presence_fair"]),
        (PRESENCE_COLORS["poor"], t["presence_poor"]),
    ]
    seen = {int(u) for u in np.unique(figures.fixes.unit_id).tolist()}
    unit_legend = [(unit_color(uid), names.get(uid, f"unit {uid}")) for uid in sorted(seen)]
    return ShiftReportView(
        lang=code,
        t=t,
        operation=settings.operation_name,
        shift_label=_shift_label(shift, t),
        window_text=f"{shift.date.strftime('%d-%m-%Y')} · "
        + format_window(shift.window.start, shift.window.end, tz),
        zone=zone_label(tz),
        generated=format_time(datetime.now(UTC), tz),
        running=shift.running,
        map=_map_picture(figures, names, settings.segment_m, code),
        legend=legend,
        routes=_route_table(figures, t, code, tz),
        sites=_site_table(figures, t, code, tz),
        charts=_charts(figures, code, tz),
        timeline=_timeline(figures, t, tz),
        units=_unit_table(figures, t, code, tz),
        alerts=alert_rows(session, shift.window, code, tz),
        unit_legend=unit_legend,
        pdf_href=pdf_href,
    )


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates (package files, autoescape on)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("service.maps", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_shift_report(view: ShiftReportView) -> str:
    """The shift report page as HTML."""
    return _environment().get_template("shift_report.html").render(view=view, t=view.t)
