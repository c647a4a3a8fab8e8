"""Rules about who exists, where they work, and whether they may act.

`access_blockers` is the one answer to "may this person use the service
today?": sign-in, every request, the lapse sweep and (later) token issuance all
ask it, so a rule added here is enforced everywhere at once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, joinedload

from core.audit import Auditor
from core.clock import Clock
from core.errors import NotAllowed
from directory.errors import UnknownOrganisation, UnknownPerson
from directory.models import (
    Accreditation,
    Organisation,
    OrganisationKind,
    Person,
    PersonStatus,
    Position,
    Role,
)


def fold_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username).strip().casefold()


@dataclass(frozen=True)
class Grant:
    organisation_id: int
    role: Role


@dataclass(frozen=True)
class Principal:
    """The acting person as plain values: what domain services authorise against."""

    person_id: int
    username: str
    grants: tuple[Grant, ...]

    def has_role(self, role: Role, organisation_id: int | None = None) -> bool:
        return any(
            g.role is role and (organisation_id is None or g.organisation_id == organisation_id)
            for g in self.grants
        )

    def organisations_with(self, role: Role) -> set[int]:
        return {g.organisation_id for g in self.grants if g.role is role}

    @property
    def is_platform_admin(self) -> bool:
        return self.has_role(Role.PLATFORM_ADMIN)

    def require(self, role: Role, organisation_id: int | None = None) -> None:
        if not self.has_role(role, organisation_id):
            raise NotAllowed()


def current_positions(person: Person, today: date) -> list[Position]:
    return [
        p
        for p in person.positions
        if p.current_on(today) and p.organisation.accreditation is Accreditation.ACCREDITED
    ]


def access_blockers(person: Person, today: date, *, ignore_status: bool = False) -> list[str]:
    """Every reason this person may not use the service today; empty if none.

    `ignore_status` asks whether anything but the account's own status stands
    in the way: what activation and reinstatement need to know."""
    return blockers_for(
        person.status,
        person.clearance_expires_on,
        person.training_expires_on,
        [
            PositionTerms(p.starts_on, p.ends_on, p.organisation_id, p.organisation.accreditation)
            for p in person.positions
        ],
        today,
        ignore_status=ignore_status,
    )


@dataclass(frozen=True)
class PositionTerms:
    """What access turns on in a position, as plain values (one row of a join)."""

    starts_on: date
    ends_on: date | None
    organisation_id: int
    accreditation: Accreditation

    def current_on(self, day: date) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)

    def counts_on(self, day: date) -> bool:
        """Current, in an accredited organisation: what `current_positions`
        keeps, on plain values."""
        return self.current_on(day) and self.accreditation is Accreditation.ACCREDITED


def blockers_for(
    status: PersonStatus,
    clearance_expires_on: date | None,
    training_expires_on: date | None,
    positions: Iterable[PositionTerms],
    today: date,
    *,
    ignore_status: bool = False,
) -> list[str]:
    """The rules of `access_blockers` on plain values, for callers (sign-in)
    that read a person's row and positions with one statement, not the ORM."""
    reasons: list[str] = []
    if not ignore_status and status is not PersonStatus.ACTIVE:
        reasons.append(f"account {status.value.replace('_', ' ')}")
    if clearance_expires_on is None or clearance_expires_on < today:
        reasons.append("clearance lapsed")
    if training_expires_on is None or training_expires_on < today:
        reasons.append("training lapsed")
    current = [p for p in positions if p.current_on(today)]
    if not current:
        reasons.append("no current position")
    elif not any(p.accreditation is Accreditation.ACCREDITED for p in current):
        reasons.append("organisation not accredited")
    return reasons


def usable_clause(today: date | ColumnElement[date]) -> ColumnElement[bool]:
    """`access_blockers(person, today) == []` as SQL, for the hot paths (token
    refresh) that must not load a person and their positions to ask. Kept beside
    the rule it mirrors; a test holds the two to the same answers."""
    placed = (
        select(Position.id)
        .join(Organisation, Organisation.id == Position.organisation_id)
        .where(
            Position.person_id == Person.id,
            Position.starts_on <= today,
            or_(Position.ends_on.is_(None), Position.ends_on >= today),
            Organisation.accreditation == Accreditation.ACCREDITED,
        )
        .exists()
    )
    return and_(
        Person.status == PersonStatus.ACTIVE,
        Person.clearance_expires_on >= today,
        Person.training_expires_on >= today,
        placed,
    )


ADMINISTERING = frozenset({Role.ORGANISATION_ADMIN, Role.LOCAL_AUTHORITY_TEAM})


def administers(
    actor: Principal, organisation: Organisation, roles: frozenset[Role] = ADMINISTERING
) -> bool:
    """Whether the actor administers the organisation's people, holding one of `roles`.

    The one rule of delegated administration: an organisation admin acts in their
    own organisation; a local authority team in its own authority and in every
    organisation whose registration authority that is (DOMAIN.md: the team
    creates, suspends and closes accounts in its area, and issue 5 gives it what an
    organisation admin has there); a platform admin everywhere."""
    if actor.is_platform_admin:
        return True
    if any(g.role in roles and g.organisation_id == organisation.id for g in actor.grants):
        return True
    return (
        Role.LOCAL_AUTHORITY_TEAM in roles
        and organisation.registration_authority_id is not None
        and organisation.registration_authority_id
        in actor.organisations_with(Role.LOCAL_AUTHORITY_TEAM)
    )


def administered_clause(
    actor: Principal, roles: frozenset[Role] = ADMINISTERING
) -> ColumnElement[bool] | None:
    """`administers` as SQL over Organisation, for lists; None means every organisation."""
    if actor.is_platform_admin:
        return None
    held = {g.organisation_id for g in actor.grants if g.role in roles}
    clause: ColumnElement[bool] = Organisation.id.in_(held)
    teams = actor.organisations_with(Role.LOCAL_AUTHORITY_TEAM)
    if Role.LOCAL_AUTHORITY_TEAM in roles and teams:
        clause = clause | Organisation.registration_authority_id.in_(teams)
    return clause


def require_admin_over(actor: Principal, person: Person, today: date) -> None:
    """Admins act on people with a current position in an organisation they
    administer (`administers`); never on themselves (separation of duties), and
    platform admins on anyone else."""
    if actor.person_id == person.id:
        raise NotAllowed("You cannot do that to your own account")
    if not any(
        administers(actor, p.organisation) for p in person.positions if p.current_on(today)
    ):
        raise NotAllowed()


def principal_for(person: Person, today: date) -> Principal:
    grants = tuple(Grant(p.organisation_id, p.role) for p in current_positions(person, today))
    return Principal(person_id=person.id, username=person.username, grants=grants)


_USERNAME_SAFE = re.compile(r"[^a-z0-9]+")


def _ascii_slug(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_only = decomposed.encode("ascii", "ignore").decode().lower()
    return _USERNAME_SAFE.sub("", ascii_only)


@dataclass
class DirectoryService:
    session: Session
    clock: Clock
    audit: Auditor

    def organisation(self, organisation_id: int) -> Organisation:
        org = self.session.get(Organisation, organisation_id)
        if org is None:
            raise UnknownOrganisation()
        return org

    def organisation_by_code(self, code: str) -> Organisation:
        org = self.session.scalar(select(Organisation).where(Organisation.code == code))
        if org is None:
            raise UnknownOrganisation(f"no organisation with code {code!r}")
        return org

    def organisations(self) -> list[Organisation]:
        return list(self.session.scalars(select(Organisation).order_by(Organisation.name)))

    def create_organisation(
        self,
        *,
        code: str,
        name: str,
        kind: OrganisationKind,
        accredited: bool,
        registration_authority: Organisation | None = None,
    ) -> Organisation:
        now = self.clock.now()
        org = Organisation(
            code=code,
            name=name,
            kind=kind,
            accreditation=Accreditation.ACCREDITED if accredited else Accreditation.PENDING,
            accreditation_changed_at=now,
            accredited_on=now.date() if accredited else None,
            registration_authority_id=registration_authority.id if registration_authority else None,
        )
        self.session.add(org)
        self.session.flush()
        if org.registration_authority_id is None:
            org.registration_authority_id = org.id
        self.audit.record(
            "organisation:created",
            subject_type="organisation",
            subject_id=org.id,
            organisation_id=org.id,
            detail={"code": code, "kind": kind.value, "accreditation": org.accreditation.value},
        )
        return org

    def person(self, person_id: int) -> Person:
        # Positions come in the same query: every caller asks about access next.
        person = self.session.get(Person, person_id, options=[joinedload(Person.positions)])
        if person is None:
            raise UnknownPerson()
        return person

    def person_by_username(self, username: str) -> Person | None:
        return self.session.scalar(
            select(Person)
            .options(joinedload(Person.positions))
            .where(Person.username_folded == fold_username(username))
        )

    def username_for(self, given_name: str, family_name: str) -> str:
        """given.family, with a number added when that is taken."""
        base = f"{_ascii_slug(given_name)}.{_ascii_slug(family_name)}".strip(".") or "user"
        base = base[:56]
        taken = set(
            self.session.scalars(
                select(Person.username_folded).where(Person.username_folded.like(f"{base}%"))
            )
        )
        if base not in taken:
            return base
        suffix = 2
        while f"{base}{suffix}" in taken:
            suffix += 1
        return f"{base}{suffix}"

    def create_person(
        self,
        *,
        given_name: str,
        family_name: str,
        work_email: str,
        work_phone: str | None,
        clearance_expires_on: date,
        training_expires_on: date,
        username: str | None = None,
    ) -> Person:
        now = self.clock.now()
        chosen = username or self.username_for(given_name, family_name)
        person = Person(
            username=chosen,
            username_folded=fold_username(chosen),
            given_name=given_name,
            family_name=family_name,
            work_email=work_email,
            work_phone=work_phone,
            status=PersonStatus.AWAITING_ACTIVATION,
            status_reason="enrolled after clearance",
            status_changed_at=now,
            security_epoch=1,
            clearance_expires_on=clearance_expires_on,
            training_expires_on=training_expires_on,
            created_at=now,
        )
        self.session.add(person)
        self.session.flush()
        return person

    def add_position(
        self, person: Person, organisation: Organisation, role: Role, starts_on: date
    ) -> Position:
        position = Position(
            person=person, organisation=organisation, role=role, starts_on=starts_on
        )
        self.session.add(position)
        self.session.flush()
        return position

    def set_status(self, person: Person, status: PersonStatus, reason: str, *, tag: str) -> None:
        """Change status; leaving `active` ends every session and token at once."""
        previous = person.status
        person.status = status
        person.status_reason = reason
        person.status_changed_at = self.clock.now()
        if status is not PersonStatus.ACTIVE:
            person.security_epoch += 1
        self.audit.record(
            tag,
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            detail={"from": previous.value, "to": status.value, "reason": reason},
        )

    def end_all_sessions(self, person: Person) -> None:
        person.security_epoch += 1

    def administers(self, actor: Principal, organisation_id: int | None) -> bool:
        """`administers` for an organisation known by its id (False if there is none)."""
        if actor.is_platform_admin:
            return True
        org = self.session.get(Organisation, organisation_id) if organisation_id else None
        return org is not None and administers(actor, org)

    def administered_organisations(self, actor: Principal) -> list[Organisation]:
        """The organisations the actor administers through their own positions, for a
        page to choose from. A platform admin may act anywhere, but is offered only
        these: a list of every organisation in the country helps nobody."""
        own = Principal(
            actor.person_id,
            actor.username,
            tuple(g for g in actor.grants if g.role is not Role.PLATFORM_ADMIN),
        )
        clause = administered_clause(own)
        assert clause is not None  # without the platform grant, never everything
        return list(
            self.session.scalars(select(Organisation).where(clause).order_by(Organisation.name))
        )

    def people_administered_by(self, actor: Principal, today: date) -> list[Person]:
        """People with a current position in an organisation the actor administers."""
        stmt = (
            select(Person)
            .join(Position)
            .join(Organisation, Organisation.id == Position.organisation_id)
            .order_by(Person.family_name, Person.given_name)
        )
        clause = administered_clause(actor)
        if clause is not None:
            if not any(g.role in ADMINISTERING for g in actor.grants):
                raise NotAllowed()
            stmt = stmt.where(
                clause,
                Position.starts_on <= today,
                (Position.ends_on.is_(None)) | (Position.ends_on >= today),
            )
        return list(self.session.scalars(stmt.distinct()))

    def people_needing_sweep(self) -> list[Person]:
        stmt = select(Person).where(Person.status == PersonStatus.ACTIVE).order_by(Person.id)
        return list(self.session.scalars(stmt))

    def count_people(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(Person)) or 0)


def home_organisation(person: Person, today: date) -> int | None:
    """The organisation an entry about the person is filed under, so that it shows
    on that organisation's audit trail: the first current position's, else the
    first position's of any date."""
    chosen = [p for p in person.positions if p.current_on(today)] or person.positions
    return chosen[0].organisation_id if chosen else None
