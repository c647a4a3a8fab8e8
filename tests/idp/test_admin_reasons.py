"""Console pages: a platform admin gives a reason for every act (issue 5),
reset letters and unlocks included; an organisation's own admins may give one
for a reset letter, and a local authority team works in its area's schools."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.errors import InvalidInput, NotAllowed
from directory.models import Organisation, OrganisationKind, Role
from idp.container import Container
from tests.factories import Member, World
from tests.idp.conftest import Browser, text_of
from tests.idp.test_token_pages import state_of, stock
from tests.tokens.test_signin import set_lock
from tests.vetting.test_staff_import import confirmed, left_as_proposed, proposal
from tokens.attempts import guard_for
from tokens.models import TokenState
from tokens.policy import Factor
from vetting.models import Application


def _browser(app: Flask, container: Container, clock: FrozenClock, member: Member) -> Browser:
    browser = Browser(app.test_client())
    clock.advance(seconds=container.settings.totp.period_seconds)
    assert browser.sign_in(member, container).status_code == 302
    return browser


def _platform_admin(world: World) -> Member:
    return world.member(world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY),
                        Role.PLATFORM_ADMIN, given_name="Pat")


def _letters(container: Container) -> int:
    with container.unit() as unit:
        return len(unit.outbox.all())


def test_a_platform_admin_cannot_send_a_letter_or_unlock_without_a_reason(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    org = world.organisation()
    staff = world.member(org, given_name="Priya")
    platform = _platform_admin(world)
    browser = _browser(app, container, clock, platform)
    path = f"/people/{staff.person.id}/reset-pin"
    refused = browser.submit(path, {"reason": "  "})
    assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert _letters(container) == 0
    sent = browser.submit(path, {"reason": "rang the help desk"})
    assert sent.status_code == 302 and _letters(container) == 1
    # The people list sends a platform admin to the page that asks why.
    set_lock(container, staff, permanent=True)
    listed = text_of(browser.client.get("/people"))
    assert f'href="/admin/people/{staff.person.id}/unlock"' in listed
    bare = browser.submit(f"/people/{staff.person.id}/unlock", {}, page="/people")
    assert bare.status_code == 302
    assert bare.headers["Location"].endswith(f"/admin/people/{staff.person.id}/unlock")
    with container.unit() as unit:
        assert guard_for(unit.session, staff.person.id).locked_permanently
    done = browser.submit(f"/admin/people/{staff.person.id}/unlock", {"reason": "checked"})
    assert done.status_code == 302
    with container.unit() as unit:
        assert not guard_for(unit.session, staff.person.id).locked_permanently
        entry = unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "signin:unlocked")).one()
        assert entry.detail["reason"] == "checked" and entry.organisation_id == org.id


def test_an_organisation_admin_may_give_a_reason_for_a_letter_or_not(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    org = world.organisation()
    staff = world.member(org, given_name="Priya")
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada")
    browser = _browser(app, container, clock, admin)
    assert browser.submit(f"/people/{staff.person.id}/reset-pin", {}).status_code == 302
    assert browser.submit(f"/people/{staff.person.id}/reset-password",
                          {"reason": "asked by phone"}).status_code == 302
    with container.unit() as unit:
        details = {e.tag: e.detail for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag.like("reset:%:requested")))}
    assert "reason" not in details["reset:pin:requested"]
    assert details["reset:password:requested"]["reason"] == "asked by phone"


SPONSORED = {"given_name": "Nia", "family_name": "New", "work_email": "nia.new@example.org",
             "role": Role.PRACTITIONER.value}


def _sponsored(container: Container) -> list[dict[str, str]]:
    """The audit detail of each application submitted, oldest first."""
    with container.unit() as unit:
        found = [e.detail or {} for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag == "vetting:application:submitted")
            .order_by(AuditEntry.seq))]
        # One entry an application: nothing stored without its entry, or the other way.
        assert len(unit.session.scalars(select(Application.id)).all()) == len(found)
        return found


def test_a_platform_admin_sponsors_only_with_a_reason(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    org = world.organisation()
    platform = _platform_admin(world)
    world.add_position(platform, org, Role.ORGANISATION_ADMIN)  # so the form offers it
    browser = _browser(app, container, clock, platform)
    form = text_of(browser.client.get("/applications/new"))
    assert 'name="reason"' in form and "platform admins must give one" in form
    for blank in ("", "   "):
        refused = browser.submit("/applications/new",
                                 {**SPONSORED, "organisation_id": str(org.id), "reason": blank})
        page = text_of(refused)
        assert refused.status_code == 200 and 'href="#reason"' in page, page[:3000]
        assert "Enter the reason" in page
        assert _sponsored(container) == []
    made = browser.submit("/applications/new", {**SPONSORED, "organisation_id": str(org.id),
                                                "reason": "the council's help desk asked"})
    assert made.status_code == 302, text_of(made)[:3000]
    assert _sponsored(container) == [{"role": "practitioner",
                                      "reason": "the council's help desk asked"}]


def test_an_organisation_admin_sponsors_with_or_without_a_reason(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada")
    browser = _browser(app, container, clock, admin)
    chosen = {**SPONSORED, "organisation_id": str(org.id)}
    assert browser.submit("/applications/new", chosen).status_code == 302
    assert browser.submit("/applications/new", {**chosen, "reason": "starts Monday"}
                          ).status_code == 302
    assert _sponsored(container) == [{"role": "practitioner"},
                                     {"role": "practitioner", "reason": "starts Monday"}]


def test_a_platform_admin_confirms_a_proposal_only_with_a_reason(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    org = world.organisation()
    platform = _platform_admin(world)
    world.add_position(platform, org, Role.ORGANISATION_ADMIN)  # a platform admin alone may not
    application_id = proposal(world, org)
    browser = _browser(app, container, clock, platform)
    page = f"/applications/{application_id}"
    shown = text_of(browser.client.get(page))
    assert 'name="reason"' in shown and "platform admins must give one" in shown
    for blank in ("", "   "):
        refused = browser.submit(f"{page}/confirm", {"reason": blank}, page=page)
        body = text_of(refused)
        assert refused.status_code == 400 and 'href="#reason"' in body, body[:3000]
        assert "Enter the reason" in body and "Confirm and send for vetting" in body
        assert left_as_proposed(container, application_id) and confirmed(container) == []
    made = browser.submit(f"{page}/confirm", {"reason": "the council's help desk asked"},
                          page=page)
    assert made.status_code == 302 and made.headers["Location"] == page
    assert confirmed(container) == [{"role": "practitioner", "source": "ldap:dana-0f3c7a2e",
                                     "reason": "the council's help desk asked"}]


def test_an_organisation_admin_confirms_a_proposal_with_or_without_a_reason(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    org = world.organisation()
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada")
    without, given = proposal(world, org, "Dana"), proposal(world, org, "Eli")
    browser = _browser(app, container, clock, admin)
    for application_id, reason in ((without, ""), (given, "starts Monday")):
        page = f"/applications/{application_id}"
        assert browser.submit(f"{page}/confirm", {"reason": reason}, page=page
                              ).status_code == 302
        assert not left_as_proposed(container, application_id)
    assert [d.get("reason") for d in confirmed(container)] == [None, "starts Monday"]


@dataclass
class Area:
    council: Organisation
    school: Organisation  # in the council's area
    far: Organisation  # in nobody's area of ours
    teacher: Member
    far_teacher: Member
    team: Member


@pytest.fixture
def area(world: World) -> Area:
    council = world.organisation("Northshire County Council")
    school = world.organisation("Northshire Primary", OrganisationKind.SCHOOL,
                                registration_authority=council)
    far = world.organisation("Southshire Academy", OrganisationKind.SCHOOL)
    return Area(council, school, far, world.member(school, given_name="Tom"),
                world.member(far, given_name="Fay"),
                world.member(council, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara"))


def test_the_team_unlocks_and_sponsors_in_its_areas_school_but_not_elsewhere(
    app: Flask, container: Container, clock: FrozenClock, area: Area
) -> None:
    teacher, far_teacher, team = area.teacher, area.far_teacher, area.team
    set_lock(container, teacher, permanent=True)
    set_lock(container, far_teacher, permanent=True)
    browser = _browser(app, container, clock, team)
    home = text_of(browser.client.get("/"))
    assert 'href="/people"' in home and 'href="/applications/new"' in home
    people = text_of(browser.client.get("/people"))
    assert "Tom" in people and "Fay" not in people
    refused = browser.client.get(f"/admin/people/{far_teacher.person.id}/unlock")
    assert refused.status_code in (403, 404)
    assert browser.submit(f"/admin/people/{teacher.person.id}/unlock",
                          {"reason": "asked"}).status_code == 302
    form = text_of(browser.client.get("/applications/new"))
    assert "Northshire Primary" in form and "Southshire Academy" not in form
    with container.unit() as unit:
        assert not guard_for(unit.session, teacher.person.id).locked_permanently
        assert guard_for(unit.session, far_teacher.person.id).locked_permanently


def test_a_platform_admin_gives_a_reason_for_every_token_act(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    org = world.organisation()
    staff = world.member(org, given_name="Priya")
    [token] = stock(world, org, ["PR001"])
    platform = _platform_admin(world)
    browser = _browser(app, container, clock, platform)
    detail = f"/tokens/{token.id}"
    refused = browser.submit(f"{detail}/assign", {"username": staff.username}, page=detail)
    assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert state_of(container, token) is TokenState.IN_STOCK
    assert browser.submit(f"{detail}/assign", {"username": staff.username, "reason": "new kit"},
                          page=detail).status_code == 302
    for path, data in ((f"{detail}/returned", {}), (f"{detail}/lost", {"what": "lost"})):
        refused = browser.submit(path, data)
        assert refused.status_code == 400 and "Enter the reason" in text_of(refused)
    assert state_of(container, token) is TokenState.ASSIGNED
    with container.unit() as unit, pytest.raises(InvalidInput) as raised:
        unit.inventory.resync(world.principal(platform), token.id, "123456", "654321")
    assert raised.value.problems[0].field == "reason"
    assert browser.submit(f"{detail}/lost", {"what": "lost", "reason": "left on a train"}
                          ).status_code == 302
    assert browser.submit(f"{detail}/returned", {"reason": "found and handed in"}
                          ).status_code == 302
    with container.unit() as unit:
        reasons = {e.tag: e.detail.get("reason") for e in unit.session.scalars(
            select(AuditEntry).where(AuditEntry.tag.like("token:%"),
                                     AuditEntry.tag != "token:imported"))}
    assert reasons == {"token:assigned": "new kit", "token:lost": "left on a train",
                       "token:returned": "found and handed in"}


def test_an_organisation_admin_may_leave_the_reason_out_of_a_token_act(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    org = world.organisation()
    staff = world.member(org, given_name="Priya")
    [token] = stock(world, org, ["PR002"])
    admin = world.member(org, Role.ORGANISATION_ADMIN, given_name="Ada")
    browser = _browser(app, container, clock, admin)
    detail = f"/tokens/{token.id}"
    assert browser.submit(f"{detail}/assign", {"username": staff.username},
                          page=detail).status_code == 302
    assert browser.submit(f"{detail}/returned", {}).status_code == 302
    assert state_of(container, token) is TokenState.RETURNED


def test_the_team_manages_its_areas_tokens_and_nobody_elses(
    container: Container, world: World, area: Area
) -> None:
    school, far, teacher, far_teacher = area.school, area.far, area.teacher, area.far_teacher
    [ours] = stock(world, school, ["AREA01"])
    [theirs] = stock(world, far, ["FAR001"])
    team = world.principal(area.team)
    hardware = frozenset({Factor.HARDWARE_TOKEN})
    with container.unit() as unit:
        # Refusals first: another council's school, its token, its people, its policy.
        with pytest.raises(NotAllowed):
            unit.inventory.list_tokens(team, far.id)
        with pytest.raises(NotAllowed):
            unit.inventory.token(team, theirs.id)
        with pytest.raises(NotAllowed):
            unit.inventory.assign(team, ours.serial,
                                  unit.directory.person(far_teacher.person.id), "x")
        with pytest.raises(NotAllowed):
            unit.policies.set(team, far.id, allowed=hardware, attestation="none",
                              user_verification="preferred")
        assert [t.serial for t in unit.inventory.list_tokens(team, school.id).items] == [
            "AREA01"]
        unit.inventory.assign(team, ours.serial, unit.directory.person(teacher.person.id))
        unit.policies.set(team, school.id, allowed=hardware, attestation="none",
                          user_verification="preferred")
        unit.commit()
    assert state_of(container, ours) is TokenState.ASSIGNED
    assert state_of(container, theirs) is TokenState.IN_STOCK


def test_a_platform_admin_gives_a_reason_to_import_tokens_or_set_a_policy(
    app: Flask, container: Container, clock: FrozenClock, world: World
) -> None:
    from tests.tokens.pskc_files import Package, build_pskc
    from tokens.models import AuthenticatorPolicy, OtpToken
    from tokens.pskc import parse_pskc

    org = world.organisation()
    platform = _platform_admin(world)
    packages = parse_pskc(build_pskc([Package(serial="WHY001")]), source="why.xml")
    with container.unit() as unit, pytest.raises(InvalidInput) as raised:
        unit.inventory.import_packages(world.principal(platform), org, packages,
                                       source="why.xml", reason=" ")
    assert [p.field for p in raised.value.problems] == ["reason"]
    with container.unit() as unit:
        assert unit.session.scalars(
            select(OtpToken).where(OtpToken.serial == "WHY001")).first() is None
        unit.inventory.import_packages(world.principal(platform), org, packages,
                                       source="why.xml", reason="the council's order")
        unit.commit()
    browser = _browser(app, container, clock, platform)
    page = f"/tokens/policy/{org.id}"
    chosen = {"allowed": ["security_key"], "attestation": "none",
              "user_verification": "preferred"}
    refused = browser.submit(page, chosen)
    assert refused.status_code == 200 and "Enter the reason" in text_of(refused)
    with container.unit() as unit:
        assert unit.session.get(AuthenticatorPolicy, org.id) is None
    assert browser.submit(page, {**chosen, "reason": "keys only after the audit"}
                          ).status_code == 302
    with container.unit() as unit:
        details = {e.tag: e.detail for e in unit.session.scalars(select(AuditEntry).where(
            AuditEntry.tag.in_(["token:imported", "policy:authenticators:changed"])))}
    assert details["token:imported"]["reason"] == "the council's order"
    assert details["policy:authenticators:changed"]["reason"] == "keys only after the audit"


def test_an_organisation_admin_may_set_its_policy_without_a_reason(
    container: Container, world: World
) -> None:
    org = world.organisation()
    admin = world.principal(world.member(org, Role.ORGANISATION_ADMIN))
    with container.unit() as unit:
        unit.policies.set(admin, org.id, allowed=frozenset({Factor.SECURITY_KEY}),
                          attestation="none", user_verification="preferred")
        unit.commit()
    with container.unit() as unit:
        detail = unit.session.scalars(select(AuditEntry.detail).where(
            AuditEntry.tag == "policy:authenticators:changed")).one()
    assert "reason" not in detail
