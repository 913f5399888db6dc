"""Printing a page to PDF with headless Chromium, run as a subprocess on a temporary file.

The page is written to a private temporary directory (with a throw-away browser profile) and
Chromium prints it with `--headless --print-to-pdf`; it loads nothing else (the shift report
has no script and no external resource). A print that takes longer than the timeout is killed
with its whole process group. At most `concurrency` prints run at once; a request that cannot
start one within the timeout is refused. Every refusal is a RendererUnavailable (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
from pathlib import Path

from service.errors import RendererUnavailable

log = logging.getLogger(__name__)

FALLBACK = "open the HTML report (the same URL without .pdf) and print it from a browser instead"
_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pdf-header-footer",
)


class PdfPrinter:
    """Prints HTML pages to PDF with the Chromium at `chromium_path`."""

    def __init__(self, chromium_path: str, timeout_s: float, concurrency: int) -> None:
        self.chromium_path = chromium_path
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(concurrency)

    def check(self) -> None:
        """Refuse at once (RendererUnavailable) when there is no Chromium to print with."""
        path = Path(self.chromium_path)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RendererUnavailable(
                f"PDF printing is not available: no Chromium at {self.chromium_path} "
                f"(PATROLI_CHROMIUM_PATH); {FALLBACK}"
            )

    async def print_html(self, page: str) -> bytes:
        """The PDF of an HTML page (RendererUnavailable when it cannot be printed now)."""
        self.check()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout_s)
        except TimeoutError:
            raise RendererUnavailable(
                f"every PDF printer is busy; retry later, or {FALLBACK}"
            ) from None
        try:
            return await self._print(page, max(deadline - loop.time(), 1.0))
        finally:
            self._slots.release()

    async def _print(self, page: str, timeout_s: float) -> bytes:
        with tempfile.TemporaryDirectory(prefix="patroli-pdf-") as tmp:
            folder = Path(tmp)
            source, target, errors = folder / "page.html", folder / "page.pdf", folder / "stderr"
            source.write_text(page, encoding="utf-8")
            args = [
                self.chromium_path,
                *_FLAGS,
                f"--user-data-dir={folder / 'profile'}",
                f"--print-to-pdf={target}",
                source.as_uri(),
            ]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
            with errors.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                )
                try:
                    await asyncio.wait_for(proc.wait(), timeout_s)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()
                    raise RendererUnavailable(
                        f"printing the PDF took longer than {timeout_s:g} s "
                        f"(PATROLI_PDF_TIMEOUT_S); {FALLBACK}"
                    ) from None
                finally:
                    # Chromium's helper processes share its process group: none outlives it.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
            if proc.returncode != 0 or not target.is_file() or target.stat().st_size == 0:
                tail = errors.read_text(errors="replace").strip().splitlines()[-3:]
                log.warning("Chromium failed to print a PDF (exit %s): %s", proc.returncode, tail)
                raise RendererUnavailable(f"Chromium failed to print the PDF; {FALLBACK}")
            return target.read_bytes()
