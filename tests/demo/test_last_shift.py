"""The demo prints the shift report of the latest whole shift it simulated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.config import Settings
from service.demo.run import last_shift

NOW = datetime(2024, 11, 27, 5, 6, tzinfo=UTC)  # 13:06 WITA


def test_the_latest_whole_shift_or_the_running_one() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert last_shift(NOW - timedelta(hours=24), NOW, settings) == ("2024-11-26", "night")
    assert last_shift(NOW - timedelta(hours=6), NOW, settings) == ("2024-11-27", "day")
    late = NOW + timedelta(hours=7)  # 20:06 WITA: the day shift has ended
    assert last_shift(late - timedelta(hours=24), late, settings) == ("2024-11-27", "day")
