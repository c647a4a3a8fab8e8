"""Who is calling the API: a bearer access token from this service, and nothing else.

A session cookie never counts here (no CSRF exposure, no ambient authority).
The token must be good (`idp.oidc.views.verified_access_token`: signature,
expiry, revocation, its person's standing), carry the `admin` scope, name this
API as its audience, and come from an application that is still approved.
A person's token acts as that person, with their current positions; an
application's own token (client credentials) acts as an organisation admin of
the application's organisation, and is audited as `client:<client_id>`.

The child-record operations take scope `children.read` instead, and only a
person's token: a relying application reads child records for the
practitioner signed in through it, never for itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from directory.models import Accreditation, Organisation, Person, Role
from directory.service import Grant, Principal, principal_for
from idp import web
from idp.oidc.provider import ClientView
from idp.oidc.views import TokenRefused, provider, verified_access_token

ADMIN_SCOPE = "admin"
CHILDREN_SCOPE = "children.read"
ADMINISTERING = frozenset({Role.ORGANISATION_ADMIN, Role.LOCAL_AUTHORITY_TEAM,
                           Role.PLATFORM_ADMIN})


@dataclass(frozen=True)
class Caller:
    principal: Principal
    client_id: str
    is_client: bool


class NotAnAdministrator(Exception):
    """A good token, of someone who administers nothing."""


def _verified(scope: str) -> tuple[Person | None, ClientView]:
    """The token's person (None for an application's own token) and its
    application, once the token is good for `scope` and names this API."""
    # Whatever the cookie says, nobody acts until the token says who.
    _act_as(None, None)
    claims, person = verified_access_token(scope)
    p = provider()
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if p.default_resource not in audiences:
        raise TokenRefused("invalid_token", "the access token is not for this API")
    client = p.query_client(str(claims.get("client_id", "")))
    if client is None:
        raise TokenRefused("invalid_token", "the application is not approved")
    return person, client


def caller() -> Caller:
    """The API caller, or TokenRefused / NotAnAdministrator."""
    unit = web.unit()
    person, client = _verified(ADMIN_SCOPE)
    client_id = client.client_id
    if person is not None:
        principal = principal_for(person, unit.clock.today())
        _act_as(person.id, person.username)
        if not any(g.role in ADMINISTERING for g in principal.grants):
            raise NotAnAdministrator()
        return Caller(principal, client_id, is_client=False)
    org = unit.session.get(Organisation, client.organisation_id)
    label = f"client:{client.client_id}"
    _act_as(None, label)
    if org is None or org.accreditation is not Accreditation.ACCREDITED:
        raise NotAnAdministrator()
    principal = Principal(
        person_id=0,
        username=label,
        grants=(Grant(organisation_id=client.organisation_id, role=Role.ORGANISATION_ADMIN),),
    )
    return Caller(principal, client_id, is_client=True)


class NoPractitioner(Exception):
    """A good token with scope `children.read` that acts for nobody: an
    application's own (client credentials). Child records are read only for a
    signed-in practitioner, under their own access and audit trail."""

    def __init__(self, client_id: str) -> None:
        super().__init__(client_id)
        self.client_id = client_id


def practitioner() -> Caller:
    """The person a relying application acts for over the child-record API, or
    TokenRefused / NoPractitioner. Whether that person may use the children's
    directory (current position, clearance, role) is `directory.children`'s to
    decide afresh on each call; the token only says who they are."""
    unit = web.unit()
    person, client = _verified(CHILDREN_SCOPE)
    if person is None:
        _act_as(None, f"client:{client.client_id}")
        raise NoPractitioner(client.client_id)
    if CHILDREN_SCOPE not in client.scopes:
        # The application lost the scope since the token was issued.
        raise TokenRefused("insufficient_scope",
                           f"the application is no longer allowed {CHILDREN_SCOPE}", 403)
    _act_as(person.id, person.username)
    return Caller(principal_for(person, unit.clock.today()), client.client_id, is_client=False)


def _act_as(person_id: int | None, label: str | None) -> None:
    unit = web.unit()
    unit.context = unit.context.as_actor(person_id, label)
    if "audit" in unit.__dict__:
        unit.audit.context = unit.context
