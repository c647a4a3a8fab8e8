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
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import FromClause, Row, Select, and_, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core.audit import Auditor
from core.clock import Clock
from core.crypto import SecretDigester, new_token
from core.errors import NotAllowed
from core.settings import Settings
from directory.accreditation import reason_from
from directory.models import (
    Organisation,
    Person,
    PersonStatus,
    Position,
)
from directory.service import (
    DirectoryService,
    PositionTerms,
    Principal,
    blockers_for,
    fold_username,
    home_organisation,
    require_admin_over,
)
from tokens.assurance import (
    FEDERATED,
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
from tokens.policy import factor_of_token, policy_of
from tokens.sessions import SessionService
from tokens.webauthn import AssertionRefused, SecurityKeyService, VerifiedKey

SIGNIN = "signin"
SECOND_FACTOR = "second_factor"
STEP_UP = "step_up"
SECURITY_KEY = "security_key"


# -- the statements of the two steps ------------------------------------------------------
#
# Built once, run on the session's connection: each sign-in step reads what it
# needs in one statement, where the ORM took several and cost more in Python
# than argon2id's budget leaves. Failures and rare paths (rehash, clearing a
# failure count, security keys) still go through the ORM objects.

_person = Person.__table__
_position = Position.__table__
_organisation = Organisation.__table__
_guard = SignInGuard.__table__
_flow = Flow.__table__


def _account_query(credential: FromClause, where: Any) -> Select[Any]:
    """The person, one secret's hash, the lock and every position (one row each)."""
    return (
        select(
            _person.c.id,
            _person.c.username,
            _person.c.status,
            _person.c.clearance_expires_on,
            _person.c.training_expires_on,
            _person.c.security_epoch,
            credential.c.hash,
            _guard.c.consecutive_failures,
            _guard.c.lock_count,
            _guard.c.locked_until,
            _guard.c.locked_permanently,
            _position.c.starts_on,
            _position.c.ends_on,
            _position.c.organisation_id,
            _organisation.c.accreditation,
        )
        .select_from(
            _person.outerjoin(credential, credential.c.person_id == _person.c.id)
            .outerjoin(_guard, _guard.c.person_id == _person.c.id)
            # Flat left joins, not `person LEFT JOIN (position JOIN organisation)`:
            # SQLite materialises that nested join, reading every position in
            # the directory at each sign-in. A position always has its
            # organisation, so the second left join adds no row of its own.
            .outerjoin(_position, _position.c.person_id == _person.c.id)
            .outerjoin(_organisation, _organisation.c.id == _position.c.organisation_id)
        )
        .where(where)
        .order_by(_position.c.id)
    )


_ACCOUNT_BY_USERNAME = _account_query(
    PasswordCredential.__table__, _person.c.username_folded == bindparam("folded")
)
_ACCOUNT_BY_ID = _account_query(PinCredential.__table__, _person.c.id == bindparam("person_id"))
_FLOW_BY_DIGEST = select(
    _flow.c.id,
    _flow.c.kind,
    _flow.c.stage,
    _flow.c.person_id,
    _flow.c.epoch,
    _flow.c.expires_at,
    _flow.c.finished_at,
    _flow.c.data,
).where(_flow.c.digest == bindparam("digest"))
_otp_token = OtpToken.__table__
_ACTIVE_TOKENS = select(_otp_token).where(
    and_(_otp_token.c.person_id == bindparam("person_id"), _otp_token.c.state == TokenState.ACTIVE)
)
_INSERT_FLOW = insert(Flow)
# Conditional, so that a flow is used up once even when two requests race.
_FINISH_FLOW = (
    update(Flow)
    .where(and_(_flow.c.id == bindparam("flow_id"), _flow.c.finished_at.is_(None)))
    .values(finished_at=bindparam("now"))
)


@dataclass(frozen=True)
class _Account:
    """What a sign-in step decides on, read with one statement."""

    id: int
    username: str
    status: PersonStatus
    clearance_expires_on: date | None
    training_expires_on: date | None
    security_epoch: int
    secret_hash: str | None  # the password's at step 1, the PIN's at step 2
    failures: bool  # a failure count or a lock to clear on success
    locked_until: datetime | None
    locked_permanently: bool
    positions: tuple[PositionTerms, ...]

    @classmethod
    def from_rows(cls, rows: list[Row[Any]]) -> _Account | None:
        if not rows:
            return None
        first = rows[0]
        return cls(
            id=first.id,
            username=first.username,
            status=first.status,
            clearance_expires_on=first.clearance_expires_on,
            training_expires_on=first.training_expires_on,
            security_epoch=first.security_epoch,
            secret_hash=first.hash,
            failures=bool(first.consecutive_failures or first.lock_count or first.locked_until),
            locked_until=first.locked_until,
            locked_permanently=bool(first.locked_permanently),
            positions=tuple(
                PositionTerms(r.starts_on, r.ends_on, r.organisation_id, r.accreditation)
                for r in rows
                if r.organisation_id is not None
            ),
        )

    def locked(self, now: datetime) -> bool:
        """As `tokens.attempts.is_locked`, on the row read with the person."""
        return self.locked_permanently or (
            self.locked_until is not None and self.locked_until > now
        )

    def blockers(self, today: date) -> list[str]:
        return blockers_for(
            self.status,
            self.clearance_expires_on,
            self.training_expires_on,
            self.positions,
            today,
        )

    def organisations(self, today: date) -> set[int]:
        """Those of current positions in accredited organisations, as
        `directory.service.current_positions` counts them."""
        return {p.organisation_id for p in self.positions if p.counts_on(today)}


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
    person_id: int
    _load_person: Callable[[int], Person] = field(repr=False, compare=False)

    @cached_property
    def person(self) -> Person:
        """Loaded when asked for: the redirect that follows a sign-in needs
        only the token, and the next request loads the person anyway."""
        return self._load_person(self.person_id)


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
    _flow_rows: dict[str, Row[Any]] = field(default_factory=dict, init=False, repr=False)

    @cached_property
    def keys(self) -> SecurityKeyService:
        """Built from this service's own collaborators, so the wiring of
        sign-in stays as it was; it shares the session and the audit log."""
        return SecurityKeyService(
            self.session, self.settings, self.clock, self.audit, self.digester
        )

    # -- failures ---------------------------------------------------------------

    def _fail(
        self,
        client: Client,
        person: Person | _Account | None,
        stage: str,
        why: str,
        *,
        count: bool,
    ) -> SignInFailed:
        """Count and audit a failure; return the one error every failure raises."""
        if isinstance(person, _Account):
            person = self.directory.person(person.id)
        self.attempts.failed(
            client, person, f"signin:{stage}:failure", {"reason": why}, count=count
        )
        return SignInFailed()

    def _account(self, query: Select[Any], **params: object) -> _Account | None:
        rows = list(self.session.connection().execute(query, params))
        return _Account.from_rows(rows)

    # -- step 1 ---------------------------------------------------------------

    def begin(self, username: str, password: str, client: Client) -> str:
        """Check username and password; return the token of the second step."""
        self.attempts.check_address(client, "signin")
        self.session.flush()  # the reads below see this unit's own changes
        account = (
            self._account(_ACCOUNT_BY_USERNAME, folded=fold_username(username))
            if username
            else None
        )
        password_ok = self.hasher.verify(account.secret_hash if account else None, password)
        if account is None:
            raise self._fail(client, None, "password", "unknown username", count=False)
        now = self.clock.now()
        if account.locked(now):
            raise self._fail(client, account, "password", "account locked", count=True)
        if not password_ok or account.secret_hash is None:
            raise self._fail(client, account, "password", "wrong password", count=True)
        blockers = account.blockers(now.date())
        if blockers:
            raise self._fail(client, account, "password", "; ".join(blockers), count=False)
        if self.hasher.needs_rehash(account.secret_hash):
            credential = self.session.get(PasswordCredential, account.id)
            assert credential is not None
            credential.hash = self.hasher.hash(password)
            self.audit.record(
                "credential:password:rehashed", subject_type="person", subject_id=account.id
            )
        return self._second_step(account, now, "signin:password:success", {}, {})

    def _second_step(
        self,
        account: _Account,
        now: datetime,
        tag: str,
        data: dict[str, object],
        detail: dict[str, object],
    ) -> str:
        """Step 1 passed (by password, or upstream): the flow of the second step,
        audited under `tag`; its token for the browser."""
        token = new_token()
        self.session.connection().execute(
            _INSERT_FLOW,
            {
                "digest": self.digester.digest(token),
                "kind": SIGNIN,
                "stage": SECOND_FACTOR,
                "person_id": account.id,
                "epoch": account.security_epoch,
                "created_at": now,
                "expires_at": now + timedelta(minutes=self.settings.signin.flow_minutes),
                "finished_at": None,
                "data": data,
            },
        )
        self.audit.record(
            tag,
            subject_type="person",
            subject_id=account.id,
            actor_id=account.id,
            actor_label=account.username,
            detail=detail or None,
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

    def _flow_row(self, flow_token: str) -> Row[Any] | None:
        """The flow's row if it is a sign-in waiting for its second step. The
        page checks before `complete` does, in the same unit of work: the
        second look reuses the first one's row."""
        digest = self.digester.digest(flow_token)
        row: Row[Any] | None = self._flow_rows.get(digest)
        if row is None:
            row = self.session.connection().execute(_FLOW_BY_DIGEST, {"digest": digest}).first()  # type: ignore[assignment]
            if row is not None:
                self._flow_rows[digest] = row
        if (
            row is None
            or row.kind != SIGNIN
            or row.stage != SECOND_FACTOR
            or row.finished_at is not None
            or row.expires_at <= self.clock.now()
        ):
            return None
        return row

    def is_pending(self, flow_token: str) -> bool:
        """Whether this is a sign-in waiting for its second step (the page's check)."""
        return self._flow_row(flow_token) is not None

    def _finish_flow(self, flow_token: str, flow_id: int) -> bool:
        """Use the flow up; False if another request used it first."""
        now = self.clock.now()
        digest = self.digester.digest(flow_token)
        self._flow_rows.pop(digest, None)
        result = self.session.connection().execute(_FINISH_FLOW, {"flow_id": flow_id, "now": now})
        loaded = self._flows.get(digest)
        if loaded is not None:  # keep a flow object this unit loaded in step, unflushed
            set_committed_value(loaded, "finished_at", now)
        return bool(result.rowcount == 1)

    def complete(self, flow_token: str, code: str, pin: str, client: Client) -> SignedIn:
        """Check the token code and PIN; start a session with its assurance."""

        def token_code(account: _Account) -> _Factor:
            used = self._verify_code(account.id, code)
            if used is None:
                raise _Refused("wrong or reused token code", count=True)
            factor = factor_of_token(used.form)
            policy = policy_of(self.session, account.organisations(self.clock.today()))
            if not policy.allows(factor):
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

        def security_key(account: _Account) -> _Factor:
            person = self.directory.person(account.id)
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
        check: Callable[[_Account], _Factor],
    ) -> SignedIn:
        """The second step whatever the factor: the flow is used up, the PIN,
        the lock and the person's access are checked alike, and every refusal
        is the same `SignInFailed`."""
        self.attempts.check_address(client, "signin")
        self.session.flush()  # the reads below see this unit's own changes
        flow = self._flow_row(flow_token)
        if flow is None:
            raise FlowExpired()
        account = self._account(_ACCOUNT_BY_ID, person_id=flow.person_id)
        if account is None or not self._finish_flow(flow_token, flow.id):
            raise FlowExpired()
        pin_ok = (
            self.hasher.verify(account.secret_hash, pin) and account.secret_hash is not None
        )
        now = self.clock.now()
        if flow.epoch != account.security_epoch:
            raise self._fail(
                client, account, "second_factor", "access ended during sign-in", count=False
            )
        if account.locked(now):
            raise self._fail(client, account, "second_factor", "account locked", count=True)
        if not pin_ok:
            raise self._fail(client, account, "second_factor", "wrong PIN", count=True)
        try:
            factor = check(account)
        except _Refused as refused:
            raise self._fail(
                client, account, "second_factor", refused.reason, count=refused.count
            ) from refused
        blockers = account.blockers(now.date())
        if blockers:
            raise self._fail(client, account, "second_factor", "; ".join(blockers), count=False)
        amr = factor.amr
        if (flow.data or {}).get("first") == FEDERATED:
            # The first factor was proved upstream, not with our password.
            amr = [FEDERATED if method == PASSWORD else method for method in amr]
        assert account.secret_hash is not None
        if self.hasher.needs_rehash(account.secret_hash):
            pin_row = self.session.get(PinCredential, account.id)
            assert pin_row is not None
            pin_row.hash = self.hasher.hash(pin)
        if account.failures:
            self.attempts.succeeded(self.directory.person(account.id))
        return self._start_session(account, factor.acr, amr, client, factor.detail)

    def _start_session(
        self,
        account: _Account,
        acr: str,
        amr: list[str],
        client: Client,
        detail: dict[str, object],
    ) -> SignedIn:
        token, record = self.sessions.start(
            account,
            acr=acr,
            amr=amr,
            client_address=client.address,
            user_agent=client.user_agent,
        )
        self.audit.record(
            "signin:success",
            subject_type="person",
            subject_id=account.id,
            actor_id=account.id,
            actor_label=account.username,
            detail={"acr": record.acr, "amr": amr, **detail},
        )
        self.session.commit()
        return SignedIn(token, record, account.id, self.directory.person)

    # -- step 1 at an organisation's own identity provider ------------------------

    def begin_upstream(
        self,
        person_id: int,
        organisation_id: int,
        issuer: str,
        client: Client,
        *,
        accepted: bool,
    ) -> str | SignedIn:
        """The first factor proved at an organisation's provider, for the person
        its (issuer, subject) is linked to. The person's access is checked as at
        step 1, and they must hold a current position in that organisation.
        Unless the organisation accepts the upstream `acr` as level 2
        (`accepted`), return the token of the usual second step (token code and
        PIN); otherwise start a level 2 session at once."""
        self.attempts.check_address(client, "signin")
        self.session.flush()
        account = self._account(_ACCOUNT_BY_ID, person_id=person_id)
        if account is None:
            raise self._fail(client, None, "federated", "linked person not found", count=False)
        now = self.clock.now()
        if account.locked(now):
            raise self._fail(client, account, "federated", "account locked", count=False)
        blockers = account.blockers(now.date())
        if blockers:
            raise self._fail(client, account, "federated", "; ".join(blockers), count=False)
        if organisation_id not in account.organisations(now.date()):
            raise self._fail(
                client,
                account,
                "federated",
                "no current position in the provider's organisation",
                count=False,
            )
        if accepted:
            return self._start_session(
                account,
                acr_for_level(2, self.settings.assurance),
                [FEDERATED],
                client,
                {"upstream": issuer},
            )
        return self._second_step(
            account,
            now,
            "signin:federated:success",
            {"first": FEDERATED, "upstream": issuer},
            {"upstream": issuer},
        )

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

    def _verify_code(self, person_id: int, code: str) -> OtpToken | None:
        """The person's active token that accepts this code, now used up.

        Read with one Core statement into objects outside the session: the
        mark that refuses a replay moves in the database, with a conditional
        UPDATE (`OtpVerifier.claim`), never through these objects."""
        rows = self.session.connection().execute(_ACTIVE_TOKENS, {"person_id": person_id})
        for row in rows.all():
            token = OtpToken(**row._mapping)
            if self.otp.verify(token, code):
                return token
        return None

    # -- administration --------------------------------------------------------

    def unlock(self, actor: Principal, person: Person, reason: str | None = None) -> None:
        """Whoever administers the person unlocks them (`require_admin_over`);
        a platform admin says why (`reason_from`)."""
        try:
            require_admin_over(actor, person, self.clock.now().date())
        except NotAllowed:
            # Kept although the request fails, as every refusal to an administrator is.
            self.audit.record(
                "signin:unlock:refused",
                "refused",
                subject_type="person",
                subject_id=person.id,
                actor_id=actor.person_id or None,
                actor_label=actor.username,
                detail={"reason": "not allowed"},
            )
            self.session.commit()
            raise
        why = reason_from(actor, reason)
        guard = guard_for(self.session, person.id)
        guard.consecutive_failures = 0
        guard.lock_count = 0
        guard.locked_until = None
        guard.locked_permanently = False  # only an admin lifts this one
        self.audit.record(
            "signin:unlocked",
            subject_type="person",
            subject_id=person.id,
            organisation_id=home_organisation(person, self.clock.today()),
            detail={"reason": why} if why else None,
        )

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
