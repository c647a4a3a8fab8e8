"""Accrediting and suspending organisations: who may, and what it does to people."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.errors import InvalidInput, NotAllowed
from directory.errors import AccreditationUnchanged
from directory.models import Accreditation, Organisation, OrganisationKind, PersonStatus, Role
from idp.container import Container
from tests.factories import Member, World, sign_in
from tokens.attempts import Client
from tokens.errors import SignInFailed

CLIENT = Client("192.0.2.10")


@dataclass
class Area:
    council: Organisation
    charity: Organisation  # registered with the council: in its area
    elsewhere: Organisation
    platform: Member
    team: Member
    admin: Member  # of the charity
    staff: Member  # of the charity, nowhere else
    both: Member  # of the charity and of the council


@pytest.fixture
def area(world: World) -> Area:
    platform_org = world.organisation("Platform", OrganisationKind.NATIONAL_CHARITY)
    council = world.organisation("Northshire County Council")
    charity = world.organisation(
        "Kids Charity", OrganisationKind.NATIONAL_CHARITY, registration_authority=council
    )
    elsewhere = world.organisation("Southshire Council")
    both = world.member(charity, given_name="Bo")
    world.add_position(both, council, Role.PRACTITIONER)
    return Area(
        council=council,
        charity=charity,
        elsewhere=elsewhere,
        platform=world.member(platform_org, Role.PLATFORM_ADMIN, given_name="Pat"),
        team=world.member(council, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara"),
        admin=world.member(charity, Role.ORGANISATION_ADMIN, given_name="Carla"),
        staff=world.member(charity, given_name="Chris"),
        both=both,
    )


def state(container: Container, member: Member) -> tuple[PersonStatus, str]:
    with container.unit() as unit:
        person = unit.directory.person(member.person.id)
        return person.status, person.status_reason


def accreditation(container: Container, org: Organisation) -> Accreditation:
    with container.unit() as unit:
        return unit.directory.organisation(org.id).accreditation


def suspend(container: Container, world: World, actor: Member, org: Organisation) -> int:
    with container.unit() as unit:
        change = unit.accreditation.suspend(world.principal(actor), org.id, "audit found misuse")
        unit.commit()
        return change.people


def accredit(container: Container, world: World, actor: Member, org: Organisation) -> int:
    with container.unit() as unit:
        change = unit.accreditation.accredit(world.principal(actor), org.id, "remedied")
        unit.commit()
        return change.people


def test_suspending_suspends_those_whose_only_access_it_was_and_ends_their_sessions(
    container: Container, world: World, area: Area
) -> None:
    staff_session = sign_in(container, area.staff, CLIENT)
    both_session = sign_in(container, area.both, CLIENT)
    assert staff_session and both_session

    assert suspend(container, world, area.platform, area.charity) == 2  # staff and admin

    assert accreditation(container, area.charity) is Accreditation.SUSPENDED
    assert state(container, area.staff) == (
        PersonStatus.SUSPENDED,
        f"organisation suspended: {area.charity.code}",
    )
    assert state(container, area.admin)[0] is PersonStatus.SUSPENDED
    # Bo still works for the council: still active, still signed in.
    assert state(container, area.both)[0] is PersonStatus.ACTIVE
    with container.unit() as unit:
        assert unit.sessions.open_sessions(area.staff.person.id) == []
        assert len(unit.sessions.open_sessions(area.both.person.id)) == 1
        assert unit.sessions.resume(staff_session.token) is None
        assert unit.sessions.resume(both_session.token) is not None
        # And the grants Bo held through the charity are gone with it.
        entries = [
            (e.tag, e.subject_id, e.detail)
            for e in unit.session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
        ]
    with pytest.raises(SignInFailed):
        sign_in(container, area.staff, CLIENT)
    suspended = [detail for tag, _, detail in entries if tag == "organisation:suspended"]
    assert suspended == [{"from": "accredited", "to": "suspended", "reason": "audit found misuse"}]
    assert [
        subject for tag, subject, _ in entries if tag == "person:suspended:organisation"
    ] == sorted([str(area.admin.person.id), str(area.staff.person.id)])


def test_accrediting_again_reinstates_without_new_vetting_while_clearance_is_valid(
    container: Container, world: World, area: Area, clock: FrozenClock
) -> None:
    investigated = world.member(area.charity, given_name="Ivy")
    short = world.member(area.charity, given_name="Sid", clearance_days=5)
    suspend(container, world, area.platform, area.charity)
    # Someone the admin suspended for a reason of their own stays suspended.
    with container.unit() as unit:
        unit.administration.suspend(
            world.principal(area.platform), investigated.person.id, "inquiry"
        )
        unit.commit()
    clock.advance(days=6)

    assert accredit(container, world, area.platform, area.charity) == 2  # staff and admin

    assert state(container, area.staff) == (
        PersonStatus.ACTIVE,
        f"organisation {area.charity.code} accredited again",
    )
    assert sign_in(container, area.staff, CLIENT)
    assert state(container, investigated)[0] is PersonStatus.SUSPENDED
    # Sid's clearance lapsed meanwhile: still suspended, now for that, which a renewal lifts.
    assert state(container, short) == (PersonStatus.SUSPENDED, "lapsed: clearance lapsed")


def test_accrediting_lifts_the_sweeps_suspensions_for_the_organisation(
    container: Container, world: World, area: Area
) -> None:
    with container.unit() as unit:
        unit.directory.organisation(area.charity.id).accreditation = Accreditation.SUSPENDED
        unit.commit()
        report = unit.vetting.sweep()
        unit.commit()
    assert (area.staff.username, "lapsed: organisation not accredited") in report.suspended
    accredit(container, world, area.platform, area.charity)
    assert state(container, area.staff)[0] is PersonStatus.ACTIVE


def test_a_pending_organisation_is_accredited(
    container: Container, world: World, area: Area
) -> None:
    new = world.organisation("New School", OrganisationKind.SCHOOL, accredited=False)
    assert accredit(container, world, area.platform, new) == 0
    with container.unit() as unit:
        org = unit.directory.organisation(new.id)
        assert org.accreditation is Accreditation.ACCREDITED
        assert org.accredited_on == container.clock.today()
        assert unit.session.scalar(
            select(AuditEntry.detail).where(AuditEntry.tag == "organisation:accredited")
        ) == {"from": "pending", "to": "accredited", "reason": "remedied"}


def test_the_local_authority_team_acts_for_organisations_in_its_area(
    container: Container, world: World, area: Area
) -> None:
    with container.unit() as unit:
        assert [
            o.name for o in unit.accreditation.organisations_for(world.principal(area.team))
        ] == ["Kids Charity"]
    suspend(container, world, area.team, area.charity)
    accredit(container, world, area.team, area.charity)
    assert accreditation(container, area.charity) is Accreditation.ACCREDITED


def _team_for_its_own(world: World, area: Area) -> tuple[Member, Organisation]:
    return area.team, area.council


def _team_elsewhere(world: World, area: Area) -> tuple[Member, Organisation]:
    return world.member(area.elsewhere, Role.LOCAL_AUTHORITY_TEAM), area.charity


def _org_admin(world: World, area: Area) -> tuple[Member, Organisation]:
    return area.admin, area.charity


def _council_admin(world: World, area: Area) -> tuple[Member, Organisation]:
    return world.member(area.council, Role.ORGANISATION_ADMIN), area.charity


def _practitioner(world: World, area: Area) -> tuple[Member, Organisation]:
    return area.staff, area.elsewhere


def _vetting_officer(world: World, area: Area) -> tuple[Member, Organisation]:
    return world.member(area.council, Role.VETTING_OFFICER), area.charity


def _platform_admin_for_own(world: World, area: Area) -> tuple[Member, Organisation]:
    world.add_position(area.platform, area.charity, Role.PRACTITIONER)
    return area.platform, area.charity


REFUSED = [
    ("team, its own local authority", _team_for_its_own),
    ("team of another area", _team_elsewhere),
    ("the organisation's own admin", _org_admin),
    ("admin of the registration authority", _council_admin),
    ("practitioner", _practitioner),
    ("vetting officer", _vetting_officer),
    ("platform admin working in it", _platform_admin_for_own),
]


@pytest.mark.parametrize("make", [r[1] for r in REFUSED], ids=[r[0] for r in REFUSED])
@pytest.mark.parametrize("change", ["suspend", "accredit"])
def test_refused(
    container: Container,
    world: World,
    area: Area,
    make: Callable[[World, Area], tuple[Member, Organisation]],
    change: str,
) -> None:
    actor, org = make(world, area)
    principal = world.principal(actor)
    if change == "accredit":
        with container.unit() as unit:
            unit.directory.organisation(org.id).accreditation = Accreditation.SUSPENDED
            unit.commit()
    with container.unit() as unit, pytest.raises(NotAllowed):
        getattr(unit.accreditation, change)(principal, org.id, "because")
    with container.unit() as unit:
        after = unit.directory.organisation(org.id).accreditation
        refusals = list(
            unit.session.scalars(
                select(AuditEntry.subject_id).where(
                    AuditEntry.tag == "organisation:accreditation:refused"
                )
            )
        )
    assert after is (Accreditation.ACCREDITED if change == "suspend" else Accreditation.SUSPENDED)
    assert refusals == [str(org.id)]
    assert state(container, area.staff)[0] is PersonStatus.ACTIVE


def test_an_unknown_organisation_is_refused_like_a_forbidden_one(
    container: Container, world: World, area: Area
) -> None:
    with container.unit() as unit, pytest.raises(NotAllowed):
        unit.accreditation.suspend(world.principal(area.team), 99999, "because")


@pytest.mark.parametrize("reason", ["", "   ", "x" * 301])
def test_a_reason_is_required(container: Container, world: World, area: Area, reason: str) -> None:
    with container.unit() as unit, pytest.raises(InvalidInput) as raised:
        unit.accreditation.suspend(world.principal(area.platform), area.charity.id, reason)
    assert raised.value.problems[0].field == "reason"
    assert accreditation(container, area.charity) is Accreditation.ACCREDITED


def test_no_change_to_the_same_state(container: Container, world: World, area: Area) -> None:
    with container.unit() as unit, pytest.raises(AccreditationUnchanged):
        unit.accreditation.accredit(world.principal(area.platform), area.charity.id, "again")
    suspend(container, world, area.platform, area.charity)
    with container.unit() as unit, pytest.raises(AccreditationUnchanged):
        unit.accreditation.suspend(world.principal(area.platform), area.charity.id, "again")


def test_everything_registered_to_end_with_sessions_ends_on_suspension(
    container: Container, world: World, area: Area
) -> None:
    ended: list[tuple[str, str]] = []
    with container.unit() as unit:
        unit.sessions.also_end.append(lambda person, why: ended.append((person.username, why)))
        unit.accreditation.suspend(world.principal(area.platform), area.charity.id, "misuse")
        unit.commit()
    assert sorted(ended) == sorted(
        [
            (area.admin.username, f"organisation {area.charity.code} suspended"),
            (area.staff.username, f"organisation {area.charity.code} suspended"),
        ]
    )
