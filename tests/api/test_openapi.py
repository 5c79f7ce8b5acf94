"""/api/openapi.json is a valid OpenAPI 3 document that names every /api route (issue 10)."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from app.api.litellm import PATH_PREFIXES

UNDOCUMENTED = ("/api/openapi.json", "/api/docs")  # the document itself and the page that shows it


def test_the_document_validates_and_documents_every_api_route(app):
    spec = app.test_client().get("/api/openapi.json").get_json()
    validate(spec)  # raises, naming the place, on anything OpenAPI 3 refuses (a response without description)
    assert spec["openapi"].startswith("3.")
    assert spec["security"] == [{"key": []}]  # /api/docs' "Authorize" takes the admin key
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/", *PATH_PREFIXES)) and not rule.rule.startswith(UNDOCUMENTED)
    }
    assert routes and routes <= set(spec["paths"]), sorted(routes - set(spec["paths"]))


def test_the_docs_page_is_served_from_this_host_without_a_key(app):
    client = app.test_client()
    page = client.get("/api/docs/")
    assert page.status_code == 200 and b'id="swagger-ui"' in page.data
    html = page.data.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/api/docs/") for a in assets), assets
    assert "//" not in "".join(assets)  # nothing from another host
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert '"validatorUrl": null' in html  # no call to swagger.io's online validator
