"""`/docs` works offline (Swagger UI served by us) and "Authorize" + "Try it out" send the API key."""

from __future__ import annotations

import httpx
from playwright.async_api import Page

from tests.console.conftest import Console, screenshot


async def test_docs_load_offline_and_try_it_out_sends_the_authorized_key(page: Page, console: Console) -> None:
    await page.goto(f"{console.url}/docs")  # the context aborts any request off this server
    await page.wait_for_selector(".swagger-ui .information-container")
    await page.click("button.authorize")
    bearer = page.locator(".modal-ux .auth-container").filter(has_text="bearer")
    await bearer.locator("input").fill(console.a.key)
    await bearer.locator("button.authorize").click()
    await page.click("button.btn-done")
    await page.click("#operations-keys-whoami_api_v1_whoami_get .opblock-summary")
    # "Try it out" is on from the start (tryItOutEnabled): the Execute button is there.
    await page.click("#operations-keys-whoami_api_v1_whoami_get button.execute")
    body = page.locator("#operations-keys-whoami_api_v1_whoami_get .live-responses-table .response-col_description pre")
    await body.first.wait_for()
    assert '"tenant_id": "dev"' in await body.first.inner_text()
    await screenshot(page, "docs")


def test_both_openapi_documents_declare_the_api_key_schemes(console: Console) -> None:
    for base in (console.url, console.up.ingest_url):
        doc = httpx.get(f"{base}/openapi.json").json()
        assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
        assert doc["components"]["securitySchemes"]["apiKey"] == {
            "type": "apiKey", "in": "header", "name": "x-api-key", "description": "API key as `x-api-key: lls_…`."}
        assert doc["paths"]["/health"]["get"]["security"] == []
        secured = [op for path, ops in doc["paths"].items() if path not in ("/health", "/ready") for op in ops.values()]
        assert secured and all(op["security"] == [{"bearer": []}, {"apiKey": []}] for op in secured)
        html = httpx.get(f"{base}/docs").text
        assert "/docs/assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert httpx.get(f"{base}/docs/assets/{asset}").status_code == 200
