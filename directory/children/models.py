"""The child record: exactly the statutory data set, and nothing more.

There is no free-text column on a child anywhere in this file, on purpose: the
schema is fixed to names, whereabouts, gender, date of birth, the directory's
identifier, parents and carers, educational setting, GP practice, other
services with dates, the lead-professional and assessment flags and the date
of death. Addresses and contact details are stored only as ciphertext; what
search needs (folded names, date of birth, postcode district) is stored as
plain, indexed keys.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime
from directory.services_models import ServiceKind


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls, name=name, native_enum=False, length=40, values_callable=lambda e: [m.value for m in e]
    )


class Gender(enum.StrEnum):
    FEMALE = "female"
    MALE = "male"
    NOT_SPECIFIED = "not_specified"


class Whereabouts(enum.StrEnum):
    CURRENT_ADDRESS = "current_address"
    LAST_KNOWN_ADDRESS = "last_known_address"
    NO_KNOWN_ADDRESS = "no_known_address"
    LEFT_ENGLAND = "left_england"


class ReturnIntention(enum.StrEnum):
    """For a child who left England: intends to return within 3 years?"""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


class InvolvementRole(enum.StrEnum):
    EDUCATIONAL_SETTING = "educational_setting"
    GP_PRACTICE = "gp_practice"
    SERVICE = "service"

    def admits(self, kind: ServiceKind) -> bool:
        """Whether a service of this kind can be this to a child. The record's
        educational setting and GP practice are fields of their own, searched
        as such: a clinic recorded as a child's GP would find the child for
        anyone searching by that clinic as GP, and a school recorded as "a
        service" would hide the child from a search by school."""
        settings = SETTING_KINDS.get(self)
        if settings is not None:
            return kind in settings
        return not any(kind in kinds for kinds in SETTING_KINDS.values())


# The kinds of service each of a child's own settings can be (the loader's
# school and GP columns, and what a service recorded by hand can be).
SETTING_KINDS = {
    InvolvementRole.EDUCATIONAL_SETTING: frozenset(
        {ServiceKind.SCHOOL, ServiceKind.EARLY_YEARS_SETTING, ServiceKind.FURTHER_EDUCATION}),
    InvolvementRole.GP_PRACTICE: frozenset({ServiceKind.GP_PRACTICE}),
}


class SensitiveBasis(enum.StrEnum):
    """The only two grounds on which a sensitive service may be recorded."""

    CONSENT = "consent"
    HARM_SUSPECTED = "harm_suspected"


class ChildRightKind(enum.StrEnum):
    SHIELD_OVERRIDE = "shield_override"
    DATA_MANAGER = "data_manager"


class Child(Base):
    __tablename__ = "child"
    __table_args__ = (
        Index("ix_child_surname_dob", "surname_key", "date_of_birth"),
        Index("ix_child_surname_district", "surname_key", "postcode_district"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, nullable=False, default=lambda: str(uuid.uuid4())
    )
    # The directory's own number for the child, shown to users.
    identifier: Mapped[str] = mapped_column(String(12), unique=True, nullable=False)
    # The local authority that owns the record's quality, shielding and brokering.
    responsible_la_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), index=True, nullable=False
    )
    forename: Mapped[str] = mapped_column(String(100), nullable=False)
    surname: Mapped[str] = mapped_column(String(100), nullable=False)
    forename_key: Mapped[str] = mapped_column(String(100), nullable=False)
    surname_key: Mapped[str] = mapped_column(String(100), nullable=False)
    gender: Mapped[Gender] = mapped_column(_enum(Gender, "child_gender"), nullable=False)
    date_of_birth: Mapped[date] = mapped_column(Date, nullable=False)
    date_of_death: Mapped[date | None] = mapped_column(Date)
    whereabouts: Mapped[Whereabouts] = mapped_column(
        _enum(Whereabouts, "child_whereabouts"), nullable=False
    )
    # Ciphertext of {"line1", "line2", "town", "postcode"}; None without an address.
    address_enc: Mapped[str | None] = mapped_column(Text)
    # The outward code of the postcode ("NE1"): what search by area compares.
    postcode_district: Mapped[str | None] = mapped_column(String(5))
    return_intention: Mapped[ReturnIntention | None] = mapped_column(
        _enum(ReturnIntention, "child_return_intention")
    )
    # Ciphertext of [{"name", "relationship", "phone", "address"}], parents and carers.
    carers_enc: Mapped[str | None] = mapped_column(Text)
    # Keyed digest of name + date of birth + postcode, for matching loads.
    match_key: Mapped[str] = mapped_column(String(32), index=True, nullable=False)
    # Keyed digest of the supplied content, so a re-run of a file changes nothing.
    content_digest: Mapped[str] = mapped_column(String(32), nullable=False)
    supplied_by_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"))
    shielded: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Consent recorded for a care leaver or a young person with learning
    # difficulties to stay in the directory to 25.
    retain_to_25: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    archived_on: Mapped[date | None] = mapped_column(Date, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ChildFormerName(Base):
    """A name the child was known by. The child's date of birth and postcode
    district are copied here (the loader writes them together, and rewrites a
    child's former names whenever it changes the record) so that a search by
    a former surname + date of birth or district is one range of an index,
    not a visit to every child who ever had that surname."""

    __tablename__ = "child_former_name"
    __table_args__ = (
        Index("ix_child_former_name_surname_dob", "surname_key", "date_of_birth"),
        Index("ix_child_former_name_surname_district", "surname_key", "postcode_district"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("child.id", ondelete="CASCADE"), index=True, nullable=False
    )
    forename: Mapped[str] = mapped_column(String(100), nullable=False)
    surname: Mapped[str] = mapped_column(String(100), nullable=False)
    surname_key: Mapped[str] = mapped_column(String(100), nullable=False)
    date_of_birth: Mapped[date] = mapped_column(Date, nullable=False)
    postcode_district: Mapped[str | None] = mapped_column(String(5))


class ChildInvolvement(Base):
    """A service (and perhaps a named practitioner) around the child, with dates.
    The educational setting and the GP practice are involvements too, so that
    they link to the service directory like every other service."""

    __tablename__ = "child_involvement"
    __table_args__ = (Index("ix_child_involvement_service", "service_id", "child_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("child.id", ondelete="CASCADE"), index=True, nullable=False
    )
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), nullable=False)
    practitioner_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    role: Mapped[InvolvementRole] = mapped_column(
        _enum(InvolvementRole, "child_involvement_role"), nullable=False
    )
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    lead_professional: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # A practitioner holds a Common Assessment Framework assessment (never the
    # assessment itself).
    assessment_held: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    sensitive: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    sensitive_basis: Mapped[SensitiveBasis | None] = mapped_column(
        _enum(SensitiveBasis, "child_sensitive_basis")
    )
    # The body whose load recorded it (None: recorded by hand).
    source_org_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ChildSupply(Base):
    """A body's supply of a child: its own identifier for the child (an NHS or
    pupil number, readable only by that body's staff) and what it last sent."""

    __tablename__ = "child_supply"
    __table_args__ = (
        UniqueConstraint("organisation_id", "id_digest", name="uq_child_supply_id_digest"),
        UniqueConstraint("organisation_id", "child_id", name="uq_child_supply_child"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("child.id", ondelete="CASCADE"), index=True, nullable=False
    )
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), nullable=False)
    scheme: Mapped[str | None] = mapped_column(String(20))
    id_enc: Mapped[str | None] = mapped_column(Text)
    id_digest: Mapped[str | None] = mapped_column(String(32))
    row_digest: Mapped[str] = mapped_column(String(32), nullable=False)
    supplied_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ShieldDecision(Base):
    __tablename__ = "child_shield_decision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("child.id", ondelete="CASCADE"), index=True, nullable=False
    )
    decided_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"), nullable=False)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), nullable=False)
    criteria: Mapped[str] = mapped_column(String(40), nullable=False)
    evidence_reference: Mapped[str] = mapped_column(String(100), nullable=False)
    shield: Mapped[bool] = mapped_column(Boolean, nullable=False)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    review_on: Mapped[date | None] = mapped_column(Date, index=True)
    # Set when a later decision (a review) replaces this one.
    superseded: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class ContactRequest(Base):
    """A practitioner's case for contact about a shielded child, brokered by the
    responsible local authority team."""

    __tablename__ = "child_contact_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("child.id", ondelete="CASCADE"), index=True, nullable=False
    )
    requester_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), index=True, nullable=False
    )
    # Ciphertext: the case may name people and places.
    message_enc: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    response_enc: Mapped[str | None] = mapped_column(Text)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChildAlert(Base):
    """Unusual use raised to a local authority team for investigation."""

    __tablename__ = "child_alert"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(40), nullable=False)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    # The team that must look into it.
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), index=True, nullable=False
    )
    child_id: Mapped[int | None] = mapped_column(ForeignKey("child.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    suspended: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))


class ChildConflict(Base):
    """A second body's data that disagrees with the record: queued for the
    responsible team rather than written over the top."""

    __tablename__ = "child_conflict"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("child.id", ondelete="CASCADE"), index=True, nullable=False
    )
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), index=True, nullable=False
    )
    source_org_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), nullable=False)
    fields: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    proposed_enc: Mapped[str] = mapped_column(Text, nullable=False)
    proposed_digest: Mapped[str] = mapped_column(String(32), nullable=False)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String(20))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))


class ChildArea(Base):
    """The postcode districts a local authority (or another body) covers: what
    the out-of-area rule compares. A body with none is national."""

    __tablename__ = "child_area"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), primary_key=True)
    postcode_district: Mapped[str] = mapped_column(String(5), primary_key=True)


class ChildRight(Base):
    """Rights over child records beyond a role: the shield override of
    child-protection users, and the data managers who alone see the archive."""

    __tablename__ = "child_right"
    __table_args__ = (UniqueConstraint("person_id", "kind", name="uq_child_right_person_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), nullable=False)
    kind: Mapped[ChildRightKind] = mapped_column(_enum(ChildRightKind, "child_right_kind"))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
