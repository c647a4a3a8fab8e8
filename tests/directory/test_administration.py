"""Delegated administration: admins act only inside their own organisation,
nobody on their own account, and every act carries a reason and is audited."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.clock import FrozenClock
from core.errors import Conflict, InvalidInput, NotAllowed
from directory.errors import CannotReinstate, NeedsVetting, UnknownPositionRequest
from directory.models import (
    Organisation,
    OrganisationKind,
    PersonStatus,
    PositionRequestState,
    Role,
)
from directory.service import principal_for
from idp.container import Container, Unit
from tests.factories import Member, World, sign_in
from tokens.attempts import Client

CLIENT = Client("192.0.2.20")


@dataclass
class Cast:
    org: Organisation
    other: Organisation
    admin: Member
    second_admin: Member
    team: Member
    staff: Member
    other_admin: Member
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
        second_admin=world.member(org, Role.ORGANISATION_ADMIN, given_name="Oscar"),
        team=world.member(org, Role.LOCAL_AUTHORITY_TEAM, given_name="Lara"),
        staff=world.member(org, given_name="Priya", family_name="Practitioner"),
        other_admin=world.member(other, Role.ORGANISATION_ADMIN, given_name="Omar"),
        platform=world.member(platform_org, Role.PLATFORM_ADMIN, given_name="Pat"),
    )


def status(container: Container, member: Member) -> tuple[PersonStatus, str]:
    with container.unit() as unit:
        person = unit.directory.person(member.person.id)
        return person.status, person.status_reason


def tags(container: Container) -> list[str]:
    with container.unit() as unit:
        return list(unit.session.scalars(select(AuditEntry.tag).order_by(AuditEntry.seq)))


# -- listing and searching ---------------------------------------------------------------


def test_admins_list_and_search_their_people_a_page_at_a_time(
    container: Container, world: World, cast: Cast
) -> None:
    for n in range(7):
        world.member(cast.org, given_name=f"Zed{n}", family_name="Zulu")
    world.member(cast.other, given_name="Zed", family_name="Zulu")  # not theirs
    former = world.member(cast.org, given_name="Fay", family_name="Zulu")
    former.person.positions[0].ends_on = container.clock.today() - timedelta(days=1)
    world.unit.commit()
    actor = world.principal(cast.admin)
    with container.unit() as unit:
        everyone = unit.administration.people(actor, cast.org.id, per_page=100)
        assert everyone.total == 11  # 4 of the cast and 7 Zulus
        page = unit.administration.people(actor, cast.org.id, query="zulu", page=2, per_page=5)
        assert (page.total, page.pages, page.number) == (7, 2, 2)
        assert [p.given_name for p in page.items] == ["Zed5", "Zed6"]
        assert page.has_previous and not page.has_next
        both = unit.administration.people(actor, cast.org.id, query="Zed3 ZUL")
        assert [p.given_name for p in both.items] == ["Zed3"]
        by_username = unit.administration.people(actor, cast.org.id, query=cast.staff.username)
        assert [p.id for p in by_username.items] == [cast.staff.person.id]
        # LIKE's own characters are searched for, not obeyed.
        assert unit.administration.people(actor, cast.org.id, query="%").total == 0
        assert unit.administration.people(actor, cast.org.id, query="_").total == 0


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (1, 0), (1, 101)])
def test_bad_paging_is_refused_by_field(
    container: Container, world: World, cast: Cast, page: int, per_page: int
) -> None:
    with container.unit() as unit, pytest.raises(InvalidInput) as raised:
        unit.administration.people(
            world.principal(cast.admin), cast.org.id, page=page, per_page=per_page
        )
    assert raised.value.problems[0].field in {"page", "per_page"}


def _other_admin(world: World, cast: Cast) -> Member:
    return cast.other_admin


def _practitioner(world: World, cast: Cast) -> Member:
    return cast.staff


def _vetting_officer(world: World, cast: Cast) -> Member:
    return world.member(cast.org, Role.VETTING_OFFICER)


def _former_admin(world: World, cast: Cast) -> Member:
    former = world.member(cast.org, Role.ORGANISATION_ADMIN)
    former.person.positions[0].ends_on = world.container.clock.today() - timedelta(days=1)
    world.unit.commit()
    return former


def _other_team(world: World, cast: Cast) -> Member:
    return world.member(world.organisation("Southshire Council"), Role.LOCAL_AUTHORITY_TEAM)


OUTSIDERS = [
    ("admin of another organisation", _other_admin),
    ("team of another local authority", _other_team),
    ("practitioner", _practitioner),
    ("vetting officer", _vetting_officer),
    ("former admin", _former_admin),
]


def _operations(cast: Cast, position_id: int) -> dict[str, Callable[..., object]]:
    target = cast.second_admin.person.id
    return {
        "people": lambda u, a: u.administration.people(a, cast.org.id),
        "suspend": lambda u, a: u.administration.suspend(a, target, "r"),
        "reinstate": lambda u, a: u.administration.reinstate(a, target, "r"),
        "close": lambda u, a: u.administration.close(a, target, "r"),
        "end_position": lambda u, a: u.administration.end_position(a, position_id, "r"),
        "request_position": lambda u, a: u.administration.request_position(
            a, cast.org.id, username=cast.other_admin.username, role=Role.PRACTITIONER, reason="r"
        ),
        "position_requests": lambda u, a: u.administration.position_requests(a, cast.org.id),
        "audit_trail": lambda u, a: u.administration.audit_trail(a, cast.org.id),
    }


OPERATIONS = [
    "people",
    "suspend",
    "reinstate",
    "close",
    "end_position",
    "request_position",
    "position_requests",
    "audit_trail",
]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("make", [o[1] for o in OUTSIDERS], ids=[o[0] for o in OUTSIDERS])
def test_outsiders_are_refused_every_operation_and_the_refusal_is_audited(
    container: Container,
    world: World,
    cast: Cast,
    make: Callable[[World, Cast], Member],
    operation: str,
) -> None:
    actor = world.principal(make(world, cast))
    position_id = cast.second_admin.person.positions[0].id
    before = status(container, cast.second_admin)
    with container.unit() as unit, pytest.raises(NotAllowed):
        _operations(cast, position_id)[operation](unit, actor)
    assert tags(container)[-1] in {"admin:refused"}
    assert status(container, cast.second_admin) == before
    with container.unit() as unit:
        assert unit.directory.person(cast.second_admin.person.id).positions[0].ends_on is None


def _on_own_account(unit: Unit, cast: Cast, member: Member, operation: str) -> object:
    actor = principal_for(unit.directory.person(member.person.id), unit.clock.today())
    admin = unit.administration
    if operation == "suspend":
        return admin.suspend(actor, actor.person_id, "r")
    if operation == "reinstate":
        return admin.reinstate(actor, actor.person_id, "r")
    if operation == "close":
        return admin.close(actor, actor.person_id, "r")
    if operation == "end_position":
        return admin.end_position(actor, member.person.positions[0].id, "r")
    return admin.request_position(
        actor, cast.other.id, username=member.username, role=Role.LOCAL_AUTHORITY_TEAM, reason="r"
    )


@pytest.mark.parametrize(
    "operation", ["suspend", "reinstate", "close", "end_position", "request_position"]
)
def test_nobody_acts_on_their_own_account(
    container: Container, world: World, cast: Cast, operation: str
) -> None:
    """Not an organisation admin, not a team, not a platform admin."""
    actors = [cast.second_admin, cast.team, cast.platform]
    if operation == "request_position":
        actors = [cast.other_admin, cast.platform]
    for member in actors:
        with container.unit() as unit, pytest.raises(NotAllowed):
            _on_own_account(unit, cast, member, operation)
        assert status(container, member)[0] is PersonStatus.ACTIVE


# -- suspending, reinstating, closing --------------------------------------------------------


def test_an_admin_suspends_and_reinstates_with_reasons(
    container: Container, world: World, cast: Cast
) -> None:
    live = sign_in(container, cast.staff, CLIENT)
    actor = world.principal(cast.admin)
    with container.unit() as unit:
        unit.administration.suspend(actor, cast.staff.person.id, "  searched for a relative ")
        unit.commit()
    assert status(container, cast.staff) == (
        PersonStatus.SUSPENDED,
        "suspended by an administrator: searched for a relative",
    )
    with container.unit() as unit:
        assert unit.sessions.resume(live.token) is None
        assert unit.sessions.open_sessions(cast.staff.person.id) == []
    with container.unit() as unit:
        unit.administration.reinstate(actor, cast.staff.person.id, "investigation closed")
        unit.commit()
    assert status(container, cast.staff) == (PersonStatus.ACTIVE, "investigation closed")
    assert isinstance(container.clock, FrozenClock)
    container.clock.advance(seconds=60)  # a fresh token code
    assert sign_in(container, cast.staff, CLIENT)
    with container.unit() as unit:
        details = list(
            unit.session.scalars(
                select(AuditEntry.detail)
                .where(AuditEntry.tag.in_(["admin:suspended", "admin:reinstated"]))
                .order_by(AuditEntry.seq)
            )
        )
    assert [d["reason"] for d in details] == [
        "suspended by an administrator: searched for a relative",
        "investigation closed",
    ]


def test_vetting_suspensions_are_not_lifted_by_an_admin(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    lapsing = world.member(cast.org, given_name="Lee", clearance_days=3)
    barred = world.member(cast.org, given_name="Bea")
    with container.unit() as unit:
        person = unit.directory.person(barred.person.id)
        unit.directory.set_status(
            person, PersonStatus.SUSPENDED, "barred from working with children", tag="t"
        )
        unit.commit()
    clock.advance(days=4)
    with container.unit() as unit:
        unit.vetting.sweep()
        unit.commit()
    actor = world.principal(cast.platform)
    for member in (lapsing, barred):
        with container.unit() as unit, pytest.raises(CannotReinstate):
            unit.administration.reinstate(actor, member.person.id, "please")
        assert status(container, member)[0] is PersonStatus.SUSPENDED


def test_an_admin_suspension_over_a_lapse_stays_until_the_admin_lifts_it(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    lapsing = world.member(cast.org, given_name="Lee", clearance_days=3)
    clock.advance(days=4)
    with container.unit() as unit:
        unit.vetting.sweep()
        unit.administration.suspend(world.principal(cast.admin), lapsing.person.id, "inquiry")
        unit.commit()
        # And a lapsed clearance still stops the admin reinstating.
        with pytest.raises(CannotReinstate, match="clearance lapsed"):
            unit.administration.reinstate(world.principal(cast.admin), lapsing.person.id, "ok")


def test_only_the_team_or_a_platform_admin_closes_an_account(
    container: Container, world: World, cast: Cast
) -> None:
    with container.unit() as unit, pytest.raises(NotAllowed):
        unit.administration.close(world.principal(cast.admin), cast.staff.person.id, "left")
    with container.unit() as unit:
        unit.administration.close(world.principal(cast.team), cast.staff.person.id, "left")
        unit.commit()
    assert status(container, cast.staff) == (PersonStatus.CLOSED, "left")
    with container.unit() as unit, pytest.raises(Conflict):
        unit.administration.suspend(world.principal(cast.admin), cast.staff.person.id, "r")
    with container.unit() as unit, pytest.raises(CannotReinstate):
        unit.administration.reinstate(world.principal(cast.platform), cast.staff.person.id, "r")


def test_a_platform_admin_acts_anywhere_with_a_reason(
    container: Container, world: World, cast: Cast
) -> None:
    actor = world.principal(cast.platform)
    with container.unit() as unit:
        assert unit.administration.people(actor, cast.other.id).total == 1
        with pytest.raises(InvalidInput):
            unit.administration.suspend(actor, cast.other_admin.person.id, " ")
        unit.administration.suspend(actor, cast.other_admin.person.id, "complaint")
        unit.commit()
    assert status(container, cast.other_admin)[0] is PersonStatus.SUSPENDED


# -- positions and movers -------------------------------------------------------------------


def test_ending_the_last_position_ends_everything_at_once(
    container: Container, world: World, cast: Cast
) -> None:
    live = sign_in(container, cast.staff, CLIENT)
    with container.unit() as unit:
        unit.administration.end_position(
            world.principal(cast.admin), cast.staff.person.positions[0].id, "left the council"
        )
        unit.commit()
        assert unit.sessions.resume(live.token) is None
        with pytest.raises(Conflict):
            unit.administration.end_position(
                world.principal(cast.admin), cast.staff.person.positions[0].id, "again"
            )


def test_a_mover_keeps_one_identity_and_needs_no_new_vetting(
    container: Container, world: World, cast: Cast
) -> None:
    """The new organisation asks, a second admin there approves, the old one ends
    its position; the person signs in throughout with the same credentials."""
    mover = cast.staff
    asker = world.principal(cast.other_admin)
    second = world.member(cast.other, Role.ORGANISATION_ADMIN, given_name="Orla")
    with container.unit() as unit:
        request = unit.administration.request_position(
            asker,
            cast.other.id,
            username=mover.username,
            role=Role.PRACTITIONER,
            reason="joined the police",
        )
        unit.commit()
        request_id = request.id
    # Nobody approves their own request, and the mover cannot approve their own position.
    for refused in (cast.other_admin, mover):
        with container.unit() as unit, pytest.raises(NotAllowed):
            unit.administration.decide_position(
                world.principal(refused), request_id, approve=True, reason="ok"
            )
    # Nor can the old organisation's admin, who does not administer the new one.
    with container.unit() as unit, pytest.raises(NotAllowed):
        unit.administration.decide_position(
            world.principal(cast.admin), request_id, approve=True, reason="ok"
        )
    with container.unit() as unit, pytest.raises(UnknownPositionRequest):
        unit.administration.position_request_for(world.principal(cast.admin), request_id)
    with container.unit() as unit:
        assert [
            r.id
            for r in unit.administration.position_requests(world.principal(second), cast.other.id)
        ] == [request_id]
        decided = unit.administration.decide_position(
            world.principal(second), request_id, approve=True, reason="checked with HR"
        )
        unit.commit()
        assert decided.state is PositionRequestState.APPROVED
        with pytest.raises(Conflict):
            unit.administration.decide_position(
                world.principal(cast.platform), request_id, approve=False, reason="late"
            )
    with container.unit() as unit:
        old = next(
            p
            for p in unit.directory.person(mover.person.id).positions
            if p.organisation_id == cast.org.id
        )
        unit.administration.end_position(world.principal(cast.admin), old.id, "moved")
        unit.commit()
    with container.unit() as unit:
        person = unit.directory.person(mover.person.id)
        grants = principal_for(person, container.clock.today()).grants
        assert [(g.organisation_id, g.role) for g in grants] == [(cast.other.id, Role.PRACTITIONER)]
        assert person.status is PersonStatus.ACTIVE
        assert (
            unit.administration.people(
                world.principal(cast.admin), cast.org.id, query=mover.username
            ).total
            == 0
        )
    assert sign_in(container, mover, CLIENT)


def test_a_mover_whose_clearance_lapsed_must_be_vetted_again(
    container: Container, world: World, cast: Cast, clock: FrozenClock
) -> None:
    lapsing = world.member(cast.org, given_name="Lee", clearance_days=3)
    with container.unit() as unit:
        request = unit.administration.request_position(
            world.principal(cast.other_admin),
            cast.other.id,
            username=lapsing.username,
            role=Role.PRACTITIONER,
            reason="moving",
        )
        unit.commit()
        request_id = request.id
    clock.advance(days=4)
    with container.unit() as unit, pytest.raises(NeedsVetting):
        unit.administration.decide_position(
            world.principal(cast.platform), request_id, approve=True, reason="ok"
        )
    with container.unit() as unit, pytest.raises(NeedsVetting):
        unit.administration.request_position(
            world.principal(cast.other_admin),
            cast.other.id,
            username=lapsing.username,
            role=Role.ORGANISATION_ADMIN,
            reason="moving",
        )


def test_a_role_change_is_a_request_someone_else_approves(
    container: Container, world: World, cast: Cast
) -> None:
    with container.unit() as unit:
        with pytest.raises(InvalidInput):
            unit.administration.request_position(
                world.principal(cast.admin),
                cast.org.id,
                username="nobody.here",
                role=Role.ORGANISATION_ADMIN,
                reason="promotion",
            )
        with pytest.raises(InvalidInput):
            unit.administration.request_position(
                world.principal(cast.admin),
                cast.org.id,
                username=cast.staff.username,
                role=Role.PLATFORM_ADMIN,
                reason="promotion",
            )
        with pytest.raises(Conflict):
            unit.administration.request_position(
                world.principal(cast.admin),
                cast.org.id,
                username=cast.staff.username,
                role=Role.PRACTITIONER,
                reason="already",
            )
        request = unit.administration.request_position(
            world.principal(cast.admin),
            cast.org.id,
            username=cast.staff.username,
            role=Role.ORGANISATION_ADMIN,
            reason="promotion",
        )
        unit.commit()
        unit.administration.decide_position(
            world.principal(cast.second_admin), request.id, approve=False, reason="not yet"
        )
        unit.commit()
        assert request.state is PositionRequestState.REFUSED
        assert request.position_id is None
    assert not world.principal(cast.staff).has_role(Role.ORGANISATION_ADMIN)


# -- the audit trail -------------------------------------------------------------------------


def test_admins_read_their_own_organisations_audit_trail_only(
    container: Container, world: World, cast: Cast
) -> None:
    with container.unit() as unit:
        unit.administration.suspend(world.principal(cast.admin), cast.staff.person.id, "inquiry")
        unit.administration.suspend(
            world.principal(cast.platform), cast.other_admin.person.id, "complaint"
        )
        unit.commit()
    with container.unit() as unit:
        trail = unit.administration.audit_trail(world.principal(cast.team), cast.org.id)
        unit.commit()
        assert {e.organisation_id for e in trail.items} == {cast.org.id}
        assert "admin:suspended" in [e.tag for e in trail.items]
        assert all(e.subject_id != str(cast.other_admin.person.id) for e in trail.items)
    assert tags(container)[-1] == "admin:audit:read"
