"""The relying-application pages: registration by an organisation admin or its
area's local authority team, approval by a platform admin, secrets shown once,
and the refusals."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import select

from core.errors import NotAllowed
from directory.models import OrganisationKind, Role
from idp.container import Container
from idp.oidc.clients import Registration
from idp.oidc.models import ClientStatus, OAuthClient
from tests.factories import World
from tests.idp.conftest import Browser, text_of

FORM = {
    "name": "Northshire case system",
    "grant_types": ["authorization_code", "refresh_token"],
    "redirect_uris": "https://cases.northshire.example/callback",
    "scopes": ["openid", "profile", "positions"],
    "auth_method": "client_secret_basic",
    "id_token_alg": "ES256",
}


def _client(container: Container) -> OAuthClient | None:
    with container.unit() as unit:
        found = unit.session.scalars(select(OAuthClient)).first()
        if found is not None:
            unit.session.expunge(found)
        return found


def test_an_admin_registers_an_application_and_sees_its_secret_once(
    app: Flask, container: Container, world: World, browser: Browser, another_browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    platform = world.member(world.organisation("Platform"), Role.PLATFORM_ADMIN)
    assert browser.sign_in(admin, container).status_code == 302
    created = browser.submit("/relying-applications/new", {**FORM, "organisation_id": str(org.id)})
    assert created.status_code == 200, text_of(created)[:2000]
    secret = re.search(r'id="client-secret">([^<]+)<', text_of(created))
    assert secret
    client = _client(container)
    assert client is not None and client.status is ClientStatus.PENDING
    assert container.digester.matches(secret.group(1), client.secret_digest or "")
    detail = text_of(browser.client.get(f"/relying-applications/{client.client_id}"))
    assert secret.group(1) not in detail
    assert "Approve" not in detail  # not for an organisation admin
    assert browser.client.get(f"/relying-applications/{client.client_id}/approve"
                              ).status_code == 403
    forged = browser.submit(f"/relying-applications/{client.client_id}/approve",
                            {"reason": "mine"}, page=f"/relying-applications/{client.client_id}")
    assert forged.status_code == 403
    # The platform admin approves it.
    assert another_browser.sign_in(platform, container).status_code == 302
    approved = another_browser.submit(f"/relying-applications/{client.client_id}/approve",
                                      {"reason": "DPIA seen"})
    assert approved.status_code == 302
    assert _client(container).status is ClientStatus.APPROVED  # type: ignore[union-attr]


def test_bad_registrations_say_which_line_is_wrong(
    container: Container, world: World, browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    assert browser.sign_in(admin, container).status_code == 302
    response = browser.submit("/relying-applications/new", {
        **FORM, "organisation_id": str(org.id),
        "redirect_uris": "https://ok.example/cb\nhttp://insecure.example/cb"})
    assert response.status_code == 400
    assert "line 2 must use https" in text_of(response)
    assert _client(container) is None


def test_an_admin_of_another_organisation_or_a_practitioner_gets_nothing(
    container: Container, world: World, browser: Browser, another_browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    assert browser.sign_in(admin, container).status_code == 302
    browser.submit("/relying-applications/new", {**FORM, "organisation_id": str(org.id)})
    client = _client(container)
    assert client is not None
    other = world.member(world.organisation("Southshire"), Role.ORGANISATION_ADMIN)
    assert another_browser.sign_in(other, container).status_code == 302
    for path in (f"/relying-applications/{client.client_id}",
                 f"/relying-applications/{client.client_id}/secret",
                 f"/relying-applications/{client.client_id}/suspend"):
        assert another_browser.client.get(path).status_code == 403, path
    listing = text_of(another_browser.client.get("/relying-applications"))
    assert client.client_id not in listing
    # Registering for an organisation that is not theirs is not on offer, nor accepted.
    forged = another_browser.submit("/relying-applications/new",
                                    {**FORM, "organisation_id": str(org.id)})
    assert forged.status_code == 400
    practitioner = world.member(org)
    third = Browser(another_browser.client.application.test_client())
    assert third.sign_in(practitioner, container).status_code == 302
    assert third.client.get("/relying-applications").status_code == 403
    assert third.client.get("/relying-applications/new").status_code == 403


def test_rotating_the_secret_asks_first_and_shows_the_new_one_once(
    container: Container, world: World, browser: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    assert browser.sign_in(admin, container).status_code == 302
    first = re.search(r'id="client-secret">([^<]+)<', text_of(
        browser.submit("/relying-applications/new", {**FORM, "organisation_id": str(org.id)})))
    assert first
    client = _client(container)
    assert client is not None
    page = browser.client.get(f"/relying-applications/{client.client_id}/secret")
    assert "stops working at once" in text_of(page)
    rotated = browser.submit(f"/relying-applications/{client.client_id}/secret", {})
    second = re.search(r'id="client-secret">([^<]+)<', text_of(rotated))
    assert second and second.group(1) != first.group(1)
    stored = _client(container)
    assert stored is not None
    assert container.digester.matches(second.group(1), stored.secret_digest or "")
    assert not container.digester.matches(first.group(1), stored.secret_digest or "")


def test_a_local_authority_team_looks_after_its_areas_applications_and_nobody_elses(
    container: Container, world: World, browser: Browser
) -> None:
    council = world.organisation("Northshire County Council")
    school = world.organisation("Northshire Primary", OrganisationKind.SCHOOL,
                                registration_authority=council)
    far = world.organisation("Southshire Academy", OrganisationKind.SCHOOL)
    far_admin = world.member(far, Role.ORGANISATION_ADMIN, given_name="Fay")
    with container.unit() as unit:
        theirs, _ = unit.clients.register(world.principal(far_admin), Registration(
            organisation_id=far.id, name="Southshire records",
            redirect_uris=["https://south.example/cb"]))
        unit.commit()
        theirs_id = theirs.client_id
    team = world.member(council, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara")
    assert browser.sign_in(team, container).status_code == 302
    # Refusals first: another council's school is neither on offer nor accepted,
    # and its application is not shown, rotated or suspended.
    form = text_of(browser.client.get("/relying-applications/new"))
    assert "Northshire Primary" in form and "Southshire Academy" not in form
    forged = browser.submit("/relying-applications/new", {**FORM, "organisation_id": str(far.id)})
    assert forged.status_code == 400
    for path in (f"/relying-applications/{theirs_id}",
                 f"/relying-applications/{theirs_id}/secret",
                 f"/relying-applications/{theirs_id}/suspend"):
        assert browser.client.get(path).status_code == 403, path
    with container.unit() as unit, pytest.raises(NotAllowed):
        unit.clients.register(world.principal(team), Registration(
            organisation_id=far.id, name="Forged", redirect_uris=["https://x.example/cb"]))
    # The school of its own area: registered, listed, shown, its secret rotated.
    created = browser.submit("/relying-applications/new",
                             {**FORM, "organisation_id": str(school.id)})
    assert created.status_code == 200, text_of(created)[:2000]
    with container.unit() as unit:
        ours = unit.session.scalars(
            select(OAuthClient).where(OAuthClient.organisation_id == school.id)).one()
        ours_id = ours.client_id
        assert ours.status is ClientStatus.PENDING
    listing = text_of(browser.client.get("/relying-applications"))
    assert ours_id in listing and theirs_id not in listing
    detail = text_of(browser.client.get(f"/relying-applications/{ours_id}"))
    assert "Northshire Primary" in detail and "Approve" not in detail
    rotated = browser.submit(f"/relying-applications/{ours_id}/secret", {})
    assert re.search(r'id="client-secret">([^<]+)<', text_of(rotated))
    # Approval stays with platform admins: the team cannot approve what it registered.
    assert browser.client.get(f"/relying-applications/{ours_id}/approve").status_code == 403
    forged_approval = browser.submit(f"/relying-applications/{ours_id}/approve",
                                     {"reason": "ours"}, page=f"/relying-applications/{ours_id}")
    assert forged_approval.status_code == 403
    with container.unit() as unit:
        with pytest.raises(NotAllowed):
            unit.clients.approve(world.principal(team), ours_id, "ours")
        assert unit.clients.get(ours_id).status is ClientStatus.PENDING


def test_a_platform_admin_gives_a_reason_to_register_rotate_or_mark_first_party(
    container: Container, world: World, browser: Browser
) -> None:
    from core.audit import AuditEntry

    org = world.organisation()
    platform = world.member(world.organisation("Platform"), Role.PLATFORM_ADMIN)
    assert browser.sign_in(platform, container).status_code == 302
    form = {**FORM, "organisation_id": str(org.id)}
    refused = browser.submit("/relying-applications/new", form)
    assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert _client(container) is None
    created = browser.submit("/relying-applications/new", {**form, "reason": "council asked"})
    assert created.status_code == 200
    client = _client(container)
    assert client is not None
    detail = f"/relying-applications/{client.client_id}"
    rotate = f"{detail}/secret"
    refused = browser.submit(rotate, {})
    assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert _client(container).secret_digest == client.secret_digest  # type: ignore[union-attr]
    assert browser.submit(rotate, {"reason": "secret in a log"}).status_code == 200
    assert 'name="reason"' in text_of(browser.client.get(detail))
    refused = browser.submit(f"{detail}/first-party", {}, page=detail)
    assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert _client(container).first_party is False  # type: ignore[union-attr]
    assert browser.submit(f"{detail}/first-party", {"reason": "our own portal"},
                          page=detail).status_code == 302
    assert _client(container).first_party is True  # type: ignore[union-attr]
    with container.unit() as unit:
        reasons = {e.tag: e.detail.get("reason") for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag.like("oidc:client:%")))}
    assert reasons == {"oidc:client:registered": "council asked",
                       "oidc:client:secret_rotated": "secret in a log",
                       "oidc:client:first_party": "our own portal"}


def test_a_blank_reason_approves_or_suspends_nothing(
    container: Container, world: World, browser: Browser, another_browser: Browser
) -> None:
    """Spaces pass the form's own check; the registry's shared rule refuses them,
    and the page names the field rather than failing."""
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    platform = world.member(world.organisation("Platform"), Role.PLATFORM_ADMIN)
    with container.unit() as unit:
        client, _ = unit.clients.register(world.principal(admin), Registration(
            organisation_id=org.id, name="Records", redirect_uris=["https://r.example/cb"]))
        unit.commit()
        client_id = client.client_id
    detail = f"/relying-applications/{client_id}"
    assert browser.sign_in(platform, container).status_code == 302
    refused = browser.submit(f"{detail}/approve", {"reason": "   "})
    assert refused.status_code == 400 and 'href="#reason"' in text_of(refused)
    assert "Enter the reason" in text_of(refused)
    assert _client(container).status is ClientStatus.PENDING  # type: ignore[union-attr]
    assert browser.submit(f"{detail}/approve", {"reason": "DPIA done"}).status_code == 302
    assert another_browser.sign_in(admin, container).status_code == 302
    refused = another_browser.submit(f"{detail}/suspend", {"reason": " \t "})
    assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert _client(container).status is ClientStatus.APPROVED  # type: ignore[union-attr]
    assert another_browser.submit(f"{detail}/suspend", {"reason": "contract ended"}
                                  ).status_code == 302
    assert _client(container).status is ClientStatus.SUSPENDED  # type: ignore[union-attr]
