"""Enrolment: the links and QR codes that set up a unit's phone (Traccar Client, OwnTracks).

Device secrets are stored hashed and shown once, so enrolment issues a fresh one (revoking
the phone's previous secret, as a rotation does) and builds the links around it. The secret
travels as the last path segment of the server URL: Traccar Client keeps only the origin and
path of a configured link, and the secret is the credential, so an old QR code stops working
as soon as the secret is rotated again.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import segno
from sqlalchemy.orm import Session

from service.areas.broker import (
    broker_user,
    new_password,
    phone_identity,
    phone_topic,
    set_password,
    write_private,
)
from service.areas.units import read_unit, rotate_secret
from service.config import Settings
from service.errors import Conflict

TRACCAR = "traccar"
OWNTRACKS = "owntracks"
OWNTRACKS_MQTT = "owntracks-mqtt"
# OwnTracks connection modes (its `mode` setting).
OWNTRACKS_MQTT_MODE = 0
OWNTRACKS_HTTP = 3


@dataclass(frozen=True)
class Link:
    """One app's configuration link and its QR code."""

    app: str
    url: str

    def qr(self) -> segno.QRCode:
        """The link as a QR code."""
        return segno.make(self.url, error="m", micro=False)

    def svg_data_uri(self) -> str:
        """The QR code as an SVG `data:` URI (an image: it runs no script)."""
        return str(self.qr().svg_data_uri(scale=4, border=4))

    def terminal(self) -> str:
        """The QR code as text for a terminal (dark modules as block characters)."""
        out = io.StringIO()
        self.qr().terminal(out=out, compact=True, border=4)
        return out.getvalue()


@dataclass(frozen=True)
class Enrolment:
    """A unit's new device secret put into configuration links."""

    unit_id: int
    name: str
    device_id: str
    links: tuple[Link, ...]
    notes: tuple[str, ...]


def base_url(settings: Settings) -> str:
    """The service's external base URL (PATROLI_PUBLIC_URL), or Conflict when it is unset."""
    if not settings.public_url:
        raise Conflict(
            "set PATROLI_PUBLIC_URL to the service's address as phones reach it "
            "(e.g. https://patroli.example.org) before enrolling phones"
        )
    return settings.public_url.rstrip("/")


def traccar_link(base: str, secret: str, device_id: str, interval_s: int) -> str:
    """Traccar Client's configuration link: OsmAnd URL with the secret in the path, id, interval."""
    query = urlencode({"id": device_id, "interval": interval_s, "accuracy": "high"})
    return f"{base}/api/v1/osmand/{quote(secret, safe='')}?{query}"


def tracker_id(name: str) -> str:
    """OwnTracks' two-character label of a unit: first and last letter or digit of its name."""
    chars = [c for c in name if c.isalnum()]
    return (chars[0] + chars[-1]).upper() if chars else "PT"


def owntracks_config(
    base: str, secret: str, user: str, device: str, tid: str, interval_s: int
) -> dict[str, object]:
    """OwnTracks' configuration (HTTP mode): URL with the secret in the path, user, device."""
    return {
        "_type": "configuration",
        "mode": OWNTRACKS_HTTP,
        "url": f"{base}/api/v1/owntracks/{quote(secret, safe='')}",
        "username": user,
        "deviceId": device,
        "tid": tid,
        # The secret also as the HTTP Basic password: the service takes either.
        "auth": True,
        "password": secret,
        "monitoring": 2,  # move mode: a fix every locatorInterval seconds while moving
        "locatorInterval": interval_s,
        "moveModeLocatorInterval": interval_s,
    }


def owntracks_mqtt_config(
    broker_url: str, prefix: str, device_id: str, password: str, tid: str, interval_s: int
) -> dict[str, object]:
    """OwnTracks' configuration in MQTT mode: the broker, the phone's own user and topic."""
    parts = urlsplit(broker_url)
    tls = parts.scheme == "mqtts"
    _, device = device_id.split("/", 1)
    return {
        "_type": "configuration",
        "mode": OWNTRACKS_MQTT_MODE,
        "host": parts.hostname,
        "port": parts.port or (8883 if tls else 1883),
        "tls": tls,
        "auth": True,
        "username": device_id,  # the phone's broker user (see service/areas/broker.py)
        "password": password,
        "deviceId": device,
        "clientId": device_id.replace("/", "-"),
        "pubTopicBase": phone_topic(device_id, prefix),  # the topic its unit is named by
        "pubQos": 1,
        "cleanSession": False,
        "cmd": True,  # accept the critical sites Patroli sends as regions
        "tid": tid,
        "monitoring": 2,
        "locatorInterval": interval_s,
        "moveModeLocatorInterval": interval_s,
    }


def owntracks_link(config: dict[str, object]) -> str:
    """The `owntracks:///config?inline=` link that imports `config` into the app."""
    text = json.dumps(config, separators=(",", ":")).encode()
    return "owntracks:///config?inline=" + quote(base64.b64encode(text).decode(), safe="")


def enrol(session: Session, unit_id: int, settings: Settings) -> Enrolment:
    """Issue a unit a new device secret (revoking the old) and its configuration links."""
    base = base_url(settings)  # before the rotation: no secret is revoked for nothing
    unit = read_unit(session, unit_id)
    secret = rotate_secret(session, unit_id)
    interval = settings.enroll_interval_s
    links = [Link(TRACCAR, traccar_link(base, secret, unit.device_id, interval))]
    notes: list[str] = []
    identity = phone_identity(unit.device_id)
    if identity is None:
        notes.append(
            f"OwnTracks names a phone user/device: give the unit a device_id such as "
            f"'{unit.device_id.replace('/', '-')}/phone' to enrol it with OwnTracks"
        )
    else:
        tid = tracker_id(unit.name)
        config = owntracks_config(base, secret, *identity, tid, interval)
        links.append(Link(OWNTRACKS, owntracks_link(config)))
        mqtt = _mqtt_link(unit.device_id, tid, settings)
        if isinstance(mqtt, Link):
            links.append(mqtt)
        elif mqtt:
            notes.append(mqtt)
    return Enrolment(unit.id, unit.name, unit.device_id, tuple(links), tuple(notes))


def _mqtt_link(device_id: str, tid: str, settings: Settings) -> Link | str | None:
    """The OwnTracks MQTT-mode link, with a new broker password written to the password file.

    A note instead when the unit cannot have a broker account; None when MQTT is not set up.
    """
    if not settings.mqtt_public_url or not settings.mqtt_password_file:
        return None
    if not broker_user(device_id):
        return "no MQTT link: the device_id must not contain + # : $ or spaces for a broker user"
    password = new_password()
    path = Path(settings.mqtt_password_file)
    try:
        existing = path.read_text() if path.exists() else ""
        write_private(path, set_password(existing, device_id, password))
    except OSError as exc:
        raise Conflict(f"cannot write PATROLI_MQTT_PASSWORD_FILE: {exc.strerror}") from exc
    prefix = settings.mqtt_topic_prefix.strip("/")
    config = owntracks_mqtt_config(
        settings.mqtt_public_url, prefix, device_id, password, tid, settings.enroll_interval_s
    )
    return Link(OWNTRACKS_MQTT, owntracks_link(config))
