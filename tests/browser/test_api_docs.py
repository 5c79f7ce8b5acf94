"""/api/docs in a real browser: Swagger UI renders the API from this host alone (issue 10)."""

from __future__ import annotations

from urllib.parse import urlsplit


def test_the_api_docs_load_with_no_request_leaving_the_host(page, live_url: str):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/docs/")
    page.get_by_text("Tollgate management API").first.wait_for()
    page.locator(".opblock-summary-path", has_text="/api/customers").first.wait_for()
    hosts = {urlsplit(url).netloc for url in requested if not url.startswith("data:")}
    assert hosts == {urlsplit(live_url).netloc}, requested
    assert any(url.endswith("/api/openapi.json") for url in requested)
