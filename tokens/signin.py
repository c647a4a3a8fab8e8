"""Four-factor sign-in: username and password, then token code (or a security
key) and PIN; and the step-up of a live session to assurance level 3.

Every failure raises the same `SignInFailed`, costs about the same time (an
argon2id verification is made even for an unknown username) and is counted
against the account and the client address. This service commits its own
transactions, because a failure must be counted and audited even though the
request that caused it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import SecretDigester, new_token
from core.settings import Settings
from directory.models import Person
from directory.service import (
    DirectoryService,
    Principal,
    access_blockers,
    require_admin_over,
)
from tokens.assurance import (
    HARDWARE_KEY,
    OTP,
    PASSWORD,
    PIN,
    SOFTWARE_KEY,
    acr_for_level,
    merge_amr,
    security_key_amr,
)
from tokens.attempts import Attempts, Client, guard_for
from tokens.errors import FlowExpired, SignInFailed
from tokens.models import (
    AuthSession,
    Flow,
    OtpToken,
    PasswordCredential,
    PinCredential,
    SignInGuard,
    TokenForm,
    TokenState,
)
from tokens.otp import OtpVerifier
from tokens.passwords import SecretHasher
from tokens.policy import factor_of_token
from tokens.sessions import SessionService
from tokens.webauthn import AssertionRefused, SecurityKeyService, VerifiedKey

SIGNIN = "signin"
SECOND_FACTOR = "second_factor"
STEP_UP = "step_up"
SECURITY_KEY = "security_key"


@dataclass(frozen=True)
class _Factor:
    """What a verified second factor grants."""

    acr: str
    amr: list[str]
    detail: dict[str, object]


class _Refused(Exception):
    """A second factor refused, with the reason for the audit log."""

    def __init__(self, reason: str, *, count: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.count = count


@dataclass(frozen=True)
class SignedIn:
    token: str
    record: AuthSession
    person: Person


@dataclass
class SignInService:
    session: Session
    settings: Settings
    clock: Clock
    audit: Auditor
    hasher: SecretHasher
    digester: SecretDigester
    otp: OtpVerifier
    sessions: SessionService
    directory: DirectoryService
    attempts: Attempts
    _flows: dict[str, Flow] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def keys(self) -> SecurityKeyService:
        """Built from this service's own collaborators, so the wiring of
        sign-in stays as it was; it shares the session and the audit log."""
        return SecurityKeyService(
            self.session, self.settings, self.clock, self.audit, self.digester
        )

    # -- failures ---------------------------------------------------------------

    def _fail(
        self, client: Client, person: Person | None, stage: str, why: str, *, count: bool
    ) -> SignInFailed:
        """Count and audit a failure; return the one error every failure raises."""
        self.attempts.failed(
            client, person, f"signin:{stage}:failure", {"reason": why}, count=count
        )
        return SignInFailed()

    # -- step 1 ---------------------------------------------------------------

    def begin(self, username: str, password: str, client: Client) -> str:
        """Check username and password; return the token of the second step."""
        self.attempts.check_address(client, "signin")
        person = self.directory.person_by_username(username) if username else None
        credential = self.session.get(PasswordCredential, person.id) if person else None
        password_ok = self.hasher.verify(credential.hash if credential else None, password)
        if person is None:
            raise self._fail(client, None, "password", "unknown username", count=False)
        now = self.clock.now()
        if self.attempts.locked(person):
            raise self._fail(client, person, "password", "account locked", count=True)
        if not password_ok or credential is None:
            raise self._fail(client, person, "password", "wrong password", count=True)
        blockers = access_blockers(person, now.date())
        if blockers:
            raise self._fail(client, person, "password", "; ".join(blockers), count=False)
        if self.hasher.needs_rehash(credential.hash):
            credential.hash = self.hasher.hash(password)
            self.audit.record(
                "credential:password:rehashed", subject_type="person", subject_id=person.id
            )
        token = new_token()
        self.session.add(
            Flow(
                digest=self.digester.digest(token),
                kind=SIGNIN,
                stage=SECOND_FACTOR,
                person_id=person.id,
                epoch=person.security_epoch,
                created_at=now,
                expires_at=now + timedelta(minutes=self.settings.signin.flow_minutes),
                data={},
            )
        )
        self.audit.record(
            "signin:password:success",
            subject_type="person",
            subject_id=person.id,
            actor_id=person.id,
            actor_label=person.username,
        )
        self.session.commit()
        return token

    # -- step 2 ---------------------------------------------------------------

    def pending_flow(self, flow_token: str) -> Flow | None:
        digest = self.digester.digest(flow_token)
        # The page checks the flow before `complete` does, in the same unit of
        # work: the second look reuses the row the first one loaded.
        flow = self._flows.get(digest)
        if flow is None:
            flow = self.session.scalar(select(Flow).where(Flow.digest == digest))
            if flow is not None:
                self._flows[digest] = flow
        if (
            flow is None
            or flow.kind != SIGNIN
            or flow.stage != SECOND_FACTOR
            or flow.finished_at is not None
            or flow.expires_at <= self.clock.now()
        ):
            return None
        return flow

    def complete(self, flow_token: str, code: str, pin: str, client: Client) -> SignedIn:
        """Check the token code and PIN; start a session with its assurance."""

        def token_code(person: Person) -> _Factor:
            used = self.verify_code(person, code)
            if used is None:
                raise _Refused("wrong or reused token code", count=True)
            factor = factor_of_token(used.form)
            if not self.keys.policy(person).allows(factor):
                # The code was right, so this is no guess: not counted.
                raise _Refused(f"organisation policy forbids {factor.value}", count=False)
            hwk_or_swk = HARDWARE_KEY if used.form is TokenForm.HARDWARE else SOFTWARE_KEY
            return _Factor(
                acr=acr_for_level(2, self.settings.assurance),
                amr=[PASSWORD, OTP, hwk_or_swk, PIN],
                detail={"token": used.serial},
            )

        return self._second_factor(flow_token, pin, client, token_code)

    def key_options(self, flow_token: str) -> str | None:
        """Options for the browser's navigator.credentials.get(), for the person
        of a pending sign-in; the challenge is kept in the flow, replacing any
        earlier one. None when the flow is not pending."""
        flow = self.pending_flow(flow_token)
        if flow is None:
            return None
        person = self.directory.person(flow.person_id)
        challenge = self.keys.assertion_challenge(person)
        flow.data = {**flow.data, "key_challenge": challenge.challenge}
        self.session.commit()
        return challenge.options_json

    def complete_with_key(
        self, flow_token: str, credential_json: str, pin: str, client: Client
    ) -> SignedIn:
        """A security key's assertion in place of the token code, and the PIN:
        assurance level 3."""
        flow = self.pending_flow(flow_token)
        challenge = str(flow.data.get("key_challenge") or "") if flow is not None else ""

        def security_key(person: Person) -> _Factor:
            verified = self._verify_key(person, credential_json, challenge)
            return _Factor(
                acr=acr_for_level(3, self.settings.assurance),
                amr=security_key_amr(),
                detail={"key_id": verified.key.id, "user_verified": verified.user_verified},
            )

        return self._second_factor(flow_token, pin, client, security_key)

    def _verify_key(self, person: Person, credential_json: str, challenge: str) -> VerifiedKey:
        try:
            return self.keys.verify_assertion(
                person, credential_json, challenge, self.clock.now()
            )
        except AssertionRefused as refused:
            policy = refused.reason.startswith("organisation policy")
            raise _Refused(refused.reason, count=not policy) from refused

    def _second_factor(
        self,
        flow_token: str,
        pin: str,
        client: Client,
        check: Callable[[Person], _Factor],
    ) -> SignedIn:
        """The second step whatever the factor: the flow is used up, the PIN,
        the lock and the person's access are checked alike, and every refusal
        is the same `SignInFailed`."""
        self.attempts.check_address(client, "signin")
        flow = self.pending_flow(flow_token)
        if flow is None:
            raise FlowExpired()
        person = self.directory.person(flow.person_id)
        flow.finished_at = self.clock.now()
        pin_row = self.session.get(PinCredential, person.id)
        pin_ok = self.hasher.verify(pin_row.hash if pin_row else None, pin) and pin_row is not None
        now = self.clock.now()
        if flow.epoch != person.security_epoch:
            raise self._fail(
                client, person, "second_factor", "access ended during sign-in", count=False
            )
        if self.attempts.locked(person):
            raise self._fail(client, person, "second_factor", "account locked", count=True)
        if not pin_ok:
            raise self._fail(client, person, "second_factor", "wrong PIN", count=True)
        try:
            factor = check(person)
        except _Refused as refused:
            raise self._fail(
                client, person, "second_factor", refused.reason, count=refused.count
            ) from refused
        blockers = access_blockers(person, now.date())
        if blockers:
            raise self._fail(client, person, "second_factor", "; ".join(blockers), count=False)
        assert pin_row is not None
        if self.hasher.needs_rehash(pin_row.hash):
            pin_row.hash = self.hasher.hash(pin)
        self.attempts.succeeded(person)
        token, record = self.sessions.start(
            person,
            acr=factor.acr,
            amr=factor.amr,
            client_address=client.address,
            user_agent=client.user_agent,
        )
        self.audit.record(
            "signin:success",
            subject_type="person",
            subject_id=person.id,
            actor_id=person.id,
            actor_label=person.username,
            detail={"acr": record.acr, "amr": factor.amr, **factor.detail},
        )
        self.session.commit()
        return SignedIn(token, record, person)

    # -- step-up to level 3 ----------------------------------------------------

    def begin_step_up(self, record: AuthSession) -> tuple[str, str]:
        """Start raising a live session to level 3 with a security key and the
        PIN; return the flow's token and the options for the browser."""
        person = self.directory.person(record.person_id)
        challenge = self.keys.assertion_challenge(person)
        token = new_token()
        now = self.clock.now()
        self.session.add(
            Flow(
                digest=self.digester.digest(token),
                kind=STEP_UP,
                stage=SECURITY_KEY,
                person_id=person.id,
                epoch=person.security_epoch,
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.webauthn.challenge_seconds),
                data={"key_challenge": challenge.challenge, "session_id": record.id},
            )
        )
        self.session.commit()
        return token, challenge.options_json

    def step_up(
        self,
        flow_token: str,
        record: AuthSession,
        credential_json: str,
        pin: str,
        client: Client,
    ) -> AuthSession:
        """Check a security key and the PIN for a live session and raise the
        session's acr to level 3 and its amr by the methods used. Failures are
        the uniform `SignInFailed`, counted against the account like any other."""
        self.attempts.check_address(client, "signin")
        digest = self.digester.digest(flow_token) if flow_token else ""
        flow = self.session.scalar(select(Flow).where(Flow.digest == digest)) if digest else None
        if (
            flow is None
            or flow.kind != STEP_UP
            or flow.finished_at is not None
            or flow.expires_at <= self.clock.now()
            or flow.data.get("session_id") != record.id
            or flow.person_id != record.person_id
        ):
            raise FlowExpired()
        flow.finished_at = self.clock.now()
        person = self.directory.person(record.person_id)
        pin_row = self.session.get(PinCredential, person.id)
        pin_ok = self.hasher.verify(pin_row.hash if pin_row else None, pin) and pin_row is not None
        if record.ended_at is not None or flow.epoch != person.security_epoch:
            raise self._fail(client, person, "step_up", "session ended", count=False)
        if self.attempts.locked(person):
            raise self._fail(client, person, "step_up", "account locked", count=True)
        if not pin_ok:
            raise self._fail(client, person, "step_up", "wrong PIN", count=True)
        try:
            verified = self._verify_key(
                person, credential_json, str(flow.data.get("key_challenge") or "")
            )
        except _Refused as refused:
            raise self._fail(
                client, person, "step_up", refused.reason, count=refused.count
            ) from refused
        self.attempts.succeeded(person)
        before = record.acr
        record.acr = acr_for_level(3, self.settings.assurance)
        record.amr = merge_amr(record.amr, [HARDWARE_KEY, PIN])
        self.audit.record(
            "session:stepped_up",
            subject_type="person",
            subject_id=person.id,
            actor_id=person.id,
            actor_label=person.username,
            detail={
                "from": before,
                "acr": record.acr,
                "amr": record.amr,
                "key_id": verified.key.id,
                "user_verified": verified.user_verified,
            },
        )
        self.session.commit()
        return record

    def verify_code(self, person: Person, code: str) -> OtpToken | None:
        tokens = self.session.scalars(
            select(OtpToken).where(
                OtpToken.person_id == person.id, OtpToken.state == TokenState.ACTIVE
            )
        )
        for token in tokens:
            if self.otp.verify(token, code):
                return token
        return None

    # -- administration --------------------------------------------------------

    def unlock(self, actor: Principal, person: Person) -> None:
        """Organisation admins unlock their own people; platform admins anyone."""
        require_admin_over(actor, person, self.clock.now().date())
        guard = guard_for(self.session, person.id)
        guard.consecutive_failures = 0
        guard.lock_count = 0
        guard.locked_until = None
        guard.locked_permanently = False  # only an admin lifts this one
        self.audit.record("signin:unlocked", subject_type="person", subject_id=person.id)

    def lock_states(self, person_ids: list[int]) -> dict[int, str]:
        """How each person's sign-in stands, in words an administrator reads."""
        now = self.clock.now()
        guards = self.session.scalars(
            select(SignInGuard).where(SignInGuard.person_id.in_(person_ids))
        )
        states: dict[int, str] = {}
        for guard in guards:
            if guard.locked_permanently:
                states[guard.person_id] = "Locked until unlocked"
            elif guard.locked_until is not None and guard.locked_until > now:
                states[guard.person_id] = f"Locked until {guard.locked_until:%H:%M} UTC"
        return states

    def sign_out(self, session_token: str) -> None:
        record = self.sessions.end_by_token(session_token, "signed out")
        if record is not None:
            self.audit.record(
                "session:signed_out",
                subject_type="person",
                subject_id=record.person_id,
                actor_id=record.person_id,
            )
        self.session.commit()
