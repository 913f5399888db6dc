"""Secrets out of logs: API keys and device secrets in request targets and URLs are masked.

Trackers and browsers may carry a key in the URL (`?key=` on maps, the live stream and OsmAnd,
`/api/v1/osmand/<secret>`). The server's access log prints every request target, so a filter
on the access loggers masks the values of secret-like query parameters and the secret path
segment before any handler formats the line. `patroli serve` installs it, and so does the app
itself, so it holds however the app is run (uvicorn --factory, gunicorn with uvicorn workers).
Filters on a logger see only records logged to that very logger, which is how uvicorn, gunicorn
and httpx log requests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

MASK = "***"

# Query parameter names whose values are never logged (matched anywhere in the decoded name,
# case-insensitively): key, api_key, secret, token, password, passwd, pwd, auth, signature, ...
SECRET_NAME = re.compile(r"key|secret|token|pass|pwd|auth|sig|session|cred", re.IGNORECASE)

# Paths whose next segment is a device secret (tracker URLs that cannot carry a header).
SECRET_PATH_PREFIXES = ("/api/v1/osmand/", "/api/v1/owntracks/")

_PATH_SECRET = re.compile(
    "(" + "|".join(re.escape(p) for p in SECRET_PATH_PREFIXES) + r")[^/?#\s]+"
)
# One query parameter: its separator, name and value (up to the next separator, or the end of
# the target in a log line: a request target holds no white space).
_PARAM = re.compile(r"([?&;])([^=&;#\s]*)=([^&;#\s]*)")

# The servers' access logs, and httpx's request log (the webhook dispatcher's client; a
# receiver's URL may hold its token in the query string).
LOGGERS = ("uvicorn.access", "gunicorn.access", "httpx")


def _mask_param(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    if value and SECRET_NAME.search(unquote_plus(name)):
        return f"{sep}{name}={MASK}"
    return match.group(0)


def redact(text: str) -> str:
    """Text with secret path segments and values of secret-like query parameters masked."""
    if "/" not in text and "=" not in text:
        return text
    masked = _PATH_SECRET.sub(lambda m: m.group(1) + MASK, text)
    return _PARAM.sub(_mask_param, masked)


def safe_origin(url: str) -> str:
    """Scheme, host and port of a URL only: what a log may say about where a request went."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        host = parts.hostname or "?"
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}"


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, int | float):
        return value
    shown = str(value)  # e.g. an httpx.URL: replaced by its masked text only when that differs
    masked = redact(shown)
    return value if masked == shown else masked


class RedactSecrets(logging.Filter):
    """A logging filter masking secrets in a record's message and arguments (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place; always keep it."""
        args = record.args
        if not args and isinstance(record.msg, str):  # a finished message, not a format
            record.msg = redact(record.msg)
        elif isinstance(args, tuple):
            record.args = tuple(_redact_value(a) for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: _redact_value(v) for k, v in args.items()}
        return True


def install(names: Iterable[str] = LOGGERS) -> None:
    """Add the filter to the named loggers, once (calling this again changes nothing)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
