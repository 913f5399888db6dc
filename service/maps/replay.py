"""Replay map: unit tracks of a window with a time slider that moves interpolated unit markers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import folium
import numpy as np
import shapely
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.analytics.positions import eligible_fixes
from service.config import Settings
from service.maps.kit import (
    M_PER_DEG,
    FenceLayer,
    WindowView,
    add_page_script,
    base_map,
    page_config,
    page_fields,
)
from service.maps.labels import format_window, page_labels
from service.maps.live import RouteLine, add_base_layers, fence_layers, route_lines
from service.store.models import Unit
from service.window import Window

POINT_BUDGET = 50_000  # points of all tracks together: about 1.3 MB of JSON
MIN_POINTS = 200
MAX_POINTS = 5_000
TOLERANCE_M = 5.0
STOP_M = 3.0  # moves shorter than this between fixes count as standing still
GAP_S = 300.0  # fixes further apart than this: both ends are kept (no smoothing across a gap)
SPEEDS = (1, 10, 30, 60, 120, 300, 600)
DEFAULT_SPEED = 60


@dataclass
class ReplayTrack:
    """A unit's fixes in time order: epoch seconds, lon, lat (numpy arrays)."""

    unit_id: int
    unit_name: str
    t: np.ndarray
    lon: np.ndarray
    lat: np.ndarray


@dataclass
class ReplayMapView(WindowView):
    """Everything the replay map shows: geometry and the tracks of [start, end)."""

    routes: list[RouteLine]
    fences: list[FenceLayer]
    tracks: list[ReplayTrack]
    point_budget: int = POINT_BUDGET


def replay_map_view(
    session: Session,
    settings: Settings,
    window: Window,
    *,
    unit_id: int | None = None,
    lang: str | None = None,
) -> ReplayMapView:
    """Routes, geofences and every unit's (or one unit's) eligible fixes in the window."""
    fixes = eligible_fixes(session, window.start, window.end)
    names = {uid: name for uid, name in session.execute(select(Unit.id, Unit.name))}
    tracks = []
    for uid in np.unique(fixes.unit_id):
        if unit_id is not None and int(uid) != unit_id:
            continue
        mask = fixes.unit_id == uid
        tracks.append(
            ReplayTrack(
                unit_id=int(uid),
                unit_name=names.get(int(uid), f"unit {uid}"),
                t=fixes.t[mask],
                lon=fixes.lon[mask],
                lat=fixes.lat[mask],
            )
        )
    return ReplayMapView(
        routes=route_lines(session),
        fences=fence_layers(session),
        tracks=tracks,
        **page_fields(settings, lang, window),
    )


def _shape_keep(lon: np.ndarray, lat: np.ndarray, tolerance_deg: float) -> np.ndarray:
    """Indices of the vertices Douglas-Peucker keeps (the original index rides along as z)."""
    n = len(lon)
    if n <= 2:
        return np.arange(n)
    line = shapely.linestrings(lon, lat, np.arange(n, dtype=float))
    kept = shapely.get_coordinates(
        shapely.simplify(line, tolerance_deg, preserve_topology=False), include_z=True
    )
    return np.unique(np.rint(kept[:, 2]).astype(np.int64))


def _time_keep(t: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Indices where timing matters: the ends of stops and of reporting gaps."""
    n = len(t)
    if n <= 2:
        return np.arange(n)
    coslat = math.cos(math.radians(float(np.nanmean(lat))))
    step = np.hypot(np.diff(lon) * coslat, np.diff(lat)) * M_PER_DEG
    still = step < STOP_M
    change = np.flatnonzero(np.diff(still.astype(np.int8)) != 0) + 1
    gap = np.flatnonzero(np.diff(t) > GAP_S)
    return np.unique(np.concatenate(([0, n - 1], change, gap, gap + 1)))


def simplify_track(
    t: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    max_points: int = MAX_POINTS,
    tolerance_m: float = TOLERANCE_M,
) -> np.ndarray:
    """Indices of at most `max_points` fixes keeping the track's shape and timing."""
    ok = np.isfinite(t) & np.isfinite(lon) & np.isfinite(lat)
    idx = np.flatnonzero(ok)
    if len(idx) <= max(max_points, 2):
        return idx
    t, lon, lat = t[idx], lon[idx], lat[idx]
    timing = _time_keep(t, lon, lat)
    tol = max(tolerance_m, 0.1) / M_PER_DEG
    for _ in range(40):
        keep = np.union1d(_shape_keep(lon, lat, tol), timing)
        if len(keep) <= max_points:
            break
        tol *= 2
    if len(keep) > max_points:
        # Still too many (e.g. many short stops): thin evenly, always keeping both ends.
        pick = np.linspace(0, len(keep) - 1, max(max_points, 2)).round().astype(np.int64)
        keep = keep[np.unique(pick)]
    return idx[keep]


def point_cap(n_tracks: int, budget: int = POINT_BUDGET) -> int:
    """Most points per track so that all tracks together stay near `budget`."""
    if n_tracks <= 0:
        return MAX_POINTS
    return max(MIN_POINTS, min(MAX_POINTS, budget // n_tracks))


def replay_data(view: ReplayMapView) -> dict[str, Any]:
    """The compact track data: per unit [[t, lon, lat], ...] with t in seconds after `t0`."""
    t0 = math.floor(view.start.timestamp())
    cap = point_cap(len(view.tracks), view.point_budget)
    units = []
    for track in view.tracks:
        keep = simplify_track(track.t, track.lon, track.lat, cap)
        if len(keep) == 0:
            continue
        rel = np.rint(track.t[keep] - t0).astype(np.int64).tolist()
        lons = np.round(track.lon[keep], 5).tolist()
        lats = np.round(track.lat[keep], 5).tolist()
        units.append(
            {
                "id": track.unit_id,
                "name": track.unit_name,
                "n": len(track.t),
                "track": [list(p) for p in zip(rel, lons, lats, strict=True)],
            }
        )
    return {"t0": t0, "duration": math.ceil(view.end.timestamp()) - t0, "units": units}


def _track_bounds(data: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """Lon/lat extent of all tracks."""
    pts = [p for u in data["units"] for p in u["track"]]
    if not pts:
        return None
    lons = [p[1] for p in pts]
    lats = [p[2] for p in pts]
    return min(lons), min(lats), max(lons), max(lats)


def build_replay_map(view: ReplayMapView) -> folium.Map:
    """The folium Map of the replay page."""
    t = page_labels(view.lang)
    window = format_window(view.start, view.end, view.tz)
    fmap = base_map(view, f"{t['replay_title']} · {window}")
    bounds = add_base_layers(fmap, view, view.routes, view.fences, t)
    data = replay_data(view)
    extent = _track_bounds(data)
    if extent is not None:
        bounds.add(*extent)
    config = {
        **page_config(view, t, bounds),
        "window": window,
        "speeds": list(SPEEDS),
        "speed": DEFAULT_SPEED,
        **data,
    }
    add_page_script(fmap, view.static_prefix, "replay", "PatroliReplay.start", config)
    folium.LayerControl(collapsed=True, position="bottomleft").add_to(fmap)
    return fmap


def render_replay_map(view: ReplayMapView) -> str:
    """The replay map for `view` as a complete HTML page."""
    return str(build_replay_map(view).get_root().render())
