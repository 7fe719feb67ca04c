"""`/docs` for both HTTP roles: Swagger UI served from the package (no CDN, works offline) and
the API-key security schemes declared in the OpenAPI document, so "Authorize" and "Try it out"
send the key. The Swagger UI files are vendored in `llmscope/swagger_ui/` (see VENDORED.md there)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).with_name("swagger_ui")
ASSETS_PATH = "/docs/assets"
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "API key as `Authorization: Bearer lls_…`."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "API key as `x-api-key: lls_…`."},
}
PUBLIC_PATHS = frozenset({"/health", "/ready"})


def install_docs(app: FastAPI, public: Iterable[str] = PUBLIC_PATHS) -> None:
    """Create the app with `docs_url=None`, then call this once."""
    open_paths = frozenset(public)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API docs",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": False, "tryItOutEnabled": True},
        )

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    operation["security"] = [] if path in open_paths else [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
