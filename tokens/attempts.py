"""Failed attempts at proving who someone is, counted alike in every journey.

Sign-in, the reset journeys and the activation of a replacement token all ask
for some of the same secrets; a guess at any of them must cost the same. This
is the one place that counts a failure against the account (consecutive
failures, timed locks that double, the permanent lock) and against the client
address, audits it, and commits it before the caller reports the failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.settings import Settings
from core.shared_state import SharedState
from directory.models import Person
from directory.service import home_organisation
from tokens.errors import TooManyAttempts
from tokens.models import SignInGuard


@dataclass(frozen=True)
class Client:
    address: str
    user_agent: str | None = None


def guard_for(session: Session, person_id: int) -> SignInGuard:
    guard = session.get(SignInGuard, person_id)
    if guard is None:
        guard = SignInGuard(person_id=person_id, consecutive_failures=0, lock_count=0)
        session.add(guard)
        session.flush()
    return guard


def is_locked(guard: SignInGuard, now: datetime) -> bool:
    return guard.locked_permanently or (guard.locked_until is not None and guard.locked_until > now)


@dataclass
class Attempts:
    session: Session
    settings: Settings
    clock: Clock
    audit: Auditor
    shared: SharedState

    def address_key(self, client: Client) -> str:
        return f"signin:address:{client.address}"

    def check_address(self, client: Client, journey: str) -> None:
        """Refuse at once when this address has failed too often in the window."""
        window = self.settings.signin.address_window_seconds
        key = self.address_key(client)
        if self.shared.count(key, window) >= self.settings.signin.address_failures_per_window:
            self.audit.record(f"{journey}:throttled", "refused", detail={"scope": "address"})
            self.session.commit()
            raise TooManyAttempts(self.shared.retry_after(key, window))

    def locked(self, person: Person) -> bool:
        return is_locked(guard_for(self.session, person.id), self.clock.now())

    def failed(
        self,
        client: Client,
        person: Person | None,
        tag: str,
        detail: dict[str, object],
        *,
        count: bool,
    ) -> None:
        """Count a failure against the address (and the account when `count`),
        audit it under `tag`, and commit, since the request itself will fail."""
        self.shared.hit(self.address_key(client), self.settings.signin.address_window_seconds)
        if person is not None and count:
            self.count_failure(person)
        self.audit.record(
            tag,
            "failure",
            subject_type="person" if person else None,
            subject_id=person.id if person else None,
            organisation_id=home_organisation(person, self.clock.today()) if person else None,
            detail=detail,
            actor_id=person.id if person else None,
            actor_label=person.username if person else None,
        )
        self.session.commit()

    def count_failure(self, person: Person) -> None:
        now = self.clock.now()
        guard = guard_for(self.session, person.id)
        guard.consecutive_failures += 1
        guard.last_failure_at = now
        rules = self.settings.signin
        if (
            guard.consecutive_failures >= rules.permanent_lockout_after
            and not guard.locked_permanently
        ):
            guard.locked_permanently = True
            self.audit.record(
                "signin:lockout:permanent",
                subject_type="person",
                subject_id=person.id,
                organisation_id=home_organisation(person, self.clock.today()),
                detail={"consecutive_failures": guard.consecutive_failures},
            )
        elif guard.consecutive_failures >= rules.lockout_threshold and not is_locked(guard, now):
            guard.lock_count += 1
            minutes = rules.lockout_minutes * 2 ** (guard.lock_count - 1)
            guard.locked_until = now + timedelta(minutes=minutes)
            self.audit.record(
                "signin:lockout",
                subject_type="person",
                subject_id=person.id,
                organisation_id=home_organisation(person, self.clock.today()),
                detail={"minutes": minutes, "consecutive_failures": guard.consecutive_failures},
            )

    def succeeded(self, person: Person) -> None:
        """A full proof of identity clears the count and any timed lock."""
        guard = guard_for(self.session, person.id)
        guard.consecutive_failures = 0
        guard.lock_count = 0
        guard.locked_until = None
