"""Tenant isolation, walked over the whole route table.

Every route of the app is tried, GET and POST, anonymously, as a practitioner
and as an admin of another organisation, with the ids of one organisation's
people, positions, applications, tokens, keys, services and requests. None of
it may be allowed: anonymous visitors go to sign-in; the others are refused
(403, 404, or sent to sign-in or step-up) or, on pages that take no id and
that they may use, shown nothing of the victim organisation; and nothing about
the victim changes. A route added later is walked the day it is added: one
with an argument the walker does not know, or one that lets an outsider in,
fails here until it is checked (or listed below, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.routing import Map, Rule

from core.audit import AuditEntry
from core.clock import FrozenClock
from directory.models import (
    Organisation,
    OrganisationKind,
    Person,
    Position,
    PositionRequest,
    Role,
)
from directory.services_models import Service
from idp.container import Container
from idp.federation.models import UpstreamLink, UpstreamProvider
from idp.federation.service import NewProvider
from idp.oidc.clients import Registration
from idp.oidc.models import Consent, OAuthClient
from tests.factories import Member, World, sign_in
from tests.idp.api.tokens import admin_tool, bearer, client_token, person_token, register
from tests.idp.conftest import Browser, gov_date, text_of
from tokens.attempts import Client
from tokens.errors import SignInFailed
from tokens.models import OtpToken, SecurityKey, SignInGuard
from vetting.models import Application

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

# Public by nature: signing in, activating and resetting are for people without a
# session (each flow proves its own factors, tested in its own files); static
# assets; the health check; the API's OpenAPI document. The OpenID Connect
# prefixes authenticate clients, not sessions: their own tests prove their checks.
# The API is walked below with bearer tokens instead of cookies.
PUBLIC_PREFIXES = (
    "/sign-in",
    "/sign-out",
    "/signed-out",
    "/activate",
    "/reset-pin",
    "/reset-password",
    "/healthz",
    "/readyz",  # for load balancers: says only ready or not (tests/idp/test_ops.py)
    "/metrics",  # by address, not by session (tests/idp/test_ops.py)
    "/assets",
    "/assets-local",
    "/.well-known",
    "/oauth2",
    "/oidc",
    "/authorize",
    "/token",
    "/userinfo",
    "/jwks",
    "/api/v1/openapi.json",
)
API = "/api/"

# Pages without an id that every signed-in person may open: their own tokens and
# keys, the service directory (DOMAIN.md: practitioners find the services around
# a child), their home page, the applications list (empty unless they sponsor or vet),
# and the sponsor and renewal forms, which say who may use them (their posts are
# refused, which the snapshot proves).
ANY_SIGNED_IN = {
    "home.index",
    "tokens.mine",
    "keys.index",
    "keys.add",
    "keys.step_up",
    "services.search",
    "vetting.applications",
    "vetting.new",
    "vetting.renewal",
    "oidc.applications",  # the applications the person allowed: their own consents only
    "federation.link",  # their own links to their organisations' providers
    # The child index is national (DOMAIN.md): any practitioner searches it, with a
    # reason; its rules (roles, shielding, sensitive services, source ids) are proved
    # in tests/directory/children and tests/idp/test_children_pages.py.
    "children.search",
    "children.my_requests",
}

# Pages with an id that every signed-in person may read, whoever's it is.
READABLE_BY_ANYONE = {
    "services.detail",  # a service's public contact details and practitioners
    "children.record",  # asks for a reason first; what it then shows follows the record's rules
    "children.contact",  # a contact request to the team brokering a shielded record
    "children.involvement",  # the form to record a service; it shows nothing of the record
    # The same national index through the child-record API (a practitioner's token
    # with children.read; the search is a POST without an id): its rules are proved
    # in tests/idp/api/test_children_api.py.
    "api.view_child",
}

# API routes taking scope children.read rather than admin: walked with a token
# carrying that scope, so they are tried on their rules, not on a missing scope.
CHILD_API = {"api.search_children", "api.view_child"}

# Outcomes that show the request was not carried out.
REFUSED = {400, 403, 404, 405, 409}

MARKERS = ("Victimson", "Appleby-Victim")


@dataclass
class Victim:
    org: Organisation
    admin: Member
    staff: Member
    ids: dict[str, int | str]


def _victim(world: World, container: Container) -> Victim:
    org = world.organisation("Victimshire Council")
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Vic", family_name="Victimson")
    world.add_position(admin, org, Role.VETTING_OFFICER)
    staff = world.member(org, given_name="Val", family_name="Victimson")
    for _ in range(container.settings.signin.lockout_threshold):
        with pytest.raises(SignInFailed):
            sign_in(container, staff, Client("192.0.2.99"), password="not the password 1")
    u = world.unit
    admin_principal = world.principal(admin)
    application = u.vetting.sponsor(
        admin_principal,
        organisation_id=org.id,
        given_name="Ann",
        family_name="Appleby-Victim",
        work_email="ann@example.org",
        work_phone=None,
        role=Role.PRACTITIONER,
    )
    service = u.services.create(
        admin_principal,
        org.id,
        {
            "name": "Victim Surgery",
            "kind": "gp_practice",
            "address_line1": "1 High Street",
            "town": "Northtown",
            "postcode": "NE1 4ST",
            "phone": "0191 496 0000",
            "starts_on": container.clock.today(),
        },
    )
    request = u.administration.request_position(
        admin_principal,
        org.id,
        username=staff.username,
        role=Role.ORGANISATION_ADMIN,
        reason="promotion",
    )
    token = u.session.scalars(select(OtpToken).where(OtpToken.person_id == staff.person.id)).one()
    key = SecurityKey(
        person_id=staff.person.id,
        credential_id="victim-credential",
        public_key="x",
        name="Val's key",
        created_at=container.clock.now(),
    )
    u.session.add(key)
    client, _secret = u.clients.register(admin_principal, Registration(
        organisation_id=org.id, name="Victimson records",
        redirect_uris=["https://victim.example.org/cb"]))
    consent = Consent(person_id=staff.person.id, client_id=client.client_id, scopes=["openid"],
                      granted_at=container.clock.now())
    u.session.add(consent)
    provider = u.federation.add(admin_principal, NewProvider(
        organisation_id=org.id, issuer="https://login.victimshire.example.org",
        client_id="contactpoint", username_claim="email", client_secret="victim secret"))
    link = UpstreamLink(provider_id=provider.id, person_id=staff.person.id,
                        issuer=provider.issuer, subject="val-upstream",
                        linked_at=container.clock.now())
    u.session.add(link)
    u.commit()
    child_id = _victim_child(container, org)
    position = staff.person.positions[0]
    return Victim(
        org,
        admin,
        staff,
        {
            "organisation_id": org.id,
            "person_id": staff.person.id,
            "position_id": position.id,
            "application_id": application.id,
            "request_id": request.id,
            "token_id": token.id,
            "key_id": key.id,
            "service_id": service.id,
            "client_id": client.client_id,
            "consent_id": consent.id,
            "link_id": link.id,  # the victim's link to their council's own provider
            # The child-record module: a record in the victim council's care, and
            # ids of its team's queues (their refusals are proved in tests/directory/children).
            "public_id": child_id,
            "alert_id": 1,
            "conflict_id": 1,
        },
    )


def _victim_child(container: Container, org: Organisation) -> str:
    from directory.children.loading import csv_text_rows
    from directory.service import Grant as PositionGrant
    from directory.service import Principal

    operator = Principal(0, "cli:test", (PositionGrant(0, Role.PLATFORM_ADMIN),))
    csv_text = (
        "local_authority,forename,surname,gender,date_of_birth,whereabouts,address_line1,town,"
        f"postcode\n{org.code},Amelia,Hartley,female,2015-03-14,current_address,"
        "12 Station Road,Northtown,NE1 4AB\n"
    )
    with container.unit() as unit:
        unit.children.set_area(operator, org.id, ["NE1"])
        unit.child_loader.load(operator, csv_text_rows(csv_text), source_code=org.code,
                               file_label="victim.csv")
        unit.commit()
        from directory.children.models import Child
        return str(unit.session.scalars(select(Child.public_id)).one())


def _team_with_an_area(world: World) -> Member:
    council = world.organisation("Southshire Council")
    world.organisation("Southshire Academy", OrganisationKind.SCHOOL,
                       registration_authority=council)
    return world.member(council, Role.LOCAL_AUTHORITY_TEAM, given_name="Tom")


def _path(rule: Rule, ids: dict[str, int | str]) -> str:
    unknown = set(rule.arguments) - set(ids)
    assert not unknown, (
        f"{rule.rule}: the walker does not know the argument(s) {sorted(unknown)}; "
        "give it a victim's id for each, so the route is tried"
    )
    return rule.build({name: ids[name] for name in rule.arguments}, append_unknown=False)[1]  # type: ignore[index]


def _payload(container: Container, victim: Victim) -> dict[str, Any]:
    """Everything any form might need, so the only thing missing is the right."""
    today = container.clock.today()
    return {
        "reason": "walker",
        "username": victim.staff.username,
        "role": "organisation_admin",
        "decision": "approved",
        "name": "Forged",
        "credential": "{}",
        "confirm": "yes",
        "code": "123456",
        "first_code": "123456",
        "second_code": "654321",
        "what": "stolen",
        "organisation_id": str(victim.org.id),
        "given_name": "Kim",
        "family_name": "Forged",
        "work_email": "kim@example.org",
        "kind": "gp_practice",
        "address_line1": "1 High St",
        "town": "Northtown",
        "postcode": "NE1 4ST",
        "phone": "0191 496 0000",
        "starts_on": gov_date(today),
        "certificate_number": "001234567891",
        "issued_on": gov_date(today),
        "outcome": "nothing_recorded",
        "identity-confidence": "high",
        "identity-method": "face_to_face",
        "identity-checked_on": gov_date(today),
        "identity-evidence_reference": "REF-1",
        "certificate-certificate_number": "001234567890",
        "certificate-issued_on": gov_date(today - timedelta(days=5)),
        "certificate-outcome": "nothing_recorded",
        "training-completed_on": gov_date(today),
        "agreement-signed_on": gov_date(today),
        "decision-decision": "cleared",
        "decision-reason": "All good",
        "allow_soft": "y",
        "allow_hardware": "y",
        "allow_keys": "y",
    }


def _snapshot(container: Container, victim: Victim) -> tuple[Any, ...]:
    """Everything about the victim an outsider might change."""
    ids = victim.ids
    with container.unit() as unit:
        s = unit.session
        person = s.get(Person, ids["person_id"])
        org = s.get(Organisation, ids["organisation_id"])
        app = s.get(Application, ids["application_id"])
        request = s.get(PositionRequest, ids["request_id"])
        token = s.get(OtpToken, ids["token_id"])
        key = s.get(SecurityKey, ids["key_id"])
        service = s.get(Service, ids["service_id"])
        guard = s.get(SignInGuard, ids["person_id"])
        client = s.scalars(select(OAuthClient).where(OAuthClient.client_id == ids["client_id"])
                           ).one()
        consent = s.get(Consent, ids["consent_id"])
        link = s.get(UpstreamLink, ids["link_id"])
        assert person and org and app and request and token and key and service and guard
        assert consent and link
        positions = s.scalars(
            select(Position.id, Position.ends_on, Position.service_id).where(
                Position.organisation_id == org.id
            )
        ).all()
        successes = s.execute(
            select(AuditEntry.seq, AuditEntry.tag).where(
                AuditEntry.outcome == "success",
                AuditEntry.organisation_id == org.id,
            )
        ).all()
        return (
            person.status,
            person.security_epoch,
            org.accreditation,
            app.state,
            app.identity_check is None,
            app.decision is None,
            request.state,
            token.state,
            token.person_id,
            key.removed_at,
            service.name,
            service.ends_on,
            guard.locked_until,
            guard.locked_permanently,
            tuple(positions),
            tuple(successes),
            len(s.scalars(select(Person.id)).all()),
            client.status,
            client.secret_digest,
            client.first_party,
            consent.revoked_at,
            link.subject,
            s.scalar(select(UpstreamProvider.client_id).where(
                UpstreamProvider.organisation_id == org.id)),
            # Nothing sponsored, asked for or written to the outbox in the victim's name.
            len(s.scalars(select(Application.id).where(
                Application.organisation_id == org.id)).all()),
            len(s.scalars(select(PositionRequest.id).where(
                PositionRequest.organisation_id == org.id)).all()),
            len(unit.outbox.all()),
        )


def _refused(response: Any) -> bool:
    if response.status_code in REFUSED:
        return True
    if response.status_code == 302:
        return urlsplit(response.headers["Location"]).path in {"/sign-in", "/keys/step-up"}
    return False


def _api_refused(response: Any) -> bool:
    """The API refuses with a problem document, never a redirect to a page."""
    return (response.status_code in REFUSED | {401}
            and response.mimetype == "application/problem+json")


def _public(rule: Rule) -> bool:
    """Whole path segments only: /token is public, /tokens is not."""
    return any(rule.rule == p or rule.rule.startswith(p + "/") for p in PUBLIC_PREFIXES)


@dataclass
class Outsider:
    label: str
    member: Member
    browser: Browser


def _signed_in(app: Flask, container: Container, clock: FrozenClock, member: Member) -> Browser:
    browser = Browser(app.test_client())
    clock.advance(seconds=container.settings.totp.period_seconds)
    assert browser.sign_in(member, container).status_code == 302
    return browser


def test_no_outsider_reaches_another_organisations_admin_pages_or_data(
    app: Flask, container: Container, world: World, clock: FrozenClock
) -> None:
    victim = _victim(world, container)
    elsewhere = world.organisation("Elsewhere Police", OrganisationKind.POLICE_FORCE)
    practitioner = world.member(victim.org, given_name="Pip")
    outsiders = [
        ("practitioner of the same organisation", practitioner),
        (
            "admin of another organisation",
            world.member(elsewhere, Role.ORGANISATION_ADMIN, given_name="Omar"),
        ),
        (
            "team of another local authority",
            world.member(elsewhere, Role.LOCAL_AUTHORITY_TEAM, given_name="Tess"),
        ),
        ("vetting officer elsewhere", world.member(elsewhere, Role.VETTING_OFFICER)),
        # A team with an area of its own (a school it is the registration authority
        # of): the area rule gives it that school, and still nothing of the victim's.
        ("team of a council with another area", _team_with_an_area(world)),
    ]
    # API tokens with the admin scope: each outsider's own (code flow), and an
    # application of the other organisation acting for itself (client credentials).
    tool, platform = admin_tool(world)
    machine = register(world, elsewhere, outsiders[1][1], platform, redirect_uris=[],
                       grant_types=["client_credentials"], scopes=["admin", "children.read"],
                       name="Police HR")
    case_system = register(world, elsewhere, outsiders[1][1], platform, name="Police cases",
                           scopes=["openid", "children.read"])
    payload = _payload(container, victim)
    before = _snapshot(container, victim)
    walked: set[str] = set()
    problems: list[str] = []
    for label, member in outsiders:
        browser = _signed_in(app, container, clock, member)
        token = browser.token("/")
        api_token = person_token(app, container, clock, member, tool, browser=browser)
        child_token = person_token(app, container, clock, member, case_system,
                                   "openid children.read", browser=browser)
        for rule in app.url_map.iter_rules():
            if _public(rule):
                continue
            path = _path(rule, victim.ids)
            takes_id = bool(rule.arguments)
            api = rule.rule.startswith(API)
            for method in sorted((rule.methods or set()) & (UNSAFE | {"GET"})):
                if api:
                    body_json = payload if method in UNSAFE else None
                    # A session cookie alone is no authority over the API.
                    cookie_only = browser.client.open(path, method=method, json=body_json)
                    if cookie_only.status_code != 401:
                        problems.append(f"{label}: {method} {path} with a cookie and no token "
                                        f"-> {cookie_only.status_code}")
                    response = browser.client.open(
                        path, method=method, json=body_json,
                        headers=bearer(child_token if rule.endpoint in CHILD_API else api_token))
                else:
                    data = {**payload, "csrf_token": token} if method in UNSAFE else None
                    response = browser.client.open(path, method=method, data=data)
                body = text_of(response)
                walked.add(rule.endpoint)
                walked.add(f"{method} {rule.endpoint}")  # rules that take two methods
                if takes_id:
                    # Someone else's id: refused, unless anyone may read that page.
                    allowed = method == "GET" and rule.endpoint in READABLE_BY_ANYONE
                elif method == "GET":
                    # A page of one's own: practitioners only on the listed ones;
                    # admins and officers see their own organisation's.
                    allowed = rule.endpoint in ANY_SIGNED_IN or member is not practitioner
                else:
                    # A form without an id acts on one's own things or says what is
                    # wrong with the input; the snapshot below proves nothing happened.
                    allowed = True
                refused = _api_refused(response) if api else _refused(response)
                if not allowed and not refused:
                    problems.append(f"{label}: {method} {path} -> {response.status_code}")
                leaked = [m for m in MARKERS if m in body]
                if leaked and response.status_code < 300:
                    problems.append(f"{label}: {method} {path} shows {leaked}")
                after = _snapshot(container, victim)
                if after != before:
                    problems.append(f"{label}: {method} {path} changed the victim's data")
                    before = after
                if browser.client.get("/").status_code != 200:
                    browser = _signed_in(app, container, clock, member)
                    token = browser.token("/")
                    api_token = person_token(app, container, clock, member, tool,
                                             browser=browser)
                    child_token = person_token(app, container, clock, member, case_system,
                                               "openid children.read", browser=browser)
    # The other organisation's application, acting for itself, over every API route
    # (with children.read too: an application's own token reads no child record).
    machine_token = client_token(app, machine, scope="admin children.read")
    api_rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(API)
                 and not _public(r)]
    for rule in api_rules:
        path = _path(rule, victim.ids)
        for method in sorted((rule.methods or set()) & (UNSAFE | {"GET"})):
            response = app.test_client().open(
                path, method=method, headers=bearer(machine_token),
                json=payload if method in UNSAFE else None)
            allowed = not rule.arguments and method == "GET"
            if not allowed and not _api_refused(response):
                problems.append(f"application elsewhere: {method} {path} -> "
                                f"{response.status_code}")
            leaked = [m for m in MARKERS if m in text_of(response)]
            if leaked and response.status_code < 300:
                problems.append(f"application elsewhere: {method} {path} shows {leaked}")
            if _snapshot(container, victim) != before:
                problems.append(f"application elsewhere: {method} {path} changed the victim")
                before = _snapshot(container, victim)
    assert problems == [], "\n".join(problems)
    # The walk reached the admin console, the people pages and every other area.
    assert {
        "admin.index",
        "admin.organisation",
        "admin.person",
        "admin.suspend",
        "admin.reinstate",
        "admin.close",
        "admin.unlock",
        "admin.end_position",
        "admin.new_position",
        "admin.position_requests",
        "admin.decide_position",
        "admin.audit",
        "admin.accreditation",
        "admin.suspend_organisation",
        "admin.accredit_organisation",
        "people.index",
        "people.unlock",
        "resets.request_pin_reset",
        "resets.request_password_reset",
        "vetting.detail",
        "vetting.decision",
        "tokens.detail",
        "tokens.policy",
        "keys.remove",
        "services.edit",
        "services.close",
        "api.organisations",
        "api.organisation",
        "api.people",
        "api.audit_trail",
        "api.suspend_organisation",
        "api.accredit_organisation",
        "api.person",
        "api.suspend_person",
        "api.reinstate_person",
        "api.end_position",
        "api.close_person",
        "api.unlock_person",
        "api.pin_reset",
        "api.password_reset",
        "api.applications",
        "api.position_requests",
        "api.decide_position",
        "api.search_children",
        "api.view_child",
        "api.relying_applications",
        "api.relying_application",
        "api.rotate_relying_application_secret",
        "api.suspend_relying_application",
        "api.otp_tokens",
        "api.assign_token",
        "api.report_token_lost",
        "api.return_token",
        "api.identity_provider",
        "api.set_accepted_acr",
        "api.remove_identity_provider",
        # The API's rules that read with GET and create with POST: each method tried.
        "POST api.applications",
        "POST api.position_requests",
        "POST api.relying_applications",
        "GET api.identity_provider",
        "POST api.identity_provider",
    } <= walked


def test_anonymous_visitors_reach_nothing_but_the_public_routes(
    app: Flask, container: Container, world: World
) -> None:
    victim = _victim(world, container)
    browser = Browser(app.test_client())
    token = browser.token("/sign-in")
    before = _snapshot(container, victim)
    problems = []
    for rule in app.url_map.iter_rules():
        if _public(rule):
            continue
        path = _path(rule, victim.ids)
        for method in sorted((rule.methods or set()) & (UNSAFE | {"GET"})):
            if rule.rule.startswith(API):
                # No token: 401 with a Bearer challenge, never a sign-in page.
                response = browser.client.open(
                    path, method=method, json={"reason": "walker"} if method in UNSAFE else None)
                challenge = response.headers.get("WWW-Authenticate", "")
                if (response.status_code != 401 or not challenge.startswith("Bearer")
                        or not _api_refused(response)):
                    problems.append(f"{method} {path} -> {response.status_code} {challenge}")
                continue
            data = {"csrf_token": token, "reason": "walker"} if method in UNSAFE else None
            response = browser.client.open(path, method=method, data=data)
            location = response.headers.get("Location", "")
            if response.status_code != 302 or urlsplit(location).path != "/sign-in":
                problems.append(f"{method} {path} -> {response.status_code} {location}")
    assert problems == [], "\n".join(problems)
    assert _snapshot(container, victim) == before


def test_the_walker_fails_a_route_without_a_check(
    app: Flask, container: Container, world: World, clock: FrozenClock
) -> None:
    """The proof that the walk has teeth: a route that forgets its check is caught."""
    victim = _victim(world, container)

    @app.get("/admin/forgot-the-check/<int:person_id>")
    def forgot(person_id: int) -> str:
        with container.unit() as unit:
            return unit.directory.person(person_id).family_name

    # The same for an API route: walked (not public), and caught when it answers.
    @app.get("/api/v1/forgot-the-check/<int:person_id>")
    def forgot_api(person_id: int) -> dict[str, str]:
        with container.unit() as unit:
            return {"family_name": unit.directory.person(person_id).family_name}

    outsider = world.member(world.organisation("Elsewhere"), Role.ORGANISATION_ADMIN)
    browser = _signed_in(app, container, clock, outsider)
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == "forgot")
    response = browser.client.get(_path(rule, victim.ids))
    assert not _refused(response)
    assert "Victimson" in text_of(response)
    api_rule = next(r for r in app.url_map.iter_rules() if r.endpoint == "forgot_api")
    assert not _public(api_rule)
    answer = app.test_client().get(_path(api_rule, victim.ids))
    assert not _api_refused(answer) and "Victimson" in text_of(answer)
    widgets = Rule("/admin/widgets/<int:widget_id>", endpoint="widgets")
    Map([widgets])
    with pytest.raises(AssertionError, match="does not know"):
        _path(widgets, victim.ids)
