"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0).

When a person's session ends here (sign-out, suspension, a reset, a sweep of
lapsed clearances) every relying application they signed in to must hear of
it, whichever code path ended it. So this listens to the database: a commit
that ended a session or bumped a security epoch triggers a pass that revokes
the grants of ended sessions and posts a logout token to each application.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session, attributes

from directory.models import Person, PersonStatus
from idp.oidc.models import ClientStatus, Grant, LogoutNotice, OAuthClient
from tokens.models import AuthSession

if TYPE_CHECKING:
    from idp.container import Container
    from idp.oidc.keys import KeyStore

_DUE = "oidc_logout_due"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_ATTEMPTS = 5


def _changed(obj: object, name: str) -> bool:
    return bool(attributes.get_history(obj, name).has_changes())


def watch(factory: Any, container: Container, keys: KeyStore) -> None:
    """Hook the session factory: mark commits that end access, act after them."""

    @event.listens_for(factory, "before_flush")
    def _mark(session: Session, _context: Any, _instances: Any) -> None:
        for obj in session.dirty:
            if (isinstance(obj, Person) and (_changed(obj, "security_epoch")
                                             or _changed(obj, "status"))) or (
                isinstance(obj, AuthSession) and _changed(obj, "ended_at")
            ):
                session.info[_DUE] = True
                return

    @event.listens_for(factory, "after_commit")
    def _act(session: Session) -> None:
        if session.info.pop(_DUE, False):
            BackChannel(container, keys).run()


class BackChannel:
    def __init__(self, container: Container, keys: KeyStore) -> None:
        self.container = container
        self.keys = keys

    def collect(self, session: Session) -> int:
        """Revoke the grants whose sign-in has ended; owe each application a notice."""
        now = self.container.clock.now()
        rows = session.execute(
            select(Grant, OAuthClient.backchannel_logout_uri)
            .join(Person, Person.id == Grant.person_id)
            .outerjoin(AuthSession, AuthSession.id == Grant.auth_session_id)
            .join(OAuthClient, OAuthClient.client_id == Grant.client_id)
            .where(
                Grant.revoked_at.is_(None),
                Grant.expires_at > now,
                or_(
                    AuthSession.ended_at.is_not(None),
                    Person.security_epoch != Grant.person_epoch,
                    Person.status != PersonStatus.ACTIVE,
                ),
            )
        ).all()
        for grant, uri in rows:
            grant.revoked_at = now
            grant.revoked_reason = "session ended"
            if uri:
                session.add(LogoutNotice(grant_id=grant.id, client_id=grant.client_id,
                                         created_at=now, attempts=0))
        return len(rows)

    def logout_token(self, session: Session, grant: Grant, subject: str) -> str:
        now = int(self.container.clock.now().timestamp())
        claims = {
            "iss": self.container.settings.issuer,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": secrets.token_urlsafe(16),
            "sub": subject,
            "sid": grant.sid,
            "events": {BACKCHANNEL_EVENT: {}},
        }
        return self.keys.sign(session, self.container.clock, claims, alg="ES256",
                              typ="logout+jwt")

    def deliver(self, session: Session) -> tuple[int, int]:
        from idp.oidc.provider import ClientView, subject_for

        sent = failed = 0
        pending = session.scalars(
            select(LogoutNotice).where(LogoutNotice.delivered_at.is_(None),
                                       LogoutNotice.attempts < MAX_ATTEMPTS)
        ).all()
        timeout = self.container.settings.oidc.backchannel_timeout_seconds
        for notice in pending:
            client = session.scalar(
                select(OAuthClient).where(OAuthClient.client_id == notice.client_id))
            grant = session.get(Grant, notice.grant_id)
            person = session.get(Person, grant.person_id) if grant else None
            if client is None or grant is None or person is None or not (
                client.backchannel_logout_uri and client.status is ClientStatus.APPROVED
            ):
                notice.attempts = MAX_ATTEMPTS
                notice.last_error = "application gone"
                continue
            view = ClientView.of(client, self.container.digester.matches)
            with self.container.unit() as helper:
                subject = subject_for(person, view, helper)
            body = urllib.parse.urlencode(
                {"logout_token": self.logout_token(session, grant, subject)}).encode()
            request = urllib.request.Request(  # noqa: S310 - registered https (or loopback) URI
                client.backchannel_logout_uri, data=body, method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            notice.attempts += 1
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                    ok = 200 <= response.status < 300
            except (urllib.error.URLError, OSError, ValueError) as exc:
                ok = False
                notice.last_error = str(getattr(exc, "reason", exc))[:200]
            if ok:
                notice.delivered_at = self.container.clock.now()
                notice.last_error = None
                sent += 1
            else:
                failed += 1
        return sent, failed

    def run(self) -> tuple[int, int, int]:
        """Collect and deliver; (grants ended, notices sent, notices failed)."""
        with self.container.unit() as unit:
            ended = self.collect(unit.session)
            unit.commit()
            sent, failed = self.deliver(unit.session)
            unit.commit()
        return ended, sent, failed
