"""Forgotten PIN and forgotten password: resets with nothing weaker than sign-in.

A reset never replaces a factor with something weaker than the factor itself.
An administrator (or the local authority team) of the person's organisation
asks for a reset; a one-time code goes by letter to the outbox. Then:

- Forgotten PIN: the person proves password (step 1), then token code and the
  letter's code (step 2), then chooses a new PIN. The old PIN is never needed.
- Forgotten password: the person proves token code, PIN and the letter's code
  in one step, then chooses a new password. Never by email alone.

Flow states, held server-side in `auth_flow` (the browser holds only a token):

    pin_reset:      password --(token + letter code)--> new_pin --> finished
    password_reset: (token + PIN + letter code) --> new_password --> finished

Every failed proof raises the same `ResetFailed`, whatever was wrong, and is
counted exactly where sign-in counts its failures (`tokens.attempts.Attempts`:
the account's lockout guard and the client address's throttle), so
alternating between sign-in and resets buys an attacker no extra guesses.
Like sign-in, this service commits its own transactions, because a failure
must stay counted and audited although the request that caused it fails.

The letter's code is checked last, so it is used up only once everything else
holds; it is single use, stored as a keyed digest, expires, and is bound to
one person and one purpose (`tokens.codes.LetterCodes`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import SecretDigester, new_token
from core.errors import Conflict, DomainError, NotAllowed
from core.outbox import Outbox
from core.settings import Settings
from directory.accreditation import reason_from
from directory.errors import UnknownPerson
from directory.models import Person, PersonStatus
from directory.service import (
    DirectoryService,
    Principal,
    access_blockers,
    home_organisation,
    require_admin_over,
)
from tokens.attempts import Attempts, Client
from tokens.codes import LetterCodes
from tokens.credentials import store_password, store_pin
from tokens.errors import FlowExpired
from tokens.models import CodePurpose, Flow, PasswordCredential, PinCredential
from tokens.passwords import SecretHasher
from tokens.policy import factor_of_token, policy_for
from tokens.sessions import SessionService
from tokens.signin import SignInService

# How long a reset letter's code works: long enough for the post and a weekend.
RESET_CODE_DAYS = 14
# How long a person has between proving who they are and choosing the new secret.
NEW_SECRET_MINUTES = 15


class ResetKind(enum.StrEnum):
    PIN = "pin"
    PASSWORD = "password"  # noqa: S105 - a kind of reset, not a secret


@dataclass(frozen=True)
class _Journey:
    """What differs between the two resets: names, code purpose, letter wording."""

    kind: ResetKind
    purpose: CodePurpose
    flow_kind: str
    letter_kind: str
    path: str
    noun: str
    steps: str


JOURNEYS = {
    ResetKind.PIN: _Journey(
        ResetKind.PIN,
        CodePurpose.PIN_RESET,
        "pin_reset",
        "pin_reset",
        "/reset-pin",
        "PIN",
        "You will enter your username and password, then the code your token shows "
        "and the reset code below, and then choose a new PIN.",
    ),
    ResetKind.PASSWORD: _Journey(
        ResetKind.PASSWORD,
        CodePurpose.PASSWORD_RESET,
        "password_reset",
        "password_reset",
        "/reset-password",
        "password",
        "You will enter your username, the code your token shows, your PIN and the "
        "reset code below, and then choose a new password.",
    ),
}

# Flow stages.
PASSWORD_STAGE = "password"  # noqa: S105 - a stage name
NEW_PIN = "new_pin"
NEW_PASSWORD = "new_password"  # noqa: S105 - a stage name


class ResetFailed(DomainError):
    """One error for every failed reset proof, whatever was wrong, so that nothing
    tells an attacker which usernames exist, which factor was right, or whether
    a reset letter is outstanding."""

    error_id = "reset.failed"
    title = (
        "The details you entered do not match our records, or the reset cannot be done "
        "at the moment. Check them and your letter and try again. After several failed "
        "attempts the account is locked for a while; your organisation's administrator "
        "can unlock it or send a new letter."
    )


@dataclass(frozen=True)
class ResetLetter:
    """A reset that was asked for: who, which letter, until when its code works."""

    person: Person
    kind: ResetKind
    letter_id: int
    expires_on: date


def may_request_reset(actor: Principal, person: Person, today: date) -> None:
    """Who may send a reset letter: whoever administers the person (their
    organisation admins, the local authority team of their area, platform admins),
    as for unlocking. Never anyone for themselves: a reset for oneself would let
    one stolen factor replace another."""
    if actor.person_id == person.id:
        raise NotAllowed("You cannot ask for a reset of your own account")
    require_admin_over(actor, person, today)


@dataclass
class ResetService:
    session: Session
    settings: Settings
    clock: Clock
    audit: Auditor
    hasher: SecretHasher
    digester: SecretDigester
    codes: LetterCodes
    outbox: Outbox
    sessions: SessionService
    directory: DirectoryService
    signin: SignInService
    attempts: Attempts

    # -- asking for a reset ----------------------------------------------------

    def target(self, actor: Principal, person_id: int) -> Person:
        """The person a reset would be for, if the actor may ask for one; to anyone
        else, an unknown id looks the same as somebody else's person."""
        try:
            person = self.directory.person(person_id)
        except UnknownPerson:
            raise NotAllowed() from None
        may_request_reset(actor, person, self.clock.today())
        return person

    def request(
        self, actor: Principal, person_id: int, kind: ResetKind, reason: str | None = None
    ) -> ResetLetter:
        """Revoke earlier codes for this purpose, write a new one in a letter.

        Commits: a refusal is audited and must stay audited although the
        request that caused it fails."""
        journey = JOURNEYS[kind]
        today = self.clock.today()
        tag = f"reset:{kind.value}"
        try:
            person = self.target(actor, person_id)
        except NotAllowed:
            self.audit.record(
                f"{tag}:refused",
                "refused",
                subject_type="person",
                subject_id=person_id,
                actor_id=actor.person_id or None,
                actor_label=actor.username,
                detail={"reason": "not allowed"},
            )
            self.session.commit()
            raise
        if person.status is not PersonStatus.ACTIVE:
            raise Conflict(
                f"{person.display_name}'s account is {person.status.value.replace('_', ' ')}: "
                "a reset letter would not work"
            )
        why = reason_from(actor, reason)
        code = self.codes.issue(person.id, journey.purpose, timedelta(days=RESET_CODE_DAYS))
        expires_on = today + timedelta(days=RESET_CODE_DAYS)
        organisation_id = home_organisation(person, today)
        service = self.settings.service
        letter = self.outbox.post(
            kind=journey.letter_kind,
            recipient_name=person.display_name,
            person_id=person.id,
            organisation_id=organisation_id,
            body=(
                f"Dear {person.display_name},\n\n"
                f"Your organisation has asked for your {service.name} {journey.noun} "
                "to be reset.\n\n"
                f"Username: {person.username}\n"
                f"{journey.noun[:1].upper()}{journey.noun[1:]} reset code: {code}\n\n"
                f"Go to {service.base_url}{journey.path}. {journey.steps}\n"
                f"The code works once and expires on {expires_on.isoformat()}. "
                f"Any earlier {journey.noun} reset letter no longer works.\n"
                "If you did not ask for this, tell your organisation's administrator.\n"
                "Nobody from the service will ever ask you for this code.\n"
            ),
        )
        self.audit.record(
            f"{tag}:requested",
            subject_type="person",
            subject_id=person.id,
            organisation_id=organisation_id,
            actor_id=actor.person_id or None,
            actor_label=actor.username,
            detail={
                "letter": letter.id,
                "expires_on": expires_on.isoformat(),
                **({"reason": why} if why else {}),
            },
        )
        self.session.commit()
        return ResetLetter(person, kind, letter.id, expires_on)

    # -- throttling and failures (the sign-in guard's own counters) -------------

    def _check_address(self, kind: ResetKind, client: Client) -> None:
        self.attempts.check_address(client, f"reset:{kind.value}")

    def _fail(
        self, kind: ResetKind, client: Client, person: Person | None, stage: str, why: str
    ) -> ResetFailed:
        """Count and audit a failure; return the one error every failure raises.

        Every failure on a known account counts towards its lockout, including
        a locked or suspended one: a reset is no place to be more lenient than
        sign-in."""
        self.attempts.failed(
            client,
            person,
            f"reset:{kind.value}:failure",
            {"stage": stage, "reason": why},
            count=person is not None,
        )
        return ResetFailed()

    def _refusal(self, person: Person) -> str | None:
        """Why this account may not reset now, whatever it proves; None if it may."""
        now = self.clock.now()
        if self.attempts.locked(person):
            return "account locked"
        blockers = access_blockers(person, now.date())
        return "; ".join(blockers) if blockers else None

    def _token_refusal(self, person: Person, code: str) -> str | None:
        """The token code checked as sign-in checks it (each code once), and the
        token allowed by the person's organisations' policy; None if it holds."""
        used = self.signin.verify_code(person, code)
        if used is None:
            return "wrong or reused token code"
        factor = factor_of_token(used.form)
        if not policy_for(self.session, person, self.clock.today()).allows(factor):
            return f"organisation policy forbids {factor.value}"
        return None

    def _redeem(self, person: Person, kind: ResetKind, letter_code: str) -> bool:
        return bool(letter_code) and self.codes.redeem(
            person.id, JOURNEYS[kind].purpose, letter_code
        )

    # -- flows ----------------------------------------------------------------

    def _open_flow(self, person: Person, kind: ResetKind, stage: str, minutes: int) -> str:
        token = new_token()
        now = self.clock.now()
        self.session.add(
            Flow(
                digest=self.digester.digest(token),
                kind=JOURNEYS[kind].flow_kind,
                stage=stage,
                person_id=person.id,
                epoch=person.security_epoch,
                created_at=now,
                expires_at=now + timedelta(minutes=minutes),
                data={},
            )
        )
        return token

    def pending(self, flow_token: str, kind: ResetKind, stage: str) -> Flow | None:
        """The flow if it is at this stage and still usable; None otherwise."""
        if not flow_token:
            return None
        flow = self.session.scalar(
            select(Flow).where(Flow.digest == self.digester.digest(flow_token))
        )
        if (
            flow is None
            or flow.kind != JOURNEYS[kind].flow_kind
            or flow.stage != stage
            or flow.finished_at is not None
            or flow.expires_at <= self.clock.now()
        ):
            return None
        return flow

    def _new_secret_flow(self, flow_token: str, kind: ResetKind, stage: str) -> tuple[Flow, Person]:
        flow = self.pending(flow_token, kind, stage)
        if flow is None:
            raise FlowExpired()
        person = self.directory.person(flow.person_id)
        if flow.epoch != person.security_epoch or self._refusal(person) is not None:
            raise FlowExpired()
        return flow, person

    def _proven(self, person: Person, kind: ResetKind) -> None:
        """Every factor held: the account's failures are forgiven, as at sign-in."""
        self.attempts.succeeded(person)
        self.audit.record(
            f"reset:{kind.value}:proven",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            actor_id=person.id,
            actor_label=person.username,
        )

    # -- forgotten PIN ----------------------------------------------------------

    def begin_pin_reset(self, username: str, password: str, client: Client) -> str:
        """Step 1: username and password. Returns the token of step 2."""
        kind = ResetKind.PIN
        self._check_address(kind, client)
        person = self.directory.person_by_username(username) if username else None
        credential = self.session.get(PasswordCredential, person.id) if person else None
        # Verified even for an unknown username, so the time taken says nothing.
        password_ok = self.hasher.verify(credential.hash if credential else None, password)
        if person is None:
            raise self._fail(kind, client, None, "password", "unknown username")
        refusal = self._refusal(person)
        if refusal is not None:
            raise self._fail(kind, client, person, "password", refusal)
        if not password_ok or credential is None:
            raise self._fail(kind, client, person, "password", "wrong password")
        token = self._open_flow(person, kind, PASSWORD_STAGE, self.settings.signin.flow_minutes)
        self.audit.record(
            "reset:pin:password:success",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            actor_id=person.id,
            actor_label=person.username,
        )
        self.session.commit()
        return token

    def prove_pin_reset(
        self, flow_token: str, token_code: str, letter_code: str, client: Client
    ) -> str:
        """Step 2: the token code and the letter's code. The step-1 flow ends here
        whatever happens; on success a new flow token for choosing the PIN."""
        kind = ResetKind.PIN
        self._check_address(kind, client)
        flow = self.pending(flow_token, kind, PASSWORD_STAGE)
        if flow is None:
            raise FlowExpired()
        flow.finished_at = self.clock.now()
        person = self.directory.person(flow.person_id)
        if flow.epoch != person.security_epoch:
            raise self._fail(kind, client, person, "code", "access ended during the reset")
        refusal = self._refusal(person)
        if refusal is not None:
            raise self._fail(kind, client, person, "code", refusal)
        refusal = self._token_refusal(person, token_code)
        if refusal is not None:
            raise self._fail(kind, client, person, "code", refusal)
        if not self._redeem(person, kind, letter_code):
            raise self._fail(kind, client, person, "code", "wrong, used or expired letter code")
        self._proven(person, kind)
        token = self._open_flow(person, kind, NEW_PIN, NEW_SECRET_MINUTES)
        self.session.commit()
        return token

    def set_new_pin(self, flow_token: str, pin: str, confirmation: str) -> Person:
        """Step 3: the new PIN. Ends every session the person has open."""
        flow, person = self._new_secret_flow(flow_token, ResetKind.PIN, NEW_PIN)
        now = self.clock.now()
        store_pin(self.session, self.hasher, person, pin, confirmation, now)
        flow.finished_at = now
        self.sessions.end_all_for(person, "PIN reset")
        self.audit.record(
            "reset:pin:completed",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            actor_id=person.id,
            actor_label=person.username,
        )
        self.session.commit()
        return person

    # -- forgotten password -----------------------------------------------------

    def prove_password_reset(
        self, username: str, token_code: str, pin: str, letter_code: str, client: Client
    ) -> str:
        """Username, token code, PIN and the letter's code, all at once. Returns
        the token of the flow in which the new password is chosen."""
        kind = ResetKind.PASSWORD
        self._check_address(kind, client)
        person = self.directory.person_by_username(username) if username else None
        pin_row = self.session.get(PinCredential, person.id) if person else None
        # Verified even for an unknown username, so the time taken says nothing.
        pin_ok = self.hasher.verify(pin_row.hash if pin_row else None, pin) and pin_row is not None
        if person is None:
            raise self._fail(kind, client, None, "proof", "unknown username")
        refusal = self._refusal(person)
        if refusal is not None:
            raise self._fail(kind, client, person, "proof", refusal)
        if not pin_ok:
            raise self._fail(kind, client, person, "proof", "wrong PIN")
        refusal = self._token_refusal(person, token_code)
        if refusal is not None:
            raise self._fail(kind, client, person, "proof", refusal)
        if not self._redeem(person, kind, letter_code):
            raise self._fail(kind, client, person, "proof", "wrong, used or expired letter code")
        self._proven(person, kind)
        token = self._open_flow(person, kind, NEW_PASSWORD, NEW_SECRET_MINUTES)
        self.session.commit()
        return token

    def set_new_password(self, flow_token: str, password: str, confirmation: str) -> Person:
        """The new password, under the same rules as at activation. Ends every
        session the person has open."""
        flow, person = self._new_secret_flow(flow_token, ResetKind.PASSWORD, NEW_PASSWORD)
        now = self.clock.now()
        store_password(
            self.session, self.hasher, self.settings.passwords, person, password, confirmation, now
        )
        flow.finished_at = now
        self.sessions.end_all_for(person, "password reset")
        self.audit.record(
            "reset:password:completed",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            actor_id=person.id,
            actor_label=person.username,
        )
        self.session.commit()
        return person
