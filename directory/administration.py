"""Delegated administration: who may act on whose people, and the acts themselves.

Organisation admins act only inside their own organisation; a local authority
team acts inside its own local authority and the organisations it is the
registration authority of, and may also close accounts there; platform admins
act anywhere (`directory.service.administers` is that rule). Nobody acts on
their own account, and nobody approves a position or role change they asked
for or that is their own.
Every act carries the reason its actor gives and is audited; every refusal is
audited too, and kept although the request that caused it fails.

The rules live here and nowhere else, so the admin pages, the CLI and the
JSON API are thin layers over the same operations: each takes a `Principal`
and plain values, and raises typed errors.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from core.audit import AuditEntry, Auditor
from core.clock import Clock
from core.errors import Conflict, FieldProblem, InvalidInput, NotAllowed
from directory.accreditation import (
    EndsAccess,
    current_position_filter,
    given_reason,
    is_suspended_for_organisation,
)
from directory.errors import CannotReinstate, NeedsVetting, UnknownPositionRequest
from directory.models import (
    Organisation,
    Person,
    PersonStatus,
    Position,
    PositionRequest,
    PositionRequestState,
    Role,
)
from directory.service import (
    ADMINISTERING,
    DirectoryService,
    Principal,
    access_blockers,
    administered_clause,
    administers,
    fold_username,
)

T = TypeVar("T")

ADMIN_SUSPENSION_PREFIX = "suspended by an administrator: "
PER_PAGE_MAX = 100


class Act(enum.StrEnum):
    """What an administrator may do; each names the roles that may do it."""

    LIST_PEOPLE = "list_people"
    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    CLOSE = "close"
    END_POSITION = "end_position"
    REQUEST_POSITION = "request_position"
    DECIDE_POSITION = "decide_position"
    READ_AUDIT = "read_audit"


ADMIN_ROLES = ADMINISTERING
# Closing an account is the local authority team's (DOMAIN.md), not a sponsor's.
ROLES_FOR: dict[Act, frozenset[Role]] = {act: ADMIN_ROLES for act in Act} | {
    Act.CLOSE: frozenset({Role.LOCAL_AUTHORITY_TEAM}),
}


def may(actor: Principal, act: Act, organisation: Organisation) -> bool:
    """Whether the actor may do `act` in the organisation: `administers`, with the
    roles that `act` asks for."""
    return administers(actor, organisation, ROLES_FOR[act])


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    total: int
    number: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_bounds(page: int, per_page: int) -> tuple[int, int]:
    if page < 1:
        raise InvalidInput(FieldProblem("page", "The page number must be 1 or more"))
    if not 1 <= per_page <= PER_PAGE_MAX:
        raise InvalidInput(FieldProblem("per_page", f"Ask for between 1 and {PER_PAGE_MAX} a page"))
    return page, per_page


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_terms(query: str) -> list[ColumnElement[bool]]:
    """Each word must begin a name, the username or the email address."""
    clauses: list[ColumnElement[bool]] = []
    for word in fold_username(query).split()[:5]:
        prefix = _like_escape(word) + "%"
        clauses.append(
            or_(
                func.lower(Person.family_name).like(prefix, escape="\\"),
                func.lower(Person.given_name).like(prefix, escape="\\"),
                Person.username_folded.like(prefix, escape="\\"),
                func.lower(Person.work_email).like(prefix, escape="\\"),
            )
        )
    return clauses


@dataclass
class AdministrationService:
    session: Session
    clock: Clock
    audit: Auditor
    directory: DirectoryService
    access: EndsAccess

    # -- refusals ----------------------------------------------------------------

    def _refuse(
        self,
        actor: Principal,
        act: Act | str,
        *,
        subject_type: str,
        subject_id: object,
        why: str = "not allowed",
        message: str | None = None,
    ) -> NotAllowed:
        self.audit.record(
            "admin:refused",
            "refused",
            subject_type=subject_type,
            subject_id=subject_id,
            actor_id=actor.person_id or None,
            actor_label=actor.username,
            detail={"act": str(act), "reason": why},
        )
        self.session.commit()
        return NotAllowed(message)

    def _require_a_person(self, actor: Principal, act: Act, organisation_id: int) -> None:
        """Positions are asked for and decided by people, each of whom is on the
        record: an application acting for itself (person id 0) cannot be the second
        pair of eyes, nor be held to separation of duties."""
        if not actor.person_id:
            raise self._refuse(
                actor,
                act,
                subject_type="organisation",
                subject_id=organisation_id,
                why="not a person",
                message="A person must do this, not an application",
            )

    # -- organisations -------------------------------------------------------------

    def organisations(self, actor: Principal) -> list[Organisation]:
        """The organisations whose people this actor administers."""
        clause = administered_clause(actor, ROLES_FOR[Act.LIST_PEOPLE])
        stmt = select(Organisation).order_by(Organisation.name)
        if clause is not None:
            stmt = stmt.where(clause)
        return list(self.session.scalars(stmt))

    def organisation_for(self, actor: Principal, act: Act, organisation_id: int) -> Organisation:
        """The organisation, if the actor may do `act` in it; refused alike whether
        it exists or not, so ids reveal nothing."""
        org = self.session.get(Organisation, organisation_id)
        if org is None or not may(actor, act, org):
            raise self._refuse(actor, act, subject_type="organisation", subject_id=organisation_id)
        return org

    # -- people ---------------------------------------------------------------------

    def people(
        self,
        actor: Principal,
        organisation_id: int,
        *,
        query: str = "",
        page: int = 1,
        per_page: int = 50,
    ) -> Page[Person]:
        """The people with a current position in the organisation, by name, a page
        at a time; `query` narrows to those whose names, username or email begin
        with each of its words."""
        page, per_page = page_bounds(page, per_page)
        self.organisation_for(actor, Act.LIST_PEOPLE, organisation_id)
        today = self.clock.today()
        current = [Position.organisation_id == organisation_id, *current_position_filter(today)]
        searching = search_terms(query)
        where = [Person.id.in_(select(Position.person_id).where(*current)), *searching]
        # Ids first, then the rows: sorting narrow rows is what keeps a deep page cheap.
        ids = list(
            self.session.scalars(
                select(Person.id)
                .where(*where)
                .order_by(Person.family_name, Person.given_name, Person.id)
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        )
        if page == 1 and len(ids) < per_page:
            total = len(ids)  # all of them are on this page: no need to count
        elif not searching:
            # Counted from the positions alone (a covering index), not the people.
            total = int(
                self.session.scalar(
                    select(func.count(Position.person_id.distinct())).where(*current)
                )
                or 0
            )
        else:
            total = int(
                self.session.scalar(select(func.count()).select_from(Person).where(*where)) or 0
            )
        rows = {p.id: p for p in self.session.scalars(select(Person).where(Person.id.in_(ids)))}
        items = [rows[i] for i in ids]
        return Page(items, total, page, per_page)

    def may_act_on(self, actor: Principal, act: Act, person: Person) -> bool:
        """Whether the actor may do `act` to the person: never to themselves, and only
        through a current position of theirs in an organisation the actor administers."""
        if actor.person_id == person.id:
            return False
        today = self.clock.today()
        return any(
            may(actor, act, p.organisation) for p in person.positions if p.current_on(today)
        )

    def person_for(self, actor: Principal, act: Act, person_id: int) -> Person:
        """A person the actor may do `act` to: never themselves, only someone with a
        current position in an organisation where they may do it (anyone, for a
        platform admin). To anyone else, refused alike whether the id exists."""
        person = self.session.get(Person, person_id)
        if person is None or not self.may_act_on(actor, act, person):
            message = (
                "You cannot do that to your own account"
                if person is not None and person.id == actor.person_id
                else None
            )
            raise self._refuse(
                actor, act, subject_type="person", subject_id=person_id, message=message
            )
        return person

    def suspend(self, actor: Principal, person_id: int, reason: str) -> Person:
        person = self.person_for(actor, Act.SUSPEND, person_id)
        why = given_reason(reason)
        # A suspension for a lapse or an organisation may be made the admin's own, so
        # that renewal or re-accreditation does not lift it; someone still awaiting
        # activation is closed or loses the position instead.
        if person.status is not PersonStatus.ACTIVE and not (
            person.status is PersonStatus.SUSPENDED
            and not person.status_reason.startswith(ADMIN_SUSPENSION_PREFIX)
        ):
            raise Conflict(f"{person.display_name}'s account is {_words(person.status)}")
        self.directory.set_status(
            person, PersonStatus.SUSPENDED, ADMIN_SUSPENSION_PREFIX + why, tag="admin:suspended"
        )
        self.access.end_all_for(person, "suspended by an administrator")
        return person

    def reinstate(self, actor: Principal, person_id: int, reason: str) -> Person:
        """Lift a suspension an administrator made, if nothing else stands in the
        way. Suspensions for a lapse or a barring are lifted by vetting, never here."""
        person = self.person_for(actor, Act.REINSTATE, person_id)
        why = given_reason(reason)
        if person.status is not PersonStatus.SUSPENDED:
            raise CannotReinstate(f"{person.display_name}'s account is not suspended")
        if not person.status_reason.startswith(ADMIN_SUSPENSION_PREFIX):
            raise CannotReinstate(
                f"{person.display_name} was suspended by vetting ({person.status_reason}): "
                "only a vetting officer can lift that"
            )
        blockers = access_blockers(person, self.clock.today(), ignore_status=True)
        if blockers:
            raise CannotReinstate(
                f"{person.display_name} cannot use the service: {', '.join(blockers)}"
            )
        self.directory.set_status(person, PersonStatus.ACTIVE, why, tag="admin:reinstated")
        return person

    def close(self, actor: Principal, person_id: int, reason: str) -> Person:
        """Close an account for good: the local authority team's decision."""
        person = self.person_for(actor, Act.CLOSE, person_id)
        why = given_reason(reason)
        if person.status is PersonStatus.CLOSED:
            raise Conflict(f"{person.display_name}'s account is already closed")
        self.directory.set_status(person, PersonStatus.CLOSED, why, tag="admin:closed")
        self.access.end_all_for(person, "account closed")
        return person

    # -- positions ------------------------------------------------------------------------

    def position_for(self, actor: Principal, position_id: int) -> Position:
        """A position the actor may end: in an organisation they administer, and
        never their own."""
        position = self.session.get(Position, position_id)
        if (
            position is None
            or not may(actor, Act.END_POSITION, position.organisation)
            or position.person_id == actor.person_id
        ):
            raise self._refuse(
                actor, Act.END_POSITION, subject_type="position", subject_id=position_id
            )
        return position

    def end_position(self, actor: Principal, position_id: int, reason: str) -> Position:
        """End a position from today: the person's access through it stops at once,
        and if it was their last, everything they hold ends too."""
        position = self.position_for(actor, position_id)
        today = self.clock.today()
        why = given_reason(reason)
        if not position.current_on(today) and position.starts_on <= today:
            raise Conflict("That position has already ended")
        position.ends_on = today - timedelta(days=1)
        person = position.person
        self.audit.record(
            "admin:position:ended",
            subject_type="person",
            subject_id=person.id,
            organisation_id=position.organisation_id,
            detail={"position": position.id, "role": position.role.value, "reason": why},
        )
        self.session.flush()
        if not any(p.current_on(today) for p in person.positions):
            self.access.end_all_for(person, "last position ended")
        return position

    def request_position(
        self,
        actor: Principal,
        organisation_id: int,
        *,
        username: str,
        role: Role,
        reason: str,
    ) -> PositionRequest:
        """Ask for a position for someone who already has an identity: a mover from
        another organisation, or a new role. No new vetting while their clearance
        and training are valid; a second person approves."""
        org = self.organisation_for(actor, Act.REQUEST_POSITION, organisation_id)
        self._require_a_person(actor, Act.REQUEST_POSITION, org.id)
        why = given_reason(reason)
        person = self.directory.person_by_username(username)
        if person is None:
            raise InvalidInput(FieldProblem("username", "There is nobody with that username"))
        if person.id == actor.person_id:
            raise self._refuse(
                actor,
                Act.REQUEST_POSITION,
                subject_type="person",
                subject_id=person.id,
                why="own position",
                message="You cannot ask for a position for yourself",
            )
        if role is Role.PLATFORM_ADMIN and not actor.is_platform_admin:
            raise InvalidInput(
                FieldProblem("role", "Only a platform admin can ask for a platform admin")
            )
        self._positionable(person, org, role)
        request = PositionRequest(
            person_id=person.id,
            organisation_id=org.id,
            role=role,
            reason=why,
            state=PositionRequestState.PENDING,
            requested_by_id=actor.person_id,
            requested_at=self.clock.now(),
        )
        self.session.add(request)
        self.session.flush()
        self.audit.record(
            "admin:position:requested",
            subject_type="person",
            subject_id=person.id,
            organisation_id=org.id,
            detail={"request": request.id, "role": role.value, "reason": why},
        )
        return request

    def _positionable(self, person: Person, org: Organisation, role: Role) -> None:
        today = self.clock.today()
        if person.status is PersonStatus.CLOSED:
            raise Conflict(f"{person.display_name}'s account is closed")
        if person.clearance_expires_on is None or person.clearance_expires_on < today:
            raise NeedsVetting(
                f"{person.display_name}'s clearance has lapsed: sponsor an application instead"
            )
        if person.training_expires_on is None or person.training_expires_on < today:
            raise NeedsVetting(
                f"{person.display_name}'s training has lapsed: sponsor an application instead"
            )
        if any(
            p.organisation_id == org.id and p.role is role and p.current_on(today)
            for p in person.positions
        ):
            raise Conflict(f"{person.display_name} already holds that position")

    def position_requests(self, actor: Principal, organisation_id: int) -> list[PositionRequest]:
        self.organisation_for(actor, Act.DECIDE_POSITION, organisation_id)
        return list(
            self.session.scalars(
                select(PositionRequest)
                .where(
                    PositionRequest.organisation_id == organisation_id,
                    PositionRequest.state == PositionRequestState.PENDING,
                )
                .order_by(PositionRequest.id)
            )
        )

    def position_request_for(self, actor: Principal, request_id: int) -> PositionRequest:
        request = self.session.get(PositionRequest, request_id)
        if request is None or not may(actor, Act.DECIDE_POSITION, request.organisation):
            raise UnknownPositionRequest()
        return request

    def decide_position(
        self, actor: Principal, request_id: int, *, approve: bool, reason: str
    ) -> PositionRequest:
        """Approve or refuse, by someone who neither asked nor is the subject."""
        request = self.session.get(PositionRequest, request_id)
        if request is None or not may(actor, Act.DECIDE_POSITION, request.organisation):
            raise self._refuse(
                actor, Act.DECIDE_POSITION, subject_type="position_request", subject_id=request_id
            )
        self._require_a_person(actor, Act.DECIDE_POSITION, request.organisation_id)
        if actor.person_id in (request.requested_by_id, request.person_id):
            raise self._refuse(
                actor,
                Act.DECIDE_POSITION,
                subject_type="position_request",
                subject_id=request_id,
                why="separation of duties",
                message="Someone else must decide: you asked for this position, or it is yours",
            )
        why = given_reason(reason)
        if request.state is not PositionRequestState.PENDING:
            raise Conflict("That request has already been decided")
        if request.role is Role.PLATFORM_ADMIN and not actor.is_platform_admin:
            raise NotAllowed("Only a platform admin can approve a platform admin")
        person = request.person
        if approve:
            self._positionable(person, request.organisation, request.role)
            position = self.directory.add_position(
                person, request.organisation, request.role, self.clock.today()
            )
            request.position_id = position.id
            self.session.refresh(person, ["positions"])
        request.state = PositionRequestState.APPROVED if approve else PositionRequestState.REFUSED
        request.decided_by_id = actor.person_id
        request.decided_at = self.clock.now()
        self.audit.record(
            "admin:position:approved" if approve else "admin:position:refused",
            subject_type="person",
            subject_id=person.id,
            organisation_id=request.organisation_id,
            detail={"request": request.id, "role": request.role.value, "reason": why},
        )
        today = self.clock.today()
        if (
            approve
            and is_suspended_for_organisation(person)
            and not access_blockers(person, today, ignore_status=True)
        ):
            self.directory.set_status(
                person, PersonStatus.ACTIVE, "new position", tag="admin:reinstated:position"
            )
        return request

    # -- the audit trail --------------------------------------------------------------------

    def audit_trail(
        self, actor: Principal, organisation_id: int, *, page: int = 1, per_page: int = 50
    ) -> Page[AuditEntry]:
        """The organisation's audit entries, newest first; reading it is itself audited."""
        page, per_page = page_bounds(page, per_page)
        self.organisation_for(actor, Act.READ_AUDIT, organisation_id)
        where = AuditEntry.organisation_id == organisation_id
        total = int(
            self.session.scalar(select(func.count()).select_from(AuditEntry).where(where)) or 0
        )
        items = list(
            self.session.scalars(
                select(AuditEntry)
                .where(where)
                .order_by(AuditEntry.seq.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        )
        self.audit.record(
            "admin:audit:read",
            subject_type="organisation",
            subject_id=organisation_id,
            organisation_id=organisation_id,
            detail={"page": page},
        )
        return Page(items, total, page, per_page)


def _words(status: PersonStatus) -> str:
    return status.value.replace("_", " ")
