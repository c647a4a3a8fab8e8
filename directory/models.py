"""Organisations, people and positions.

One person has one identity and any number of positions; access follows the
positions that are current, in organisations that are accredited.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from sqlalchemy import Date, Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls, name=name, native_enum=False, length=40, values_callable=lambda e: [m.value for m in e]
    )


class OrganisationKind(enum.StrEnum):
    LOCAL_AUTHORITY = "local_authority"
    POLICE_FORCE = "police_force"
    HEALTH_BODY = "health_body"
    SCHOOL = "school"
    GP_PRACTICE = "gp_practice"
    NATIONAL_CHARITY = "national_charity"


class Accreditation(enum.StrEnum):
    PENDING = "pending"
    ACCREDITED = "accredited"
    SUSPENDED = "suspended"


class PersonStatus(enum.StrEnum):
    AWAITING_ACTIVATION = "awaiting_activation"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class Role(enum.StrEnum):
    PRACTITIONER = "practitioner"
    ORGANISATION_ADMIN = "organisation_admin"
    VETTING_OFFICER = "vetting_officer"
    LOCAL_AUTHORITY_TEAM = "local_authority_team"
    PLATFORM_ADMIN = "platform_admin"


class Organisation(Base):
    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[OrganisationKind] = mapped_column(_enum(OrganisationKind, "organisation_kind"))
    accreditation: Mapped[Accreditation] = mapped_column(_enum(Accreditation, "accreditation"))
    accreditation_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    accredited_on: Mapped[date | None] = mapped_column(Date)
    # The organisation whose vetting officers handle this one's applications,
    # as a registration authority may serve several organisations.
    registration_authority_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"))


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, nullable=False, default=lambda: str(uuid.uuid4())
    )
    username: Mapped[str] = mapped_column(String(64), nullable=False)
    # Usernames are unique whatever their case: the folded form carries the index.
    username_folded: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    given_name: Mapped[str] = mapped_column(String(100), nullable=False)
    family_name: Mapped[str] = mapped_column(String(100), nullable=False)
    work_email: Mapped[str] = mapped_column(String(254), nullable=False)
    work_phone: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[PersonStatus] = mapped_column(_enum(PersonStatus, "person_status"))
    status_reason: Mapped[str] = mapped_column(String(300), nullable=False)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Bumped whenever access must end at once: every session and token minted
    # under an older epoch stops working, on every node, without a broadcast.
    security_epoch: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # Kept here by `vetting` so that every layer can tell whether access lapsed.
    clearance_expires_on: Mapped[date | None] = mapped_column(Date)
    training_expires_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # A keyed digest of the home postcode the identity check saw, never the
    # postcode: enough to tell that a child record viewed is at their address.
    home_postcode_key: Mapped[str | None] = mapped_column(String(32))

    positions: Mapped[list[Position]] = relationship(
        back_populates="person", lazy="selectin", order_by="Position.id"
    )

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}"


class Position(Base):
    __tablename__ = "position"
    # Covers "who works here today" (the admin console's lists and counts) without
    # reading the position rows themselves.
    __table_args__ = (
        Index(
            "ix_position_organisation_current",
            "organisation_id",
            "person_id",
            "starts_on",
            "ends_on",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), index=True, nullable=False
    )
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    starts_on: Mapped[date] = mapped_column(Date, nullable=False)
    ends_on: Mapped[date | None] = mapped_column(Date)
    # The service (team, practice, school) this position works in, if any.
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id"), index=True)

    person: Mapped[Person] = relationship(back_populates="positions")
    organisation: Mapped[Organisation] = relationship(lazy="joined")

    def current_on(self, day: date) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)


class PositionRequestState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"


class PositionRequest(Base):
    """A new position (or a new role) for someone who already has an identity.

    Asked for by an admin of the organisation, approved by a second person who
    is neither the asker nor the subject: nobody grants themselves a role."""

    __tablename__ = "position_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), index=True, nullable=False
    )
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    reason: Mapped[str] = mapped_column(String(300), nullable=False)
    state: Mapped[PositionRequestState] = mapped_column(
        _enum(PositionRequestState, "position_request_state")
    )
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    position_id: Mapped[int | None] = mapped_column(ForeignKey("position.id"))

    person: Mapped[Person] = relationship(foreign_keys=[person_id], lazy="joined")
    organisation: Mapped[Organisation] = relationship(lazy="joined")
