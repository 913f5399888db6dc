"""Settings: the one place that reads configuration (environment variables prefixed PATROLI_)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Language = Literal["id", "en"]

# The time rule's bounds (service.fixtime): reads may ask any time in 1970-2199; fixes are
# stored from PATROLI_MIN_FIX_TIME to PATROLI_MAX_FUTURE_S ahead, flagged past the tolerance.
READ_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
READ_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
DEFAULT_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_TOLERANCE_S = 300.0
DEFAULT_MAX_FUTURE_S = 86_400.0
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
D = TypeVar("D", bound="DataclassInstance")


@dataclass(frozen=True)
class Allow:
    """Internal webhook targets allowed by name, address or network."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    def permits_host(self, host: str) -> bool:
        """Whether the host name itself is allowed (whatever it resolves to)."""
        return host.lower().rstrip(".") in self.hosts

    def permits(self, address: Address) -> bool:
        """Whether the address lies in an allowed network."""
        return any(address.version == n.version and address in n for n in self.networks)


def parse_allow(text: str) -> Allow:
    """The allow-list from its setting: comma-separated host names, addresses and CIDRs."""
    hosts: set[str] = set()
    networks: list[Network] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().rstrip(".")
        labels = name.split(".")
        if "/" in name or not all(
            label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label)
            for label in labels
        ):
            raise ValueError(
                f"webhook allow-list entry {entry!r} is neither a host name, an address nor "
                "a CIDR network"
            )
        hosts.add(name)
    return Allow(frozenset(hosts), tuple(networks))


def _base_url(value: str | None, schemes: tuple[str, ...], *, path: bool) -> str | None:
    """An address as clients reach it (a scheme of `schemes`, a host, a valid port and, if
    `path`, a path), without a trailing slash; None when empty."""
    if not value:
        return None
    parts = urlsplit(value.strip())
    names = " or ".join(f"{scheme}://" for scheme in schemes)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be an {names} URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must have no query, fragment or user name")
    if not path and parts.path.strip("/"):
        raise ValueError(f"must be only scheme, host and port, e.g. {schemes[-1]}://host:8883")
    try:
        parts.port  # noqa: B018 - a port outside 0..65535 raises here
    except ValueError as exc:
        raise ValueError(str(exc)) from exc
    return value.strip().rstrip("/")


class Settings(BaseSettings):
    """Service configuration; every field can be set as PATROLI_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="PATROLI_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///patroli.db",
        description="SQLAlchemy URL. Default: an embedded SQLite file in the working directory. "
        "PostGIS: postgresql+psycopg://user:pass@host:5432/patroli",
    )
    auto_migrate: bool | None = Field(
        None,
        description="Apply migrations at startup. Default: on for SQLite, off for PostgreSQL "
        "(run `patroli migrate` there).",
    )
    admin_key: SecretStr | None = Field(
        None, description="Bootstrap admin API key, accepted in addition to stored keys."
    )
    open_read: bool = Field(
        False, description="Allow read endpoints and maps without a key (closed networks only)."
    )

    timezone: str = Field("Asia/Makassar", description="Display time zone (WITA by default).")
    language: Language = Field("id", description="Map and report language: id or en.")
    tile_url: str = Field(
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="Leaflet tile URL template for maps (point it at a local tile server offline).",
    )
    tile_attribution: str = Field("&copy; OpenStreetMap contributors")

    segment_m: float = Field(50.0, gt=0, description="Coverage segment length (m).")
    max_gap_s: float = Field(60.0, gt=0, description="Longest gap (s) bridged between pings.")
    max_window_days: float = Field(
        31.0, gt=0, description="Longest window (days) an analytics, map or track request may ask."
    )
    max_accuracy_m: float = Field(100.0, gt=0, description="Pings less accurate are flagged.")
    max_speed_mps: float = Field(60.0, gt=0, description="Implied speed that flags a teleport.")
    future_tolerance_s: float = Field(300.0, ge=0, description="Device time ahead of now allowed.")
    default_min_dwell_s: float = Field(300.0, ge=0, description="Dwell that makes a sambang.")
    max_batch: int = Field(10_000, gt=0, description="Most pings accepted in one request.")
    max_body_bytes: int = Field(
        5_000_000, gt=0, description="Largest request body accepted (bytes); larger gets 413."
    )
    device_key_required: bool = Field(
        True,
        description="Tracker protocols (OsmAnd, OwnTracks) must present the unit's device "
        "secret; turn off only on closed networks.",
    )
    auto_register: bool = Field(
        False, description="Register unknown device ids as new units instead of answering 404."
    )
    osmand_speed_unit: Literal["knots", "kmh", "mps", "mph"] = Field(
        "knots", description="Unit of the OsmAnd `speed` parameter (Traccar Client: knots)."
    )
    hysteresis_m: float = Field(20.0, ge=0, description="Geofence exit hysteresis band (m).")
    off_route_after_s: float = Field(30.0, ge=0, description="Outside corridor before off_route.")
    stop_after_s: float = Field(300.0, gt=0, description="Standing still before `stopped` (s).")
    offline_after_s: float = Field(300.0, gt=0, description="Silence before `offline` (s).")
    speed_limit_mps: float | None = Field(
        None, gt=0, description="Speed limit for `overspeed` events (m/s); none by default."
    )
    events_enabled: bool = Field(True, description="Evaluate live events during ingest.")
    low_battery_pct: float | None = Field(
        15.0, ge=0, le=100, description="Battery level (%) below which `low_battery` fires."
    )
    low_battery_rearm_pct: float = Field(
        5.0, ge=0, description="Points above low_battery_pct a battery must reach to re-arm it."
    )
    alarm_repeat_s: float = Field(
        300.0,
        ge=0,
        description="A unit's fixes repeating its latest alarm within this many seconds (device "
        "time) are the same occurrence: one `alarm` event.",
    )
    webhook_retry_hours: float = Field(
        25.0, gt=0, description="How long a webhook delivery is retried before it is dead."
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook POST (s).")
    key_cache_s: float = Field(
        60.0,
        ge=0,
        description="How long a resolved API key is cached per worker (s); on PostgreSQL "
        "revocations empty every worker's cache at once.",
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Secret signing map session cookies. Default: random per process, so "
        "sessions end when it restarts; with several instances set it, the same everywhere.",
    )
    session_ttl_s: float = Field(
        43_200.0, gt=0, description="Lifetime of a map session cookie (s); 12 h, a shift."
    )
    max_attributes_bytes: int = Field(
        8192,
        gt=0,
        description="Largest `attributes` of one ping or device report, JSON-encoded (bytes); "
        "larger is refused with 422.",
    )
    webhook_allow: str = Field(
        "",
        description="Internal webhook targets allowed despite the policy that refuses loopback, "
        "private, link-local and metadata addresses: comma-separated host names, addresses "
        "and CIDR networks, e.g. `hooks.polda.local,10.20.0.0/16`.",
    )

    qgis_refresh_s: float = Field(
        60.0,
        ge=5,
        le=3600,
        description="How often (s) the scheduler rewrites the QGIS coverage layer "
        "`qgis_coverage_segments` and the settings the QGIS views read (PostGIS only).",
    )
    shift_day_start: str = Field(
        "07:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Local start (HH:MM) of the day shift; the QGIS coverage layer covers the "
        "current shift.",
    )
    shift_night_start: str = Field(
        "19:00",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="Local start (HH:MM) of the night shift, after shift_day_start.",
    )

    public_url: str | None = Field(
        None,
        description="The service's external base URL as phones reach it, e.g. "
        "`https://patroli.example.org` (behind a proxy: its address): enrolment links and QR "
        "codes point there. Enrolment is refused while it is unset.",
    )
    enroll_interval_s: int = Field(
        30,
        gt=0,
        le=86_400,
        description="Reporting interval (s) that enrolment sets in the phone's app; keep it "
        "below max_gap_s so the coverage track is not broken.",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return _base_url(value, ("http", "https"), path=True)

    @field_validator("webhook_allow")
    @classmethod
    def _allow_entries(cls, value: str) -> str:
        parse_allow(value)  # a mistyped entry is refused at startup, not ignored
        return value

    # The printable shift report (/reports/shift, service/maps/shift_report.py).
    operation_name: str = Field(
        "Operasi Patroli",
        min_length=1,
        max_length=200,
        description="Name of the operation printed at the head of every shift report.",
    )
    chromium_path: str = Field(
        "/usr/bin/chromium",
        description="Headless Chromium that prints /reports/shift.pdf; without it the PDF "
        "answers 503 and the HTML page is printed from a browser instead.",
    )
    pdf_timeout_s: float = Field(
        60.0, gt=0, le=600, description="Longest time one PDF may take to print (s)."
    )
    pdf_concurrency: int = Field(
        2, gt=0, le=16, description="Most PDFs printed at once; others wait up to pdf_timeout_s."
    )

    # Geometry limits: a patrol route or geofence is checked against these before any work on
    # its shape, so that no single geometry can exhaust the service.
    max_geometry_vertices: int = Field(
        20_000, gt=0, description="Most positions in one patrol route or geofence; more gets 413."
    )
    max_route_length_km: float = Field(
        500.0, gt=0, description="Longest patrol route (km, back to the start when closed)."
    )
    max_extent_km: float = Field(
        500.0,
        gt=0,
        description="Largest east-west or north-south extent of a patrol route or geofence (km).",
    )
    max_corridor_m: float = Field(
        1_000.0, gt=0, le=50_000, description="Widest corridor_m of a patrol route (m)."
    )
    max_radius_m: float = Field(
        50_000.0, gt=0, le=50_000, description="Largest radius_m of a circle geofence (m)."
    )
    max_hysteresis_m: float = Field(
        1_000.0, ge=0, description="Largest hysteresis_m of a geofence (m)."
    )

    # Input limits: the valid time range of fixes (service/fixtime.py) and how long a client
    # may take to send a request (service/limits.py).
    min_fix_time: datetime = Field(
        DEFAULT_EARLIEST,
        description="Earliest device time of a fix (ISO 8601); earlier fixes are refused.",
    )
    max_future_s: float = Field(
        DEFAULT_MAX_FUTURE_S,
        gt=0,
        description="Fixes dated further ahead of the server clock are refused (s); between "
        "future_tolerance_s and this they are stored, flagged `future`.",
    )
    head_timeout_s: float = Field(
        15.0, gt=0, description="Time a client has to send a complete request head (s)."
    )
    body_timeout_s: float = Field(
        60.0, gt=0, description="Time a client has to send a complete request body (s)."
    )
    # OwnTracks over MQTT (`patroli mqtt`, service/ingest/mqtt.py).
    mqtt_url: SecretStr | None = Field(
        None,
        description="Broker for `patroli mqtt`: mqtt://user:password@host:1883 (mqtts:// for TLS).",
    )
    mqtt_client_id: str = Field(
        "patroli",
        min_length=1,
        description="Fixed MQTT client id: the broker keeps its session (unacknowledged "
        "messages) while `patroli mqtt` is down.",
    )
    mqtt_topic_prefix: str = Field(
        "owntracks", min_length=1, description="Topic prefix the OwnTracks apps publish under."
    )
    mqtt_waypoints_s: float = Field(
        60.0,
        ge=0,
        description="How often `patroli mqtt` looks for changed critical sites of each phone's "
        "routes and sends those phones their regions again (s; 0: only on connecting).",
    )
    mqtt_public_url: str | None = Field(
        None,
        description="The broker as phones reach it, `mqtts://host:8883` (or `mqtt://host:1883`): "
        "with mqtt_password_file set, enrolment also gives an OwnTracks link in MQTT mode.",
    )
    mqtt_password_file: str | None = Field(
        None,
        description="Mosquitto's password_file, writable by Patroli: an OwnTracks enrolment in "
        "MQTT mode sets a new password for the phone's broker user there.",
    )

    @field_validator("mqtt_public_url")
    @classmethod
    def _mqtt_public_url(cls, value: str | None) -> str | None:
        return _base_url(value, ("mqtt", "mqtts"), path=False)

    # Time partitions (PostgreSQL) and retention (service/store/retention.py).
    partition_interval: Literal["day", "week"] = Field(
        "day",
        description="Span of one partition of pings, events and device reports on PostgreSQL: "
        "a UTC day or an ISO week (Monday to Monday, UTC).",
    )
    partition_ahead_days: int = Field(
        7,
        ge=1,
        le=366,
        description="Partitions are created this many days ahead (by the scheduler and by "
        "`patroli migrate`).",
    )
    retention_days: int | None = Field(
        None,
        ge=0,
        le=36_500,
        description="Pings, events and device reports whose device time is older than this "
        "many days are deleted (PostgreSQL: whole partitions dropped). Unset or 0: kept forever.",
    )
    retention_batch: int = Field(
        5000,
        gt=0,
        le=1_000_000,
        description="Most rows one retention delete removes in one transaction.",
    )

    @field_validator("retention_days", mode="before")
    @classmethod
    def _retention_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("min_fix_time")
    @classmethod
    def _readable_fix_time(cls, value: datetime) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if not READ_EARLIEST <= value < READ_LATEST - timedelta(days=366):
            raise ValueError("must lie in the years 1970-2198, which reads accept")
        return value

    @model_validator(mode="after")
    def _shift_order(self) -> Settings:
        if not self.shift_day_start < self.shift_night_start:
            raise ValueError("shift_day_start must be earlier than shift_night_start")
        return self

    @model_validator(mode="after")
    def _future_limits(self) -> Settings:
        if self.max_future_s < self.future_tolerance_s:
            raise ValueError("max_future_s must not be less than future_tolerance_s")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The display time zone."""
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is the embedded SQLite file."""
        return self.database_url.startswith("sqlite")

    @property
    def migrate_on_start(self) -> bool:
        """Whether to apply migrations when the service starts."""
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    def pick(self, cls: type[D], **values: Any) -> D:
        """A dataclass whose fields not in `values` are the settings of the same name, if any."""
        names = (f.name for f in fields(cls) if f.name not in values)
        return cls(**values, **{n: getattr(self, n) for n in names if n in type(self).model_fields})


@lru_cache
def get_settings() -> Settings:
    """Settings read from the environment, once per process."""
    return Settings()
