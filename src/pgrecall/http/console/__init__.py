"""The web console: plain static files (no build step, nothing from a CDN) under ``/console``.

The browser code calls the same REST API with the key the user enters, so a key sees in the
console exactly what it may see over the API. The files are read once, when the app is made
(about 34 KB), and only those files are served: no path from a request reaches the file system.
Every answer carries a strict Content-Security-Policy: scripts and styles from this origin only,
no inline script or eval, and Trusted Types required, so an assignment to ``innerHTML`` throws
instead of parsing a stored memory as HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse, Response

from pgrecall.http.errors import error_response

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Files change with the installed version; revalidating costs nothing on loopback.
    "Cache-Control": "no-cache",
}


def _files() -> dict[str, tuple[bytes, str]]:
    """Each console file by its path under /console/, with its media type."""
    files = {}
    for path in sorted(STATIC.rglob("*")):
        if path.is_file() and path.suffix in MEDIA_TYPES:
            name = path.relative_to(STATIC).as_posix()
            files[name] = (path.read_bytes(), MEDIA_TYPES[path.suffix])
    return files


def install(app: FastAPI) -> None:
    """Serve the console on ``app`` at /console/ (/console redirects there)."""
    files = _files()
    router = APIRouter(include_in_schema=False)

    @router.get(PREFIX)
    async def console_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=308, headers=HEADERS)

    @router.get(PREFIX + "/{path:path}")
    async def console_file(path: str) -> Response:
        found = files.get(path or "index.html")
        if found is None:
            response: Response = error_response(404, "not_found", "no such console file")
            response.headers.update(HEADERS)
            return response
        body, media_type = found
        return Response(body, media_type=media_type, headers=HEADERS)

    app.include_router(router)
