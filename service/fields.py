"""Input types shared by every request model and route: database ids and text.

Ids are checked against the range of their column before any query, with the same bounds on
SQLite and PostgreSQL, so an out-of-range id is a 422 that says so on both backends (never a
driver overflow). Text is refused when the database could not store it faithfully or when it
holds characters that have no place in a name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

import annotated_types
from pydantic import AfterValidator, Field

# Ids of units, patrol routes, geofences, keys and webhooks are 32-bit INTEGER columns on
# PostgreSQL; pings, events and webhook deliveries have 64-bit BIGINT ids.
MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1

Id = Annotated[int, annotated_types.Interval(ge=1, le=MAX_ID)]
"""The id of a unit, patrol route, geofence, API key or webhook (1 .. 2^31-1)."""

BigId = Annotated[int, annotated_types.Interval(ge=1, le=MAX_BIG_ID)]
"""The id of a ping, event or webhook delivery (1 .. 2^63-1)."""

# NUL cannot be stored in PostgreSQL text, and a lone surrogate cannot be encoded as UTF-8
# (to the database or in a response): no text anywhere may hold either.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Single-line text (names, kinds, device ids, URLs): no C0/C1 control characters or DEL.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def _describe(char: str, position: int) -> str:
    return f"U+{ord(char):04X} at position {position}"


def check_line(value: str) -> str:
    """The value, or ValueError when it holds a control character or a lone surrogate."""
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(
            "must not contain control characters or unpaired surrogates "
            f"(found {_describe(bad.group(), bad.start())})"
        )
    return value


def _storable_error(value: str) -> str:
    bad = _UNSTORABLE.search(value)
    found = f" (found {_describe(bad.group(), bad.start())})" if bad else ""
    return f"must not contain NUL characters or unpaired surrogates{found}"


def check_storable(value: str) -> str:
    """The value, or ValueError when it holds NUL or a lone surrogate (unstorable text)."""
    if _UNSTORABLE.search(value):
        raise ValueError(_storable_error(value))
    return value


def check_json_text(value: Any, name: str = "attributes") -> Any:
    """The value, or ValueError naming the first key or string in it that is not storable."""
    stack: list[tuple[str, Any]] = [(name, value)]
    while stack:  # iterative: a deeply nested document must not exhaust the call stack
        where, item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise ValueError(f"{where}: {_storable_error(item)}")
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    raise ValueError(f"{where} has a key that {_storable_error(key)}")
                stack.append((f"{where}.{key}", child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return value


Line = Annotated[
    str, AfterValidator(check_line), Field(json_schema_extra={"pattern": LINE_PATTERN})
]
"""Single-line text: names, kinds, device ids, URLs, secrets (no control characters)."""
