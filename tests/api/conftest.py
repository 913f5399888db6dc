"""Browser fixtures for API tests that load a page in Chromium (those of the map tests)."""

from tests.maps.conftest import browser, live_server

__all__ = ["browser", "live_server"]
