"""Builders for the people and organisations that tests need.

People are made through the same services as in production where the rule
under test does not depend on how they were made; credentials are set through
the real hasher and the real OTP code, never written as literals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pyotp

from core.audit import AuditContext
from directory.models import Organisation, OrganisationKind, Person, PersonStatus, Role
from directory.service import Principal, principal_for
from idp.container import Container, Unit
from tokens.models import PasswordCredential, PinCredential, TokenState

DEFAULT_PASSWORD = "correct horse battery staple 42"
DEFAULT_PIN = "480271"


@dataclass
class Member:
    person: Person
    password: str
    pin: str
    totp_secret: str

    @property
    def username(self) -> str:
        return self.person.username

    def totp(self, container: Container, offset_steps: int = 0) -> str:
        """The code the person's app shows now (by the container's clock)."""
        period = container.settings.totp.period_seconds
        at = container.clock.now().timestamp() + offset_steps * period
        return pyotp.TOTP(self.totp_secret, interval=period).at(int(at))


class World:
    def __init__(self, container: Container) -> None:
        self.container = container
        self.unit: Unit = container.unit(AuditContext(client_address="127.0.0.1"))
        self._count = 0

    def close(self) -> None:
        self.unit.close()

    def organisation(
        self,
        name: str = "Northshire County Council",
        kind: OrganisationKind = OrganisationKind.LOCAL_AUTHORITY,
        accredited: bool = True,
        registration_authority: Organisation | None = None,
    ) -> Organisation:
        self._count += 1
        org = self.unit.directory.create_organisation(
            code=f"ORG{self._count:03d}",
            name=name,
            kind=kind,
            accredited=accredited,
            registration_authority=registration_authority,
        )
        self.unit.commit()
        return org

    def member(
        self,
        organisation: Organisation,
        role: Role = Role.PRACTITIONER,
        *,
        given_name: str = "Alex",
        family_name: str | None = None,
        password: str = DEFAULT_PASSWORD,
        pin: str = DEFAULT_PIN,
        status: PersonStatus = PersonStatus.ACTIVE,
        clearance_days: int = 900,
        training_days: int = 900,
    ) -> Member:
        self._count += 1
        today = self.container.clock.today()
        u = self.unit
        person = u.directory.create_person(
            given_name=given_name,
            family_name=family_name or f"Tester{self._count}",
            work_email=f"person{self._count}@example.org",
            work_phone=None,
            clearance_expires_on=today + timedelta(days=clearance_days),
            training_expires_on=today + timedelta(days=training_days),
        )
        u.directory.add_position(person, organisation, role, today - timedelta(days=30))
        person.status = status
        hasher = self.container.hasher
        now = self.container.clock.now()
        u.session.add(PasswordCredential(person_id=person.id, hash=hasher.hash(password), set_at=now))
        u.session.add(PinCredential(person_id=person.id, hash=hasher.hash(pin), set_at=now))
        token, secret = u.otp.new_soft_token(person.id, organisation.id)
        token.state = TokenState.ACTIVE
        token.activated_at = now
        u.commit()
        return Member(person, password, pin, secret)

    def principal(self, member: Member | Person, on: date | None = None) -> Principal:
        person = member.person if isinstance(member, Member) else member
        self.unit.session.refresh(person)
        return principal_for(person, on or self.container.clock.today())
