"""Time windows: the [from, to) span every track, analytics and map request is asked for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.errors import InvalidInput
from service.fixtime import parse_read_time


@dataclass(frozen=True)
class Window:
    """A time window [start, end) in UTC."""

    start: datetime
    end: datetime


def window_between(from_: str | None, to: str | None, max_days: float) -> Window:
    """The [from, to) window of a query (the last 24 hours by default; never beyond now)."""
    now = datetime.now(UTC)
    # Query times follow the one time rule of service.fixtime: any time in 1970-2199 (which
    # holds every fix that can be stored), as ISO 8601 or a Unix time in seconds or ms.
    end = parse_read_time(to, "to") if to else now
    start = parse_read_time(from_, "from") if from_ else end - timedelta(hours=24)
    if start >= now:
        raise InvalidInput(f"from={start.isoformat()} is in the future: there are no fixes yet")
    if start >= end:
        raise InvalidInput("'from' must be earlier than 'to'")
    # Time after now has no fixes yet: counted, it would show as unvisited or uncovered.
    end = min(end, now)
    longest = timedelta(days=max_days)
    if end - start > longest:
        raise InvalidInput(
            f"the window is {(end - start) / timedelta(days=1):.1f} days long; at most "
            f"{max_days:g} days may be asked at once (PATROLI_MAX_WINDOW_DAYS)"
        )
    return Window(start, end)
