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
from directory.models import Organisation, OrganisationKind, Person, PersonStatus, Position, Role
from directory.service import Principal, principal_for
from idp.container import Container, Unit
from tests.runlog import remember
from tokens.attempts import Client
from tokens.models import PasswordCredential, PinCredential, TokenState
from tokens.signin import SignedIn

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
        code = pyotp.TOTP(self.totp_secret, interval=period).at(int(at))
        remember("TOTP code", code)
        return code


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
        commit: bool = True,
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
        u.session.add(
            PasswordCredential(person_id=person.id, hash=hasher.hash(password), set_at=now)
        )
        u.session.add(PinCredential(person_id=person.id, hash=hasher.hash(pin), set_at=now))
        token, secret = u.otp.new_soft_token(person.id, organisation.id)
        token.state = TokenState.ACTIVE
        token.activated_at = now
        if commit:  # many at once (load tests): the caller commits them together
            u.commit()
        remember("password", password)
        remember("PIN", pin)
        remember("TOTP secret", secret)
        return Member(person, password, pin, secret)

    def newcomer(
        self,
        organisation: Organisation,
        role: Role = Role.PRACTITIONER,
        *,
        given_name: str = "Sam",
        family_name: str | None = None,
        clearance_days: int = 900,
        training_days: int = 900,
    ) -> Person:
        """A person awaiting activation: cleared and placed, with no credentials yet."""
        self._count += 1
        today = self.container.clock.today()
        u = self.unit
        person = u.directory.create_person(
            given_name=given_name,
            family_name=family_name or f"Newcomer{self._count}",
            work_email=f"person{self._count}@example.org",
            work_phone=None,
            clearance_expires_on=today + timedelta(days=clearance_days),
            training_expires_on=today + timedelta(days=training_days),
        )
        u.directory.add_position(person, organisation, role, today)
        u.commit()
        return person

    def add_position(
        self, member: Member | Person, organisation: Organisation, role: Role
    ) -> Position:
        """Another position for someone who already has one (say, a second role)."""
        person = member.person if isinstance(member, Member) else member
        today = self.container.clock.today()
        position = self.unit.directory.add_position(
            person, organisation, role, today - timedelta(days=30)
        )
        self.unit.commit()
        return position

    def principal(self, member: Member | Person, on: date | None = None) -> Principal:
        person = member.person if isinstance(member, Member) else member
        self.unit.session.refresh(person)
        principal = principal_for(person, on or self.container.clock.today())
        # End the read, so this unit holds no snapshot or lock while others write.
        self.unit.commit()
        return principal


def sign_in(
    container: Container,
    member: Member,
    client: Client,
    *,
    password: str | None = None,
    code: str | None = None,
    pin: str | None = None,
    username: str | None = None,
) -> SignedIn:
    """All four factors through the real service, each replaceable by a wrong one."""
    with container.unit() as unit:
        flow = unit.signin.begin(
            member.username if username is None else username,
            member.password if password is None else password,
            client,
        )
        code = member.totp(container) if code is None else code
        remember("TOTP code", code)  # a wrong one too
        signed_in = unit.signin.complete(flow, code, member.pin if pin is None else pin, client)
        remember("session token", signed_in.token)
        return signed_in
