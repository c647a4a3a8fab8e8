"""The life of a hardware OATH token, from a vendor's PSKC file to retirement.

States (the `TokenState` column; each change is a `TokenEvent` row and an
audit entry with a stable tag):

    in_stock --assign--> assigned --activate (a current code)--> active
    in_stock | assigned | active --report lost--> lost
    in_stock | assigned | active | lost --report stolen--> revoked

- Import is all or nothing: the whole file is checked (PSKC problems, then
  serials already stored) before a single row is written, and the rows are
  written with bulk INSERTs in one transaction, so a 100,000-token file takes
  seconds, not the minutes row-by-row ORM inserts would.
- Seeds are sealed with the data key as they are read, bound to the serial;
  nothing here ever returns one again.
- Organisation admins act only on their own organisation's tokens; platform
  admins (and the CLI operator) on any. A person may activate, resynchronise
  and report their own token.
- A lost or stolen token ends the person's sessions at once (the security
  epoch moves), and sign-in accepts only `active` tokens, so it is dead on
  every node from that moment.
- A replacement is activated by someone who cannot sign in (their token is
  gone): username, password, PIN and the new token's code, with failures as
  uniform, throttled and counted as sign-in failures, through the sign-in
  service's own guard.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyotp
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.errors import Conflict, FieldProblem, InvalidInput, NotAllowed, NotFound
from directory.accreditation import reason_detail
from directory.models import Organisation, Person
from directory.service import DirectoryService, Principal, access_blockers, require_admin_over
from tokens.attempts import Attempts, Client
from tokens.errors import SignInFailed
from tokens.models import (
    OtpAlgorithm,
    OtpToken,
    PasswordCredential,
    PinCredential,
    TokenEvent,
    TokenForm,
    TokenState,
)
from tokens.otp import OtpVerifier
from tokens.passwords import SecretHasher
from tokens.pskc import KeyPackage
from tokens.sessions import SessionService

BATCH = 2000
PAGE_SIZE = 50
HOTP_RESYNC_WINDOW = 100
TOTP_RESYNC_STEPS = 10

Progress = Callable[[int, int], None]


class UnknownToken(NotFound):
    error_id = "token.unknown"
    title = "No such token"


class TokenStateConflict(Conflict):
    error_id = "token.state"
    title = "The token is not in a state that allows that"


@dataclass(frozen=True)
class ImportReport:
    organisation_id: int
    imported: int
    source: str


@dataclass(frozen=True)
class TokenPage:
    items: list[OtpToken]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def _b32(secret: bytes) -> str:
    """The seed as pyotp (and OtpVerifier) expect it: base32 without padding."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


@dataclass
class InventoryService:
    session: Session
    clock: Clock
    audit: Auditor
    otp: OtpVerifier
    sessions: SessionService
    directory: DirectoryService
    hasher: SecretHasher
    attempts: Attempts

    # -- authority ------------------------------------------------------------

    def _administers(self, actor: Principal, organisation_id: int | None) -> bool:
        """Whoever administers the organisation's people manages its tokens
        (`directory.service.administers`: its admins, its area's team)."""
        return self.directory.administers(actor, organisation_id)

    def _require_admin_of(self, actor: Principal, organisation_id: int | None) -> None:
        if not self._administers(actor, organisation_id):
            raise NotAllowed()

    def token(self, actor: Principal, token_id: int) -> OtpToken:
        """A hardware token the actor may see: their organisation's, or their own."""
        token = self.session.get(OtpToken, token_id)
        visible = token is not None and token.form is TokenForm.HARDWARE and (
            self._administers(actor, token.organisation_id) or token.person_id == actor.person_id
        )
        if not visible or token is None:
            # Others' tokens are refused without saying whether they exist.
            if actor.is_platform_admin:
                raise UnknownToken()
            raise NotAllowed()
        return token

    def token_by_serial(self, actor: Principal, serial: str) -> OtpToken:
        token_id = self.session.scalar(select(OtpToken.id).where(OtpToken.serial == serial))
        return self.token(actor, token_id if token_id is not None else -1)

    # -- recording ------------------------------------------------------------

    def _event(
        self, token: OtpToken, event: str, actor: Principal | None, **detail: Any
    ) -> None:
        self.session.add(
            TokenEvent(
                token_id=token.id,
                at=self.clock.now(),
                event=event,
                state=token.state,
                person_id=token.person_id,
                actor_id=(actor.person_id or None) if actor else token.person_id,
                actor_label=actor.username if actor else None,
                detail=detail,
            )
        )

    def _audit(self, tag: str, token: OtpToken, outcome: str = "success", **detail: Any) -> None:
        self.audit.record(
            tag,
            outcome,
            subject_type="otp_token",
            subject_id=token.serial,
            organisation_id=token.organisation_id,
            detail={"person_id": token.person_id, **detail},
        )

    # -- import ---------------------------------------------------------------

    def serials_taken(self, serials: Sequence[str]) -> set[str]:
        taken: set[str] = set()
        for start in range(0, len(serials), 1000):
            chunk = list(serials[start : start + 1000])
            taken.update(self.session.scalars(select(OtpToken.serial).where(
                OtpToken.serial.in_(chunk)
            )))
        return taken

    def import_packages(
        self,
        actor: Principal,
        organisation: Organisation,
        packages: Sequence[KeyPackage],
        *,
        source: str,
        progress: Progress | None = None,
        reason: str | None = None,
    ) -> ImportReport:
        """Put every package in stock for the organisation, or none of them.

        The caller commits; on any error nothing has been written (the checks
        come first, and the caller rolls back anything a failure left behind)."""
        self._require_admin_of(actor, organisation.id)
        why = reason_detail(actor, reason)
        taken = self.serials_taken([p.serial for p in packages])
        if taken:
            raise InvalidInput([
                FieldProblem("SerialNo", f"serial {p.serial} is already in the inventory",
                             row=p.index, source=source)
                for p in packages if p.serial in taken
            ])
        now = self.clock.now()
        total = len(packages)
        label = actor.username
        actor_id = actor.person_id or None
        done = 0
        for start in range(0, total, BATCH):
            batch = packages[start : start + BATCH]
            rows = [
                {
                    "serial": p.serial,
                    "form": TokenForm.HARDWARE,
                    "algorithm": p.algorithm,
                    "digits": p.digits,
                    "period_seconds": p.period_seconds,
                    "secret_ciphertext": self.otp.seal(p.serial, _b32(p.secret)),
                    # HOTP: the next counter expected; TOTP: no step accepted yet.
                    "last_step": p.counter if p.algorithm is OtpAlgorithm.HOTP else 0,
                    "drift_steps": p.drift_steps if p.algorithm is OtpAlgorithm.TOTP else 0,
                    "state": TokenState.IN_STOCK,
                    "organisation_id": organisation.id,
                    "person_id": None,
                    "created_at": now,
                    "activated_at": None,
                }
                for p in batch
            ]
            ids = self.session.scalars(
                insert(OtpToken).returning(OtpToken.id, sort_by_parameter_order=True), rows
            ).all()
            self.session.execute(
                insert(TokenEvent),
                [
                    {
                        "token_id": token_id,
                        "at": now,
                        "event": "imported",
                        "state": TokenState.IN_STOCK,
                        "person_id": None,
                        "actor_id": actor_id,
                        "actor_label": label,
                        "detail": {"source": source},
                    }
                    for token_id in ids
                ],
            )
            done += len(batch)
            if progress is not None:
                progress(done, total)
        # One audit entry for the file: the per-token record is the TokenEvent,
        # and 100,000 entries through the serialised hash chain would add minutes.
        self.audit.record(
            "token:imported",
            subject_type="organisation",
            subject_id=organisation.id,
            organisation_id=organisation.id,
            detail={
                "source": source,
                "count": total,
                "hotp": sum(1 for p in packages if p.algorithm is OtpAlgorithm.HOTP),
                "totp": sum(1 for p in packages if p.algorithm is OtpAlgorithm.TOTP),
                "first_serial": packages[0].serial if packages else None,
                "last_serial": packages[-1].serial if packages else None,
                **why,
            },
        )
        return ImportReport(organisation.id, total, source)

    # -- reading --------------------------------------------------------------

    def list_tokens(
        self,
        actor: Principal,
        organisation_id: int,
        *,
        state: TokenState | None = None,
        page: int = 1,
        per_page: int = PAGE_SIZE,
    ) -> TokenPage:
        self._require_admin_of(actor, organisation_id)
        where = [OtpToken.organisation_id == organisation_id, OtpToken.form == TokenForm.HARDWARE]
        if state is not None:
            where.append(OtpToken.state == state)
        total = int(
            self.session.scalar(select(func.count()).select_from(OtpToken).where(*where)) or 0
        )
        page = max(1, min(page, max(1, math.ceil(total / per_page))))
        items = list(
            self.session.scalars(
                select(OtpToken)
                .where(*where)
                .order_by(OtpToken.serial)
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        )
        return TokenPage(items, total, page, per_page)

    def own_tokens(self, actor: Principal) -> list[OtpToken]:
        """The hardware tokens assigned to the actor, whatever their state."""
        return list(
            self.session.scalars(
                select(OtpToken)
                .where(OtpToken.person_id == actor.person_id, OtpToken.form == TokenForm.HARDWARE)
                .order_by(OtpToken.id)
            )
        )

    def holders(self, tokens: Sequence[OtpToken]) -> dict[int, Person]:
        """The people holding these tokens, in one query, for a list page."""
        ids = {t.person_id for t in tokens if t.person_id is not None}
        if not ids:
            return {}
        return {p.id: p for p in self.session.scalars(select(Person).where(Person.id.in_(ids)))}

    def history(self, actor: Principal, token: OtpToken) -> list[TokenEvent]:
        self.token(actor, token.id)
        return list(
            self.session.scalars(
                select(TokenEvent)
                .where(TokenEvent.token_id == token.id)
                .order_by(TokenEvent.at, TokenEvent.id)
            )
        )

    # -- assignment and activation -----------------------------------------------

    def assign(
        self, actor: Principal, serial: str, person: Person, reason: str | None = None
    ) -> OtpToken:
        """Give an in-stock (or returned) token to a person of its organisation."""
        token = self.token_by_serial(actor, serial)
        self._require_admin_of(actor, token.organisation_id)
        require_admin_over(actor, person, self.clock.today())
        why = reason_detail(actor, reason)
        if token.state not in (TokenState.IN_STOCK, TokenState.RETURNED):
            state = token.state.value.replace("_", " ")
            raise TokenStateConflict(f"Token {token.serial} is {state}, not in stock")
        today = self.clock.today()
        if not any(
            p.organisation_id == token.organisation_id and p.current_on(today)
            for p in person.positions
        ):
            raise NotAllowed("The token belongs to another organisation than the person's")
        token.state = TokenState.ASSIGNED
        token.person_id = person.id
        self._event(token, "assigned", actor, **why)
        self._audit("token:assigned", token, **why)
        self.session.flush()
        return token

    def _count_failure(self, person: Person) -> None:
        """A wrong code counts against the account as at sign-in, so guessing the
        code of an assigned token is as slow as guessing it at sign-in."""
        self.attempts.count_failure(person)

    def activate(self, actor: Principal, token_id: int, code: str) -> OtpToken:
        """The person, signed in, proves they hold the assigned token."""
        token = self.token(actor, token_id)
        if token.person_id != actor.person_id:
            raise NotAllowed("Only the person who holds the token can activate it")
        if token.state is not TokenState.ASSIGNED:
            raise TokenStateConflict()
        person = self.directory.person(actor.person_id)
        if not self.otp.verify(token, code):
            self._count_failure(person)
            self._audit("token:activation:failure", token, "failure")
            self.session.commit()
            raise InvalidInput(FieldProblem("code", "The code is not right. Enter the code "
                                            "the token shows now"))
        self._activated(token, actor)
        return token

    def _activated(self, token: OtpToken, actor: Principal | None) -> None:
        token.state = TokenState.ACTIVE
        token.activated_at = self.clock.now()
        self._event(token, "activated", actor)
        self._audit("token:activated", token)
        self.session.flush()

    def activate_replacement(
        self, username: str, password: str, pin: str, code: str, client: Client
    ) -> Person:
        """Someone whose token is gone activates the replacement an admin assigned.

        Password and PIN are always both checked (two argon2id verifications,
        the same cost whatever is wrong) and every failure is the sign-in
        failure: counted against the account and the address, audited, and
        saying nothing about which part was wrong."""
        self.attempts.check_address(client, "token:replacement")
        person = self.directory.person_by_username(username) if username else None
        credential = self.session.get(PasswordCredential, person.id) if person else None
        pin_row = self.session.get(PinCredential, person.id) if person else None
        password_ok = self.hasher.verify(credential.hash if credential else None, password)
        pin_ok = self.hasher.verify(pin_row.hash if pin_row else None, pin)
        if person is None:
            raise self._replacement_failed(client, None, "unknown username", count=False)
        now = self.clock.now()
        if self.attempts.locked(person):
            raise self._replacement_failed(client, person, "account locked", count=True)
        if not (password_ok and pin_ok and credential is not None and pin_row is not None):
            raise self._replacement_failed(client, person, "wrong password or PIN", count=True)
        blockers = access_blockers(person, now.date())
        if blockers:
            raise self._replacement_failed(client, person, "; ".join(blockers), count=False)
        candidates = self.session.scalars(
            select(OtpToken).where(
                OtpToken.person_id == person.id,
                OtpToken.state == TokenState.ASSIGNED,
                OtpToken.form == TokenForm.HARDWARE,
            )
        ).all()
        token = next((t for t in candidates if self.otp.verify(t, code)), None)
        if token is None:
            raise self._replacement_failed(
                client, person, "no assigned token, or a wrong code", count=True
            )
        self.attempts.succeeded(person)
        self._activated(token, Principal(person.id, person.username, ()))
        self.session.commit()
        return person

    def _replacement_failed(
        self, client: Client, person: Person | None, why: str, *, count: bool
    ) -> SignInFailed:
        """Failures here are sign-in failures: same message, same counters."""
        self.attempts.failed(
            client, person, "signin:replacement:failure", {"reason": why}, count=count
        )
        return SignInFailed()

    # -- keeping in step --------------------------------------------------------

    def _require_holder_or_admin(self, actor: Principal, token: OtpToken) -> Person | None:
        person = self.directory.person(token.person_id) if token.person_id else None
        if person is not None and person.id == actor.person_id:
            return person
        self._require_admin_of(actor, token.organisation_id)
        if person is not None:
            require_admin_over(actor, person, self.clock.today())
        return person

    def resync(
        self, actor: Principal, token_id: int, first: str, second: str, reason: str | None = None
    ) -> OtpToken:
        """Bring a token that drifted back in step, from two consecutive codes.

        HOTP: the two codes must be consecutive counters within a look-ahead of
        100 past the next expected counter; the mark moves past both. TOTP: the
        two codes must be consecutive steps within 10 steps either side of now;
        the drift is stored and the mark moves past both, so neither code can
        be used to sign in afterwards."""
        token = self.token(actor, token_id)
        self._require_holder_or_admin(actor, token)
        why = reason_detail(actor, reason)
        if token.state not in (TokenState.ASSIGNED, TokenState.ACTIVE):
            raise TokenStateConflict()
        first, second = ("".join(c.split()) for c in (first, second))
        codes_ok = all(
            len(c) == token.digits and c.isascii() and c.isdigit() for c in (first, second)
        )
        secret = self.otp.secret_of(token)
        found: int | None = None
        if codes_ok and token.algorithm is OtpAlgorithm.HOTP:
            hotp = pyotp.HOTP(secret, digits=token.digits)
            previous = hotp.at(token.last_step)
            for counter in range(token.last_step, token.last_step + HOTP_RESYNC_WINDOW + 1):
                following = hotp.at(counter + 1)
                if previous == first and following == second:
                    found = counter
                    break
                previous = following
        elif codes_ok:
            totp = pyotp.TOTP(secret, digits=token.digits, interval=token.period_seconds)
            now_step = int(self.clock.now().timestamp()) // token.period_seconds
            for offset in sorted(range(-TOTP_RESYNC_STEPS, TOTP_RESYNC_STEPS + 1), key=abs):
                step = now_step + offset
                if step > token.last_step and (
                    totp.generate_otp(step - 1) == first and totp.generate_otp(step) == second
                ):
                    found = step
                    break
        if found is None:
            self._audit("token:resync:failure", token, "failure")
            self.session.commit()
            raise InvalidInput(FieldProblem(
                "second_code",
                "The codes do not match the token. Enter two codes the token shows one "
                "after the other",
            ))
        before = {"last_step": token.last_step, "drift_steps": token.drift_steps}
        if token.algorithm is OtpAlgorithm.HOTP:
            token.last_step = found + 2
        else:
            token.drift_steps = found - int(self.clock.now().timestamp()) // token.period_seconds
            token.last_step = found
        after = {"last_step": token.last_step, "drift_steps": token.drift_steps}
        self._event(token, "resynced", actor, before=before, after=after, **why)
        self._audit("token:resynced", token, before=before, after=after, **why)
        self.session.flush()
        return token

    # -- loss -----------------------------------------------------------------

    def mark_returned(
        self, actor: Principal, token_id: int, reason: str | None = None
    ) -> OtpToken:
        """A token handed back (its holder left, or changed to another kind) goes
        back into circulation: it no longer signs its holder in, and can be
        assigned again. Only an admin of the token's organisation records this,
        with the token in hand; a lost one that turns up counts too."""
        token = self.token(actor, token_id)
        self._require_admin_of(actor, token.organisation_id)
        why = reason_detail(actor, reason)
        if token.state not in (TokenState.ASSIGNED, TokenState.ACTIVE, TokenState.LOST):
            state = token.state.value.replace("_", " ")
            raise TokenStateConflict(f"Token {token.serial} is {state}: it cannot be returned")
        holder = self.directory.person(token.person_id) if token.person_id else None
        was_active = token.state is TokenState.ACTIVE
        token.state = TokenState.RETURNED
        token.person_id = None
        former = holder.id if holder else None
        self._event(token, "returned", actor, former_holder=former, **why)
        self._audit("token:returned", token, former_holder=former, **why)
        if holder is not None and was_active:
            # The sessions it opened end with it, as for a lost token.
            self.sessions.end_all_for(holder, f"token {token.serial} returned")
        self.session.flush()
        return token

    def report_lost(
        self, actor: Principal, token_id: int, *, stolen: bool = False, reason: str | None = None
    ) -> OtpToken:
        """Take a token out of use at once; its holder's sessions end with it."""
        token = self.token(actor, token_id)
        person = self._require_holder_or_admin(actor, token)
        why = reason_detail(actor, reason)
        allowed = {TokenState.IN_STOCK, TokenState.ASSIGNED, TokenState.ACTIVE}
        if stolen:
            allowed.add(TokenState.LOST)
        if token.state not in allowed:
            raise TokenStateConflict()
        token.state = TokenState.REVOKED if stolen else TokenState.LOST
        event = "revoked" if stolen else "lost"
        self._event(token, event, actor, reported_stolen=stolen, **why)
        self._audit(f"token:{event}", token, reported_stolen=stolen, **why)
        if person is not None:
            self.sessions.end_all_for(person, f"token {token.serial} reported {event}")
        self.session.flush()
        return token
