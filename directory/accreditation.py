"""Accrediting and suspending organisations.

Nobody works through an organisation that is not accredited. Suspending one
suspends everyone whose only access was through it and ends their sessions at
once; accrediting it again lifts exactly those suspensions (and the sweep's
"organisation not accredited" ones) for people whose clearance and training are
still valid, without vetting anyone again.

Who may: a platform admin, for any organisation; a local authority team, for
the organisations in its area (those whose registration authority is that
local authority), never for its own. Nobody changes the accreditation of an
organisation they hold a position in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.errors import FieldProblem, InvalidInput, NotAllowed
from directory.errors import AccreditationUnchanged
from directory.models import Accreditation, Organisation, Person, PersonStatus, Position, Role
from directory.service import DirectoryService, Principal, access_blockers

# The sweep (vetting) suspends with this prefix; kept here so both agree.
LAPSE_PREFIX = "lapsed: "
ORGANISATION_SUSPENDED_PREFIX = "organisation suspended: "
REASON_MAX = 300


class EndsAccess(Protocol):
    """Whatever ends every session and token of a person (tokens.sessions.SessionService)."""

    def end_all_for(self, person: Person, reason: str) -> None: ...


def given_reason(reason: str) -> str:
    """Every administrative act carries the reason its actor gives, for the audit trail."""
    cleaned = " ".join(reason.split())
    if not cleaned:
        raise InvalidInput(FieldProblem("reason", "Enter the reason"))
    if len(cleaned) > REASON_MAX:
        raise InvalidInput(
            FieldProblem("reason", f"The reason must be {REASON_MAX} characters or fewer")
        )
    return cleaned


def reason_from(actor: Principal, reason: str | None) -> str | None:
    """The reason for an act whose reason is optional for organisation admins:
    a platform admin acts anywhere, so every act of theirs must say why (issue 5);
    others may say why, and what they say is checked the same way."""
    if actor.is_platform_admin or (reason and reason.strip()):
        return given_reason(reason or "")
    return None


def reason_detail(actor: Principal, reason: str | None) -> dict[str, str]:
    """`reason_from` as the detail of an audit entry: nothing when no reason
    was given (and none was needed), so entries of acts without one stay as they were."""
    why = reason_from(actor, reason)
    return {"reason": why} if why else {}


def current_position_filter(today: date) -> list[ColumnElement[bool]]:
    return [Position.starts_on <= today, Position.ends_on.is_(None) | (Position.ends_on >= today)]


def is_suspended_for_organisation(person: Person) -> bool:
    """Suspended because access ran only through organisations that lost their
    accreditation (by a suspension, or found by the sweep), or because a mover's
    last position ended before the new one began: what new access may lift."""
    reason = person.status_reason
    return person.status is PersonStatus.SUSPENDED and (
        reason.startswith(ORGANISATION_SUSPENDED_PREFIX)
        or reason == LAPSE_PREFIX + "organisation not accredited"
        or reason == LAPSE_PREFIX + "no current position"
    )


@dataclass(frozen=True)
class AccreditationChange:
    organisation: Organisation
    people: int  # suspended by a suspension, reinstated by an accreditation


@dataclass
class AccreditationService:
    session: Session
    clock: Clock
    audit: Auditor
    directory: DirectoryService
    access: EndsAccess

    # -- who may ---------------------------------------------------------------

    def may_change(self, actor: Principal, organisation: Organisation) -> bool:
        if any(g.organisation_id == organisation.id for g in actor.grants):
            return False
        if actor.is_platform_admin:
            return True
        teams = actor.organisations_with(Role.LOCAL_AUTHORITY_TEAM)
        return organisation.registration_authority_id in teams

    def organisations_for(self, actor: Principal) -> list[Organisation]:
        """The organisations whose accreditation this actor may change."""
        stmt = select(Organisation).order_by(Organisation.name)
        if not actor.is_platform_admin:
            teams = actor.organisations_with(Role.LOCAL_AUTHORITY_TEAM)
            if not teams:
                raise NotAllowed()
            stmt = stmt.where(
                Organisation.registration_authority_id.in_(teams), Organisation.id.not_in(teams)
            )
        return [org for org in self.session.scalars(stmt) if self.may_change(actor, org)]

    def organisation_for(self, actor: Principal, organisation_id: int) -> Organisation:
        """An organisation this actor may accredit; to anyone else, refused alike
        whether it exists or not."""
        org = self.session.get(Organisation, organisation_id)
        if org is None or not self.may_change(actor, org):
            self.audit.record(
                "organisation:accreditation:refused",
                "refused",
                subject_type="organisation",
                subject_id=organisation_id,
                detail={"reason": "not allowed"},
            )
            self.session.commit()
            raise NotAllowed()
        return org

    # -- the changes -----------------------------------------------------------

    def suspend(self, actor: Principal, organisation_id: int, reason: str) -> AccreditationChange:
        org = self.organisation_for(actor, organisation_id)
        why = given_reason(reason)
        if org.accreditation is not Accreditation.ACCREDITED:
            raise AccreditationUnchanged(f"{org.name} is not accredited")
        self._set(org, Accreditation.SUSPENDED, why, "organisation:suspended")
        today = self.clock.today()
        suspended = 0
        for person in self._people_of(org, today, PersonStatus.ACTIVE):
            if not access_blockers(person, today):
                continue  # still works through another accredited organisation
            self.directory.set_status(
                person,
                PersonStatus.SUSPENDED,
                ORGANISATION_SUSPENDED_PREFIX + org.code,
                tag="person:suspended:organisation",
            )
            self.access.end_all_for(person, f"organisation {org.code} suspended")
            suspended += 1
        self.audit.record(
            "organisation:suspended:people",
            subject_type="organisation",
            subject_id=org.id,
            organisation_id=org.id,
            detail={"suspended": suspended},
        )
        return AccreditationChange(org, suspended)

    def accredit(self, actor: Principal, organisation_id: int, reason: str) -> AccreditationChange:
        """Accredit a pending organisation, or re-accredit a suspended one."""
        org = self.organisation_for(actor, organisation_id)
        why = given_reason(reason)
        if org.accreditation is Accreditation.ACCREDITED:
            raise AccreditationUnchanged(f"{org.name} is already accredited")
        again = org.accreditation is Accreditation.SUSPENDED
        tag = "organisation:reaccredited" if again else "organisation:accredited"
        self._set(org, Accreditation.ACCREDITED, why, tag)
        if org.accredited_on is None:
            org.accredited_on = self.clock.today()
        today = self.clock.today()
        reinstated = 0
        for person in self._people_of(org, today, PersonStatus.SUSPENDED):
            if not is_suspended_for_organisation(person):
                continue  # suspended by someone, for a reason of their own
            blockers = access_blockers(person, today, ignore_status=True)
            if blockers:
                # Still suspended, now for what lapsed meanwhile: renewal lifts that.
                self.directory.set_status(
                    person,
                    PersonStatus.SUSPENDED,
                    LAPSE_PREFIX + ", ".join(blockers),
                    tag="person:suspension:lapsed",
                )
                continue
            self.directory.set_status(
                person,
                PersonStatus.ACTIVE,
                f"organisation {org.code} accredited again",
                tag="person:reinstated:organisation",
            )
            reinstated += 1
        self.audit.record(
            "organisation:reaccredited:people",
            subject_type="organisation",
            subject_id=org.id,
            organisation_id=org.id,
            detail={"reinstated": reinstated},
        )
        return AccreditationChange(org, reinstated)

    def _set(self, org: Organisation, to: Accreditation, reason: str, tag: str) -> None:
        previous = org.accreditation
        org.accreditation = to
        org.accreditation_changed_at = self.clock.now()
        self.audit.record(
            tag,
            subject_type="organisation",
            subject_id=org.id,
            organisation_id=org.id,
            detail={"from": previous.value, "to": to.value, "reason": reason},
        )

    def _people_of(self, org: Organisation, today: date, status: PersonStatus) -> list[Person]:
        in_org = select(Position.person_id).where(
            Position.organisation_id == org.id, *current_position_filter(today)
        )
        stmt = (
            select(Person).where(Person.id.in_(in_org), Person.status == status).order_by(Person.id)
        )
        return list(self.session.scalars(stmt))
