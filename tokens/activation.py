"""Activation: from a letter's code to a usable account, one stage at a time.

Stages: code (consumed at once, so it works once) -> password -> token
(a soft TOTP token, confirmed by a current code) -> PIN -> active. The flow is
held server-side and expires; an abandoned activation needs a new letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import SecretDigester, new_token
from core.errors import Conflict, FieldProblem, InvalidInput
from core.settings import Settings
from core.shared_state import SharedState
from directory.models import Person, PersonStatus
from directory.service import DirectoryService, access_blockers, home_organisation
from tokens.codes import LetterCodes
from tokens.credentials import store_password, store_pin
from tokens.errors import ActivationFailed, FlowExpired, TooManyAttempts
from tokens.models import (
    CodePurpose,
    Flow,
    OtpToken,
    TokenForm,
    TokenState,
)
from tokens.otp import OtpVerifier, provisioning_uri
from tokens.passwords import SecretHasher
from tokens.policy import Factor, policy_for

ACTIVATION = "activation"
FLOW_MINUTES = 60


@dataclass(frozen=True)
class PendingToken:
    serial: str
    secret: str
    uri: str


@dataclass
class ActivationService:
    session: Session
    settings: Settings
    clock: Clock
    audit: Auditor
    shared: SharedState
    hasher: SecretHasher
    digester: SecretDigester
    codes: LetterCodes
    otp: OtpVerifier
    directory: DirectoryService

    def issue_code(self, person: Person) -> str:
        days = self.settings.vetting.activation_code_days
        return self.codes.issue(person.id, CodePurpose.ACTIVATION, timedelta(days=days))

    def start(self, username: str, code: str, client_address: str) -> str:
        window = self.settings.signin.address_window_seconds
        key = f"activation:address:{client_address}"
        if self.shared.count(key, window) >= self.settings.signin.address_failures_per_window:
            raise TooManyAttempts(self.shared.retry_after(key, window))
        person = self.directory.person_by_username(username) if username else None
        ok = (
            person is not None
            and person.status is PersonStatus.AWAITING_ACTIVATION
            and not access_blockers(person, self.clock.today(), ignore_status=True)
            and self.codes.redeem(person.id, CodePurpose.ACTIVATION, code)
        )
        if not ok or person is None:
            self.shared.hit(key, window)
            self.audit.record(
                "activation:code:failure",
                "failure",
                subject_type="person" if person else None,
                subject_id=person.id if person else None,
                organisation_id=home_organisation(person, self.clock.today()) if person else None,
            )
            self.session.commit()
            raise ActivationFailed()
        now = self.clock.now()
        token = new_token()
        self.session.add(
            Flow(
                digest=self.digester.digest(token),
                kind=ACTIVATION,
                stage="password",
                person_id=person.id,
                epoch=person.security_epoch,
                created_at=now,
                expires_at=now + timedelta(minutes=FLOW_MINUTES),
                data={},
            )
        )
        self.audit.record(
            "activation:code:success",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            actor_id=person.id,
            actor_label=person.username,
        )
        self.session.commit()
        return token

    def flow(self, flow_token: str, stage: str) -> tuple[Flow, Person]:
        flow = self.session.scalar(
            select(Flow).where(Flow.digest == self.digester.digest(flow_token))
        )
        if (
            flow is None
            or flow.kind != ACTIVATION
            or flow.stage != stage
            or flow.finished_at is not None
            or flow.expires_at <= self.clock.now()
        ):
            raise FlowExpired()
        person = self.directory.person(flow.person_id)
        if (
            person.status is not PersonStatus.AWAITING_ACTIVATION
            or flow.epoch != person.security_epoch
        ):
            raise FlowExpired()
        return flow, person

    def stage_of(self, flow_token: str) -> str | None:
        flow = self.session.scalar(
            select(Flow).where(Flow.digest == self.digester.digest(flow_token))
        )
        if flow is None or flow.finished_at is not None or flow.expires_at <= self.clock.now():
            return None
        return flow.stage

    def set_password(self, flow_token: str, password: str, confirmation: str) -> None:
        flow, person = self.flow(flow_token, "password")
        store_password(
            self.session, self.hasher, self.settings.passwords, person, password, confirmation,
            self.clock.now(),
        )
        flow.stage = "token"
        self.audit.record(
            "activation:password:set",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            actor_id=person.id,
            actor_label=person.username,
        )
        self.session.commit()

    def assigned_hardware(self, flow_token: str) -> str | None:
        """The serial of a hardware token an admin assigned for activation, if any:
        the person then confirms that token and is offered no app token."""
        _flow, person = self.flow(flow_token, "token")
        return self.session.scalar(
            select(OtpToken.serial).where(
                OtpToken.person_id == person.id,
                OtpToken.state == TokenState.ASSIGNED,
                OtpToken.form == TokenForm.HARDWARE,
            )
        )

    def pending_token(self, flow_token: str) -> PendingToken:
        """The soft token being set up; created on first ask, same secret after.

        Soft tokens only: a hardware token assigned from the inventory keeps its
        seed sealed for good (it is confirmed in `confirm_token` by its code).
        Refused where the person's organisation allows no app tokens."""
        _flow, person = self.flow(flow_token, "token")
        if not policy_for(self.session, person, self.clock.today()).allows(Factor.SOFT_TOKEN):
            raise Conflict(
                "Your organisation does not allow authenticator apps. Ask your administrator "
                "to assign you a hardware token, then come back to this page."
            )
        token = self.session.scalar(
            select(OtpToken).where(
                OtpToken.person_id == person.id,
                OtpToken.state == TokenState.ASSIGNED,
                OtpToken.form == TokenForm.SOFT,
            )
        )
        if token is None:
            home = person.positions[0].organisation_id if person.positions else None
            token, secret = self.otp.new_soft_token(person.id, home)
            self.session.commit()
        else:
            secret = self.otp.secret_of(token)
        return PendingToken(
            token.serial, secret, provisioning_uri(secret, person.username, self.settings.totp)
        )

    def confirm_token(self, flow_token: str, code: str) -> None:
        flow, person = self.flow(flow_token, "token")
        # The soft token being set up, or a hardware token an admin assigned.
        assigned = self.session.scalars(
            select(OtpToken).where(
                OtpToken.person_id == person.id, OtpToken.state == TokenState.ASSIGNED
            )
        ).all()
        token = next((t for t in assigned if self.otp.verify(t, code)), None)
        if token is None:
            self.audit.record(
                "activation:token:failure",
                "failure",
                subject_type="person",
                subject_id=person.id,
                organisation_id=home_organisation(person, self.clock.today()),
            )
            self.session.commit()
            raise InvalidInput(
                FieldProblem("code", "The code is not right. Enter the code your app shows now")
            )
        token.state = TokenState.ACTIVE
        token.activated_at = self.clock.now()
        if token.form is TokenForm.HARDWARE:
            # An app token begun before the hardware one arrived is not needed.
            for other in assigned:
                if other is not token and other.form is TokenForm.SOFT:
                    other.state = TokenState.REVOKED
        flow.stage = "pin"
        self.audit.record(
            "activation:token:confirmed",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            detail={"token": token.serial},
        )
        self.session.commit()

    def set_pin(self, flow_token: str, pin: str, confirmation: str) -> Person:
        flow, person = self.flow(flow_token, "pin")
        now = self.clock.now()
        store_pin(self.session, self.hasher, person, pin, confirmation, now)
        flow.finished_at = now
        person.status = PersonStatus.ACTIVE
        person.status_reason = "activated"
        person.status_changed_at = now
        blockers = access_blockers(person, now.date(), ignore_status=True)
        self.audit.record(
            "activation:completed",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            actor_id=person.id,
            actor_label=person.username,
            detail={"blockers": blockers},
        )
        self.session.commit()
        return person
