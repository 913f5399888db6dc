"""API keys: issuing, hashing, and resolving a presented key to a principal."""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.errors import InvalidInput, NotFound
from service.store.models import ApiKey, Unit, utcnow

ROLES = ("admin", "operator", "viewer", "tracker")
KEY_PREFIX = "ptl_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, and the unit for tracker keys."""

    role: str
    unit_id: int | None = None
    key_id: int | None = None
    name: str | None = None  # the stored key's name (None: bootstrap admin key, open read)

    @property
    def who(self) -> str:
        """How acknowledgements name this caller: the key's name."""
        return self.name if self.name is not None else f"{self.role} (bootstrap key)"


def hash_key(key: str) -> str:
    """SHA-256 hex digest of a key (keys are random, so no slow hash is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session, *, role: str, name: str, unit_id: int | None = None
) -> tuple[ApiKey, str]:
    """Store a new key's hash and return the row with the plaintext key (shown once)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "tracker":
        if unit_id is None:
            raise InvalidInput("a tracker key needs unit_id")
        if session.get(Unit, unit_id) is None:
            raise NotFound(f"unit {unit_id} not found")
    elif unit_id is not None:
        raise InvalidInput("only tracker keys are bound to a unit")
    key = new_key()
    row = ApiKey(name=name, role=role, key_hash=hash_key(key), prefix=key[:12], unit_id=unit_id)
    session.add(row)
    session.flush()
    return row, key


def revoke_key(session: Session, key_id: int) -> None:
    """Revoke a key; it stops working at once."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key {key_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        announce_revocation(session)


# PostgreSQL channel on which a transaction that revokes keys tells every process, when it
# commits, to forget the keys it cached (service.notify.stream listens on it).
KEYS_CHANNEL = "patroli_keys"


def announce_revocation(session: Session) -> None:
    """Make every process drop its cached keys when this transaction commits (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {KEYS_CHANNEL}"))


def resolve_key(session: Session, key: str) -> Principal | None:
    """The principal a stored key stands for, or None when it is unknown or revoked."""
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return Principal(role=row.role, unit_id=row.unit_id, key_id=row.id, name=row.name)


def still_valid(session: Session, principal: Principal) -> bool:
    """Whether a principal resolved earlier still stands: its stored key is not revoked or gone.

    Long-lived requests (the live stream) call this again and again, so that revoking a key
    or rotating a device secret ends them on every worker.
    """
    if principal.key_id is None:  # the bootstrap admin key or an open read: nothing to revoke
        return True
    revoked = session.execute(
        select(ApiKey.revoked_at).where(ApiKey.id == principal.key_id)
    ).one_or_none()
    return revoked is not None and revoked.revoked_at is None


class KeyCache:
    """Recently resolved keys of this worker, so most requests skip the key lookup."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Principal | None, float]] = {}
        self._listeners: list[Callable[[], None]] = []
        self.generation = 0  # bumped by clear(), so a lookup racing a revocation is not kept

    def get(self, key: str) -> tuple[bool, Principal | None]:
        """(found, principal) for a key; found is False when it must be looked up."""
        with self._lock:
            entry = self._entries.get(hash_key(key))
        if entry is None or entry[1] < time.monotonic():
            return False, None
        return True, entry[0]

    def put(self, key: str, principal: Principal | None, generation: int) -> None:
        """Remember how a key resolved, unless the cache was cleared since the lookup began."""
        if self._ttl <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) > 10_000:  # bound memory against floods of random keys
                self._entries.clear()
            # Each entry lives 75-100 % of the cache time: keys first seen together (every
            # tracker after a restart) are not all looked up again in the same second.
            ttl = self._ttl * random.uniform(0.75, 1.0)
            self._entries[hash_key(key)] = (principal, time.monotonic() + ttl)

    def clear(self) -> None:
        """Forget every key (after a revocation, so it takes effect at once here)."""
        with self._lock:
            self._entries.clear()
            self.generation += 1
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after every clear() (e.g. to wake open streams); returns unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe
