"""Security headers of every response, and the Content-Security-Policy of HTML pages."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from fastapi.responses import HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Everything that is not an HTML page of ours (JSON, CSV, GeoJSON, the event stream, errors)
# may load and run nothing at all.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # Map and docs URLs may carry a key: never sent on to another site.
    "referrer-policy": "no-referrer",
    "content-security-policy": DEFAULT_CSP,
}

_INLINE_SCRIPT = re.compile(r"<script(\s[^>]*)?>(.*?)</script\s*>", re.DOTALL | re.IGNORECASE)
_INLINE_STYLE = re.compile(r"<style(\s[^>]*)?>(.*?)</style\s*>", re.DOTALL | re.IGNORECASE)
_EXTERNAL_OR_DATA = re.compile(r"\bsrc\s*=|\btype\s*=\s*[\"']?application/json", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def add_security_headers(message: Message, static: bool = False) -> None:
    """Add the security headers a response start message lacks (and `no-store` unless static)."""
    headers = MutableHeaders(scope=message)
    for name, value in _HEADERS.items():
        if name not in headers:
            headers[name] = value
    if not static and "cache-control" not in headers:
        headers["cache-control"] = "no-store"


class SecurityHeaders:
    """ASGI middleware adding security headers to every HTTP response that lacks them.

    `Cache-Control: no-store` goes on everything but the static assets under `static_prefix`:
    answers and pages may carry data only a key holder may see.
    """

    def __init__(self, app: ASGIApp, static_prefix: str = "/static") -> None:
        self.app = app
        self.static_prefix = "/" + static_prefix.strip("/") + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith(self.static_prefix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(message, static)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _hash_source(text: str) -> str:
    """A CSP hash source ('sha256-…') of an inline script or style as the browser reads it."""
    # An HTML parser turns CR LF and lone CR into LF before a script's text is hashed.
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    digest = hashlib.sha256(normalized.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def inline_hashes(page: str) -> tuple[list[str], list[str]]:
    """Hash sources of the inline scripts and of the inline style elements of `page`.

    JSON data blocks (`type="application/json"`) are never run, so they need no hash.
    """
    scripts = {
        _hash_source(body)
        for attrs, body in _INLINE_SCRIPT.findall(page)
        if not _EXTERNAL_OR_DATA.search(attrs or "")
    }
    styles = {_hash_source(body) for _, body in _INLINE_STYLE.findall(page)}
    return sorted(scripts), sorted(styles)


def tile_source(tile_url: str) -> str | None:
    """The CSP source of a Leaflet tile URL template: its origin (None for this server's own).

    A `{s}` subdomain placeholder becomes a `*.` wildcard; a placeholder anywhere else in the
    host admits the whole scheme, as CSP has no other wildcard.
    """
    parts = urlsplit(tile_url)
    if not parts.netloc:
        return None  # a path on this server: 'self'
    scheme = parts.scheme or "https"
    host = parts.netloc.rpartition("@")[2]
    if not _PLACEHOLDER.search(host):
        return f"{scheme}://{host}"
    first, dot, rest = host.partition(".")
    if _PLACEHOLDER.fullmatch(first) and dot and not _PLACEHOLDER.search(rest):
        return f"{scheme}://*.{rest}"
    return f"{scheme}:"


def page_csp(page: str, *, img_sources: tuple[str, ...] = (), style_inline: bool = False) -> str:
    """The Content-Security-Policy of an HTML page of ours: its own inline code and 'self'.

    Inline scripts and style elements are admitted by their SHA-256 hashes, so no other inline
    script (nor an event-handler attribute, nor a javascript: URL) can run; `style_inline`
    admits inline styles of any kind, for pages whose libraries create style elements at run
    time (ReDoc).
    """
    scripts, styles = inline_hashes(page)
    style = ["'self'", "'unsafe-inline'"] if style_inline else ["'self'", *styles]
    directives = [
        "default-src 'none'",
        "script-src " + " ".join(["'self'", *scripts]),
        "style-src " + " ".join(style),
        "img-src " + " ".join(["'self'", "data:", *img_sources]),
        "connect-src 'self'",
        "font-src 'self'",
        "worker-src 'self' blob:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
    return "; ".join(directives)


def html_page(
    page: str, *, img_sources: tuple[str, ...] = (), style_inline: bool = False
) -> HTMLResponse:
    """An HTML response with the page's own Content-Security-Policy."""
    csp = page_csp(page, img_sources=img_sources, style_inline=style_inline)
    return HTMLResponse(page, headers={"Content-Security-Policy": csp})


def map_page(page: str, tile_url: str) -> HTMLResponse:
    """An HTML map page whose images may also come from the tile server of `tile_url`."""
    source = tile_source(tile_url)
    return html_page(page, img_sources=(source,) if source else ())
