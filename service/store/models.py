"""Tables: one model for both backends (schema is created by the Alembic migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.store.types import GeometryType, UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with stable constraint names."""

    metadata = MetaData(naming_convention=NAMING)


class Unit(Base):
    """A patrol unit and the tracker identifier it posts with."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(50), default="motorbike")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UnitState(Base):
    """What the service knows now about a unit: its newest fix (locked while ingesting)."""

    __tablename__ = "unit_states"

    unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id", ondelete="CASCADE"), primary_key=True
    )
    last_ping_id: Mapped[int | None] = mapped_column(BigId)
    last_ts: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_lon: Mapped[float | None] = mapped_column(Float)
    last_lat: Mapped[float | None] = mapped_column(Float)
    last_speed_mps: Mapped[float | None] = mapped_column(Float)
    last_flags: Mapped[int] = mapped_column(Integer, default=0)
    # The newest analytics-eligible fix, the reference for the teleport check.
    good_ts: Mapped[datetime | None] = mapped_column(UTCDateTime)
    good_lon: Mapped[float | None] = mapped_column(Float)
    good_lat: Mapped[float | None] = mapped_column(Float)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The live-event state machine of the unit (JSON), resumed after a restart.
    machine: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class UnitPatrolRoute(Base):
    """Assignment of a unit to a patrol route."""

    __tablename__ = "unit_patrol_routes"

    unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id", ondelete="CASCADE"), primary_key=True
    )
    patrol_route_id: Mapped[int] = mapped_column(
        ForeignKey("patrol_routes.id", ondelete="CASCADE"), primary_key=True
    )
    # Optional shift: daily local-time window (display time zone) in which the assignment holds.
    shift_start: Mapped[str | None] = mapped_column(String(5))
    shift_end: Mapped[str | None] = mapped_column(String(5))


class PatrolRoute(Base):
    """A patrol route: centerline (LineString, WGS84) and corridor half-width."""

    __tablename__ = "patrol_routes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    corridor_m: Mapped[float] = mapped_column(Float)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    off_route_after_s: Mapped[float | None] = mapped_column(Float)  # overrides the setting
    revisit_s: Mapped[float | None] = mapped_column(Float)  # each segment visited this often
    geom: Mapped[BaseGeometry] = mapped_column(GeometryType("LINESTRING"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Geofence(Base):
    """A geofence: a polygon, or a circle stored as its centre point plus radius_m."""

    __tablename__ = "geofences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(50), default="critical_site")
    geom: Mapped[BaseGeometry] = mapped_column(GeometryType("GEOMETRY"))
    radius_m: Mapped[float | None] = mapped_column(Float)
    min_dwell_s: Mapped[float | None] = mapped_column(Float)
    hysteresis_m: Mapped[float | None] = mapped_column(Float)  # overrides the setting
    revisit_s: Mapped[float | None] = mapped_column(Float)  # a unit present this often
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class OverdueMark(Base):
    """A route segment or geofence currently overdue for a visit (revisit_overdue fired)."""

    __tablename__ = "overdue_marks"
    __table_args__ = (UniqueConstraint("patrol_route_id", "segment", "geofence_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patrol_route_id: Mapped[int | None] = mapped_column(
        ForeignKey("patrol_routes.id", ondelete="CASCADE")
    )
    segment: Mapped[int | None] = mapped_column(Integer)
    geofence_id: Mapped[int | None] = mapped_column(ForeignKey("geofences.id", ondelete="CASCADE"))
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class Ping(Base):
    """One stored GPS fix of a unit.

    On PostgreSQL pings, events and device reports are partitioned by `ts`, and their primary
    and unique keys include `ts` (migration 0005, store/partitions.py).
    """

    __tablename__ = "pings"
    __table_args__ = (
        UniqueConstraint("unit_id", "ts", "lat", "lon"),
        UniqueConstraint("unit_id", "client_ping_id"),
        Index(None, "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    geom: Mapped[BaseGeometry] = mapped_column(GeometryType("POINT"))
    speed_mps: Mapped[float | None] = mapped_column(Float)
    heading: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    altitude_m: Mapped[float | None] = mapped_column(Float)
    battery: Mapped[float | None] = mapped_column(Float)
    flags: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(20), default="json")
    client_ping_id: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class DeviceReportRow(Base):
    """A tracker message that is not a position (status without a fix, region transition, ...)."""

    __tablename__ = "device_reports"
    __table_args__ = (Index(None, "unit_id", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(40))
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Event(Base):
    """Something that happened to a unit (entered a geofence, left its route, ...)."""

    __tablename__ = "events"
    __table_args__ = (Index(None, "ts"), Index(None, "unit_id", "ts"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    patrol_route_id: Mapped[int | None] = mapped_column(
        ForeignKey("patrol_routes.id", ondelete="SET NULL")
    )
    geofence_id: Mapped[int | None] = mapped_column(ForeignKey("geofences.id", ondelete="SET NULL"))
    ping_id: Mapped[int | None] = mapped_column(BigId)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Acknowledgement by the command centre: when, by which key (its name), with a note.
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acked_by: Mapped[str | None] = mapped_column(String(200))
    ack_note: Mapped[str | None] = mapped_column(String(500))


class Webhook(Base):
    """A subscription: events of the given types are POSTed, signed, to a URL."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON)  # empty: every type
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event to deliver to one webhook (the durable outbox)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    # No foreign key: on PostgreSQL events are partitioned by time (see store/partitions.py);
    # deleting a unit or expiring events deletes their deliveries (store/retention.py).
    event_id: Mapped[int] = mapped_column(BigId)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending, delivered, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index(None, "delivery_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(2000))
    duration_ms: Mapped[float | None] = mapped_column(Float)


class ApiKey(Base):
    """An API key (only its SHA-256 hash is stored) with its role."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
