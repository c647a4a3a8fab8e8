"""The directory of services: GP practices, schools, health-visiting and
school-nursing teams and the rest, each run by an organisation, with the
practitioners in it (through their positions). Also the ledger of what was
last published to LDAP."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, UTCDateTime
from directory.models import Organisation


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls, name=name, native_enum=False, length=40, values_callable=lambda e: [m.value for m in e]
    )


class ServiceKind(enum.StrEnum):
    GP_PRACTICE = "gp_practice"
    SCHOOL = "school"
    EARLY_YEARS_SETTING = "early_years_setting"
    FURTHER_EDUCATION = "further_education"
    HEALTH_VISITING_TEAM = "health_visiting_team"
    SCHOOL_NURSING_TEAM = "school_nursing_team"
    CHILDRENS_SOCIAL_CARE = "childrens_social_care"
    YOUTH_OFFENDING_TEAM = "youth_offending_team"
    EDUCATION_WELFARE = "education_welfare"
    CONNEXIONS = "connexions"
    # Sensitive services: recorded against a child only with consent or where
    # harm is suspected, and readable only by the responsible local authority team.
    SEXUAL_HEALTH = "sexual_health"
    MENTAL_HEALTH = "mental_health"
    SUBSTANCE_MISUSE = "substance_misuse"
    OTHER = "other"

    @property
    def sensitive(self) -> bool:
        return self in SENSITIVE_KINDS


SENSITIVE_KINDS = frozenset(
    {ServiceKind.SEXUAL_HEALTH, ServiceKind.MENTAL_HEALTH, ServiceKind.SUBSTANCE_MISUSE}
)


class Service(Base):
    __tablename__ = "service"
    __table_args__ = (
        UniqueConstraint("organisation_id", "source_ref", name="uq_service_source_ref"),
        Index("ix_service_name_folded", "name_folded"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(36), unique=True, nullable=False, default=lambda: str(uuid.uuid4())
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # casefolded name, what search compares against
    name_folded: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[ServiceKind] = mapped_column(_enum(ServiceKind, "service_kind"), index=True)
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), index=True, nullable=False
    )
    address_line1: Mapped[str] = mapped_column(String(200), nullable=False)
    address_line2: Mapped[str | None] = mapped_column(String(200))
    town: Mapped[str] = mapped_column(String(100), nullable=False)
    postcode: Mapped[str] = mapped_column(String(10), nullable=False)
    # the outward part of the postcode (for example "NE1"), for search by area
    postcode_district: Mapped[str] = mapped_column(String(5), index=True, nullable=False)
    phone: Mapped[str] = mapped_column(String(40), nullable=False)
    secure_email: Mapped[str | None] = mapped_column(String(254))
    opening_hours: Mapped[str | None] = mapped_column(Text)
    starts_on: Mapped[date] = mapped_column(Date, nullable=False)
    ends_on: Mapped[date | None] = mapped_column(Date)
    # the supplier's own reference (a CSV column), which makes re-imports idempotent
    source_ref: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    organisation: Mapped[Organisation] = relationship(lazy="joined")

    def open_on(self, day: date) -> bool:
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)


class LdapPublication(Base):
    """What the LDAP directory was last sent for each entry, as a digest: an
    incremental run sends only entries whose digest changed, and deletes
    entries whose source is gone."""

    __tablename__ = "ldap_publication"

    dn: Mapped[str] = mapped_column(String(500), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    source_id: Mapped[str] = mapped_column(String(64), nullable=False)
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class LdapRun(Base):
    __tablename__ = "ldap_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), nullable=False)
    server: Mapped[str] = mapped_column(String(300), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
