"""The web console at `/`: plain HTML, CSS and JavaScript modules shipped inside the package
(package-data), so users need no build step and the browser needs no network beyond this server.

`static/` holds the pages (`app.js` routes between them; each page is one module under
`static/pages/`, registered in `static/nav.js`), `vendor/` the pinned third-party files with
their licences and a VENDORED.md each. The page talks only to the query API it is served by,
with the API key the user signs in with (kept in the tab's sessionStorage, sent as a header,
never in a URL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).parent
STATIC, VENDOR = HERE / "static", HERE / "vendor"
# Nothing but this server: scripts and styles from our own files, data and the live socket to our API.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class _Revalidated(StaticFiles):
    """Revalidate on every load (ETag), so an upgraded package never runs next to stale modules."""

    def file_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install_console(app: FastAPI) -> None:
    app.mount("/console/vendor", _Revalidated(directory=VENDOR), name="console-vendor")
    app.mount("/console", _Revalidated(directory=STATIC), name="console")

    @app.get("/", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=HEADERS)
