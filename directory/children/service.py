"""Every rule about child records: who may search and view, what each of them
sees, shielding, brokered contact, anomaly alerts and retention.

The pages, the CLI and (later) the API are thin layers over this service: each
call takes a `Principal`, a `Reason` and plain query values. Access is decided
afresh from the database on every call (a clearance that lapsed this morning
counts), and every search and view is audited with its criteria and reason,
whether it found anything or not. Refusals are audited and committed before
the error is raised, since the request itself will fail.

Shielding is enforced in the query, not after it: a search on a hidden field
(postcode district, school, GP practice, any service) adds a condition that
leaves shielded records out before counting, sorting and paging, so no total,
order or page boundary can give one away. Sort orders use visible fields only.
"""

from __future__ import annotations

import enum
import hmac
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, union, update
from sqlalchemy.orm import Session

from core.audit import AuditEntry, Auditor
from core.clock import Clock
from core.crypto import DataCipher, SecretDigester
from core.errors import FieldProblem, InvalidInput, NotAllowed, NotFound
from core.settings import ChildrenSettings
from directory.administration import Act, may
from directory.children.errors import AlreadyDecided, NoChildAccess, UnknownChild, UnknownRequest
from directory.children.loading import ChildLoader
from directory.children.models import (
    Child,
    ChildAlert,
    ChildArea,
    ChildConflict,
    ChildFormerName,
    ChildInvolvement,
    ChildRight,
    ChildRightKind,
    ChildSupply,
    ContactRequest,
    InvolvementRole,
    SensitiveBasis,
    ShieldDecision,
)
from directory.children.rules import district_key, months_after, name_key, years_before
from directory.models import (
    Organisation,
    OrganisationKind,
    Person,
    PersonStatus,
    Position,
    Role,
)
from directory.service import (
    DirectoryService,
    PositionTerms,
    Principal,
    blockers_for,
)
from directory.services import home_postcode_key
from directory.services_models import Service

# Roles whose work is with children; admins and vetting officers have no need.
CHILD_ROLES = frozenset({Role.PRACTITIONER, Role.LOCAL_AUTHORITY_TEAM})


class ReasonCode(enum.StrEnum):
    CHILD_PROTECTION = "child_protection"
    REFERRAL = "referral"
    ASSESSMENT = "assessment"
    SERVICE_COORDINATION = "service_coordination"
    CONTACT_PRACTITIONER = "contact_practitioner"
    DATA_QUALITY = "data_quality"


REASON_LABELS = {
    ReasonCode.CHILD_PROTECTION: "Child protection enquiry",
    ReasonCode.REFERRAL: "A referral received about the child",
    ReasonCode.ASSESSMENT: "Starting or contributing to an assessment",
    ReasonCode.SERVICE_COORDINATION: "Coordinating services for the child",
    ReasonCode.CONTACT_PRACTITIONER: "Contacting another practitioner involved",
    ReasonCode.DATA_QUALITY: "Data quality work by the local authority team",
}


class ShieldCriteria(enum.StrEnum):
    DOMESTIC_ABUSE = "domestic_abuse"
    RISK_OF_SIGNIFICANT_HARM = "risk_of_significant_harm"
    COURT_ORDER = "court_order"
    WITNESS_PROTECTION = "witness_protection"


class AlertRule(enum.StrEnum):
    OWN_SURNAME = "own_surname"
    VOLUME = "volume"
    OUT_OF_HOURS = "out_of_hours"
    OUT_OF_AREA = "out_of_area"
    SHIELD_OVERRIDE = "shield_override"
    OWN_ADDRESS = "own_address"


class SortOrder(enum.StrEnum):
    NAME = "name"
    DATE_OF_BIRTH = "date_of_birth"


@dataclass(frozen=True)
class Reason:
    code: str
    detail: str


@dataclass(frozen=True)
class ChildQuery:
    """What a practitioner searches by. The surname is required (current or
    former); the rest narrow it. District, school, GP and service are hidden
    fields of a shielded record."""

    surname: str = ""
    forename: str = ""
    date_of_birth: date | None = None
    postcode_district: str = ""
    school_service_id: int | None = None
    gp_service_id: int | None = None
    service_id: int | None = None
    sort: str = SortOrder.NAME.value
    page: int = 1

    def criteria(self) -> dict[str, Any]:
        """The criteria as the audit log keeps them."""
        return {
            k: (v.isoformat() if isinstance(v, date) else v)
            for k, v in {
                "surname": self.surname,
                "forename": self.forename,
                "date_of_birth": self.date_of_birth,
                "postcode_district": self.postcode_district,
                "school_service_id": self.school_service_id,
                "gp_service_id": self.gp_service_id,
                "service_id": self.service_id,
                "sort": self.sort,
                "page": self.page,
            }.items()
            if v not in (None, "")
        }

    @property
    def uses_hidden_fields(self) -> bool:
        return bool(
            self.postcode_district.strip()
            or self.school_service_id is not None
            or self.gp_service_id is not None
            or self.service_id is not None
        )


@dataclass(frozen=True)
class ChildSummary:
    """One search result: what anybody may see of any record."""

    public_id: str
    identifier: str
    forename: str
    surname: str
    gender: str
    date_of_birth: date
    restricted: bool


@dataclass(frozen=True)
class ChildPage:
    items: list[ChildSummary]
    total: int
    page: int
    per_page: int
    too_many: bool = False

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if not self.too_many else 1


@dataclass(frozen=True)
class InvolvementView:
    service_name: str
    service_kind: str
    organisation_name: str
    phone: str
    secure_email: str | None
    practitioner_name: str | None
    practitioner_email: str | None
    role: str
    starts_on: date | None
    ends_on: date | None
    lead_professional: bool
    assessment_held: bool
    sensitive: bool


@dataclass(frozen=True)
class ChildView:
    """A record as one actor may see it. `restricted` views (a shielded record
    seen by an ordinary user) carry only name, gender, date of birth, the
    identifier and one parent's name; every other field is empty."""

    public_id: str
    identifier: str
    forename: str
    surname: str
    gender: str
    date_of_birth: date
    parent_name: str | None
    restricted: bool
    shielded: bool
    override_used: bool = False
    responsible_la: str | None = None
    former_names: list[str] = field(default_factory=list)
    date_of_death: date | None = None
    whereabouts: str | None = None
    address: dict[str, str] | None = None
    return_intention: str | None = None
    carers: list[dict[str, str]] = field(default_factory=list)
    involvements: list[InvolvementView] = field(default_factory=list)
    source_identifiers: list[tuple[str, str]] = field(default_factory=list)
    retain_to_25: bool = False
    # What the page may offer: the responsible team's decisions, the override.
    responsible_team: bool = False
    may_override: bool = False


@dataclass(frozen=True)
class RetentionReport:
    archived_at_age: int
    archived_after_death: int
    purged: int
    dry_run: bool


@dataclass(frozen=True)
class ActingPerson:
    """What the rules need of the acting person, read as plain values."""

    id: int
    username: str
    status: PersonStatus
    family_name: str
    home_postcode_key: str | None


@dataclass(frozen=True)
class HomeOrganisation:
    """The organisation of the actor's first current position with children's
    work: whose team hears of their anomalies."""

    id: int
    kind: OrganisationKind
    registration_authority_id: int | None


@dataclass(frozen=True)
class Actor:
    """The acting person as read afresh for this call."""

    person: ActingPerson
    organisation_ids: frozenset[int]
    team_las: frozenset[int]
    rights: frozenset[ChildRightKind]
    home_org: HomeOrganisation

    @property
    def is_team(self) -> bool:
        return bool(self.team_las)


_person = Person.__table__
_position = Position.__table__
_organisation = Organisation.__table__
# Built once: every search and view reads the actor afresh, and through the
# ORM (the person, their positions, each position's organisation) that read
# was a third of a search's CPU. Flat left joins, so that SQLite walks the
# person's own positions by index.
_ACTOR_READ = (
    select(
        _person.c.id, _person.c.username, _person.c.status, _person.c.family_name,
        _person.c.home_postcode_key, _person.c.clearance_expires_on,
        _person.c.training_expires_on,
        _position.c.starts_on, _position.c.ends_on, _position.c.organisation_id,
        _position.c.role, _organisation.c.accreditation, _organisation.c.kind,
        _organisation.c.registration_authority_id,
    )
    .select_from(
        _person.outerjoin(_position, _position.c.person_id == _person.c.id)
        .outerjoin(_organisation, _organisation.c.id == _position.c.organisation_id)
    )
    .where(_person.c.id == bindparam("person_id"))
    .order_by(_position.c.id)
)
_ACTOR_RIGHTS = select(ChildRight.kind).where(ChildRight.person_id == bindparam("person_id"))
# The anomaly rules' reads, built once too: they run after every search and view.
_RECENT_ALERT = (
    select(ChildAlert.id)
    .where(ChildAlert.person_id == bindparam("person_id"), ChildAlert.rule == bindparam("rule"),
           ChildAlert.raised_at >= bindparam("since"))
    .limit(1)
)
_RECENT_USE = select(func.count()).select_from(
    select(AuditEntry.seq)
    .where(AuditEntry.actor_id == bindparam("person_id"),
           AuditEntry.tag.in_(("children:search", "children:view")),
           AuditEntry.outcome == "success", AuditEntry.at >= bindparam("since"))
    .limit(bindparam("cap"))
    .subquery()
)
_AREA_OF = select(ChildArea.postcode_district).where(
    ChildArea.organisation_id.in_(bindparam("organisation_ids", expanding=True))
)


@dataclass(frozen=True)
class ContactRequestView:
    id: int
    child_public_id: str
    child_name: str
    requester: str
    requester_email: str
    organisation_id: int
    message: str
    status: str
    response: str | None
    created_at: datetime
    decided_at: datetime | None


@dataclass(frozen=True)
class StaffAlert:
    """An alert about one of an organisation's own staff, as their manager sees
    it: who, which rule, when, whether the account was suspended and which team
    investigates. Never the child or the search: a manager has no need to know
    whom the person looked for, and the investigating team has it all."""

    id: int
    rule: str
    raised_at: datetime
    person_id: int
    username: str
    person_name: str
    suspended: bool
    team: str
    closed_at: datetime | None


def _via(client_id: str | None) -> dict[str, str]:
    """The audit detail naming the relying application that acted for the person."""
    return {"client_id": client_id} if client_id else {}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class ChildrenService:
    session: Session
    clock: Clock
    audit: Auditor
    cipher: DataCipher
    settings: ChildrenSettings
    directory: DirectoryService
    digester: SecretDigester

    # --- who may do what -------------------------------------------------

    def _refuse(self, tag: str, actor: Principal, detail: dict[str, Any]) -> None:
        """Audit a refusal and commit it: the caller's request fails."""
        self.audit.record(
            tag, "refused", subject_type="person", subject_id=actor.person_id,
            actor_id=actor.person_id or None, actor_label=actor.username, detail=detail,
        )
        self.session.commit()

    def _actor(self, principal: Principal, tag: str = "children:access",
               via: dict[str, str] | None = None) -> Actor:
        """An active person with a current position, valid clearance and
        training, and a role whose work is with children. `via` names the
        relying application acting for them, for the audit log."""
        connection = self.session.connection()
        rows = connection.execute(_ACTOR_READ, {"person_id": principal.person_id}).all()
        today = self.clock.today()
        if not rows:
            self._refuse(tag, principal, {"why": "unknown person", **(via or {})})
            raise NoChildAccess()
        first = rows[0]
        held = [row for row in rows if row.organisation_id is not None]
        terms = [PositionTerms(row.starts_on, row.ends_on, row.organisation_id, row.accreditation)
                 for row in held]
        blockers = blockers_for(first.status, first.clearance_expires_on,
                                first.training_expires_on, terms, today)
        positions = [row for row, term in zip(held, terms, strict=True)
                     if term.counts_on(today) and row.role in CHILD_ROLES]
        if blockers or not positions:
            self._refuse(tag, principal, {"why": blockers or ["no role with access to children"],
                                          **(via or {})})
            raise NoChildAccess()
        rights = frozenset(connection.scalars(_ACTOR_RIGHTS, {"person_id": first.id}))
        home = positions[0]
        return Actor(
            person=ActingPerson(first.id, first.username, first.status, first.family_name,
                                first.home_postcode_key),
            organisation_ids=frozenset(row.organisation_id for row in positions),
            team_las=frozenset(
                row.organisation_id for row in positions
                if row.role is Role.LOCAL_AUTHORITY_TEAM
                and row.kind is OrganisationKind.LOCAL_AUTHORITY
            ),
            rights=rights,
            home_org=HomeOrganisation(home.organisation_id, home.kind,
                                      home.registration_authority_id),
        )

    def _team(self, principal: Principal, la_id: int | None = None) -> Actor:
        actor = self._actor(principal, "children:team")
        if not actor.team_las or (la_id is not None and la_id not in actor.team_las):
            self._refuse("children:team", principal, {"why": "not the responsible team",
                                                       "la": la_id})
            raise NotAllowed()
        return actor

    def _reason(self, reason: Reason | None) -> Reason:
        problems: list[FieldProblem] = []
        if reason is None or reason.code not in {c.value for c in ReasonCode}:
            problems.append(FieldProblem("reason", "select a reason"))
        detail = (reason.detail if reason else "").strip()
        if len(detail) < self.settings.reason_detail_min_length:
            problems.append(FieldProblem(
                "reason_detail",
                f"give the detail of your reason in {self.settings.reason_detail_min_length} "
                "characters or more",
            ))
        elif len(detail) > 300:
            problems.append(FieldProblem("reason_detail", "must be 300 characters or fewer"))
        if problems:
            raise InvalidInput(problems)
        assert reason is not None
        return Reason(reason.code, detail)

    # --- search ------------------------------------------------------------

    def search(self, principal: Principal, reason: Reason | None, query: ChildQuery, *,
               client_id: str | None = None) -> ChildPage:
        """`client_id` is the relying application searching for the person
        (the API); it joins the audit entry, refused or not."""
        via = _via(client_id)
        actor = self._actor(principal, "children:search", via)
        try:
            given = self._reason(reason)
        except InvalidInput:
            self._refuse("children:search", principal,
                         {"why": "no reason", "criteria": query.criteria(), **via})
            raise
        surname = name_key(query.surname)
        if len(surname) < 2:
            raise InvalidInput(FieldProblem("surname", "enter a surname (current or former)"))
        per_page = self.settings.page_size
        conds: list[Any] = [Child.archived_on.is_(None)]
        if query.date_of_birth is not None:
            conds.append(Child.date_of_birth == query.date_of_birth)
        forename = name_key(query.forename)
        if forename:
            conds.append(Child.forename_key.like(f"{_escape_like(forename)}%", escape="\\"))
        district = district_key(query.postcode_district) if query.postcode_district.strip() else ""
        if district:
            conds.append(Child.postcode_district == district)
        for service_id, role in (
            (query.school_service_id, InvolvementRole.EDUCATIONAL_SETTING),
            (query.gp_service_id, InvolvementRole.GP_PRACTICE),
            (query.service_id, None),
        ):
            if service_id is None:
                continue
            inv = [ChildInvolvement.child_id == Child.id, ChildInvolvement.service_id == service_id]
            if role is not None:
                inv.append(ChildInvolvement.role == role)
            # A sensitive service never finds a child for anyone but the responsible team.
            inv.append(or_(ChildInvolvement.sensitive.is_(False),
                           Child.responsible_la_id.in_(actor.team_las or {-1})))
            conds.append(exists().where(*inv))
        if query.uses_hidden_fields:
            conds.append(or_(Child.shielded.is_(False),
                             Child.responsible_la_id.in_(actor.team_las or {-1})))
        current = select(Child.id.label("id")).where(Child.surname_key == surname, *conds)
        # The former name's own copies of the search keys narrow it in its index
        # first; the child's conditions (archive, shielding, services) still apply.
        former_keys = [ChildFormerName.surname_key == surname]
        if query.date_of_birth is not None:
            former_keys.append(ChildFormerName.date_of_birth == query.date_of_birth)
        if district:
            former_keys.append(ChildFormerName.postcode_district == district)
        former = (
            select(Child.id.label("id"))
            .join(ChildFormerName, ChildFormerName.child_id == Child.id)
            .where(*former_keys, *conds)
        )
        ids = union(current, former).subquery()
        total = int(self.session.scalar(select(func.count()).select_from(ids)) or 0)
        too_many = total > self.settings.max_results
        items: list[ChildSummary] = []
        page = 1
        if not too_many and total:
            page = max(1, min(query.page, math.ceil(total / per_page)))
            order = (
                (Child.date_of_birth, Child.surname_key, Child.forename_key, Child.id)
                if query.sort == SortOrder.DATE_OF_BIRTH.value
                else (Child.surname_key, Child.forename_key, Child.date_of_birth, Child.id)
            )
            rows = self.session.scalars(
                select(Child).where(Child.id.in_(select(ids.c.id)))
                .order_by(*order).offset((page - 1) * per_page).limit(per_page)
            )
            for child in rows:
                items.append(ChildSummary(
                    child.public_id, child.identifier, child.forename, child.surname,
                    child.gender.value, child.date_of_birth, self._restricted(actor, child),
                ))
        self.audit.record(
            "children:search",
            subject_type="child_search",
            organisation_id=actor.home_org.id,
            actor_id=actor.person.id,
            actor_label=actor.person.username,
            detail={
                "reason": given.code, "reason_detail": given.detail,
                "criteria": query.criteria(), "found": total, "too_many": too_many,
                "shown": [c.identifier for c in items], **via,
            },
        )
        self._anomalies(actor, surname=surname, district=district or None, child=None)
        return ChildPage(items, 0 if too_many else total, page, per_page, too_many)

    def _restricted(self, actor: Actor, child: Child) -> bool:
        return child.shielded and child.responsible_la_id not in actor.team_las

    # --- view ----------------------------------------------------------------

    def _child(self, public_id: str) -> Child:
        child = self.session.scalar(select(Child).where(Child.public_id == public_id))
        if child is None or child.archived_on is not None:
            raise UnknownChild()
        return child

    def view(
        self, principal: Principal, reason: Reason | None, public_id: str, *,
        override: bool = False, client_id: str | None = None,
    ) -> ChildView:
        """`client_id` as for `search`."""
        via = _via(client_id)
        actor = self._actor(principal, "children:view", via)
        try:
            given = self._reason(reason)
        except InvalidInput:
            self._refuse("children:view", principal,
                         {"why": "no reason", "child": public_id[:80], **via})
            raise
        try:
            child = self._child(public_id)
        except UnknownChild:
            self.audit.record(
                "children:view", "not_found", subject_type="child", subject_id=public_id[:80],
                organisation_id=actor.home_org.id, actor_id=actor.person.id,
                actor_label=actor.person.username,
                detail={"reason": given.code, "reason_detail": given.detail, **via},
            )
            self.session.commit()
            raise
        restricted = self._restricted(actor, child)
        override_used = False
        if restricted and override:
            if ChildRightKind.SHIELD_OVERRIDE not in actor.rights:
                self._refuse("children:shield_override", principal,
                             {"why": "no shield-override right", "child": child.identifier,
                              **via})
                raise NotAllowed()
            restricted = False
            override_used = True
        self.audit.record(
            "children:view",
            subject_type="child",
            subject_id=child.identifier,
            organisation_id=child.responsible_la_id,
            actor_id=actor.person.id,
            actor_label=actor.person.username,
            detail={"reason": given.code, "reason_detail": given.detail,
                    "restricted": restricted, "override": override_used, **via},
        )
        if override_used:
            self.audit.record(
                "children:shield_override", "success",
                subject_type="child", subject_id=child.identifier,
                organisation_id=child.responsible_la_id,
                actor_id=actor.person.id, actor_label=actor.person.username,
                detail={"reason": given.code, "reason_detail": given.detail, **via},
            )
            self._alert(actor, AlertRule.SHIELD_OVERRIDE, child.responsible_la_id, child,
                        {"reason": given.code, "reason_detail": given.detail})
        self._anomalies(actor, surname=child.surname_key, district=child.postcode_district,
                        child=child)
        return self._render(actor, child, restricted, override_used)

    def _carers(self, child: Child) -> list[dict[str, str]]:
        if not child.carers_enc:
            return []
        loaded: list[dict[str, str]] = json.loads(
            self.cipher.decrypt_text(child.carers_enc, f"child:{child.public_id}:carers")
        )
        return loaded

    def _render(self, actor: Actor, child: Child, restricted: bool, override: bool) -> ChildView:
        carers = self._carers(child)
        parent = carers[0]["name"] if carers else None
        base: dict[str, Any] = {
            "public_id": child.public_id, "identifier": child.identifier,
            "forename": child.forename, "surname": child.surname,
            "gender": child.gender.value, "date_of_birth": child.date_of_birth,
            "parent_name": parent, "restricted": restricted, "shielded": child.shielded,
            "override_used": override,
            "responsible_team": child.responsible_la_id in actor.team_las,
            "may_override": ChildRightKind.SHIELD_OVERRIDE in actor.rights,
        }
        if restricted:
            return ChildView(**base)
        team = child.responsible_la_id in actor.team_las
        address = None
        if child.address_enc:
            address = json.loads(
                self.cipher.decrypt_text(child.address_enc, f"child:{child.public_id}:address")
            )
        former = [
            f"{n.forename} {n.surname}"
            for n in self.session.scalars(
                select(ChildFormerName).where(ChildFormerName.child_id == child.id)
                .order_by(ChildFormerName.id)
            )
        ]
        involvements = []
        stmt = (
            select(ChildInvolvement, Service, Person)
            .join(Service, Service.id == ChildInvolvement.service_id)
            .outerjoin(Person, Person.id == ChildInvolvement.practitioner_id)
            .where(ChildInvolvement.child_id == child.id)
            .order_by(ChildInvolvement.role, ChildInvolvement.starts_on, ChildInvolvement.id)
        )
        for inv, service, person in self.session.execute(stmt):
            if inv.sensitive and not team:
                continue  # readable only by the responsible local authority team
            involvements.append(InvolvementView(
                service.name, service.kind.value, service.organisation.name, service.phone,
                service.secure_email, person.display_name if person else None,
                person.work_email if person else None, inv.role.value, inv.starts_on,
                inv.ends_on, inv.lead_professional, inv.assessment_held, inv.sensitive,
            ))
        sources = []
        for supply in self.session.scalars(
            select(ChildSupply).where(
                ChildSupply.child_id == child.id,
                ChildSupply.organisation_id.in_(actor.organisation_ids),
                ChildSupply.id_enc.is_not(None),
            )
        ):
            assert supply.id_enc is not None
            sources.append((supply.scheme or "", self.cipher.decrypt_text(
                supply.id_enc, f"child:{child.public_id}:source:{supply.organisation_id}")))
        la = self.session.get(Organisation, child.responsible_la_id)
        return ChildView(
            **base,
            responsible_la=la.name if la else None,
            former_names=former,
            date_of_death=child.date_of_death,
            whereabouts=child.whereabouts.value,
            address=address,
            return_intention=child.return_intention.value if child.return_intention else None,
            carers=carers,
            involvements=involvements,
            source_identifiers=sources,
            retain_to_25=child.retain_to_25,
        )

    # --- recording services around a child --------------------------------

    def record_involvement(
        self,
        principal: Principal,
        public_id: str,
        service_id: int,
        *,
        role: InvolvementRole = InvolvementRole.SERVICE,
        starts_on: date | None = None,
        ends_on: date | None = None,
        lead_professional: bool = False,
        assessment_held: bool = False,
        sensitive_basis: SensitiveBasis | None = None,
    ) -> ChildInvolvement:
        """A practitioner in the service's organisation, or the responsible
        team, records that the service works with the child. A sensitive
        service needs the child's consent or a suspicion of significant harm."""
        actor = self._actor(principal, "children:involvement")
        child = self._child(public_id)
        service = self.session.get(Service, service_id)
        if service is None:
            raise NotFound()
        if (service.organisation_id not in actor.organisation_ids
                and child.responsible_la_id not in actor.team_las):
            self._refuse("children:involvement", principal,
                         {"why": "not the service's organisation", "service": service_id})
            raise NotAllowed()
        if not role.admits(service.kind):
            raise InvalidInput(FieldProblem(
                "role", f"a {service.kind.value.replace('_', ' ')} cannot be the child's "
                f"{role.value.replace('_', ' ')}",
            ))
        sensitive = service.kind.sensitive
        if sensitive and sensitive_basis is None:
            raise InvalidInput(FieldProblem(
                "sensitive_basis",
                "a sensitive service is recorded only with the child's consent or where "
                "significant harm is suspected",
            ))
        if ends_on and starts_on and ends_on < starts_on:
            raise InvalidInput(FieldProblem("ends_on", "must be on or after the start date"))
        involvement = ChildInvolvement(
            child_id=child.id, service_id=service.id, practitioner_id=actor.person.id,
            role=role, starts_on=starts_on or self.clock.today(), ends_on=ends_on,
            lead_professional=lead_professional, assessment_held=assessment_held,
            sensitive=sensitive, sensitive_basis=sensitive_basis if sensitive else None,
            created_at=self.clock.now(),
        )
        self.session.add(involvement)
        self.session.flush()
        self.audit.record(
            "children:involvement_recorded", subject_type="child", subject_id=child.identifier,
            organisation_id=child.responsible_la_id, actor_id=actor.person.id,
            actor_label=actor.person.username,
            detail={"service_id": service.id, "sensitive": sensitive,
                    "basis": sensitive_basis.value if sensitive and sensitive_basis else None},
        )
        return involvement

    # --- shielding ---------------------------------------------------------

    def decide_shield(
        self,
        principal: Principal,
        public_id: str,
        *,
        criteria: str,
        evidence_reference: str,
        shield: bool,
        review_on: date | None = None,
    ) -> ShieldDecision:
        """The responsible team's formal decision; a review is a new decision."""
        child = self._child(public_id)
        actor = self._team(principal, child.responsible_la_id)
        problems = []
        if criteria not in {c.value for c in ShieldCriteria}:
            problems.append(FieldProblem("criteria", "select the criteria the decision meets"))
        evidence = evidence_reference.strip()
        if not evidence:
            problems.append(FieldProblem("evidence_reference", "enter the evidence reference"))
        elif len(evidence) > 100:
            problems.append(FieldProblem("evidence_reference", "must be 100 characters or fewer"))
        today = self.clock.today()
        if shield:
            review_on = review_on or months_after(today, self.settings.shield_review_months)
            if review_on <= today:
                problems.append(FieldProblem("review_on", "must be in the future"))
        else:
            review_on = None
        if problems:
            raise InvalidInput(problems)
        self.session.execute(
            update(ShieldDecision).where(ShieldDecision.child_id == child.id)
            .values(superseded=True)
        )
        decision = ShieldDecision(
            child_id=child.id, decided_by_id=actor.person.id,
            organisation_id=child.responsible_la_id, criteria=criteria,
            evidence_reference=evidence, shield=shield, decided_at=self.clock.now(),
            review_on=review_on, superseded=False,
        )
        self.session.add(decision)
        child.shielded = shield
        child.updated_at = self.clock.now()
        self.session.flush()
        self.audit.record(
            "children:shield_decided", subject_type="child", subject_id=child.identifier,
            organisation_id=child.responsible_la_id, actor_id=actor.person.id,
            actor_label=actor.person.username,
            detail={"shield": shield, "criteria": criteria, "evidence_reference": evidence,
                    "review_on": review_on.isoformat() if review_on else None},
        )
        return decision

    def team_child(self, principal: Principal, public_id: str) -> ChildSummary:
        """The record's visible fields, for its responsible team's own pages."""
        child = self._child(public_id)
        self._team(principal, child.responsible_la_id)
        return ChildSummary(child.public_id, child.identifier, child.forename, child.surname,
                            child.gender.value, child.date_of_birth, False)

    def shield_decisions(self, principal: Principal, public_id: str) -> list[ShieldDecision]:
        child = self._child(public_id)
        self._team(principal, child.responsible_la_id)
        return list(self.session.scalars(
            select(ShieldDecision).where(ShieldDecision.child_id == child.id)
            .order_by(ShieldDecision.decided_at.desc(), ShieldDecision.id.desc())
        ))

    def shield_reviews_due(
        self, principal: Principal, within_days: int = 30
    ) -> list[tuple[ShieldDecision, Child]]:
        """Current shields of the team's children due for review soon or overdue."""
        actor = self._team(principal)
        until = self.clock.today() + timedelta(days=within_days)
        return [
            (d, c) for d, c in self.session.execute(
                select(ShieldDecision, Child).join(Child, Child.id == ShieldDecision.child_id)
                .where(ShieldDecision.organisation_id.in_(actor.team_las),
                       ShieldDecision.superseded.is_(False), ShieldDecision.shield.is_(True),
                       ShieldDecision.review_on <= until, Child.archived_on.is_(None))
                .order_by(ShieldDecision.review_on, ShieldDecision.id)
            )
        ]

    # --- brokered contact --------------------------------------------------

    def request_contact(self, principal: Principal, public_id: str, message: str) -> ContactRequest:
        """A user's case for contact with the practitioners around a shielded child."""
        actor = self._actor(principal, "children:contact_request")
        child = self._child(public_id)
        text = message.strip()
        if len(text) < 20:
            raise InvalidInput(FieldProblem("message",
                                            "explain your case in 20 characters or more"))
        if len(text) > 2000:
            raise InvalidInput(FieldProblem("message", "must be 2000 characters or fewer"))
        request = ContactRequest(
            child_id=child.id, requester_id=actor.person.id,
            organisation_id=child.responsible_la_id, message_enc="", status="pending",
            created_at=self.clock.now(),
        )
        self.session.add(request)
        self.session.flush()
        request.message_enc = self.cipher.encrypt_text(text, f"contact:{request.id}:message")
        self.audit.record(
            "children:contact_requested", subject_type="child", subject_id=child.identifier,
            organisation_id=child.responsible_la_id, actor_id=actor.person.id,
            actor_label=actor.person.username, detail={"request": request.id},
        )
        return request

    def _request_view(self, request: ContactRequest) -> ContactRequestView:
        child = self.session.get(Child, request.child_id)
        person = self.session.get(Person, request.requester_id)
        assert child is not None and person is not None
        return ContactRequestView(
            request.id, child.public_id, f"{child.forename} {child.surname}",
            person.display_name, person.work_email, request.organisation_id,
            self.cipher.decrypt_text(request.message_enc, f"contact:{request.id}:message"),
            request.status,
            self.cipher.decrypt_text(request.response_enc, f"contact:{request.id}:response")
            if request.response_enc else None,
            request.created_at, request.decided_at,
        )

    def contact_requests(self, principal: Principal, *, pending_only: bool = True
                         ) -> list[ContactRequestView]:
        actor = self._team(principal)
        stmt = select(ContactRequest).where(ContactRequest.organisation_id.in_(actor.team_las))
        if pending_only:
            stmt = stmt.where(ContactRequest.status == "pending")
        return [self._request_view(r) for r in self.session.scalars(
            stmt.order_by(ContactRequest.created_at, ContactRequest.id))]

    def my_contact_requests(self, principal: Principal) -> list[ContactRequestView]:
        actor = self._actor(principal)
        return [self._request_view(r) for r in self.session.scalars(
            select(ContactRequest).where(ContactRequest.requester_id == actor.person.id)
            .order_by(ContactRequest.created_at.desc(), ContactRequest.id.desc()))]

    def decide_contact(
        self, principal: Principal, request_id: int, *, accept: bool, message: str
    ) -> ContactRequest:
        request = self.session.get(ContactRequest, request_id)
        if request is None:
            raise UnknownRequest()
        actor = self._team(principal, request.organisation_id)
        if request.status != "pending":
            raise AlreadyDecided()
        text = message.strip()
        if not text:
            raise InvalidInput(FieldProblem("message", "enter a message for the practitioner"))
        if len(text) > 2000:
            raise InvalidInput(FieldProblem("message", "must be 2000 characters or fewer"))
        request.status = "accepted" if accept else "declined"
        request.response_enc = self.cipher.encrypt_text(text, f"contact:{request.id}:response")
        request.decided_by_id = actor.person.id
        request.decided_at = self.clock.now()
        self.audit.record(
            "children:contact_decided", subject_type="contact_request", subject_id=request.id,
            organisation_id=request.organisation_id, actor_id=actor.person.id,
            actor_label=actor.person.username, detail={"status": request.status},
        )
        return request

    # --- anomaly rules and alerts ------------------------------------------

    def _team_for(self, org: HomeOrganisation, district: str | None) -> int:
        """The local authority whose team investigates this person's use: their
        own, else their registration authority's, else the one covering the
        district searched; failing all, their organisation (the platform sees
        those with `contactpoint children alerts`)."""
        if org.kind is OrganisationKind.LOCAL_AUTHORITY:
            return org.id
        authority = (self.session.get(Organisation, org.registration_authority_id)
                     if org.registration_authority_id else None)
        if authority is not None and authority.kind is OrganisationKind.LOCAL_AUTHORITY:
            return authority.id
        if district:
            covering = self.session.scalar(
                select(ChildArea.organisation_id).join(
                    Organisation, Organisation.id == ChildArea.organisation_id)
                .where(ChildArea.postcode_district == district,
                       Organisation.kind == OrganisationKind.LOCAL_AUTHORITY)
                .order_by(ChildArea.organisation_id).limit(1))
            if covering is not None:
                return int(covering)
        return org.id

    def _alert(self, actor: Actor, rule: AlertRule, la_id: int, child: Child | None,
               detail: dict[str, Any]) -> ChildAlert:
        suspend_on = {r.strip() for r in self.settings.suspend_rules.split(",") if r.strip()}
        suspend = (self.settings.auto_suspend and rule.value in suspend_on
                   and actor.person.status is PersonStatus.ACTIVE)
        alert = ChildAlert(
            rule=rule.value, person_id=actor.person.id, organisation_id=la_id,
            child_id=child.id if child else None, detail=detail, suspended=suspend,
            raised_at=self.clock.now(),
        )
        self.session.add(alert)
        self.session.flush()
        self.audit.record(
            "children:alert_raised", subject_type="person", subject_id=actor.person.id,
            organisation_id=la_id, actor_id=actor.person.id, actor_label=actor.person.username,
            detail={"rule": rule.value, "alert": alert.id, "suspended": suspend, **detail},
        )
        # DOMAIN.md: the team investigates and the user's manager is told. The
        # manager (the admins of each organisation the person works in) reads
        # it in their organisation's audit trail and on the console's alerts page.
        for organisation_id in sorted(actor.organisation_ids - {la_id}):
            self.audit.record(
                "children:alert_manager_told", subject_type="person",
                subject_id=actor.person.id, organisation_id=organisation_id,
                actor_id=actor.person.id, actor_label=actor.person.username,
                detail={"rule": rule.value, "alert": alert.id, "suspended": suspend},
            )
        if suspend:
            # From the next request on: this one's answer is already in the audit log.
            person = self.session.get(Person, actor.person.id)
            assert person is not None  # read a moment ago, in this transaction
            self.directory.set_status(
                person, PersonStatus.SUSPENDED, f"children's directory anomaly: {rule}",
                tag="children:anomaly_suspension",
            )
        return alert

    def _recent_alert(self, person_id: int, rule: AlertRule, since: datetime) -> bool:
        return self.session.connection().scalar(
            _RECENT_ALERT, {"person_id": person_id, "rule": rule.value, "since": since}
        ) is not None

    def _anomalies(self, actor: Actor, *, surname: str | None, district: str | None,
                   child: Child | None) -> None:
        now = self.clock.now()
        person = actor.person
        la_id = child.responsible_la_id if child else self._team_for(actor.home_org, district)
        where = {"child": child.identifier} if child else {}
        if surname is not None and surname == name_key(person.family_name):
            self._alert(actor, AlertRule.OWN_SURNAME, la_id, child, {"surname": surname})
        if child is not None and self._at_home_of(person, child):
            self._alert(actor, AlertRule.OWN_ADDRESS, la_id, child, where)
        since = now - timedelta(hours=1)
        limit = self.settings.volume_per_hour
        # Counted only as far as the limit: the rule asks whether it was passed,
        # and a heavy user's every search would otherwise count all of their
        # hour's entries (thousands, in a scripted misuse).
        used = int(self.session.connection().scalar(
            _RECENT_USE, {"person_id": person.id, "since": since, "cap": limit + 1}) or 0)
        if used > limit and not self._recent_alert(person.id, AlertRule.VOLUME, since):
            self._alert(actor, AlertRule.VOLUME, la_id, child,
                        {"in_last_hour_more_than": limit, **where})
        local = now.astimezone(ZoneInfo(self.settings.timezone))
        if (local.weekday() >= 5 or local.hour < self.settings.working_hours_start
                or local.hour >= self.settings.working_hours_end) and not self._recent_alert(
                person.id, AlertRule.OUT_OF_HOURS, now - timedelta(hours=12)):
            self._alert(actor, AlertRule.OUT_OF_HOURS, la_id, child,
                        {"local_time": local.strftime("%a %H:%M"), **where})
        if district:
            area = set(self.session.connection().scalars(
                _AREA_OF, {"organisation_ids": list(actor.organisation_ids)}))
            if area and district not in area and not self._recent_alert(
                    person.id, AlertRule.OUT_OF_AREA, since):
                self._alert(actor, AlertRule.OUT_OF_AREA, la_id, child,
                            {"district": district, **where})

    def _at_home_of(self, person: ActingPerson, child: Child) -> bool:
        """Whether the child lives at the person's home postcode (as the
        identity check saw it): looking up your own household, or your
        neighbours', is what the audit of 2009 found people "testing" with."""
        if person.home_postcode_key is None or not child.address_enc:
            return False
        address = json.loads(
            self.cipher.decrypt_text(child.address_enc, f"child:{child.public_id}:address"))
        postcode = str(address.get("postcode") or "")
        return bool(postcode) and hmac.compare_digest(
            home_postcode_key(self.digester, postcode), person.home_postcode_key)

    def alerts(self, principal: Principal, *, open_only: bool = True) -> list[ChildAlert]:
        actor = self._team(principal)
        stmt = select(ChildAlert).where(ChildAlert.organisation_id.in_(actor.team_las))
        if open_only:
            stmt = stmt.where(ChildAlert.closed_at.is_(None))
        return list(self.session.scalars(stmt.order_by(ChildAlert.raised_at.desc(),
                                                       ChildAlert.id.desc()).limit(200)))

    def staff_alerts(self, principal: Principal, organisation_id: int, *,
                     open_only: bool = False, limit: int = 200) -> list[StaffAlert]:
        """Alerts about the people who worked in the organisation when each was
        raised, for those who manage its staff, newest first."""
        organisation = self.session.get(Organisation, organisation_id)
        if organisation is None or not may(principal, Act.READ_AUDIT, organisation):
            raise NotAllowed()
        team = Organisation.__table__.alias("team")
        staff = select(Position.person_id).where(Position.organisation_id == organisation_id)
        stmt = (
            select(ChildAlert, Person, team.c.name)
            .join(Person, Person.id == ChildAlert.person_id)
            .join(team, team.c.id == ChildAlert.organisation_id)
            .where(ChildAlert.person_id.in_(staff))
            .order_by(ChildAlert.raised_at.desc(), ChildAlert.id.desc())
        )
        if open_only:
            stmt = stmt.where(ChildAlert.closed_at.is_(None))
        found: list[StaffAlert] = []
        for alert, person, team_name in self.session.execute(stmt):
            raised_on = alert.raised_at.date()
            if not any(p.organisation_id == organisation_id and p.current_on(raised_on)
                       for p in person.positions):
                continue  # raised before they joined or after they left
            found.append(StaffAlert(
                id=alert.id, rule=alert.rule, raised_at=alert.raised_at, person_id=person.id,
                username=person.username, person_name=person.display_name,
                suspended=alert.suspended, team=team_name, closed_at=alert.closed_at,
            ))
            if len(found) >= limit:
                break
        return found

    def all_alerts(self, operator: Principal) -> list[ChildAlert]:
        """Every open alert, for the platform (the CLI on the server)."""
        operator.require(Role.PLATFORM_ADMIN)
        return list(self.session.scalars(select(ChildAlert).where(ChildAlert.closed_at.is_(None))
                                         .order_by(ChildAlert.raised_at, ChildAlert.id)))

    def close_alert(self, principal: Principal, alert_id: int) -> ChildAlert:
        alert = self.session.get(ChildAlert, alert_id)
        if alert is None:
            raise NotFound()
        actor = self._team(principal, alert.organisation_id)
        if alert.closed_at is not None:
            raise AlreadyDecided()
        alert.closed_at = self.clock.now()
        alert.closed_by_id = actor.person.id
        self.audit.record(
            "children:alert_closed", subject_type="alert", subject_id=alert.id,
            organisation_id=alert.organisation_id, actor_id=actor.person.id,
            actor_label=actor.person.username, detail={"rule": alert.rule},
        )
        return alert

    def audit_review(self, principal: Principal, *, limit: int = 200) -> list[AuditEntry]:
        """The children's-directory trail that concerns the team's authority:
        views of its children and searches by people of the organisations it
        serves. Reading it is itself audited."""
        actor = self._team(principal)
        served = set(self.session.scalars(select(Organisation.id).where(
            or_(Organisation.id.in_(actor.team_las),
                Organisation.registration_authority_id.in_(actor.team_las)))))
        entries = list(self.session.scalars(
            select(AuditEntry).where(AuditEntry.tag.like("children:%"),
                                     AuditEntry.organisation_id.in_(served))
            .order_by(AuditEntry.seq.desc()).limit(limit)))
        self.audit.record("children:audit_reviewed", organisation_id=actor.home_org.id,
                          actor_id=actor.person.id, actor_label=actor.person.username,
                          detail={"entries": len(entries)})
        return entries

    # --- areas, rights and conflicts ----------------------------------------

    def set_area(self, operator: Principal, organisation_id: int, districts: list[str]) -> None:
        operator.require(Role.PLATFORM_ADMIN)
        self.session.execute(delete(ChildArea).where(ChildArea.organisation_id == organisation_id))
        keys = sorted({district_key(d) for d in districts if d.strip()})
        for key in keys:
            self.session.add(ChildArea(organisation_id=organisation_id, postcode_district=key))
        self.audit.record("children:area_set", subject_type="organisation",
                          subject_id=organisation_id, organisation_id=organisation_id,
                          detail={"districts": keys})

    def grant_right(self, operator: Principal, person: Person, kind: ChildRightKind) -> None:
        """Platform admins (the CLI) grant the shield override and data management."""
        operator.require(Role.PLATFORM_ADMIN)
        if self.session.scalar(select(ChildRight.id).where(
                ChildRight.person_id == person.id, ChildRight.kind == kind)) is None:
            self.session.add(ChildRight(person_id=person.id, kind=kind,
                                        granted_at=self.clock.now()))
        self.audit.record("children:right_granted", subject_type="person", subject_id=person.id,
                          detail={"right": kind.value})

    def conflicts(self, principal: Principal) -> list[ChildConflict]:
        actor = self._team(principal)
        return list(self.session.scalars(
            select(ChildConflict).where(ChildConflict.organisation_id.in_(actor.team_las),
                                        ChildConflict.resolved_at.is_(None))
            .order_by(ChildConflict.raised_at, ChildConflict.id)))

    def resolve_conflict(self, principal: Principal, conflict_id: int, *, accept: bool,
                         loader: ChildLoader) -> ChildConflict:
        """The team settles a queued disagreement: the other body's data is
        written over the record (accept) or set aside (reject)."""
        conflict = self.session.get(ChildConflict, conflict_id)
        if conflict is None:
            raise NotFound()
        actor = self._team(principal, conflict.organisation_id)
        if conflict.resolved_at is not None:
            raise AlreadyDecided()
        child = self.session.get(Child, conflict.child_id)
        assert child is not None
        if accept:
            loader.apply_content(child, loader.proposed(conflict), conflict.proposed_digest,
                                 conflict.source_org_id)
            child.supplied_by_id = conflict.source_org_id
        conflict.resolved_at = self.clock.now()
        conflict.resolution = "accepted" if accept else "rejected"
        conflict.resolved_by_id = actor.person.id
        self.audit.record(
            "children:conflict_resolved", subject_type="child", subject_id=child.identifier,
            organisation_id=conflict.organisation_id, actor_id=actor.person.id,
            actor_label=actor.person.username,
            detail={"conflict": conflict.id, "resolution": conflict.resolution,
                    "fields": conflict.fields},
        )
        return conflict

    # --- retention -----------------------------------------------------------

    def _data_manager(self, principal: Principal) -> None:
        if principal.is_platform_admin and principal.person_id == 0:
            return  # the CLI on the server
        actor = self._actor(principal, "children:archive")
        if ChildRightKind.DATA_MANAGER not in actor.rights:
            self._refuse("children:archive", principal, {"why": "not a data manager"})
            raise NotAllowed()

    def retention(self, principal: Principal, *, dry_run: bool = False) -> RetentionReport:
        """Archive at 18 (25 with consent) and a year after death; purge archives
        after 6 years. Run daily from cron; a second run the same day finds nothing."""
        self._data_manager(principal)
        s = self.settings
        today = self.clock.today()
        live = Child.archived_on.is_(None)
        died = and_(live, Child.date_of_death.is_not(None),
                    Child.date_of_death <= today - timedelta(days=s.keep_after_death_days))
        aged = and_(live, or_(
            and_(Child.retain_to_25.is_(False),
                 Child.date_of_birth <= years_before(today, s.archive_age)),
            Child.date_of_birth <= years_before(today, s.archive_age_with_consent),
        ))
        expired = Child.archived_on <= years_before(today, s.archive_years)
        def count(cond: Any) -> int:
            return int(self.session.scalar(
                select(func.count()).select_from(Child).where(cond)) or 0)

        after_death = count(died)
        at_age = count(and_(aged, ~died))
        purged = count(expired)
        if not dry_run:
            self.session.execute(update(Child).where(died).values(archived_on=today))
            self.session.execute(update(Child).where(aged).values(archived_on=today))
            doomed = select(Child.id).where(expired)
            for model in (ChildInvolvement, ChildFormerName, ChildSupply, ShieldDecision,
                          ContactRequest, ChildConflict):
                self.session.execute(delete(model).where(model.child_id.in_(doomed)))
            self.session.execute(update(ChildAlert).where(ChildAlert.child_id.in_(doomed))
                                 .values(child_id=None))
            self.session.execute(delete(Child).where(expired))
        self.audit.record(
            "children:retention", actor_id=principal.person_id or None,
            actor_label=principal.username,
            detail={"archived_at_age": at_age, "archived_after_death": after_death,
                    "purged": purged, "dry_run": dry_run},
        )
        return RetentionReport(at_age, after_death, purged, dry_run)

    def archived(self, principal: Principal, surname: str, date_of_birth: date | None = None,
                 ) -> list[ChildSummary]:
        """The archive, for data managers only (subject access, complaints)."""
        self._data_manager(principal)
        key = name_key(surname)
        stmt = select(Child).where(Child.archived_on.is_not(None), Child.surname_key == key)
        if date_of_birth is not None:
            stmt = stmt.where(Child.date_of_birth == date_of_birth)
        rows = list(self.session.scalars(stmt.order_by(Child.date_of_birth, Child.id)
                                         .limit(self.settings.page_size)))
        self.audit.record("children:archive_search", actor_id=principal.person_id or None,
                          actor_label=principal.username,
                          detail={"surname": key, "found": len(rows)})
        return [ChildSummary(c.public_id, c.identifier, c.forename, c.surname, c.gender.value,
                             c.date_of_birth, False) for c in rows]

    def counts(self) -> dict[str, int]:
        live = int(self.session.scalar(select(func.count()).select_from(Child)
                                       .where(Child.archived_on.is_(None))) or 0)
        archived = int(self.session.scalar(select(func.count()).select_from(Child)
                                           .where(Child.archived_on.is_not(None))) or 0)
        return {"live": live, "archived": archived}
