"""The console's identity-provider page: adding an organisation's provider
(its secret kept encrypted and never shown again), bad input named by field,
testing the connection against a live provider (and a dead port), changing
the accepted acr values, removing with a reason, who is refused, and the area's
local authority team managing it as the organisation's admins do."""

from __future__ import annotations

import io
import re
from html import unescape

import pytest
from flask import Flask
from joserfc.jwk import ECKey
from sqlalchemy import select

from core.audit import AuditEntry
from core.errors import Conflict, NotAllowed
from directory.models import Organisation, OrganisationKind, Role
from idp.container import Container
from idp.federation.models import UpstreamLink, UpstreamProvider
from idp.federation.service import NewProvider
from tests.factories import Member, World
from tests.idp.conftest import Browser, text_of
from tests.idp.federation.conftest import UpstreamIdp, free_port
from tests.idp.federation.meanwhile import (
    FIRST_ISSUER,
    assert_the_first_stands,
    provider_added_meanwhile,
)
from tests.idp.test_logs import captured  # noqa: F401  (a fixture)

TYPED_SECRET = "typed-in-secret-Qx7vR2mZ9pL4"
FORM = {
    "issuer": "https://login.northshire.example.org",
    "client_id": "contactpoint",
    "client_secret": TYPED_SECRET,
    "username_claim": "preferred_username",
    "accepted_acr": "urn:northshire:mfa\n\nurn:northshire:mfa-strong\n",
}


def _page(org: Organisation) -> str:
    return f"/admin/organisations/{org.id}/identity-provider"


@pytest.fixture
def console(app: Flask) -> Browser:
    """A browser on the service under test (the test client: no server needed)."""
    return Browser(app.test_client())


def _provider(container: Container, org: Organisation) -> UpstreamProvider | None:
    with container.unit() as unit:
        found = unit.federation.provider_of(org.id)
        if found is not None:
            unit.session.expunge(found)
        return found


def _entries(container: Container, tag: str) -> list[AuditEntry]:
    with container.unit() as unit:
        found = list(unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == tag).order_by(AuditEntry.seq)))
        for entry in found:
            unit.session.expunge(entry)
        return found


def _add(world: World, admin: Member, org: Organisation, issuer: str,
         secret: str = "stored secret") -> None:
    world.unit.federation.add(world.principal(admin), NewProvider(
        organisation_id=org.id, issuer=issuer, client_id="contactpoint",
        username_claim="preferred_username", client_secret=secret))
    world.unit.commit()


def _school_with_a_provider(world: World) -> tuple[Organisation, Organisation]:
    """A council, and a school of its area whose admin added its provider."""
    council = world.organisation("Northshire County Council")
    school = world.organisation("Northshire Primary", OrganisationKind.SCHOOL,
                                registration_authority=council)
    school_admin = world.member(school, Role.ORGANISATION_ADMIN, given_name="Sid")
    _add(world, school_admin, school, "https://login.school.example.org")
    return council, school


def test_an_admin_adds_the_provider_and_its_secret_is_never_shown_or_logged(
    container: Container, world: World, console: Browser, captured: io.StringIO  # noqa: F811
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    assert console.sign_in(admin, container).status_code == 302
    listed = text_of(console.client.get(f"/admin/organisations/{org.id}"))
    assert f'href="{_page(org)}"' in listed  # linked from the organisation's page
    empty = console.client.get(_page(org))
    assert empty.status_code == 200 and "has no identity provider" in text_of(empty)

    added = console.submit(_page(org), FORM)
    assert added.status_code == 302, text_of(added)[:2000]
    shown = text_of(console.client.get(_page(org)))
    assert "is Northshire County Council's identity provider now" in unescape(shown)
    for value in ("https://login.northshire.example.org", "contactpoint",
                  "preferred_username", "client_secret_basic",
                  "urn:northshire:mfa, urn:northshire:mfa-strong",
                  "/sign-in/organisation/callback"):
        assert value in shown, value
    assert TYPED_SECRET not in shown

    provider = _provider(container, org)
    assert provider is not None and provider.auth_method == "client_secret_basic"
    assert TYPED_SECRET not in provider.credential_ciphertext
    with container.unit() as unit:
        assert unit.federation.credential(provider).secret == TYPED_SECRET
    [entry] = _entries(container, "federation:provider:added")
    assert entry.actor_id == admin.person.id and entry.organisation_id == org.id
    assert TYPED_SECRET not in str(entry.detail)
    assert TYPED_SECRET not in captured.getvalue()
    # A second provider for the same organisation: the page shows the one there is.
    again = console.submit(_page(org), {**FORM, "issuer": "https://other.example.org"},
                           page=f"/admin/organisations/{org.id}")
    assert again.status_code == 409 and TYPED_SECRET not in text_of(again)
    assert _provider(container, org).issuer == FORM["issuer"]  # type: ignore[union-attr]


def test_a_private_key_is_kept_encrypted_and_not_shown(
    container: Container, world: World, console: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    pem = ECKey.generate_key("P-256").as_pem(private=True).decode()
    assert console.sign_in(admin, container).status_code == 302
    form = {**FORM, "client_secret": "", "private_key": pem}
    assert console.submit(_page(org), form).status_code == 302
    shown = text_of(console.client.get(_page(org)))
    assert "private_key_jwt" in shown and "PRIVATE KEY" not in shown
    provider = _provider(container, org)
    assert provider is not None and "PRIVATE KEY" not in provider.credential_ciphertext


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"issuer": "http://login.northshire.example.org"}, "issuer", "must be an https URL"),
    ({"issuer": ""}, "issuer", "Enter the provider&#39;s issuer URL"),
    ({"client_id": ""}, "client_id", "Enter the client ID"),
    ({"username_claim": ""}, "username_claim", "Enter the username claim"),
    ({"client_secret": ""}, "client_secret", "give a client secret or a private key"),
    ({"private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"},
     "client_secret", "give a client secret or a private key"),
    ({"client_secret": "", "private_key": "not a key at all"}, "private_key",
     "not an RSA or EC private key"),
])
def test_bad_input_is_named_by_field_and_nothing_is_stored(
    container: Container, world: World, console: Browser,
    changes: dict[str, str], field: str, message: str,
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    assert console.sign_in(admin, container).status_code == 302
    answer = console.submit(_page(org), {**FORM, **changes})
    page = text_of(answer)
    assert answer.status_code == 400
    assert f'href="#{field}"' in page and message in page  # the summary links to the field
    assert f'id="{field}-error"' in page
    assert TYPED_SECRET not in page and "not a key" not in page  # nothing typed comes back
    assert _provider(container, org) is None
    assert _entries(container, "federation:provider:added") == []


def test_admins_of_other_organisations_and_practitioners_are_refused(
    container: Container, world: World, console: Browser
) -> None:
    council, school = _school_with_a_provider(world)
    far = world.organisation("Southshire Academy", OrganisationKind.SCHOOL)
    paths = [_page(school), f"{_page(school)}/accepted-acr", f"{_page(school)}/remove"]
    outsiders = [
        world.member(far, Role.ORGANISATION_ADMIN, given_name="Fay"),
        world.member(school, given_name="Pat"),  # a practitioner of the school itself
        world.member(world.organisation("Southshire Council"), Role.LOCAL_AUTHORITY_TEAM,
                     given_name="Tess"),  # another area's team
    ]
    for outsider in outsiders:
        browser = Browser(console.client.application.test_client())
        assert browser.sign_in(outsider, container).status_code == 302
        token = browser.token("/")
        for path in paths:
            assert browser.client.get(path).status_code in (403, 404), (outsider.username, path)
        for path, data in ((_page(school), FORM), (f"{_page(school)}/test", {}),
                           (f"{_page(school)}/accepted-acr", {"accepted_acr": "forged"}),
                           (f"{_page(school)}/remove", {"reason": "forged"})):
            answer = browser.client.post(path, data={"csrf_token": token, **data})
            assert answer.status_code in (403, 404), (outsider.username, path)
    provider = _provider(container, school)
    assert provider is not None and provider.accepted_acr == []
    assert _entries(container, "federation:provider:removed") == []
    assert _entries(container, "federation:policy:changed") == []
    # The council's team administers its area's school, so it manages the provider.
    team = world.member(council, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara")
    assert console.sign_in(team, container).status_code == 302
    shown = console.client.get(_page(school))
    assert shown.status_code == 200 and "https://login.school.example.org" in text_of(shown)


def test_the_accepted_acr_values_change_and_the_change_is_audited(
    container: Container, world: World, console: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    _add(world, admin, org, "https://login.northshire.example.org")
    assert console.sign_in(admin, container).status_code == 302
    changed = console.submit(f"{_page(org)}/accepted-acr",
                             {"accepted_acr": "urn:mfa\n urn:mfa \nurn:phr\n"})
    assert changed.status_code == 302
    assert _provider(container, org).accepted_acr == ["urn:mfa", "urn:phr"]  # type: ignore[union-attr]
    form = text_of(console.client.get(f"{_page(org)}/accepted-acr"))
    assert "urn:mfa\nurn:phr" in form
    [entry] = _entries(container, "federation:policy:changed")
    assert entry.detail == {"before": [], "after": ["urn:mfa", "urn:phr"]}
    assert console.submit(f"{_page(org)}/accepted-acr", {"accepted_acr": ""}
                          ).status_code == 302
    assert _provider(container, org).accepted_acr == []  # type: ignore[union-attr]


def test_removing_asks_for_a_reason_and_audits_it_with_the_links_removed(
    container: Container, world: World, console: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    person = world.member(org, given_name="Priya")
    _add(world, admin, org, "https://login.northshire.example.org")
    provider = _provider(container, org)
    assert provider is not None
    world.unit.session.add(UpstreamLink(
        provider_id=provider.id, person_id=person.person.id, issuer=provider.issuer,
        subject="priya-upstream", linked_at=container.clock.now()))
    world.unit.commit()
    assert console.sign_in(admin, container).status_code == 302
    confirm = console.client.get(f"{_page(org)}/remove")
    assert confirm.status_code == 200
    assert "every account linked to it is unlinked" in text_of(confirm)
    assert provider.issuer in text_of(confirm)
    missing = console.submit(f"{_page(org)}/remove", {"reason": ""})
    assert missing.status_code == 400 and "Enter the reason" in text_of(missing)
    assert _provider(container, org) is not None

    removed = console.submit(f"{_page(org)}/remove", {"reason": "moving to the new tenant"})
    assert removed.status_code == 302
    assert "is removed, with 1 linked account" in unescape(
        text_of(console.client.get(_page(org))))
    assert _provider(container, org) is None
    with container.unit() as unit:
        assert unit.session.scalars(select(UpstreamLink)).all() == []
    [entry] = _entries(container, "federation:provider:removed")
    assert entry.actor_id == admin.person.id
    assert entry.detail == {"issuer": "https://login.northshire.example.org",
                            "links_removed": 1, "reason": "moving to the new tenant"}
    assert console.client.get(f"{_page(org)}/remove").status_code == 404


def test_testing_the_connection_to_a_live_provider_shows_its_endpoints_and_keys(
    container: Container, world: World, console: Browser, upstream: UpstreamIdp
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    _add(world, admin, org, upstream.base, upstream.secret)
    assert console.sign_in(admin, container).status_code == 302
    answer = console.submit(f"{_page(org)}/test", {}, page=_page(org))
    page = text_of(answer)
    assert answer.status_code == 200, page[:2000]
    assert "The connection works" in page
    assert f"ok ({upstream.base})" in page
    assert f"{upstream.base}/oauth2/authorize" in page
    assert re.search(r"ok \(\d+ keys: [\w-]+", page), "no key ids shown"
    assert upstream.secret not in page


def test_testing_the_connection_to_a_dead_port_names_the_failed_step(
    container: Container, world: World, console: Browser
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN)
    _add(world, admin, org, f"http://127.0.0.1:{free_port()}")
    assert console.sign_in(admin, container).status_code == 302
    answer = console.submit(f"{_page(org)}/test", {}, page=_page(org))
    page = text_of(answer)
    assert "The connection test failed" in page
    assert "discovery:" in page
    assert "The connection works" not in page


def test_the_areas_team_sees_and_removes_a_link_and_another_areas_team_cannot(
    container: Container, world: World, console: Browser
) -> None:
    council, school = _school_with_a_provider(world)
    teacher = world.member(school, given_name="Tia", family_name="Teacher")
    provider = _provider(container, school)
    assert provider is not None
    link = UpstreamLink(provider_id=provider.id, person_id=teacher.person.id,
                        issuer=provider.issuer, subject="tia-upstream",
                        upstream_username="tia@school.example.org",
                        linked_at=container.clock.now())
    world.unit.session.add(link)
    world.unit.commit()
    far_team = world.member(world.organisation("Southshire Council"),
                            Role.LOCAL_AUTHORITY_TEAM, given_name="Tess")
    with container.unit() as unit, pytest.raises(NotAllowed):
        unit.federation.unlink(world.principal(far_team), link.id)
    team = world.member(council, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara")
    assert console.sign_in(team, container).status_code == 302
    page = f"/admin/people/{teacher.person.id}"
    shown = text_of(console.client.get(page))
    assert "Linked organisation accounts" in shown and "tia@school.example.org" in shown
    removed = console.submit(f"/account/organisation-account/{link.id}/remove",
                             {"next": page}, page=page)
    assert removed.status_code == 302 and removed.headers["Location"] == page
    with container.unit() as unit:
        assert unit.session.scalars(select(UpstreamLink)).all() == []
    [entry] = _entries(container, "federation:link:removed")
    assert entry.actor_id == team.person.id and entry.detail["by"] == "admin"  # type: ignore[index]


def test_a_platform_admin_gives_a_reason_to_add_a_provider_or_change_its_acr(
    container: Container, world: World, console: Browser
) -> None:
    org = world.organisation()
    platform = world.member(world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY),
                            Role.PLATFORM_ADMIN, given_name="Pat")
    assert console.sign_in(platform, container).status_code == 302
    refused = console.submit(_page(org), FORM)
    assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert _provider(container, org) is None
    assert console.submit(_page(org), {**FORM, "reason": "the council asked"}
                          ).status_code == 302
    acr = f"{_page(org)}/accepted-acr"
    refused = console.submit(acr, {"accepted_acr": ""})
    assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert _provider(container, org).accepted_acr  # type: ignore[union-attr]
    assert console.submit(acr, {"accepted_acr": "", "reason": "always ask for the token"}
                          ).status_code == 302
    assert _provider(container, org).accepted_acr == []  # type: ignore[union-attr]
    [added] = _entries(container, "federation:provider:added")
    [changed] = _entries(container, "federation:policy:changed")
    assert added.detail["reason"] == "the council asked"
    assert changed.detail["reason"] == "always ask for the token"


def _platform_admins(world: World) -> tuple[Member, Member]:
    platform = world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY)
    return (world.member(platform, Role.PLATFORM_ADMIN, given_name="Pat"),
            world.member(platform, Role.PLATFORM_ADMIN, given_name="Sam"))


def test_two_admins_adding_a_provider_at_once_get_the_answer_for_a_second_one(
    container: Container, world: World
) -> None:
    """Both pass the check that there is none; the database's unique column
    refuses the later write, and the service says so as the check would have."""
    org = world.organisation()
    pat, sam = _platform_admins(world)
    second = NewProvider(organisation_id=org.id, issuer="https://second.example.org",
                         client_id="second", username_claim="email",
                         client_secret="the-second-admins-secret")
    with container.unit() as unit, \
            provider_added_meanwhile(container, world.principal(pat), org.id):
        with pytest.raises(Conflict) as refused:
            unit.federation.add(world.principal(sam), second, "the second of two at once")
        assert refused.value.message == "this organisation already has a provider; remove it first"
        # The unit goes on after the refusal, as the console's page does to show the winner.
        assert unit.federation.provider_of(org.id).issuer == FIRST_ISSUER  # type: ignore[union-attr]
    assert_the_first_stands(container, org.id)


def test_the_page_answers_a_provider_added_meanwhile_as_a_second_one(
    container: Container, world: World, console: Browser
) -> None:
    org = world.organisation()
    pat, sam = _platform_admins(world)
    assert console.sign_in(sam, container).status_code == 302
    with provider_added_meanwhile(container, world.principal(pat), org.id):
        refused = console.submit(_page(org), {**FORM, "reason": "the council asked"})
    page = text_of(refused)
    assert refused.status_code == 409, page[:3000]
    assert "already has a provider" in page and FIRST_ISSUER in page  # the one there is
    assert TYPED_SECRET not in page
    assert_the_first_stands(container, org.id)
