"""The admin console's pages: search and paging, confirmation with a reason before
every destructive act, clear success and error messages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from directory.children.models import ChildAlert
from directory.models import (
    Accreditation,
    Organisation,
    OrganisationKind,
    PersonStatus,
    PositionRequest,
    Role,
)
from idp.container import Container
from tests.factories import Member, World
from tests.idp.conftest import Browser, audit_tags, error_summary, text_of


@dataclass
class Cast:
    org: Organisation
    other: Organisation
    admin: Member
    staff: Member
    platform: Member


@pytest.fixture
def cast(world: World) -> Cast:
    org = world.organisation("Northshire County Council")
    other = world.organisation("Southshire Police", OrganisationKind.POLICE_FORCE)
    platform_org = world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY)
    return Cast(
        org=org,
        other=other,
        admin=world.member(org, Role.ORGANISATION_ADMIN, given_name="Olivia"),
        staff=world.member(org, given_name="Priya", family_name="Practitioner"),
        platform=world.member(platform_org, Role.PLATFORM_ADMIN, given_name="Pat"),
    )


def status_of(container: Container, member: Member) -> PersonStatus:
    with container.unit() as unit:
        return unit.directory.person(member.person.id).status


def test_the_console_lists_searches_and_pages_the_organisations_people(
    container: Container, world: World, cast: Cast, browser: Browser
) -> None:
    for n in range(30):
        world.member(cast.org, given_name=f"Zed{n:02d}", family_name="Zulu")
    world.member(cast.other, given_name="Oz", family_name="Zulu")
    browser.sign_in(cast.admin, container)
    home = text_of(browser.client.get("/admin"))
    assert "Northshire County Council" in home and "Southshire Police" not in home
    assert 'href="/admin"' in text_of(browser.client.get("/"))  # in the navigation

    first = text_of(browser.client.get(f"/admin/organisations/{cast.org.id}"))
    assert "32 people" in first and "Page 1 of 2" in first
    second = text_of(browser.client.get(f"/admin/organisations/{cast.org.id}?q=zulu&page=2"))
    assert "30 people found" in second and "Zed29" in second and "Zed00" not in second
    found = text_of(browser.client.get(f"/admin/organisations/{cast.org.id}?q=pri+prac"))
    assert "1 person found" in found and cast.staff.username in found
    # Nonsense paging falls back to the first page rather than failing.
    assert browser.client.get(f"/admin/organisations/{cast.org.id}?page=-3").status_code == 200
    # The linked pages exist for the organisation admin.
    assert 'href="/applications/new"' in first and 'href="/tokens"' in first


def test_suspend_asks_to_confirm_with_a_reason_then_says_what_happened(
    container: Container, cast: Cast, browser: Browser
) -> None:
    browser.sign_in(cast.admin, container)
    path = f"/admin/people/{cast.staff.person.id}/suspend"
    page = browser.client.get(path)
    assert page.status_code == 200 and "Suspend Priya Practitioner?" in text_of(page)
    assert status_of(container, cast.staff) is PersonStatus.ACTIVE  # nothing yet

    missing = browser.submit(path, {"reason": "  "})
    assert missing.status_code == 400
    assert "Enter the reason" in error_summary(missing)
    assert status_of(container, cast.staff) is PersonStatus.ACTIVE

    done = browser.submit(path, {"reason": "searched for a relative"})
    assert done.status_code == 302
    shown = text_of(browser.client.get(done.headers["Location"]))
    assert "is suspended and signed out everywhere" in shown
    assert status_of(container, cast.staff) is PersonStatus.SUSPENDED

    # A second suspension is explained, not a crash.
    again = browser.submit(path, {"reason": "again"})
    assert again.status_code == 409
    assert "suspended" in error_summary(again)

    back = browser.submit(
        f"/admin/people/{cast.staff.person.id}/reinstate", {"reason": "inquiry closed"}
    )
    assert back.status_code == 302
    assert status_of(container, cast.staff) is PersonStatus.ACTIVE
    assert {"admin:suspended", "admin:reinstated"} <= set(audit_tags(container))


def test_an_admin_cannot_open_their_own_accounts_actions(
    container: Container, cast: Cast, browser: Browser
) -> None:
    browser.sign_in(cast.admin, container)
    response = browser.client.get(f"/admin/people/{cast.admin.person.id}/suspend")
    assert response.status_code == 403
    assert "your own account" in text_of(response)


def test_a_platform_admin_suspends_and_accredits_an_organisation(
    container: Container, cast: Cast, browser: Browser, clock: FrozenClock
) -> None:
    browser.sign_in(cast.platform, container)
    listing = text_of(browser.client.get("/admin/accreditation"))
    assert "Northshire County Council" in listing and "Platform" not in listing.split("<main")[1]
    path = f"/admin/accreditation/{cast.org.id}/suspend"
    assert "Suspend Northshire County Council?" in text_of(browser.client.get(path))
    done = browser.submit(path, {"reason": "audit found misuse"})
    assert done.status_code == 302
    assert "2 people lost access" in text_of(browser.client.get(done.headers["Location"]))
    with container.unit() as unit:
        assert unit.directory.organisation(cast.org.id).accreditation is Accreditation.SUSPENDED
    assert status_of(container, cast.staff) is PersonStatus.SUSPENDED
    done = browser.submit(f"/admin/accreditation/{cast.org.id}/accredit", {"reason": "fixed"})
    assert "2 people can sign in again" in text_of(browser.client.get(done.headers["Location"]))
    assert status_of(container, cast.staff) is PersonStatus.ACTIVE


def test_a_mover_through_the_pages(
    app: Flask, container: Container, world: World, cast: Cast, browser: Browser
) -> None:
    other_admin = world.member(cast.other, Role.ORGANISATION_ADMIN, given_name="Omar")
    second = world.member(cast.other, Role.ORGANISATION_ADMIN, given_name="Orla")
    browser.sign_in(other_admin, container)
    path = f"/admin/organisations/{cast.other.id}/positions/new"
    unknown = browser.submit(path, {"username": "no.body", "role": "practitioner", "reason": "x"})
    assert unknown.status_code == 400
    assert "There is nobody with that username" in error_summary(unknown)
    asked = browser.submit(
        path, {"username": cast.staff.username, "role": "practitioner", "reason": "joined us"}
    )
    assert asked.status_code == 302
    with container.unit() as unit:
        request_id = unit.session.scalars(select(PositionRequest.id)).one()
    # The asker sees it waiting, but may not decide it.
    waiting = text_of(browser.client.get(asked.headers["Location"]))
    assert "Someone else decides" in waiting
    refused = browser.submit(
        f"/admin/position-requests/{request_id}", {"decision": "approved", "reason": "mine"}
    )
    assert refused.status_code == 403

    approver = Browser(app.test_client())
    approver.sign_in(second, container)
    approved = approver.submit(
        f"/admin/position-requests/{request_id}", {"decision": "approved", "reason": "HR agrees"}
    )
    assert approved.status_code == 302
    assert "now holds the position" in text_of(approver.client.get(approved.headers["Location"]))

    # The old organisation ends its position.
    old = Browser(app.test_client())
    old.sign_in(cast.admin, container)
    position_id = cast.staff.person.positions[0].id
    assert "End Priya Practitioner" in text_of(
        old.client.get(f"/admin/positions/{position_id}/end")
    )
    ended = old.submit(f"/admin/positions/{position_id}/end", {"reason": "moved to the police"})
    assert ended.status_code == 302
    assert status_of(container, cast.staff) is PersonStatus.ACTIVE
    listed = text_of(old.client.get(f"/admin/organisations/{cast.org.id}?q=priya"))
    assert "0 people found" in listed


def test_the_audit_trail_page_shows_the_organisations_entries_with_reasons(
    container: Container, cast: Cast, browser: Browser
) -> None:
    browser.sign_in(cast.admin, container)
    browser.submit(f"/admin/people/{cast.staff.person.id}/suspend", {"reason": "inquiry 42"})
    page = text_of(browser.client.get(f"/admin/organisations/{cast.org.id}/audit"))
    assert "admin:suspended" in page and "inquiry 42" in page
    with container.unit() as unit:
        assert (
            unit.session.scalars(
                select(AuditEntry.tag).order_by(AuditEntry.seq.desc()).limit(1)
            ).one()
            == "admin:audit:read"
        )


def test_the_managers_see_alerts_about_their_own_staff_and_nothing_of_the_child(
    container: Container, world: World, cast: Cast, browser: Browser, app: Flask
) -> None:
    officer = world.member(cast.other, given_name="Oscar", family_name="Outsider")
    other_admin = world.member(cast.other, Role.ORGANISATION_ADMIN, given_name="Orla")
    with container.unit() as unit:
        now = unit.clock.now()
        for member, rule in ((cast.staff, "own_surname"), (officer, "out_of_hours")):
            unit.session.add(ChildAlert(
                rule=rule, person_id=member.person.id, organisation_id=cast.org.id,
                detail={"surname": "Secretsurname"}, suspended=False, raised_at=now))
        unit.commit()
    path = f"/admin/organisations/{cast.org.id}/staff-alerts"
    browser.sign_in(cast.admin, container)
    assert path in text_of(browser.client.get(f"/admin/organisations/{cast.org.id}"))
    page = text_of(browser.client.get(path))
    assert cast.staff.username in page and "own surname" in page
    assert "Northshire County Council" in page  # the investigating team
    assert officer.username not in page and "out of hours" not in page
    assert "Secretsurname" not in page
    browser.client.get("/sign-out")

    other = Browser(app.test_client())
    other.sign_in(other_admin, container)
    assert other.client.get(path).status_code in (403, 404)
    theirs = text_of(other.client.get(f"/admin/organisations/{cast.other.id}/staff-alerts"))
    assert officer.username in theirs and cast.staff.username not in theirs
