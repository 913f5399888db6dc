"""The PDF printer: Chromium is run a bounded number of times at once, each within its timeout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from service.errors import RendererUnavailable
from service.maps.pdf import PdfPrinter


def _hanging_printer(tmp_path: Path) -> Path:
    """An executable standing in for a Chromium that never finishes; it logs each start."""
    script = tmp_path / "chromium"
    script.write_text(f"#!/bin/sh\necho start >> {tmp_path / 'starts'}\nexec sleep 300\n")
    script.chmod(0o755)
    return script


def test_prints_beyond_the_limit_wait_and_are_refused_when_no_printer_frees(
    tmp_path: Path,
) -> None:
    printer = PdfPrinter(str(_hanging_printer(tmp_path)), timeout_s=2.0, concurrency=1)

    async def later(delay: float) -> bytes:
        await asyncio.sleep(delay)
        return await printer.print_html("<p>x</p>")

    async def three() -> list[bytes | BaseException]:
        # The first holds the one printer for 2 s; the second waits for it and then holds it
        # for at least 1 s more; the third gives up waiting 2 s after it came.
        return await asyncio.gather(later(0.0), later(0.5), later(0.6), return_exceptions=True)

    started = time.monotonic()
    first, second, third = asyncio.run(three())
    elapsed = time.monotonic() - started
    for result in (first, second):
        assert isinstance(result, RendererUnavailable)
        assert "took longer than" in result.message
    assert isinstance(third, RendererUnavailable)
    assert "every PDF printer is busy" in third.message
    assert "print it from a browser" in third.message
    # One at a time: the second print started only when the first had been killed.
    assert (tmp_path / "starts").read_text().count("start") == 2
    assert elapsed >= 3.0


def test_a_missing_chromium_is_refused_before_anything_runs(tmp_path: Path) -> None:
    printer = PdfPrinter(str(tmp_path / "none"), timeout_s=5.0, concurrency=1)
    with pytest.raises(RendererUnavailable, match="no Chromium at"):
        printer.check()
    not_executable = tmp_path / "chromium"
    not_executable.write_text("")
    printer = PdfPrinter(str(not_executable), timeout_s=5.0, concurrency=1)
    with pytest.raises(RendererUnavailable, match="print it from a browser instead"):
        asyncio.run(printer.print_html("<p>x</p>"))


def test_a_chromium_that_fails_is_refused(tmp_path: Path) -> None:
    failing = tmp_path / "chromium"
    failing.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    failing.chmod(0o755)
    printer = PdfPrinter(str(failing), timeout_s=5.0, concurrency=1)
    with pytest.raises(RendererUnavailable, match="Chromium failed to print the PDF"):
        asyncio.run(printer.print_html("<p>x</p>"))
