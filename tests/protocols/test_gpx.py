"""GPX import (1.0 and 1.1) and export, with the errors a user uploading a file would see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.errors import InvalidInput
from service.protocols.gpx import parse_gpx, track_to_gpx

# Two tracks, three segments, local times in WITA (+08:00), a waypoint and a route (ignored).
GPX_11 = b"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="OsmAnd~ 4.8.6" xmlns="http://www.topografix.com/GPX/1/1"
     xmlns:osmand="https://osmand.net"
     xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">
  <wpt lat="-1.2650" lon="116.8300"><name>Pos Lantas</name></wpt>
  <rte><rtept lat="-1.2600" lon="116.8200"/></rte>
  <trk>
    <name>Patroli pagi</name>
    <trkseg>
      <trkpt lat="-1.2683" lon="116.8340">
        <ele>12.5</ele><time>2024-11-27T07:00:00+08:00</time><hdop>0.9</hdop>
        <extensions><osmand:speed>4.2</osmand:speed><osmand:heading>88</osmand:heading></extensions>
      </trkpt>
      <trkpt lat="-1.2684" lon="116.8345">
        <ele>12.9</ele><time>2024-11-27T07:00:30+08:00</time>
        <extensions>
          <gpxtpx:TrackPointExtension><gpxtpx:speed>5.0</gpxtpx:speed></gpxtpx:TrackPointExtension>
        </extensions>
      </trkpt>
    </trkseg>
    <trkseg>
      <trkpt lat="-1.2690" lon="116.8360"><time>2024-11-27T07:10:00+08:00</time></trkpt>
    </trkseg>
  </trk>
  <trk>
    <name>Patroli siang</name>
    <trkseg>
      <trkpt lat="-1.2700" lon="116.8380"><time>2024-11-27T05:00:00Z</time></trkpt>
    </trkseg>
  </trk>
</gpx>
"""

GPX_10 = b"""<?xml version="1.0"?>
<gpx version="1.0" creator="GPSBabel" xmlns="http://www.topografix.com/GPX/1/0">
  <trk><name>R2 unit 14</name><trkseg>
    <trkpt lat="-1.2683" lon="116.8340">
      <ele>10.0</ele><time>2024-11-27T02:00:00Z</time><course>135.5</course><speed>8.3</speed>
      <sat>9</sat><hdop>1.2</hdop>
    </trkpt>
  </trkseg></trk>
</gpx>
"""


def test_gpx_11_tracks_and_segments_in_file_order_with_utc_times() -> None:
    pings = parse_gpx(GPX_11, device_id="hp-07")
    assert [(p.lat, p.lon) for p in pings] == [
        (-1.2683, 116.834),
        (-1.2684, 116.8345),
        (-1.269, 116.836),
        (-1.27, 116.838),
    ]
    assert [p.ts for p in pings] == [
        datetime(2024, 11, 26, 23, 0, tzinfo=UTC),
        datetime(2024, 11, 26, 23, 0, 30, tzinfo=UTC),
        datetime(2024, 11, 26, 23, 10, tzinfo=UTC),
        datetime(2024, 11, 27, 5, 0, tzinfo=UTC),
    ]
    assert all(p.ts.utcoffset() == timedelta(0) for p in pings)
    assert {p.device_id for p in pings} == {"hp-07"}
    first, second = pings[0], pings[1]
    assert (first.altitude_m, first.speed_mps, first.heading) == (12.5, 4.2, 88)
    assert first.attributes == {"hdop": 0.9}
    assert second.speed_mps == 5.0  # Garmin TrackPointExtension


def test_gpx_10_speed_course_and_dilution() -> None:
    (p,) = parse_gpx(GPX_10, unit_id=14)
    assert (p.unit_id, p.device_id) == (14, None)
    assert (p.speed_mps, p.heading, p.altitude_m) == (8.3, 135.5, 10.0)
    assert p.ts == datetime(2024, 11, 27, 2, 0, tzinfo=UTC)
    assert p.attributes == {"hdop": 1.2, "satellites": 9}


def test_export_then_import_gives_the_same_points() -> None:
    t0 = datetime(2024, 11, 27, 2, 10, 0, 250000, tzinfo=UTC)
    points = [
        (t0, -1.2683, 116.834, 12.5, 5.4),
        (t0 + timedelta(seconds=30), -1.26901, 116.83512, None, None),
        (t0 + timedelta(seconds=60), -1.27, 116.836, -3.0, 0.0),
    ]
    text = track_to_gpx("Patroli pagi <R2> & co", points)
    assert 'creator="Patroli"' in text
    assert 'version="1.1"' in text
    pings = parse_gpx(text.encode())
    assert [(p.ts, p.lat, p.lon, p.altitude_m, p.speed_mps) for p in pings] == points


def test_export_converts_times_to_utc() -> None:
    wita = datetime(2024, 11, 27, 18, 0, tzinfo=timezone(timedelta(hours=8)))
    text = track_to_gpx("t", [(wita, 1.0, 2.0, None, None)])
    assert "<time>2024-11-27T10:00:00Z</time>" in text


def test_point_without_time_is_rejected_naming_it() -> None:
    data = GPX_11.replace(b"<time>2024-11-27T07:10:00+08:00</time>", b"")
    with pytest.raises(InvalidInput, match=r"track 1 'Patroli pagi', segment 2, point 1 .*<time>"):
        parse_gpx(data)


def test_out_of_range_point_is_rejected_naming_it() -> None:
    data = GPX_11.replace(b'lat="-1.2700"', b'lat="-91.0"')
    with pytest.raises(InvalidInput, match=r"track 2 'Patroli siang', segment 1, point 1: lat"):
        parse_gpx(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00garbage",
        b"this is not xml at all",
        b"<gpx><trk><trkseg><trkpt lat='1'",
        b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"/>',
    ],
)
def test_garbage_is_not_a_gpx_file(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="not a GPX file"):
        parse_gpx(data)


def test_entity_declarations_are_refused() -> None:
    data = b"""<?xml version="1.0"?>
<!DOCTYPE gpx [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<gpx version="1.1"><trk><trkseg><trkpt lat="1" lon="2"><time>2024-01-01T00:00:00Z</time>
<name>&x;</name></trkpt></trkseg></trk></gpx>"""
    with pytest.raises(InvalidInput, match="DOCTYPE"):
        parse_gpx(data)


def test_file_without_track_points_is_rejected() -> None:
    data = b'<gpx version="1.1"><wpt lat="1" lon="2"><time>2024-01-01T00:00:00Z</time></wpt></gpx>'
    with pytest.raises(InvalidInput, match="no track points"):
        parse_gpx(data)


def test_latin1_file_with_declared_encoding() -> None:
    data = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><gpx version="1.1"><trk><name>Café</name>'
        '<trkseg><trkpt lat="1" lon="2"><time>2024-01-01T00:00:00Z</time></trkpt>'
        "</trkseg></trk></gpx>"
    ).encode("latin-1")
    (p,) = parse_gpx(data)
    assert (p.lat, p.lon) == (1, 2)
