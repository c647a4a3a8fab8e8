"""What every page owes every visitor: forms refuse posts without the CSRF
token, pages refuse anonymous visitors, and error pages give nothing away.

The first two walk the application's URL map, so a route added later is
covered the day it is added: if it forgets its protection, these tests fail."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.routing import Rule

from core.errors import NotAllowed
from directory.models import Role
from directory.services_models import Service
from idp.app import create_app
from idp.container import Container
from idp.federation.models import UpstreamProvider
from tests.factories import World, sign_in
from tests.idp.conftest import Browser, audit_count, gov_date, text_of
from tokens.attempts import Client
from tokens.errors import SignInFailed
from tokens.models import SignInGuard
from vetting.models import Application

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PUBLIC_PATHS = ("/sign-in", "/activate", "/signed-out", "/healthz", "/assets",
                # Resets are for people who cannot sign in: public by nature.
                "/reset-pin", "/reset-password",
                # For load balancers and Prometheus (metrics only from allowed addresses).
                "/readyz", "/metrics")
# The OpenID Connect provider's protocol endpoints answer relying applications, not
# people: each authenticates its caller itself (client credentials or an access
# token, never the session cookie), so they carry no CSRF token, and an anonymous
# visitor gets a protocol answer rather than the sign-in page. Their own tests
# (tests/idp/oidc/) prove each refusal; this list grows only on purpose.
PROTOCOL_PATHS = ("/.well-known/", "/oauth2/")
CSRF_EXEMPT = {"oidc.par", "oidc.userinfo", "oidc.introspect", "oidc.revoke"}
# The JSON admin API takes bearer access tokens only, never the session cookie: no
# CSRF token, and a caller without a token gets a 401 problem, not the sign-in page
# (tests/idp/api/ prove its checks; the tenant isolation walker walks it).
API_PATHS = ("/api/",)
API_PUBLIC = {"/api/v1/openapi.json"}


def _api_refusal(response: object) -> bool:
    return (response.status_code == 401  # type: ignore[attr-defined]
            and response.mimetype == "application/problem+json"  # type: ignore[attr-defined]
            and response.headers["WWW-Authenticate"].startswith("Bearer"))  # type: ignore[attr-defined]


def _path(rule: Rule, ids: dict[str, int]) -> str:
    values = {
        name: ids.get(name, 1) if isinstance(rule._converters[name].to_python("1"), int) else "x"
        for name in rule.arguments
    }
    return rule.build(values, append_unknown=False)[1]  # type: ignore[index]


def test_every_form_refuses_a_post_without_a_valid_csrf_token(
    app: Flask, container: Container, world: World, browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Olivia")
    world.add_position(admin, org, Role.VETTING_OFFICER)
    locked = world.member(org, given_name="Lou")
    for _ in range(container.settings.signin.lockout_threshold):
        with pytest.raises(SignInFailed):
            sign_in(container, locked, Client("192.0.2.50"), password="not the password 1")
    newcomer = world.newcomer(org, given_name="Nia")
    code = world.unit.activation.issue_code(newcomer)
    world.unit.commit()
    application = world.unit.vetting.sponsor(
        world.principal(admin),
        organisation_id=org.id,
        given_name="Sam",
        family_name="Applicant",
        work_email="sam@example.org",
        work_phone=None,
        role=Role.PRACTITIONER,
    )
    world.unit.commit()
    assert browser.sign_in(admin, container).status_code == 302
    token = browser.token("/")

    today = container.clock.today()
    # What each form would need to do its work, so the token is the only thing missing.
    valid = {
        "signin.start": {"username": admin.username, "password": admin.password},
        "signin.second_step": {"code": admin.totp(container, 1), "pin": admin.pin},
        # Security keys: the credential would be a browser's JSON; the token is what is missing.
        "signin.key_step": {"credential": "{}", "pin": admin.pin},
        "keys.add": {"name": "Forged key", "credential": "{}"},
        "keys.remove": {"confirm": "yes"},
        "keys.step_up": {"credential": "{}", "pin": admin.pin},
        "activation.start": {"username": newcomer.username, "code": code},
        "vetting.new": {
            "organisation_id": str(org.id), "given_name": "Kim", "family_name": "Forged",
            "work_email": "kim@example.org", "role": "practitioner",
        },
        "vetting.identity": {
            "identity-confidence": "high", "identity-method": "face_to_face",
            "identity-checked_on": gov_date(today), "identity-evidence_reference": "REF-1",
        },
        "vetting.certificate": {
            "certificate-certificate_number": "001234567890",
            "certificate-issued_on": gov_date(today - timedelta(days=5)),
            "certificate-outcome": "nothing_recorded",
        },
        "vetting.training": {"training-completed_on": gov_date(today)},
        "vetting.agreement": {"agreement-signed_on": gov_date(today)},
        "vetting.decision": {"decision-decision": "cleared", "decision-reason": "All good"},
        "vetting.renewal": {
            "username": locked.username, "certificate_number": "001234567891",
            "issued_on": gov_date(today), "outcome": "nothing_recorded",
        },
        "resets.pin_start": {"username": admin.username, "password": admin.password},
        "resets.password_start": {
            "username": admin.username, "code": admin.totp(container, 1), "pin": admin.pin,
            "letter_code": "7QK2M-9XHRT-ABCDE-FGHJK-MNPQR-STVWX",
        },
        "resets.pin_new": {"pin": "735104", "pin_confirmation": "735104"},
        "resets.password_new": {
            "password": "lantern orchard velvet 1984",
            "password_confirmation": "lantern orchard velvet 1984",
        },
        # Hardware tokens: the token id is the default (1), refused before it is looked up.
        "tokens.assign": {"username": locked.username},
        "tokens.activate": {"code": "123456"},
        "tokens.resync": {"first_code": "123456", "second_code": "654321"},
        "tokens.lost": {"what": "stolen"},
        "tokens.replacement": {
            "username": admin.username, "password": admin.password, "pin": admin.pin,
            "code": admin.totp(container, 1),
        },
        # Services: a complete service, so the token is the only thing missing.
        "services.new": {
            "organisation_id": str(org.id), "name": "Forged Surgery", "kind": "gp_practice",
            "address_line1": "1 High Street", "town": "Northtown", "postcode": "NE1 4ST",
            "phone": "0191 496 0000", "starts_on": gov_date(today),
        },
        "services.edit": {
            "name": "Forged Surgery", "kind": "gp_practice", "address_line1": "1 High Street",
            "town": "Northtown", "postcode": "NE1 4ST", "phone": "0191 496 0000",
            "starts_on": gov_date(today),
        },
        "services.close": {},
        "services.place": {"username": locked.username},
        "services.unplace": {},
        # The organisation's own identity provider: a complete one, so the token is
        # the only thing missing (organisation 1 is the admin's own).
        "identity_provider.show": {
            "issuer": "https://login.example.org", "client_id": "contactpoint",
            "client_secret": "forged secret", "username_claim": "email",
        },
        "identity_provider.accepted_acr": {"accepted_acr": "forged"},
        "identity_provider.remove": {"reason": "forged"},
    }
    ids = {"application_id": application.id, "person_id": locked.person.id}
    before = audit_count(container)
    tried = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in CSRF_EXEMPT:
            continue
        for method in sorted((rule.methods or set()) & UNSAFE):
            path = _path(rule, ids)
            if rule.rule.startswith(API_PATHS):
                # No CSRF token to check: the signed-in session lends it no authority.
                for forged in ({}, {"csrf_token": "forged"}, {"csrf_token": token}):
                    response = browser.client.open(path, method=method,
                                                   json={"reason": "forged", **forged})
                    assert _api_refusal(response), (method, path, forged)
                tried.add(rule.endpoint)
                continue
            data = valid.get(rule.endpoint, {})
            for forged in ({}, {"csrf_token": "forged"}, {"csrf_token": token[:-4] + "AAAA"}):
                response = browser.client.open(path, method=method, data={**data, **forged})
                assert response.status_code == 400, (method, path, forged)
                assert 'data-error-id="csrf"' in text_of(response), (method, path)
            tried.add(rule.endpoint)

    assert {
        "signin.start", "signin.second_step", "signin.sign_out", "activation.start",
        "signin.key_step", "keys.add", "keys.remove", "keys.step_up",
        "activation.password", "activation.token", "activation.pin", "vetting.new",
        "vetting.identity", "vetting.certificate", "vetting.training", "vetting.agreement",
        "vetting.decision", "vetting.renewal", "people.unlock",
        "resets.pin_start", "resets.pin_code", "resets.pin_new", "resets.password_start",
        "resets.password_new", "resets.request_pin_reset", "resets.request_password_reset",
    } <= tried
    assert {"tokens.assign", "tokens.activate", "tokens.resync", "tokens.lost",
            "tokens.replacement"} <= tried
    assert {"services.new", "services.edit", "services.close", "services.place",
            "services.unplace"} <= tried
    assert {"federation.choose", "federation.link", "federation.unlink"} <= tried
    assert {"identity_provider.show", "identity_provider.test_connection",
            "identity_provider.accepted_acr", "identity_provider.remove"} <= tried
    assert {"api.suspend_person", "api.reinstate_person", "api.end_position",
            "api.suspend_organisation", "api.accredit_organisation"} <= tried
    # Nothing happened: no audit entry, no change, and the session survived the sign-out post.
    assert audit_count(container) == before
    with container.unit() as check:
        app_row = check.session.get(Application, application.id)
        assert app_row is not None and app_row.identity_check is None
        assert app_row.decision is None
        assert check.session.scalar(select(func.count()).select_from(Service)) == 0
        assert check.session.scalar(select(func.count()).select_from(UpstreamProvider)) == 0
        assert check.session.scalar(
            select(Application).where(Application.family_name == "Forged")
        ) is None
        guard = check.session.get(SignInGuard, locked.person.id)
        assert guard is not None and guard.locked_until is not None
    assert browser.client.get("/").status_code == 200
    # The letter's code was not used up by the refused post.
    fresh = Browser(app.test_client())
    started = fresh.submit("/activate", {"username": newcomer.username, "code": code})
    assert started.status_code == 302


def test_every_page_but_sign_in_activation_and_assets_sends_anonymous_visitors_to_sign_in(
    app: Flask, browser: Browser
) -> None:
    checked = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or set()) or rule.rule.startswith(PUBLIC_PATHS):
            continue
        if rule.rule.startswith(PROTOCOL_PATHS):
            continue
        path = _path(rule, {})
        if rule.rule.startswith(API_PATHS):
            if rule.rule not in API_PUBLIC:
                assert _api_refusal(browser.client.get(path)), path
                checked.append(rule.endpoint)
            continue
        response = browser.client.get(path)
        assert response.status_code == 302, path
        assert urlsplit(response.headers["Location"]).path == "/sign-in", path
        checked.append(rule.endpoint)
    assert {"home.index", "vetting.applications", "vetting.detail", "vetting.new",
            "people.index", "resets.request_pin_reset",
            "resets.request_password_reset"} <= set(checked)

    assert {"keys.index", "keys.add", "keys.remove", "keys.step_up"} <= set(checked)
    assert {"tokens.inventory", "tokens.mine", "tokens.detail", "tokens.activate",
            "tokens.resync", "tokens.lost"} <= set(checked)
    assert {"services.search", "services.detail", "services.new", "services.edit",
            "services.close"} <= set(checked)
    assert {"identity_provider.show", "identity_provider.accepted_acr",
            "identity_provider.remove"} <= set(checked)

    # Forms too: with a good token but no session, every post goes to sign-in as well.
    token = browser.token("/sign-in")
    posted = []
    for rule in app.url_map.iter_rules():
        public = rule.rule.startswith(PUBLIC_PATHS) or rule.rule in ("/sign-out",
                                                                       "/oauth2/logout")
        for method in sorted((rule.methods or set()) & UNSAFE):
            if public or rule.endpoint in CSRF_EXEMPT:
                continue
            if rule.rule.startswith(API_PATHS):
                response = browser.client.open(_path(rule, {}), method=method,
                                               json={"reason": "anonymous"})
                assert _api_refusal(response), (method, rule.rule)
                posted.append(rule.endpoint)
                continue
            response = browser.client.open(_path(rule, {}), method=method,
                                           data={"csrf_token": token})
            assert response.status_code == 302, (method, rule.rule)
            assert urlsplit(response.headers["Location"]).path == "/sign-in", rule.rule
            posted.append(rule.endpoint)
    assert {"vetting.decision", "people.unlock", "resets.request_pin_reset",
            "resets.request_password_reset"} <= set(posted)
    assert {"keys.add", "keys.remove", "keys.step_up"} <= set(posted)
    assert {"federation.link", "federation.unlink"} <= set(posted)
    assert {"identity_provider.show", "identity_provider.test_connection",
            "identity_provider.accepted_acr", "identity_provider.remove"} <= set(posted)
    assert {"tokens.assign", "tokens.activate", "tokens.resync", "tokens.lost"} <= set(posted)
    assert {"services.new", "services.edit", "services.close", "services.place",
            "services.unplace"} <= set(posted)
    assert {"api.people", "api.person", "api.audit_trail", "api.organisations"} <= set(checked)
    assert {"api.suspend_person", "api.end_position"} <= set(posted)

    for public in ("/sign-in", "/activate", "/signed-out", "/healthz",
                   "/assets/govuk-frontend.min.css", "/assets-local/init.js",
                   "/reset-pin", "/reset-password", "/activate/replacement",
                   *API_PUBLIC):
        assert browser.client.get(public).status_code == 200, public


def test_the_public_list_is_exact(app: Flask) -> None:
    """Every GET rule either needs a session or is one of the few public pages;
    a new public prefix must be added here on purpose."""
    public = sorted(
        r.rule for r in app.url_map.iter_rules()
        if "GET" in (r.methods or set()) and r.rule.startswith(PUBLIC_PATHS)
    )
    assert public == [
        "/activate", "/activate/done", "/activate/password", "/activate/pin",
        "/activate/replacement", "/activate/token",
        "/assets-local/<path:name>", "/assets/<path:name>", "/healthz", "/metrics",
        "/readyz", "/reset-password", "/reset-password/done", "/reset-password/new", "/reset-pin",
        "/reset-pin/code", "/reset-pin/done", "/reset-pin/new", "/sign-in",
        "/sign-in/key", "/sign-in/organisation", "/sign-in/organisation/callback",
        "/sign-in/token", "/signed-out",
    ]
    protocol = sorted(
        f"{sorted((r.methods or set()) - {'HEAD', 'OPTIONS'})} {r.rule}"
        for r in app.url_map.iter_rules() if r.rule.startswith(PROTOCOL_PATHS)
    )
    assert protocol == [
        "['GET', 'POST'] /oauth2/authorize", "['GET', 'POST'] /oauth2/logout",
        "['GET', 'POST'] /oauth2/userinfo", "['GET'] /.well-known/jwks.json",
        "['GET'] /.well-known/openid-configuration", "['POST'] /oauth2/introspect",
        "['POST'] /oauth2/par", "['POST'] /oauth2/revoke",
    ]
    # POST /oauth2/token is answered in front of Flask (idp/oidc/token_endpoint.py).
    api = sorted(r.rule for r in app.url_map.iter_rules() if r.rule.startswith(API_PATHS))
    # 11, then 7 for delegated administration (applications, position requests
    # and decisions, closure, unlock, the two reset letters), then the
    # child-record API (2), then an organisation's relying applications (4: list and
    # register, show, new secret, suspension) and its token inventory (4: list,
    # assignment, loss, return) and its identity provider (3: show and add, accepted
    # acr, removal): each walked above.
    assert len(api) == 31 and sorted(API_PUBLIC) == ["/api/v1/openapi.json"]
    # Their operations: four of those rules read with GET and create with POST
    # (applications, position requests, relying applications, identity provider).
    operations = [(m, r.rule) for r in app.url_map.iter_rules() if r.rule.startswith(API_PATHS)
                  for m in sorted((r.methods or set()) - {"HEAD", "OPTIONS"})]
    assert len(operations) == 35


def test_protocol_endpoints_without_csrf_ignore_the_session_cookie(
    app: Flask, container: Container, world: World, browser: Browser
) -> None:
    """A signed-in person's browser lends these endpoints no authority: a forged
    cross-site post carries only cookies, and they answer as to a stranger."""
    member = world.member(world.organisation())
    assert browser.sign_in(member, container).status_code == 302
    for path in ("/oauth2/token", "/oauth2/par", "/oauth2/introspect", "/oauth2/revoke"):
        response = browser.client.post(path, data={"grant_type": "client_credentials",
                                                   "token": "x", "client_id": "x"})
        assert response.status_code in (400, 401), path
        assert response.get_json()["error"] in ("invalid_client", "invalid_request"), path
    assert browser.client.get("/oauth2/userinfo").status_code == 401
    # The admin API likewise: the cookie of a signed-in person is no token.
    assert _api_refusal(browser.client.get("/api/v1/organisations"))
    assert _api_refusal(browser.client.post("/api/v1/people/1/suspension",
                                            json={"reason": "forged"}))
    # And the consent form, which does act for the person, checks its CSRF token.
    refused = browser.client.post("/oauth2/authorize", data={"decision": "allow"})
    assert refused.status_code == 400 and 'data-error-id="csrf"' in text_of(refused)


def _assert_safe_error_page(response: object, status: int) -> None:
    assert response.status_code == status  # type: ignore[attr-defined]
    body = text_of(response)
    assert "Traceback" not in body
    assert 'File "' not in body
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


def test_error_pages_show_no_traceback_and_carry_the_protective_headers(
    container: Container, world: World, browser: Browser
) -> None:
    _assert_safe_error_page(browser.client.get("/no/such/page"), 404)

    org = world.organisation()
    practitioner = world.member(org)
    assert browser.sign_in(practitioner, container).status_code == 302
    _assert_safe_error_page(browser.client.get("/no/such/page"), 404)
    # Domain errors: NotAllowed and an application that does not exist for this person.
    forbidden = browser.client.get("/people")
    _assert_safe_error_page(forbidden, 403)
    assert f'data-error-id="{NotAllowed.error_id}"' in text_of(forbidden)
    _assert_safe_error_page(browser.client.get("/applications/999"), 404)
    # A form posted without its token.
    _assert_safe_error_page(browser.client.post("/sign-out"), 400)


def test_an_unexpected_error_is_a_plain_500_page(container: Container) -> None:
    flask_app = create_app(container=container)
    flask_app.config["TESTING"] = True

    def boom() -> str:
        raise RuntimeError("secret internals: password hash abc123")

    flask_app.add_url_rule("/healthz/boom", "boom", boom)
    response = flask_app.test_client().get("/healthz/boom")
    _assert_safe_error_page(response, 500)
    body = text_of(response)
    assert "secret internals" not in body
    assert "RuntimeError" not in body
    assert response.headers["X-Request-Id"] in body
