"""Every GET route of the url map, anonymous and signed in, carries the
protective headers; HSTS only off loopback; nothing but static assets may be
cached."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from directory.models import Role
from idp.container import Container
from tests.factories import World
from tests.idp.conftest import Browser, sibling_app
from tests.idp.test_forms_and_pages import _path

STATIC = ("/assets/", "/assets-local/")


def _check(response, path: str, *, hsts: bool) -> None:  # type: ignore[no-untyped-def]
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp, path
    assert "frame-ancestors 'none'" in csp, path
    assert "object-src 'none'" in csp and "base-uri 'none'" in csp, path
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp and "*" not in csp, path
    assert headers.get("X-Content-Type-Options") == "nosniff", path
    assert headers.get("Referrer-Policy") == "no-referrer", path
    assert headers.get("X-Frame-Options") == "DENY", path
    assert headers.get("X-Request-ID"), path
    if path.startswith(STATIC):
        assert "no-store" not in headers.get("Cache-Control", ""), path
    else:
        assert headers.get("Cache-Control") == "no-store", path
    if hsts:
        assert headers.get("Strict-Transport-Security") == (
            "max-age=63072000; includeSubDomains"
        ), path
    else:
        assert "Strict-Transport-Security" not in headers, path


def _walk(app: Flask, browser: Browser, ids: dict[str, int], *, hsts: bool) -> set[str]:
    seen = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or set()):
            continue
        path = _path(rule, ids)
        if rule.endpoint == "local_assets":
            path = "/assets-local/init.js"
        response = browser.client.get(path)
        _check(response, path, hsts=hsts)
        seen.add(rule.endpoint)
    # Error pages and problem documents too.
    _check(browser.client.get("/no/such/page"), "/no/such/page", hsts=hsts)
    return seen


def test_every_get_route_carries_the_headers_anonymous_and_signed_in(
    app: Flask, container: Container, world: World, browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Olivia")
    ids = {"person_id": admin.person.id}
    anonymous = _walk(app, browser, ids, hsts=False)
    assert browser.sign_in(admin, container).status_code == 302
    signed_in = _walk(app, browser, ids, hsts=False)
    assert anonymous == signed_in
    assert {"home.index", "home.healthz", "ops.readyz", "ops.metrics_page", "signin.start",
            "people.index", "services.search", "local_assets",
            "identity_provider.show"} <= signed_in


def test_hsts_on_every_route_when_served_over_https(
    container: Container, database_url: str, tmp_path: Path
) -> None:
    app, built = sibling_app(
        container, database_url, tmp_path / "https",
        service={"base_url": "https://contactpoint.example.gov.uk"},
    )
    try:
        seen = _walk(app, Browser(app.test_client()), {}, hsts=True)
        assert "signin.start" in seen
    finally:
        built.dispose()
