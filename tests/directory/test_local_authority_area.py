"""A local authority team administers its own authority and the organisations
whose registration authority it is (issue 5: "the same [as organisation
admins], plus the rights DOMAIN.md gives them"), and nothing outside that area.

The rule is `directory.service.administers`; these tests drive it through every
service that asks it: delegated administration, unlocking, reset letters and
sponsoring. Refusals first: a team outside its area, an admin of an organisation
in the area reaching up to the council, a team acting on itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.errors import InvalidInput, NotAllowed
from directory.models import Organisation, OrganisationKind, PersonStatus, Role
from directory.service import Principal
from idp.container import Container, Unit
from tests.factories import Member, World
from tests.tokens.test_signin import set_lock
from tokens.attempts import guard_for
from tokens.resets import ResetKind


@dataclass
class Area:
    council: Organisation
    school: Organisation  # in the council's area
    elsewhere: Organisation  # another council
    far_school: Organisation  # in the other council's area
    team: Member
    second_team: Member
    school_admin: Member
    school_staff: Member
    council_staff: Member
    far_staff: Member
    far_team: Member
    platform: Member


@pytest.fixture
def area(world: World) -> Area:
    council = world.organisation("Northshire County Council")
    school = world.organisation(
        "Northshire Primary", OrganisationKind.SCHOOL, registration_authority=council
    )
    elsewhere = world.organisation("Southshire Council")
    far_school = world.organisation(
        "Southshire Academy", OrganisationKind.SCHOOL, registration_authority=elsewhere
    )
    platform_org = world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY)
    return Area(
        council=council,
        school=school,
        elsewhere=elsewhere,
        far_school=far_school,
        team=world.member(council, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara"),
        second_team=world.member(council, Role.LOCAL_AUTHORITY_TEAM, given_name="Leo"),
        school_admin=world.member(school, Role.ORGANISATION_ADMIN, given_name="Sam"),
        school_staff=world.member(school, given_name="Sian", family_name="Teacher"),
        council_staff=world.member(council, given_name="Cara", family_name="Worker"),
        far_staff=world.member(far_school, given_name="Fern", family_name="Far"),
        far_team=world.member(elsewhere, Role.LOCAL_AUTHORITY_TEAM, given_name="Tess"),
        platform=world.member(platform_org, Role.PLATFORM_ADMIN, given_name="Pat"),
    )


def _status(container: Container, member: Member) -> PersonStatus:
    with container.unit() as unit:
        return unit.directory.person(member.person.id).status


Act = Callable[[Unit, Principal, Member, Organisation], object]

ACTS: dict[str, Act] = {
    "list people": lambda u, a, m, o: u.administration.people(a, o.id),
    "read the audit trail": lambda u, a, m, o: u.administration.audit_trail(a, o.id),
    "suspend": lambda u, a, m, o: u.administration.suspend(a, m.person.id, "r"),
    "close": lambda u, a, m, o: u.administration.close(a, m.person.id, "r"),
    "end a position": lambda u, a, m, o: u.administration.end_position(
        a, m.person.positions[0].id, "r"
    ),
    "unlock": lambda u, a, m, o: u.signin.unlock(a, u.directory.person(m.person.id), "r"),
    "send a reset letter": lambda u, a, m, o: u.resets.request(
        a, m.person.id, ResetKind.PIN, "r"
    ),
    "sponsor": lambda u, a, m, o: u.vetting.sponsor(
        a,
        organisation_id=o.id,
        given_name="Nia",
        family_name="New",
        work_email="nia@example.org",
        work_phone=None,
        role=Role.PRACTITIONER,
    ),
    "list applications": lambda u, a, m, o: u.vetting.applications_of(a, o.id),
    "ask for a position": lambda u, a, m, o: u.administration.request_position(
        a, o.id, username=m.username, role=Role.VETTING_OFFICER, reason="r"
    ),
}


def _far_team(area: Area) -> tuple[Member, Member, Organisation]:
    """Another council's team, at the first council's school."""
    return area.far_team, area.school_staff, area.school


def _team_at_far_school(area: Area) -> tuple[Member, Member, Organisation]:
    """Our team, at a school in another council's area."""
    return area.team, area.far_staff, area.far_school


def _team_at_other_council(area: Area) -> tuple[Member, Member, Organisation]:
    return area.team, area.far_team, area.elsewhere


def _school_admin_at_council(area: Area) -> tuple[Member, Member, Organisation]:
    """An organisation in the area does not administer its registration authority."""
    return area.school_admin, area.council_staff, area.council


OUT_OF_AREA = [
    ("team of another council at our school", _far_team),
    ("our team at another council's school", _team_at_far_school),
    ("our team at another council", _team_at_other_council),
    ("school admin at the council", _school_admin_at_council),
]


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("case", [c[1] for c in OUT_OF_AREA], ids=[c[0] for c in OUT_OF_AREA])
def test_nobody_acts_outside_their_area(
    container: Container,
    world: World,
    area: Area,
    case: Callable[[Area], tuple[Member, Member, Organisation]],
    act: str,
) -> None:
    actor_member, target, org = case(area)
    set_lock(container, target, permanent=True)
    actor = world.principal(actor_member)
    with container.unit() as unit, pytest.raises(NotAllowed):
        ACTS[act](unit, actor, target, org)
    assert _status(container, target) is PersonStatus.ACTIVE
    with container.unit() as unit:
        person = unit.directory.person(target.person.id)
        assert person.positions[0].ends_on is None
        assert guard_for(unit.session, target.person.id).locked_permanently
        assert unit.outbox.all() == []
        last = unit.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert last is not None and last.outcome == "refused"


def test_a_team_never_acts_on_its_own_account(
    container: Container, world: World, area: Area
) -> None:
    actor = world.principal(area.team)
    set_lock(container, area.team, permanent=True)
    for act in ("suspend", "close", "unlock", "send a reset letter"):
        with container.unit() as unit, pytest.raises(NotAllowed):
            ACTS[act](unit, actor, area.team, area.council)
    assert _status(container, area.team) is PersonStatus.ACTIVE


def test_the_team_lists_only_its_own_and_its_areas_organisations(
    container: Container, world: World, area: Area
) -> None:
    with container.unit() as unit:
        listed = unit.administration.organisations(world.principal(area.team))
        assert {o.id for o in listed} == {area.council.id, area.school.id}
        people = unit.directory.people_administered_by(
            world.principal(area.team), unit.clock.today()
        )
        assert area.far_staff.person.id not in {p.id for p in people}
        assert {area.school_staff.person.id, area.council_staff.person.id} <= {
            p.id for p in people
        }


@pytest.mark.parametrize("where", ["council", "school"])
def test_the_team_does_what_an_organisation_admin_does_in_its_area(
    container: Container, world: World, area: Area, where: str
) -> None:
    org, target = {
        "council": (area.council, area.council_staff),
        "school": (area.school, area.school_staff),
    }[where]
    actor = world.principal(area.team)
    set_lock(container, target, permanent=True)
    with container.unit() as unit:
        assert unit.administration.people(actor, org.id).total >= 1
        unit.signin.unlock(actor, unit.directory.person(target.person.id))  # reason optional
        letter = unit.resets.request(actor, target.person.id, ResetKind.PASSWORD, "asked")
        assert letter.person.id == target.person.id
        app = unit.vetting.sponsor(
            actor,
            organisation_id=org.id,
            given_name="Nia",
            family_name="New",
            work_email="nia@example.org",
            work_phone=None,
            role=Role.PRACTITIONER,
        )
        assert app.sponsor_id == area.team.person.id
        unit.commit()
        assert [a.id for a in unit.vetting.applications_of(actor, org.id).items] == [app.id]
        unit.administration.suspend(actor, target.person.id, "investigation")
        unit.commit()
        unit.administration.reinstate(actor, target.person.id, "cleared")
        unit.commit()
        unit.administration.close(actor, target.person.id, "left")
        unit.commit()
        with pytest.raises(NotAllowed):  # an organisation admin never closes
            unit.administration.close(world.principal(area.school_admin), target.person.id, "x")
    assert _status(container, target) is PersonStatus.CLOSED
    with container.unit() as unit:
        assert not guard_for(unit.session, target.person.id).locked_permanently


def test_a_team_member_never_decides_a_position_they_asked_for(
    container: Container, world: World, area: Area
) -> None:
    with container.unit() as unit:
        asked = unit.administration.request_position(
            world.principal(area.team),
            area.school.id,
            username=area.school_staff.username,
            role=Role.ORGANISATION_ADMIN,
            reason="new head",
        )
        unit.commit()
        with pytest.raises(NotAllowed, match="Someone else"):
            unit.administration.decide_position(
                world.principal(area.team), asked.id, approve=True, reason="mine"
            )
        with pytest.raises(NotAllowed):  # nor another council's team
            unit.administration.decide_position(
                world.principal(area.far_team), asked.id, approve=True, reason="x"
            )
        decided = unit.administration.decide_position(
            world.principal(area.second_team), asked.id, approve=True, reason="checked"
        )
        unit.commit()
        assert decided.position_id is not None


def test_a_platform_admin_must_say_why_they_unlock_or_send_a_letter(
    container: Container, world: World, area: Area
) -> None:
    set_lock(container, area.school_staff, permanent=True)
    platform = world.principal(area.platform)
    with container.unit() as unit:
        for blank in (None, "", "   "):
            with pytest.raises(InvalidInput) as raised:
                unit.signin.unlock(platform, unit.directory.person(area.school_staff.person.id),
                                   blank)
            assert raised.value.problems[0].field == "reason"
            with pytest.raises(InvalidInput):
                unit.resets.request(platform, area.school_staff.person.id, ResetKind.PIN, blank)
        assert unit.outbox.all() == []
    with container.unit() as unit:
        assert guard_for(unit.session, area.school_staff.person.id).locked_permanently
        unit.signin.unlock(platform, unit.directory.person(area.school_staff.person.id),
                           "phoned the help desk")
        unit.resets.request(platform, area.school_staff.person.id, ResetKind.PIN, "forgot it")
        unit.commit()
    with container.unit() as unit:
        entries = {
            e.tag: e
            for e in unit.session.scalars(
                select(AuditEntry).where(
                    AuditEntry.tag.in_(["signin:unlocked", "reset:pin:requested"])
                )
            )
        }
        assert entries["signin:unlocked"].detail["reason"] == "phoned the help desk"
        assert entries["reset:pin:requested"].detail["reason"] == "forgot it"
        assert {e.organisation_id for e in entries.values()} == {area.school.id}
