"""An application and the evidence recorded for it.

Only what is needed to show a check was done is kept: the DBS certificate's
number, issue date, level and outcome (never its content), the GPG45
confidence reached and how (never images of documents).
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Boolean, Date, Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime
from directory.models import Organisation, Role


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls, name=name, native_enum=False, length=40, values_callable=lambda e: [m.value for m in e]
    )


class ApplicationState(enum.StrEnum):
    # Found in an organisation's own directory; waits for its sponsor to confirm.
    PROPOSED = "proposed"
    SUBMITTED = "submitted"
    CLEARED = "cleared"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


class Confidence(enum.StrEnum):
    """GPG45 levels of confidence in an identity."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"

    @property
    def rank(self) -> int:
        return list(Confidence).index(self)


class IdentityMethod(enum.StrEnum):
    FACE_TO_FACE = "face_to_face"
    REMOTE_VIDEO = "remote_video"
    DIGITAL_IDENTITY = "digital_identity"


class CertificateOutcome(enum.StrEnum):
    """What an enhanced DBS certificate with the children's barred list says."""

    NOTHING_RECORDED = "nothing_recorded"
    INFORMATION_DISCLOSED = "information_disclosed"
    BARRED = "barred"


class Decision(enum.StrEnum):
    CLEARED = "cleared"
    REFUSED = "refused"


CHECK_LEVEL = "enhanced_with_childrens_barred_list"


class Application(Base):
    __tablename__ = "vetting_application"
    __table_args__ = (
        UniqueConstraint("organisation_id", "source_ref", name="uq_vetting_application_source_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), index=True, nullable=False
    )
    # None only for a founding enrolment made by an operator on the server.
    sponsor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    founding: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    given_name: Mapped[str] = mapped_column(String(100), nullable=False)
    family_name: Mapped[str] = mapped_column(String(100), nullable=False)
    work_email: Mapped[str] = mapped_column(String(254), nullable=False)
    work_phone: Mapped[str | None] = mapped_column(String(40))
    # Where a proposed application came from (for example "ldap:<entryUUID>"),
    # so re-importing an organisation's directory proposes nobody twice.
    source_ref: Mapped[str | None] = mapped_column(String(300))
    state: Mapped[ApplicationState] = mapped_column(
        _enum(ApplicationState, "application_state"), index=True
    )
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Set when the applicant is enrolled (or, for a move, from the start).
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    decision: Mapped[Decision | None] = mapped_column(_enum(Decision, "decision"))
    decision_reason: Mapped[str | None] = mapped_column(String(500))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organisation: Mapped[Organisation] = relationship(lazy="joined")
    identity_check: Mapped[IdentityCheck | None] = relationship(lazy="selectin", uselist=False)
    certificate: Mapped[CriminalRecordCheck | None] = relationship(
        lazy="selectin",
        uselist=False,
        primaryjoin="Application.id == CriminalRecordCheck.application_id",
    )
    training: Mapped[TrainingRecord | None] = relationship(lazy="selectin", uselist=False)
    agreement: Mapped[AgreementRecord | None] = relationship(lazy="selectin", uselist=False)

    @property
    def applicant_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    def recorders(self) -> set[int]:
        return {
            r.recorded_by_id
            for r in (self.identity_check, self.certificate, self.training, self.agreement)
            if r is not None and r.recorded_by_id is not None
        }


class IdentityCheck(Base):
    __tablename__ = "identity_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("vetting_application.id"), unique=True)
    confidence: Mapped[Confidence] = mapped_column(_enum(Confidence, "confidence"))
    method: Mapped[IdentityMethod] = mapped_column(_enum(IdentityMethod, "identity_method"))
    checked_on: Mapped[date] = mapped_column(Date, nullable=False)
    evidence_reference: Mapped[str] = mapped_column(String(100), nullable=False)
    # The home postcode seen on the evidence, as a keyed digest (see Person).
    home_postcode_key: Mapped[str | None] = mapped_column(String(32))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class CriminalRecordCheck(Base):
    __tablename__ = "criminal_record_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # One per application; renewals for an enrolled person carry no application.
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("vetting_application.id"), unique=True
    )
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    certificate_number: Mapped[str] = mapped_column(String(12), nullable=False)
    level: Mapped[str] = mapped_column(String(60), nullable=False)
    issued_on: Mapped[date] = mapped_column(Date, nullable=False)
    outcome: Mapped[CertificateOutcome] = mapped_column(
        _enum(CertificateOutcome, "certificate_outcome")
    )
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class TrainingRecord(Base):
    __tablename__ = "training_record"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("vetting_application.id"), unique=True)
    completed_on: Mapped[date] = mapped_column(Date, nullable=False)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AgreementRecord(Base):
    __tablename__ = "agreement_record"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("vetting_application.id"), unique=True)
    signed_on: Mapped[date] = mapped_column(Date, nullable=False)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
