"""Broker accounts of OwnTracks phones: Mosquitto's ACL and password file, made from the units.

A unit whose device_id is `<user>/<device>` is an OwnTracks phone. Each phone has a broker user
of its own, named by its device_id, that may publish only the phone's topic
`<prefix>/<user>/<device>` (and `/event`) and read its `/cmd`: a phone cannot report as
another, even of the same OwnTracks user. Passwords are written hashed, in Mosquitto's own
format (`$7$`: PBKDF2-SHA512, 101 iterations, 12-byte salt, as `mosquitto_passwd` writes them),
so the file never needs `mosquitto_passwd -U`, which would hash the lines already hashed again.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

_ITERATIONS = 101
_SALT_BYTES = 12
_UNSAFE = frozenset("+#:$ \t")


def phone_identity(device_id: str) -> tuple[str, str] | None:
    """(user, device) of a unit whose device_id is `user/device`, as OwnTracks names phones."""
    user, slash, device = device_id.partition("/")
    if not slash or not user or not device or "/" in device:
        return None
    return user, device


def broker_user(device_id: str) -> bool:
    """Whether a unit can have a broker account: an OwnTracks phone whose device_id holds no
    MQTT wildcard (`+`, `#`, which in an ACL would open other topics), `:` (the password
    file's separator), space or `$`."""
    return phone_identity(device_id) is not None and not _UNSAFE.intersection(device_id)


def phones(device_ids: Iterable[str]) -> list[str]:
    """The device ids of the units that get broker accounts, sorted: each is a user name."""
    return sorted(d for d in set(device_ids) if broker_user(d))


def phone_topic(device_id: str, prefix: str = "owntracks") -> str:
    """The topic an OwnTracks phone publishes its locations to."""
    return f"{prefix}/{device_id}"


def acl(device_ids: list[str], patroli_user: str, prefix: str = "owntracks") -> str:
    """Mosquitto ACL: each phone publishes only its own topics; Patroli reads them all."""
    lines = [f"user {patroli_user}", f"topic read {prefix}/#", f"topic write {prefix}/+/+/cmd", ""]
    for device_id in phones(device_ids):
        topic = phone_topic(device_id, prefix)
        lines += [
            f"user {device_id}",
            f"topic write {topic}",
            f"topic write {topic}/event",
            f"topic read {topic}/cmd",
            "",
        ]
    return "\n".join(lines)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A password as Mosquitto's password file stores it (`$7$101$<salt>$<hash>`)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    b64 = base64.b64encode
    return f"$7${_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def new_password() -> str:
    """A random broker password (128 bits, URL-safe characters)."""
    return secrets.token_urlsafe(16)


def add_users(existing: str, users: list[str]) -> tuple[str, dict[str, str]]:
    """The password file with a new hashed line for each user not in it yet.

    Returns the new file and the new users' passwords in plain text (shown once, like a
    device secret). Lines already there are kept as they are.
    """
    kept = [line for line in existing.splitlines() if line.strip()]
    known = {line.split(":", 1)[0] for line in kept}
    added = {user: new_password() for user in dict.fromkeys(users) if user not in known}
    lines = kept + [f"{user}:{hash_password(password)}" for user, password in added.items()]
    return "\n".join(lines) + "\n", added


def set_password(existing: str, user: str, password: str) -> str:
    """The password file with the user's line replaced (or added) by the password, hashed."""
    kept = [
        line for line in existing.splitlines() if line.strip() and line.split(":", 1)[0] != user
    ]
    return "\n".join([*kept, f"{user}:{hash_password(password)}"]) + "\n"


def write_private(path: Path, text: str) -> None:
    """Replace a file's content atomically, readable by its owner only (a password file)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
