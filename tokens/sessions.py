"""Server-side sessions with idle and absolute limits.

The cookie holds a random token; the server holds its digest, its limits and
the person's security epoch at creation. A session is valid only while all of
those hold and the person may still use the service, checked on every request,
so suspension, lapse or sign-out on any node ends it on every node at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from core.clock import Clock
from core.crypto import SecretDigester, new_token
from core.settings import SessionSettings
from directory.models import Person
from directory.service import access_blockers
from tokens.models import AuthSession

LAST_SEEN_GRANULARITY = timedelta(seconds=60)


class SessionHolder(Protocol):
    """Whom a session is for: a `Person`, or the plain values sign-in reads."""

    @property
    def id(self) -> int: ...

    @property
    def security_epoch(self) -> int: ...


# Built once: one INSERT per sign-in, its id back in the same statement.
_INSERT_SESSION = insert(AuthSession).returning(AuthSession.id)


@dataclass(frozen=True)
class LiveSession:
    record: AuthSession
    person: Person


@dataclass
class SessionService:
    session: Session
    digester: SecretDigester
    clock: Clock
    settings: SessionSettings
    # More of a person's access to end with their sessions (tokens issued to
    # relying applications, back-channel logout): registered by the wiring, so
    # every caller of `end_all_for` ends them too without knowing they exist.
    also_end: list[Callable[[Person, str], None]] = field(default_factory=list)

    def start(
        self,
        person: SessionHolder,
        *,
        acr: str,
        amr: list[str],
        client_address: str | None,
        user_agent: str | None,
    ) -> tuple[str, AuthSession]:
        """Insert the session with one Core statement (sign-in makes one each
        time) and hand back the row as a persistent object of this session."""
        token = new_token()
        now = self.clock.now()
        values = {
            "digest": self.digester.digest(token),
            "person_id": person.id,
            "epoch": person.security_epoch,
            "acr": acr,
            "amr": amr,
            "created_at": now,
            "last_seen_at": now,
            "absolute_expires_at": now + timedelta(hours=self.settings.absolute_hours),
            "ended_at": None,
            "ended_reason": None,
            "client_address": client_address,
            "user_agent": (user_agent or "")[:300] or None,
        }
        self.session.flush()  # as the ORM would, before a statement of its own
        record_id = self.session.connection().execute(_INSERT_SESSION, values).scalar_one()
        record = AuthSession(id=record_id, **values)
        make_transient_to_detached(record)
        self.session.add(record)
        return token, record

    def _find(self, token: str) -> AuthSession | None:
        return self.session.scalar(
            select(AuthSession).where(AuthSession.digest == self.digester.digest(token))
        )

    def resume(self, token: str) -> LiveSession | None:
        """The live session for this cookie, or None; ends it if a limit has passed."""
        record = self._find(token)
        if record is None or record.ended_at is not None:
            return None
        person = self.session.get(Person, record.person_id)
        now = self.clock.now()
        reason = None
        if person is None:
            reason = "person removed"
        elif record.epoch != person.security_epoch:
            reason = "access ended"
        elif now >= record.absolute_expires_at:
            reason = "absolute limit"
        elif now - record.last_seen_at >= timedelta(minutes=self.settings.idle_minutes):
            reason = "idle limit"
        elif access_blockers(person, now.date()):
            reason = "access lapsed"
        if reason is not None or person is None:
            self.end(record, reason or "person removed")
            return None
        if now - record.last_seen_at >= LAST_SEEN_GRANULARITY:
            record.last_seen_at = now
        return LiveSession(record, person)

    def end(self, record: AuthSession, reason: str) -> None:
        if record.ended_at is None:
            record.ended_at = self.clock.now()
            record.ended_reason = reason

    def end_by_token(self, token: str, reason: str) -> AuthSession | None:
        record = self._find(token)
        if record is not None:
            self.end(record, reason)
        return record

    def end_all_for(self, person: Person, reason: str) -> None:
        """THE one way to end everything a person holds, at once, on every node:
        suspension, lapse (the sweep), an organisation's suspension, resets and
        lost tokens all come here, so what is added to it applies to all."""
        person.security_epoch += 1
        self.session.execute(
            update(AuthSession)
            .where(AuthSession.person_id == person.id, AuthSession.ended_at.is_(None))
            .values(ended_at=self.clock.now(), ended_reason=reason)
            .execution_options(synchronize_session=False)
        )
        for end in self.also_end:
            end(person, reason)

    def open_sessions(self, person_id: int) -> list[AuthSession]:
        return list(
            self.session.scalars(
                select(AuthSession).where(
                    AuthSession.person_id == person_id, AuthSession.ended_at.is_(None)
                )
            )
        )
