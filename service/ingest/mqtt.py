"""OwnTracks over MQTT: messages from the broker, stored through the same path as HTTP mode.

The phone publishes to `owntracks/<user>/<device>` (and `.../event`); its unit is the one with
device_id `<user>/<device>`, as in HTTP mode. The broker authenticates the phones and its ACL
keeps each on its own topic. Patroli subscribes with QoS 1 under a fixed client id in a
persistent session and acknowledges a message only once it is committed (or refused for
good): if Patroli stops before the commit, the broker delivers the message again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from pydantic import ValidationError
from pyproj import Geod
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.areas.broker import phone_identity
from service.areas.index import corridor_from_row, fence_from_row
from service.auth import Principal
from service.config import Settings
from service.errors import PatroliError, StoreUnavailable
from service.fixtime import FixTimes
from service.ingest.results import store_parsed
from service.ingest.writer import GroupCommitter
from service.protocols.owntracks import owntracks_device_id, parse_owntracks_body
from service.store.db import Store
from service.store.models import Geofence, PatrolRoute, Unit, UnitPatrolRoute

log = logging.getLogger(__name__)

# The broker vouches for the phone (its password and ACL), so messages are stored for the unit
# named by the topic, as HTTP mode does for a request without a key.
_PRINCIPAL = Principal(role="device")
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
CRITICAL_SITE = "critical_site"
_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class Broker:
    """Where and as whom to connect: parsed from PATROLI_MQTT_URL."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_url(url: str) -> Broker:
    """The broker of an mqtt:// (or mqtts://) URL with optional user:password."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError("the MQTT URL must look like mqtt://user:password@host:1883")
    tls = parts.scheme == "mqtts"
    return Broker(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


def topics(prefix: str) -> list[tuple[str, int]]:
    """The subscriptions: every phone's location topic and its event topic, at QoS 1."""
    return [(f"{prefix}/+/+", 1), (f"{prefix}/+/+/event", 1)]


def device_of(topic: str, prefix: str) -> str | None:
    """The unit device_id `<user>/<device>` of an OwnTracks topic, or None for other topics."""
    parts = topic.split("/")
    head = prefix.split("/")
    if parts[: len(head)] != head:
        return None
    rest = parts[len(head) :]
    if len(rest) == 3 and rest[2] == "event":
        rest = rest[:2]
    if len(rest) != 2 or not all(rest):
        return None
    return owntracks_device_id(rest[0], rest[1])


class Bridge:
    """Subscribes to the OwnTracks topics and stores each message before acknowledging it."""

    def __init__(
        self, writer: GroupCommitter, settings: Settings, store: Store | None = None
    ) -> None:
        if settings.mqtt_url is None:
            raise ValueError("set PATROLI_MQTT_URL (e.g. mqtt://patroli:secret@127.0.0.1:1883)")
        self.broker = parse_url(settings.mqtt_url.get_secret_value())
        self._writer = writer
        self._db = store
        self._settings = settings
        self._prefix = settings.mqtt_topic_prefix.strip("/")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[concurrent.futures.Future[None]] = set()  # held until done
        self._refresh: asyncio.Task[None] | None = None
        self._sent: dict[str, str] = {}  # the waypoints command last published, by topic
        self._sent_lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            clean_session=False,
            manual_ack=True,
        )
        if self.broker.username is not None:
            self.client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            self.client.tls_set_context(ssl.create_default_context())
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def start(self) -> None:
        """Connect (in paho's network thread); messages are handled on the running loop."""
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if self._db is not None and self._settings.mqtt_waypoints_s > 0:
            self._refresh = self._loop.create_task(self._refresh_waypoints(self._db))

    def stop(self) -> None:
        """Disconnect; messages not yet acknowledged stay with the broker."""
        if self._refresh is not None:
            self._refresh.cancel()
        self.client.disconnect()
        self.client.loop_stop()

    async def _refresh_waypoints(self, store: Store) -> None:
        """Send the phones whose critical sites changed (a geofence, route or assignment edit)."""
        while True:
            await asyncio.sleep(self._settings.mqtt_waypoints_s)
            if self.client.is_connected():
                await asyncio.to_thread(self.publish_waypoints, self.client, store, True)

    def _on_connect(self, client: mqtt.Client, _: Any, __: Any, reason: Any, ___: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            return
        log.info("connected to MQTT broker %s:%d", self.broker.host, self.broker.port)
        client.subscribe(topics(self._prefix))
        if self._db is not None:
            self.publish_waypoints(client, self._db)

    def publish_waypoints(self, client: mqtt.Client, store: Store, changed: bool = False) -> None:
        """Send each phone (or only those whose sites changed) its routes' critical sites as
        OwnTracks regions, retained."""
        try:
            with store.read() as session:
                commands = waypoint_commands(session, self._prefix)
        except Exception:
            log.exception("could not read the critical sites for the phones")
            return
        with self._sent_lock:
            payloads = {topic: json.dumps(command) for topic, command in commands.items()}
            if changed:
                payloads = {t: p for t, p in payloads.items() if self._sent.get(t) != p}
                if not payloads:
                    return
            for topic, payload in payloads.items():
                client.publish(topic, payload, qos=1, retain=True)
                self._sent[topic] = payload
        log.info("sent critical sites as waypoints to %d phone(s)", len(payloads))

    def _on_subscribe(self, _: mqtt.Client, __: Any, ___: int, codes: Any, ____: Any) -> None:
        failed = [code for code in codes if code.is_failure]
        if failed:
            log.error("MQTT subscription refused: %s (check the broker's ACL)", failed[0])
        else:
            log.info("subscribed to %s", ", ".join(topic for topic, _ in topics(self._prefix)))

    def _on_message(self, client: mqtt.Client, _: Any, message: mqtt.MQTTMessage) -> None:
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.handle(message), self._loop)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    async def handle(self, message: mqtt.MQTTMessage) -> None:
        """Store one message (retrying while the database is down), then acknowledge it."""
        for attempt in itertools.count():
            try:
                await self._store(message)
                break
            except StoreUnavailable as exc:
                wait = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                log.warning(
                    "MQTT message on %s not stored (%s); retry in %gs", message.topic, exc, wait
                )
                await asyncio.sleep(wait)
            except (PatroliError, ValidationError, ValueError, RecursionError) as exc:
                # Refused for good (unknown unit, bad JSON, out-of-range values): sending it again
                # would not help, so it is acknowledged and dropped.
                log.warning("MQTT message on %s refused: %s", message.topic, str(exc)[:300])
                break
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)

    async def _store(self, message: mqtt.MQTTMessage) -> None:
        device_id = device_of(message.topic, self._prefix)
        if device_id is None or not message.payload.strip():
            return  # another topic, or a cleared retained message
        body = json.loads(message.payload)
        parsed = parse_owntracks_body(
            body,
            device_id=device_id,
            now=datetime.now(UTC),
            times=FixTimes.of(self._settings),
        )
        if parsed:
            await store_parsed(self._writer, _PRINCIPAL, parsed, "owntracks", door="mqtt")


def waypoint_commands(session: Session, prefix: str = "owntracks") -> dict[str, dict[str, Any]]:
    """For each OwnTracks unit, its `.../cmd` topic and a setWaypoints command holding the
    critical sites (geofences of kind critical_site) that its patrol routes' corridors touch."""
    units = [
        u for u in session.scalars(select(Unit).order_by(Unit.id)) if phone_identity(u.device_id)
    ]
    fences = list(
        session.scalars(
            select(Geofence).where(Geofence.kind == CRITICAL_SITE).order_by(Geofence.id)
        )
    )
    outlines = {fence.id: fence_from_row(fence).outline for fence in fences}
    rows = session.execute(
        select(UnitPatrolRoute.unit_id, PatrolRoute).join(
            PatrolRoute, PatrolRoute.id == UnitPatrolRoute.patrol_route_id
        )
    )
    areas: dict[int, list[Any]] = {}
    for unit_id, route in rows:
        areas.setdefault(unit_id, []).append(corridor_from_row(route).area)
    commands = {}
    for unit in units:
        sites = [
            fence
            for fence in fences
            if any(area.intersects(outlines[fence.id]) for area in areas.get(unit.id, []))
        ]
        commands[f"{prefix}/{unit.device_id}/cmd"] = {
            "_type": "cmd",
            "action": "setWaypoints",
            "waypoints": {"_type": "waypoints", "waypoints": [_region(f) for f in sites]},
        }
    return commands


def _region(fence: Geofence) -> dict[str, Any]:
    """An OwnTracks region (a circle) covering the geofence; `tst` identifies it on the phone."""
    shape = fence_from_row(fence)
    lon, lat = shape.centroid
    radius = fence.radius_m
    if radius is None:  # a polygon: the circle around its centroid through its farthest corner
        xs, ys = shape.outline.exterior.coords.xy
        _, _, distances = _GEOD.inv([lon] * len(xs), [lat] * len(ys), list(xs), list(ys))
        radius = max(distances)
    return {
        "_type": "waypoint",
        "desc": fence.name,
        "lat": round(lat, 6),
        "lon": round(lon, 6),
        "rad": round(radius),
        # The phone keys regions by their creation time; the id keeps two sites apart.
        "tst": int(fence.created_at.timestamp()) + fence.id,
    }
