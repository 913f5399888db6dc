"""GPX that keeps its shape: tracks and segments, course and battery, valid GPX 1.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpxpy
import pytest
import xmlschema
from fastapi.testclient import TestClient

from service.protocols.gpx import (
    PATROLI_NS,
    TrackPoint,
    parse_gpx,
    split_track,
    tracks_to_gpx,
)

GPX_XSD = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "gpx-1.1.xsd")
T0 = datetime(2024, 11, 27, 1, 0, tzinfo=UTC)
WINDOW = {"from": "2024-11-26", "to": "2024-11-28"}


def _point(t: int, n: int) -> str:
    ts = (T0 + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lat, lon = -1.2683 - n * 0.0001, 116.834 + n * 0.0001
    return (
        f'<trkpt lat="{lat:.5f}" lon="{lon:.5f}"><time>{ts}</time><extensions>'
        f"<gpxtpx:TrackPointExtension><gpxtpx:speed>4.5</gpxtpx:speed>"
        f"<gpxtpx:course>{(n * 40) % 360}</gpxtpx:course></gpxtpx:TrackPointExtension>"
        f"<patroli:battery>{90 - n}</patroli:battery></extensions></trkpt>"
    )


def _gpx(tracks: list[list[list[int]]]) -> bytes:
    """A GPX 1.1 file of tracks of segments of points (offsets in s after T0)."""
    body, n = "", 0
    for t, segments in enumerate(tracks, start=1):
        body += f"<trk><name>Patroli {t}</name>"
        for offsets in segments:
            body += "<trkseg>"
            for offset in offsets:
                body += _point(offset, n)
                n += 1
            body += "</trkseg>"
        body += "</trk>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2" '
        f'xmlns:patroli="{PATROLI_NS}">{body}</gpx>'
    ).encode()


# Two tracks: the first with two segments (no gap between them longer than 60 s, so only the
# file's boundary splits them), the second with three.
SHAPE = [
    [[0, 10, 20], [30, 40]],
    [[600, 610], [620, 630, 640], [650]],
]


def _shape(text: str) -> list[list[int]]:
    """Points per segment per track of a GPX document."""
    gpx = gpxpy.parse(text)
    return [[len(segment.points) for segment in track.segments] for track in gpx.tracks]


def test_split_track_at_gaps_and_imported_parts() -> None:
    def at(s: int, part: tuple[int, int] | None = None) -> TrackPoint:
        return TrackPoint(T0 + timedelta(seconds=s), 1.0, 2.0, part=part)

    points = [at(0), at(30), at(200), at(210), at(220, (1, 1)), at(230, (1, 2)), at(240, (2, 1))]
    tracks = split_track(points, max_gap_s=60)
    assert [[len(s) for s in t] for t in tracks] == [[2, 2], [1, 1], [1]]
    assert split_track([], max_gap_s=60) == []


def test_export_is_valid_gpx_11_with_course_and_battery() -> None:
    points = [
        TrackPoint(T0, -1.2683, 116.834, 12.5, 4.2, 359.5, 81.0),
        TrackPoint(T0 + timedelta(seconds=5), -1.2684, 116.8341, None, None, 360.0, None),
        TrackPoint(T0 + timedelta(seconds=9), -1.2685, 116.8342, None, None, None, 80.0),
        TrackPoint(T0 + timedelta(seconds=99), -1.2686, 116.8343),
    ]
    text = tracks_to_gpx("Polwan <02> & co", split_track(points, max_gap_s=60))
    GPX_XSD.validate(text)
    assert _shape(text) == [[3, 1]]
    assert "<gpxtpx:course>359.5</gpxtpx:course>" in text
    assert "<gpxtpx:course>0.0</gpxtpx:course>" in text  # 360 is 0 in the course type
    assert "<patroli:battery>81.0</patroli:battery>" in text
    pings = parse_gpx(text.encode())
    assert [(p.speed_mps, p.heading, p.battery) for p in pings] == [
        (4.2, 359.5, 81.0),
        (None, 0.0, None),
        (None, None, 80.0),
        (None, None, None),
    ]


def test_schema_refuses_an_invalid_document() -> None:
    text = tracks_to_gpx("x", [[[TrackPoint(T0, 1.0, 2.0)]]]).replace('version="1.1"', "")
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        GPX_XSD.validate(text)


def test_import_records_segments_only_when_asked() -> None:
    data = _gpx(SHAPE)
    assert all(p.attributes is None or "gpx_track" not in p.attributes for p in parse_gpx(data))
    parts = [(p.attributes or {}).get("gpx_segment") for p in parse_gpx(data, segments=True)]
    assert parts == [1, 1, 1, 2, 2, 1, 1, 2, 2, 2, 3]


def test_import_then_export_keeps_tracks_and_segments(client: TestClient) -> None:
    unit = client.post("/api/v1/units", json={"name": "Polwan 02", "device_id": "hp-02"}).json()
    uid = unit["id"]
    data = _gpx(SHAPE)
    r = client.post(f"/api/v1/units/{uid}/gpx", files={"file": ("shift.gpx", data)})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 11
    r = client.get(f"/api/v1/units/{uid}/track.gpx", params=WINDOW)
    assert r.status_code == 200
    GPX_XSD.validate(r.text)
    assert _shape(r.text) == [[len(s) for s in t] for t in SHAPE]
    exported = parse_gpx(r.text.encode())
    imported = parse_gpx(data)
    assert [(p.ts, p.heading, p.battery, p.speed_mps) for p in exported] == [
        (p.ts, p.heading, p.battery, p.speed_mps) for p in imported
    ]


def test_live_fixes_split_where_the_gap_exceeds_max_gap(client: TestClient) -> None:
    client.post("/api/v1/units", json={"name": "R2 14", "device_id": "r2-14"})
    offsets = [0, 30, 60, 200, 230, 400]
    pings = [
        {
            "device_id": "r2-14",
            "lat": -1.2683 - i * 0.0001,
            "lon": 116.834,
            "ts": (T0 + timedelta(seconds=s)).isoformat(),
            "heading": 90,
            "battery": 70,
        }
        for i, s in enumerate(offsets)
    ]
    r = client.post("/api/v1/pings", json=pings)
    assert r.status_code == 200, r.text
    uid = client.get("/api/v1/units").json()[0]["id"]
    r = client.get(f"/api/v1/units/{uid}/track.gpx", params=WINDOW)
    GPX_XSD.validate(r.text)
    assert _shape(r.text) == [[3, 2, 1]]  # gaps of 140 s and 170 s exceed the 60 s default
    assert r.text.count("<patroli:battery>70.0</patroli:battery>") == 6
