"""Reading QR codes back as a phone scanner would: from modules, terminal text or pixels."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import zxingcpp

# segno's compact terminal text: each character is two modules, top and bottom, drawn light.
_LIGHT = {"█": (True, True), "▀": (True, False), "▄": (False, True), " ": (False, False)}


def decode_pixels(gray: np.ndarray) -> str:
    """The text of the one QR code in a grayscale image (0 black, 255 white)."""
    found = zxingcpp.read_barcodes(gray.astype(np.uint8))
    texts = [r.text for r in found if r.format == zxingcpp.BarcodeFormat.QRCode]
    assert len(texts) == 1, f"{len(texts)} QR codes found"
    return texts[0]


def decode_matrix(rows: Iterable[Sequence[int]], scale: int = 4) -> str:
    """The text of a QR code given as rows of modules (1 dark), quiet zone included."""
    dark = np.array([list(r) for r in rows], dtype=np.uint8)
    big = np.kron(dark, np.ones((scale, scale), dtype=np.uint8))
    return decode_pixels(np.where(big == 1, 0, 255))


def decode_terminal(text: str) -> str:
    """The text of a QR code printed as segno's compact terminal text (light modules as blocks)."""
    rows: list[list[int]] = []
    for line in text.splitlines():
        if not line or any(c not in _LIGHT for c in line):
            continue
        top = [0 if _LIGHT[c][0] else 1 for c in line]
        bottom = [0 if _LIGHT[c][1] else 1 for c in line]
        rows += [top, bottom]
    return decode_matrix(rows)


def owntracks_config(link: str) -> dict[str, Any]:
    """The configuration an `owntracks:///config?inline=` link imports into the app."""
    parts = urlsplit(link)
    assert (parts.scheme, parts.path) == ("owntracks", "/config"), link
    (inline,) = parse_qs(parts.query, strict_parsing=True)["inline"]
    config: dict[str, Any] = json.loads(base64.b64decode(inline, validate=True))
    return config
