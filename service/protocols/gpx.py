"""GPX import and export: track points to pings, and a unit's track to GPX 1.1.

Only tracks (`<trk>`) are imported: routes (`<rte>`) are planned paths and waypoints
(`<wpt>`) single marks, neither is a record of where a unit was. An import can remember each
point's track and segment (ping attributes `gpx_track`, `gpx_segment`) so that the export keeps
the file's shape: it starts a track where the imported track changes and a segment where the
imported segment changes or the gap between fixes exceeds `max_gap_s`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple
from xml.etree import ElementTree as ET

import gpxpy
import gpxpy.gpx
from pydantic import ValidationError

from service.errors import InvalidInput, describe_validation
from service.protocols import as_utc, make_ping, non_negative, number
from service.schemas import PingIn

# Garmin's TrackPointExtension v2 carries speed and course, which GPX 1.1 itself lacks.
GPXTPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"
# Patroli's own extension namespace: <patroli:battery> (percent) has no standard element.
PATROLI_NS = "urn:patroli:gpx:1"
CREATOR = "Patroli"
# Ping attributes holding an imported point's 1-based track and segment in its file.
TRACK_KEY = "gpx_track"
SEGMENT_KEY = "gpx_segment"

# Extension element local names (any namespace, e.g. gpxtpx:speed, osmand:speed) read as fields.
_SPEED_TAGS = ("speed",)
_HEADING_TAGS = ("course", "heading", "bearing")
_ACCURACY_TAGS = ("accuracy", "acc", "hacc")
_BATTERY_TAGS = ("battery", "batt")

_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


class TrackPoint(NamedTuple):
    """One exported fix; `part` is its imported (track, segment), None for a live fix."""

    ts: datetime
    lat: float
    lon: float
    altitude_m: float | None = None
    speed_mps: float | None = None
    heading: float | None = None
    battery: float | None = None
    part: tuple[int, int] | None = None


def parse_gpx(
    data: bytes,
    *,
    device_id: str | None = None,
    unit_id: int | None = None,
    segments: bool = False,
) -> list[PingIn]:
    """Pings from every track point of a GPX 1.0 or 1.1 file, in file order.

    With `segments`, each ping's attributes record its track and segment in the file.
    """
    text = _decode(data)
    # GPX never needs a DTD; refusing one rules out entity expansion and external entities
    # whichever XML parser gpxpy picks (it prefers lxml when installed).
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise InvalidInput("not a GPX file: DOCTYPE and ENTITY declarations are not accepted")
    root = _root_name(text)
    if root != "gpx":
        raise InvalidInput(f"not a GPX file: the root element is {root!r}, not 'gpx'")
    try:
        gpx = gpxpy.parse(text)
    except (gpxpy.gpx.GPXException, ValueError) as exc:
        raise InvalidInput(f"not a GPX file: {exc}") from None

    pings = [
        _ping(point, where, device_id, unit_id, part if segments else None)
        for point, where, part in _track_points(gpx)
    ]
    if not pings:
        raise InvalidInput(
            "the GPX file has no track points (routes and waypoints are not imported)"
        )
    return pings


def track_to_gpx(
    name: str,
    points: Iterable[tuple[datetime, float, float, float | None, float | None]],
) -> str:
    """GPX 1.1 text with one track and segment of (time, lat, lon, altitude_m, speed_mps)."""
    return tracks_to_gpx(name, [[[TrackPoint(*point) for point in points]]])


def split_track(points: Iterable[TrackPoint], max_gap_s: float) -> list[list[list[TrackPoint]]]:
    """Time-ordered fixes as tracks of segments: split at imported parts and gaps > max_gap_s."""
    tracks: list[list[list[TrackPoint]]] = []
    previous: TrackPoint | None = None
    for point in points:
        if previous is None or _track_of(point) != _track_of(previous):
            tracks.append([[point]])
        elif point.part != previous.part or (point.ts - previous.ts).total_seconds() > max_gap_s:
            tracks[-1].append([point])
        else:
            tracks[-1][-1].append(point)
        previous = point
    return tracks


def _track_of(point: TrackPoint) -> int | None:
    return point.part[0] if point.part else None


def tracks_to_gpx(name: str, tracks: Iterable[Iterable[Iterable[TrackPoint]]]) -> str:
    """GPX 1.1 text of tracks of segments of fixes, each track named `name`.

    Speed and course go in Garmin's TrackPointExtension v2, battery in <patroli:battery>.
    """
    gpx = gpxpy.gpx.GPX()
    gpx.creator = CREATOR
    gpx.nsmap["gpxtpx"] = GPXTPX_NS
    gpx.nsmap["patroli"] = PATROLI_NS
    for segments in tracks:
        track = gpxpy.gpx.GPXTrack(name=name)
        gpx.tracks.append(track)
        for points in segments:
            segment = gpxpy.gpx.GPXTrackSegment()
            track.segments.append(segment)
            segment.points.extend(_track_point(point) for point in points)
    return gpx.to_xml(version="1.1")


def _track_point(point: TrackPoint) -> gpxpy.gpx.GPXTrackPoint:
    gpx_point = gpxpy.gpx.GPXTrackPoint(
        point.lat, point.lon, elevation=point.altitude_m, time=as_utc(point.ts)
    )
    garmin = {"speed": point.speed_mps, "course": _degrees(point.heading)}
    if any(value is not None for value in garmin.values()):
        ext = ET.Element(f"{{{GPXTPX_NS}}}TrackPointExtension")
        for tag, value in garmin.items():  # the schema's order: speed, then course
            if value is not None:
                ET.SubElement(ext, f"{{{GPXTPX_NS}}}{tag}").text = repr(float(value))
        gpx_point.extensions.append(ext)
    if point.battery is not None:
        battery = ET.Element(f"{{{PATROLI_NS}}}battery")
        battery.text = repr(float(point.battery))
        gpx_point.extensions.append(battery)
    return gpx_point


def _degrees(heading: float | None) -> float | None:
    """A heading as the extension's course type wants it: 0 <= course < 360."""
    return None if heading is None else float(heading) % 360.0


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: honour the XML declaration's encoding (older exports use ISO-8859-1).
    declared = _ENCODING.match(data)
    if declared:
        try:
            return data.decode(declared.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            pass
    raise InvalidInput("not a GPX file: the bytes are not text in UTF-8 or the declared encoding")


def _root_name(text: str) -> str:
    """Local name of the document's root element, reading no further than its start tag."""
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start",))
    try:
        for offset in range(0, len(text), 4096):
            parser.feed(text[offset : offset + 4096])
            for event in parser.read_events():
                element = event[-1]  # only ("start", element) events were asked for
                if isinstance(element, ET.Element):
                    return element.tag.rpartition("}")[2]
    except ET.ParseError as exc:
        raise InvalidInput(f"not a GPX file: {exc}") from None
    raise InvalidInput("not a GPX file: no XML element found")


def _track_points(
    gpx: gpxpy.gpx.GPX,
) -> Iterator[tuple[gpxpy.gpx.GPXTrackPoint, str, tuple[int, int]]]:
    """Each track point with its 1-based place, e.g. "track 1 'Pagi', segment 2, point 5"."""
    for t, track in enumerate(gpx.tracks, start=1):
        label = f"track {t}" + (f" {track.name!r}" if track.name else "")
        for s, segment in enumerate(track.segments, start=1):
            for p, point in enumerate(segment.points, start=1):
                yield point, f"{label}, segment {s}, point {p}", (t, s)


def _ping(
    point: gpxpy.gpx.GPXTrackPoint,
    where: str,
    device_id: str | None,
    unit_id: int | None,
    part: tuple[int, int] | None,
) -> PingIn:
    if point.time is None:
        # gpxpy also leaves the time empty when <time> is present but unparseable.
        raise InvalidInput(
            f"{where} ({point.latitude}, {point.longitude}) has no valid <time>; "
            "every imported point needs one"
        )
    ext = dict(_extension_values(point.extensions))

    def first(tags: tuple[str, ...]) -> float | None:
        for tag in tags:
            if tag in ext:
                return number(ext[tag], f"{where} <{tag}>")
        return None

    speed = point.speed if point.speed is not None else first(_SPEED_TAGS)  # GPX 1.0 <speed>
    heading = point.course if point.course is not None else first(_HEADING_TAGS)
    attributes: dict[str, Any] = {
        key: value
        for key, value in (
            ("hdop", point.horizontal_dilution),
            ("vdop", point.vertical_dilution),
            ("pdop", point.position_dilution),
            ("satellites", point.satellites),
            ("fix", point.type_of_gpx_fix),
        )
        if value is not None
    }
    if part is not None:
        attributes[TRACK_KEY], attributes[SEGMENT_KEY] = part
    try:
        return make_ping(
            {
                "device_id": device_id,
                "unit_id": unit_id,
                "lat": point.latitude,
                "lon": point.longitude,
                "ts": as_utc(point.time),
                "speed_mps": non_negative(speed),
                "heading": non_negative(heading),
                "accuracy_m": non_negative(first(_ACCURACY_TAGS)),
                "altitude_m": point.elevation,
                "battery": first(_BATTERY_TAGS),
                "attributes": attributes,
            }
        )
    except ValidationError as exc:
        # Name the point: a bare "lat: ..." is no help in a file of thousands.
        raise InvalidInput(f"{where}: {describe_validation(exc.errors())}") from None


def _extension_values(elements: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(lowercase local name, text) of every leaf element under a point's <extensions>."""
    for element in elements:
        children = list(element)
        if children:
            yield from _extension_values(children)
        elif element.text and element.text.strip():
            yield element.tag.rpartition("}")[2].rpartition(":")[2].lower(), element.text.strip()
