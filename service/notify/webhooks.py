"""Webhooks: subscriptions, the durable delivery outbox, and the signed-POST dispatcher.

Events are enqueued in the transaction that stores them (one `WebhookDelivery` per matching
webhook and event), so a committed event is never lost. A background dispatcher claims due
deliveries, leases them (pushes `next_attempt_at` forward), commits, POSTs them outside any
transaction and records the outcome. Only the oldest pending delivery of each webhook and unit
is claimed, so a unit's events reach a receiver in order, also after it was down. A crash
mid-send leaves the lease to expire and the delivery is sent again: delivery is at-least-once,
and `X-Patroli-Delivery` lets receivers drop duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, func, insert, select
from sqlalchemy.orm import Session

from service.config import Settings
from service.errors import NotFound
from service.events.log import event_dict
from service.events.types import EVENT_TYPES, unknown_event_types
from service.fields import Line
from service.metrics import WEBHOOK_ATTEMPTS
from service.notify.targets import Target, TargetRefused, parse_allow, targets
from service.redact import safe_origin
from service.store.db import Store
from service.store.models import Event, Unit, Webhook, WebhookAttempt, WebhookDelivery, utcnow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Patroli-Signature"
DELIVERY_HEADER = "X-Patroli-Delivery"
EVENT_HEADER = "X-Patroli-Event"

DeliveryStatus = Literal["pending", "delivered", "dead"]

# Wait after the n-th failed attempt (n = 1, 2, ...); the last step repeats.
RETRY_SCHEDULE: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
)
MAX_CLIENTS = 100  # HTTP clients kept (one per receiver host name)
DISCARD_BYTES = 65_536  # most of a receiver's answer read (and dropped) to reuse the connection
_HTTP_STATUS = re.compile(r"HTTP \d{3}")


def sign(secret: str, body: bytes) -> str:
    """The signature header value of a body: `sha256=` + hex HMAC-SHA256 with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def next_delay(attempts: int) -> timedelta:
    """How long to wait before the next attempt after `attempts` failed ones."""
    return RETRY_SCHEDULE[min(max(attempts, 1), len(RETRY_SCHEDULE)) - 1]


# ---- API models ----------------------------------------------------------------------------


class WebhookCreate(BaseModel):
    """A webhook to register."""

    model_config = ConfigDict(extra="forbid")

    url: Line = Field(max_length=2000, description="http(s) URL the events are POSTed to.")
    event_types: list[str] = Field(
        default_factory=list, description=f"Types to send (empty: all): {', '.join(EVENT_TYPES)}."
    )
    secret: Line | None = Field(
        None,
        min_length=8,
        max_length=200,
        description="HMAC-SHA256 signing secret; generated (and returned once) when omitted.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises on a malformed port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if any(c.isspace() for c in value):
            raise ValueError("a URL cannot contain whitespace")
        return value

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = unknown_event_types(value)
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
            )
        return list(dict.fromkeys(value))


class WebhookPublic(BaseModel):
    """A registered webhook (without its secret)."""

    id: int
    url: str
    event_types: list[str]
    active: bool
    created_at: datetime


class WebhookCreated(WebhookPublic):
    """A new webhook with its signing secret (shown only once)."""

    secret: str


def public_error(error: str | None) -> str | None:
    """A stored attempt error as shown: "HTTP 500" without any receiver text.

    Attempts recorded by earlier versions kept the start of the receiver's answer.
    """
    if error is None:
        return None
    status = _HTTP_STATUS.match(error)
    return status.group(0) if status else error


class AttemptOut(BaseModel):
    """One HTTP attempt of a delivery."""

    id: int
    attempted_at: datetime
    status_code: int | None
    error: str | None = Field(
        description="Why the attempt failed: `HTTP <status>`, `timeout`, `connection refused`, "
        "`refused: <address> is a loopback address`, ... (never the receiver's answer)"
    )
    duration_ms: float | None

    @field_validator("error")
    @classmethod
    def _short_error(cls, value: str | None) -> str | None:
        return public_error(value)


class DeliveryOut(BaseModel):
    """One event's delivery to one webhook, with its attempts (oldest first)."""

    id: int
    webhook_id: int
    event_id: int
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut] = Field(default_factory=list)

    @field_validator("last_error")
    @classmethod
    def _short_error(cls, value: str | None) -> str | None:
        return public_error(value)


# ---- subscriptions -------------------------------------------------------------------------


def create_webhook(session: Session, data: WebhookCreate) -> WebhookCreated:
    """Register a webhook; a secret is generated when none is given."""
    row = Webhook(
        url=data.url,
        event_types=data.event_types,
        secret=data.secret or secrets.token_urlsafe(32),
        active=True,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return WebhookCreated.model_validate(row, from_attributes=True)


def _get(session: Session, webhook_id: int) -> Webhook:
    row = session.get(Webhook, webhook_id)
    if row is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return row


def list_webhooks(session: Session) -> list[WebhookPublic]:
    """Every webhook, oldest first."""
    rows = session.scalars(select(Webhook).order_by(Webhook.id))
    return [WebhookPublic.model_validate(r, from_attributes=True) for r in rows]


def read_webhook(session: Session, webhook_id: int) -> WebhookPublic:
    """One webhook."""
    return WebhookPublic.model_validate(_get(session, webhook_id), from_attributes=True)


def delete_webhook(session: Session, webhook_id: int) -> None:
    """Delete a webhook with its deliveries."""
    session.delete(_get(session, webhook_id))


def list_deliveries(
    session: Session, webhook_id: int, status: DeliveryStatus | None, limit: int
) -> list[DeliveryOut]:
    """A webhook's deliveries, newest first, each with its attempts."""
    _get(session, webhook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    rows = list(session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit)))
    return _with_attempts(session, rows)


def _with_attempts(session: Session, rows: Sequence[WebhookDelivery]) -> list[DeliveryOut]:
    by_delivery: dict[int, list[AttemptOut]] = {r.id: [] for r in rows}
    if rows:
        attempts = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(by_delivery)))
            .order_by(WebhookAttempt.id)
        )
        for a in attempts:
            by_delivery[a.delivery_id].append(AttemptOut.model_validate(a, from_attributes=True))
    return [
        DeliveryOut.model_validate(r, from_attributes=True).model_copy(
            update={"attempt_log": by_delivery[r.id]}
        )
        for r in rows
    ]


def redeliver(session: Session, delivery_id: int, now: datetime | None = None) -> DeliveryOut:
    """Make a delivery (dead, delivered or pending) due again now.

    Its retry budget is not renewed: when a redelivery attempt fails after the budget is spent,
    the delivery is dead again.
    """
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    row.status = "pending"
    row.next_attempt_at = now or utcnow()
    row.delivered_at = None
    session.flush()
    return _with_attempts(session, [row])[0]


def outbox_counts(session: Session) -> dict[str, int]:
    """How many deliveries are pending (the backlog) and dead, from the database."""
    rows = session.execute(
        select(WebhookDelivery.status, func.count())
        .where(WebhookDelivery.status.in_(("pending", "dead")))
        .group_by(WebhookDelivery.status)
    )
    counts = {"pending": 0, "dead": 0}
    counts.update({status: int(n) for status, n in rows})
    return counts


# ---- the outbox ----------------------------------------------------------------------------


def enqueue(session: Session, events: Sequence[Event], now: datetime | None = None) -> int:
    """Queue every (flushed) event for each active webhook that wants its type; the count."""
    if not events:
        return 0
    hooks = session.execute(
        select(Webhook.id, Webhook.event_types).where(Webhook.active.is_(True))
    ).all()
    if not hooks:
        return 0
    now = now or utcnow()
    rows = [
        {
            "webhook_id": hook_id,
            "event_id": event.id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in events
        for hook_id, types in hooks
        if not types or event.type in types
    ]
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    return len(rows)


def line_heads() -> Select[int]:
    """The id of the oldest pending delivery of each line: one webhook and one unit (events
    without a unit form one line per webhook). Reads pending deliveries only, through their
    (status, next_attempt_at) index, and each one's event by its primary key."""
    return (
        select(func.min(WebhookDelivery.id))
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.status == "pending")
        .group_by(WebhookDelivery.webhook_id, Event.unit_id)
    )


@dataclass(frozen=True)
class Job:
    """A claimed delivery, ready to POST."""

    delivery_id: int
    webhook_id: int
    url: str
    event_type: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    """The result of one POST."""

    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        """Whether the receiver accepted the delivery (2xx)."""
        return self.status_code is not None and 200 <= self.status_code < 300


def _job(delivery: WebhookDelivery, hook: Webhook, event: Event, unit_name: str | None) -> Job:
    payload = {**event_dict(event, unit_name), "delivery_id": delivery.id}
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Patroli-Webhooks/1",
        SIGNATURE_HEADER: sign(hook.secret, body),
        DELIVERY_HEADER: str(delivery.id),
        EVENT_HEADER: event.type,
    }
    return Job(delivery.id, hook.id, hook.url, event.type, body, headers)


class WebhookDispatcher:
    """Sends due deliveries from a background thread; `process_due` runs one pass directly."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        poll_s: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
        batch: int = 10,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.poll_s = poll_s
        self.clock = clock
        self.batch = batch
        self._transport = transport
        self.allow = parse_allow(settings.webhook_allow)
        self._http: dict[str, httpx.Client] = {}  # by receiver host name (TLS name, pool)
        self._http_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> None:
        """Start the background thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread (after its current POST) and close the HTTP client."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            join = timeout if timeout is not None else self.settings.webhook_timeout_s + 5
            self._thread.join(join)
            self._thread = None
        with self._http_lock:
            clients, self._http = list(self._http.values()), {}
        for client in clients:
            client.close()

    def wake(self) -> None:
        """Look for due deliveries now (call after committing enqueued deliveries)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self._drain(None, stoppable=True)
            except Exception:
                log.exception("webhook dispatch failed; retrying in %.1f s", self.poll_s)
            self._wake.wait(self.poll_s)

    # -- one pass --

    def process_due(self, now: datetime | None = None) -> int:
        """Claim and send every delivery due at `now` (default: the clock); how many were sent."""
        return self._drain(now, stoppable=False)

    def _drain(self, now: datetime | None, *, stoppable: bool) -> int:
        sent = 0
        while not (stoppable and self._stopping.is_set()):
            jobs = self.claim_due(now or self.clock())
            if not jobs:
                break
            for job in jobs:
                outcome = self.send(job)
                self.record(job, outcome, now or self.clock())
                sent += 1
        return sent

    def lease(self, jobs: int) -> timedelta:
        """How long claimed deliveries stay reserved for this worker while it sends them."""
        return timedelta(seconds=self.settings.webhook_timeout_s * (2 * jobs + 1) + 30)

    def due(self, now: datetime) -> Select[WebhookDelivery, Webhook, Event, str]:
        """The query of up to `batch` deliveries due at `now`, with webhook, event and unit name.

        Only the head of each line (the oldest pending delivery of a webhook and a unit) is
        due: the next one waits until the head is delivered or dead, then is due at once
        (never attempted before, it has no backoff of its own).
        """
        stmt = (
            select(WebhookDelivery, Webhook, Event, Unit.name)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .join(Event, Event.id == WebhookDelivery.event_id)
            .outerjoin(Unit, Unit.id == Event.unit_id)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                Webhook.active.is_(True),
                WebhookDelivery.id.in_(line_heads()),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(self.batch)
        )
        if not self.store.is_sqlite:
            # Concurrent workers skip each other's rows instead of sending them twice; a line
            # whose head another worker holds is skipped whole (the rest are not heads).
            stmt = stmt.with_for_update(skip_locked=True, of=WebhookDelivery)
        return stmt

    def claim_due(self, now: datetime) -> list[Job]:
        """Claim the due deliveries (see `due`) by leasing them; committed."""
        stmt = self.due(now)
        if self.store.is_sqlite:
            # Look without the write lock first: polls while a backlog waits for its heads'
            # backoff then never hold up ingest for the time the query takes.
            with self.store.read() as session:
                if session.execute(stmt.limit(1)).first() is None:
                    return []
        with self.store.write() as session:
            rows = session.execute(stmt).all()
            until = now + self.lease(len(rows))
            jobs = []
            for delivery, hook, event, unit_name in rows:
                delivery.next_attempt_at = until
                jobs.append(_job(delivery, hook, event, unit_name))
        return jobs

    def _client(self, host: str) -> httpx.Client:
        """The HTTP client for one receiver host: its pooled connections were made (and their
        TLS certificates checked) for that name only, although they are keyed by address."""
        with self._http_lock:
            client = self._http.get(host)
            if client is None:
                if len(self._http) >= MAX_CLIENTS:
                    self._http.pop(next(iter(self._http))).close()
                client = httpx.Client(
                    timeout=self.settings.webhook_timeout_s,
                    follow_redirects=False,
                    transport=self._transport,
                )
                self._http[host] = client
            return client

    def send(self, job: Job) -> Outcome:
        """POST one delivery to the checked address of its receiver; never raises.

        The target is checked again now (its name may resolve elsewhere than at registration)
        and the connection goes to the address that was checked. The receiver's answer is not
        read: an attempt records only its status, or a short reason of our own.
        """
        started = time.monotonic()
        try:
            checked = targets(job.url, self.allow)
        except TargetRefused as exc:
            return Outcome(None, exc.short, _ms(started))
        except Exception as exc:  # e.g. a resolver failure of a kind not foreseen
            return Outcome(None, _failure(exc), _ms(started))
        outcome = Outcome(None, "no address", _ms(started))
        for target in checked:
            outcome = self._post(job, target, started)
            if outcome.error not in _TRY_NEXT_ADDRESS:
                break
        return outcome

    def _post(self, job: Job, target: Target, started: float) -> Outcome:
        extensions = {"sni_hostname": target.server_name} if target.server_name else {}
        client = self._client(target.host_header)
        try:
            with client.stream(
                "POST",
                target.url,
                content=job.body,
                headers={**job.headers, "Host": target.host_header},
                extensions=extensions,
            ) as response:
                status = response.status_code
                _discard(response)
        except Exception as exc:  # timeouts, refused connections, TLS failures, ...
            return Outcome(None, _failure(exc), _ms(started))
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return Outcome(status, error, _ms(started))

    def record(self, job: Job, outcome: Outcome, now: datetime) -> None:
        """Store an attempt and move its delivery on: delivered, retried later, or dead."""
        stmt = select(WebhookDelivery).where(WebhookDelivery.id == job.delivery_id)
        if not self.store.is_sqlite:
            stmt = stmt.with_for_update()
        with self.store.write() as session:
            delivery = session.scalars(stmt).one_or_none()
            if delivery is None:  # its webhook was deleted meanwhile
                return
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    attempted_at=now,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    duration_ms=outcome.duration_ms,
                )
            )
            delivery.attempts += 1
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            if delivery.status != "pending":
                return  # settled by another worker after our lease ran out
            if outcome.ok:
                delivery.status = "delivered"
                delivery.delivered_at = now
                WEBHOOK_ATTEMPTS.labels(result="delivered").inc()
                return
            retry_at = now + next_delay(delivery.attempts)
            budget_end = delivery.created_at + timedelta(hours=self.settings.webhook_retry_hours)
            if retry_at > budget_end:
                delivery.status = "dead"
                WEBHOOK_ATTEMPTS.labels(result="dead").inc()
                log.warning(
                    "webhook delivery %d (webhook %d, %s) is dead after %d attempts: %s",
                    delivery.id,
                    job.webhook_id,
                    safe_origin(job.url),  # a receiver's path or query may hold its token
                    delivery.attempts,
                    outcome.error,
                )
            else:
                delivery.next_attempt_at = retry_at
                WEBHOOK_ATTEMPTS.labels(result="failed").inc()


def _discard(response: httpx.Response) -> None:
    """Read and drop a short answer, so the connection can be used again; a long one is left
    unread (the connection is then closed)."""
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if read > DISCARD_BYTES:
            return


# Failures before anything was sent: the next address of the receiver may still work.
_TRY_NEXT_ADDRESS = frozenset({"connection refused", "connection failed", "connect timeout"})


def _failure(exc: Exception) -> str:
    """A short reason for a failed POST, in our words: never text from the receiver."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if any(word in text for word in ("certificate", "ssl", "tls")):
            return "TLS handshake failed"
        return "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol error"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "connection lost"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "invalid URL"
    return type(exc).__name__


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000.0, 3)
