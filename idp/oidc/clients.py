"""Relying applications: registered by their organisation, approved centrally.

Whoever administers an organisation (`directory.service.administers`: its admins,
the local authority team of its area, platform admins) registers and looks after
its applications; a platform admin who did not register one approves it before it gets anything
but `invalid_client`. Secrets are random, shown once, kept as a keyed digest.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import Auditor
from core.clock import Clock
from core.crypto import SecretDigester
from core.errors import Conflict, FieldProblem, InvalidInput, NotAllowed, NotFound
from directory.accreditation import given_reason, reason_detail
from directory.administration import Page, page_bounds
from directory.models import Organisation
from directory.service import Principal, administered_clause, administers
from idp.oidc.models import ClientKind, ClientStatus, OAuthClient

SCOPES = ("openid", "profile", "email", "phone", "positions", "clearance", "offline_access",
          "children.read", "admin")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
AUTH_METHODS = ("client_secret_basic", "private_key_jwt")
ID_TOKEN_ALGS = ("ES256", "RS256")


@dataclass
class Registration:
    """What an organisation admin fills in; validated as a whole."""

    organisation_id: int
    name: str
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    backchannel_logout_uri: str | None = None
    auth_method: str = "client_secret_basic"
    jwks: dict[str, object] | None = None
    jwks_uri: str | None = None
    scopes: list[str] = field(default_factory=lambda: ["openid", "profile"])
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    dpop_required: bool = False
    par_required: bool = False
    subject_type: str = "public"
    sector_identifier: str | None = None
    id_token_alg: str = "ES256"  # noqa: S105 - an algorithm name
    kind: ClientKind = ClientKind.APPLICATION
    resource_uri: str | None = None


def _is_loopback_http(parts: object) -> bool:
    host = getattr(parts, "hostname", None) or ""
    return host in ("127.0.0.1", "localhost", "::1")


def _host(uri: str) -> str | None:
    try:
        return urlsplit(uri).hostname
    except ValueError:  # reported by _uri_problems
        return None


def _uri_problems(name: str, uris: list[str]) -> list[FieldProblem]:
    """Exact, absolute https URIs (http only on loopback), no fragment: the
    rules OAuth 2.0 Security BCP (RFC 9700) sets for redirects."""
    problems = []
    for index, uri in enumerate(uris):
        where = f"{name}[{index}]"
        try:
            parts = urlsplit(uri)
        except ValueError:  # a malformed IPv6 host, say: not a URL at all
            problems.append(FieldProblem(where, "must be an absolute https URL"))
            continue
        if parts.scheme not in ("https", "http") or not parts.netloc:
            problems.append(FieldProblem(where, "must be an absolute https URL"))
        elif parts.scheme == "http" and not _is_loopback_http(parts):
            problems.append(FieldProblem(where, "must use https (http only on loopback)"))
        elif parts.fragment:
            problems.append(FieldProblem(where, "must not have a fragment"))
        elif "*" in uri:
            problems.append(FieldProblem(where, "must be exact: no wildcards"))
    return problems


def validate(reg: Registration) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    if not reg.name.strip() or len(reg.name) > 200:
        problems.append(FieldProblem("name", "enter a name of up to 200 characters"))
    if reg.auth_method not in AUTH_METHODS:
        problems.append(FieldProblem("auth_method", f"must be one of {', '.join(AUTH_METHODS)}"))
    unknown_scopes = sorted(set(reg.scopes) - set(SCOPES))
    if unknown_scopes:
        problems.append(FieldProblem("scopes", f"unknown scope {unknown_scopes[0]!r}"))
    unknown_grants = sorted(set(reg.grant_types) - set(GRANT_TYPES))
    if unknown_grants:
        problems.append(FieldProblem("grant_types", f"unknown grant type {unknown_grants[0]!r}"))
    if reg.kind is ClientKind.APPLICATION and not reg.grant_types:
        problems.append(FieldProblem("grant_types", "choose at least one grant type"))
    if "authorization_code" in reg.grant_types and not reg.redirect_uris:
        problems.append(FieldProblem("redirect_uris", "the code flow needs a redirect URI"))
    problems += _uri_problems("redirect_uris", reg.redirect_uris)
    problems += _uri_problems("post_logout_redirect_uris", reg.post_logout_redirect_uris)
    if reg.backchannel_logout_uri:
        problems += _uri_problems("backchannel_logout_uri", [reg.backchannel_logout_uri])
    if reg.jwks_uri:
        problems += _uri_problems("jwks_uri", [reg.jwks_uri])
    if reg.auth_method == "private_key_jwt":
        if not reg.jwks and not reg.jwks_uri:
            problems.append(FieldProblem("jwks", "private_key_jwt needs a JWKS or a jwks_uri"))
        if reg.jwks:
            try:
                keys = KeySet.import_key_set(reg.jwks)  # type: ignore[arg-type]
                if any(k.is_private for k in keys):
                    problems.append(FieldProblem("jwks", "must hold public keys only"))
            except (JoseError, ValueError, TypeError, KeyError):
                problems.append(FieldProblem("jwks", "is not a valid JWK set"))
    if reg.subject_type not in ("public", "pairwise"):
        problems.append(FieldProblem("subject_type", "must be public or pairwise"))
    if reg.subject_type == "pairwise":
        hosts = {_host(u) for u in reg.redirect_uris}
        if not reg.sector_identifier and len(hosts) > 1:
            problems.append(FieldProblem(
                "sector_identifier", "needed when the redirect URIs are on several hosts"))
    if reg.id_token_alg not in ID_TOKEN_ALGS:
        problems.append(FieldProblem("id_token_alg", "must be ES256 or RS256"))
    if reg.kind is ClientKind.RESOURCE_SERVER:
        if not reg.resource_uri:
            problems.append(FieldProblem("resource_uri", "a resource server needs its URI"))
        else:
            problems += _uri_problems("resource_uri", [reg.resource_uri])
    return problems


def sector_of(client: OAuthClient) -> str:
    """The pairwise sector: the registered identifier, else the redirect host."""
    if client.sector_identifier:
        return urlsplit(client.sector_identifier).hostname or client.sector_identifier
    return urlsplit(client.redirect_uris[0]).hostname or client.client_id


class ClientRegistry:
    def __init__(self, session: Session, digester: SecretDigester, clock: Clock,
                 audit: Auditor) -> None:
        self.session = session
        self.digester = digester
        self.clock = clock
        self.audit = audit

    def get(self, client_id: str) -> OAuthClient:
        client = self.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        if client is None:
            raise NotFound("No such relying application")
        return client

    def administers(self, actor: Principal, organisation_id: int | None) -> bool:
        """Whoever administers the organisation's people looks after its
        applications too (issue 5: a local authority team does in its area what an
        organisation admin does in theirs)."""
        if actor.is_platform_admin:
            return True
        org = self.session.get(Organisation, organisation_id) if organisation_id else None
        return org is not None and administers(actor, org)

    def _may_manage(self, actor: Principal, client: OAuthClient) -> None:
        if not self.administers(actor, client.organisation_id):
            raise NotAllowed()

    def managed(self, actor: Principal, client_id: str) -> OAuthClient:
        """The application, for someone who may look after it; NotAllowed otherwise."""
        client = self.get(client_id)
        self._may_manage(actor, client)
        return client

    def visible_to(self, actor: Principal) -> list[OAuthClient]:
        query = select(OAuthClient).order_by(OAuthClient.name, OAuthClient.id)
        clause = administered_clause(actor)
        if clause is not None:
            query = query.join(
                Organisation, Organisation.id == OAuthClient.organisation_id).where(clause)
        return list(self.session.scalars(query))

    def of_organisation(self, actor: Principal, organisation_id: int, *, page: int = 1,
                        per_page: int = 50) -> Page[OAuthClient]:
        """One organisation's applications, a page at a time, by name: for whoever
        looks after them (the same rule as each one's page)."""
        page, per_page = page_bounds(page, per_page)
        if not self.administers(actor, organisation_id):
            raise NotAllowed()
        if self.session.get(Organisation, organisation_id) is None:
            raise NotFound("No such organisation")
        mine = OAuthClient.organisation_id == organisation_id
        total = self.session.scalar(select(func.count(OAuthClient.id)).where(mine)) or 0
        items = list(self.session.scalars(
            select(OAuthClient).where(mine).order_by(OAuthClient.name, OAuthClient.id)
            .limit(per_page).offset((page - 1) * per_page)))
        return Page(items, total, page, per_page)

    def register(
        self, actor: Principal, reg: Registration, reason: str | None = None
    ) -> tuple[OAuthClient, str | None]:
        """A pending client, and its secret (shown once) when it uses one."""
        if not self.administers(actor, reg.organisation_id):
            raise NotAllowed()
        if self.session.get(Organisation, reg.organisation_id) is None:
            raise NotFound("No such organisation")  # a platform admin's mistyped id
        why = reason_detail(actor, reason)
        problems = validate(reg)
        if reg.resource_uri and self.session.scalar(
            select(OAuthClient.id).where(OAuthClient.resource_uri == reg.resource_uri)
        ):
            problems.append(FieldProblem("resource_uri", "is already registered"))
        if problems:
            raise InvalidInput(problems)
        now = self.clock.now()
        secret = None
        client = OAuthClient(
            client_id="cp-" + secrets.token_urlsafe(12),
            organisation_id=reg.organisation_id,
            name=reg.name.strip(),
            kind=reg.kind,
            status=ClientStatus.PENDING,
            auth_method=reg.auth_method,
            jwks=reg.jwks,
            jwks_uri=reg.jwks_uri,
            redirect_uris=list(reg.redirect_uris),
            post_logout_redirect_uris=list(reg.post_logout_redirect_uris),
            backchannel_logout_uri=reg.backchannel_logout_uri,
            scopes=list(dict.fromkeys(reg.scopes)),
            grant_types=list(dict.fromkeys(reg.grant_types)),
            resource_uri=reg.resource_uri,
            dpop_required=reg.dpop_required,
            par_required=reg.par_required,
            subject_type=reg.subject_type,
            sector_identifier=reg.sector_identifier,
            id_token_alg=reg.id_token_alg,
            registered_by_id=actor.person_id or None,
            registered_at=now,
        )
        if reg.auth_method == "client_secret_basic":
            secret = secrets.token_urlsafe(32)
            client.secret_digest = self.digester.digest(secret)
            client.secret_set_at = now
        self.session.add(client)
        self.session.flush()
        self.audit.record("oidc:client:registered", subject_type="oauth_client",
                          subject_id=client.client_id, organisation_id=client.organisation_id,
                          detail={"name": client.name, "kind": client.kind.value, **why})
        return client, secret

    def approve(self, actor: Principal, client_id: str, reason: str) -> OAuthClient:
        """Platform admins only, and never their own registration; always with the
        reason, checked by the shared rule before anything changes."""
        if not actor.is_platform_admin:
            raise NotAllowed()
        client = self.get(client_id)
        if client.registered_by_id == actor.person_id:
            raise NotAllowed("Someone else must approve an application you registered")
        why = given_reason(reason)
        if client.status is ClientStatus.APPROVED:
            raise Conflict("The application is already approved")
        client.status = ClientStatus.APPROVED
        client.approved_by_id = actor.person_id or None
        client.approved_at = self.clock.now()
        self.audit.record("oidc:client:approved", subject_type="oauth_client",
                          subject_id=client.client_id, organisation_id=client.organisation_id,
                          detail={"reason": why})
        return client

    def suspend(self, actor: Principal, client_id: str, reason: str) -> OAuthClient:
        """Whoever looks after the application, and whoever it is, says why: like
        suspending a person or an organisation, it cuts people off at once."""
        client = self.get(client_id)
        self._may_manage(actor, client)
        why = given_reason(reason)
        client.status = ClientStatus.SUSPENDED
        self.audit.record("oidc:client:suspended", subject_type="oauth_client",
                          subject_id=client.client_id, organisation_id=client.organisation_id,
                          detail={"reason": why})
        return client

    def set_first_party(
        self, actor: Principal, client_id: str, first_party: bool, reason: str | None = None
    ) -> OAuthClient:
        """Platform admins only (it skips the consent page), so always with a reason."""
        if not actor.is_platform_admin:
            raise NotAllowed()
        why = reason_detail(actor, reason)
        client = self.get(client_id)
        client.first_party = first_party
        self.audit.record("oidc:client:first_party", subject_type="oauth_client",
                          subject_id=client.client_id, organisation_id=client.organisation_id,
                          detail={"first_party": first_party, **why})
        return client

    def rotate_secret(self, actor: Principal, client_id: str, reason: str | None = None) -> str:
        client = self.get(client_id)
        self._may_manage(actor, client)
        why = reason_detail(actor, reason)
        if client.auth_method != "client_secret_basic":
            raise Conflict("This application authenticates with its own keys, not a secret")
        secret = secrets.token_urlsafe(32)
        client.secret_digest = self.digester.digest(secret)
        client.secret_set_at = self.clock.now()
        self.audit.record("oidc:client:secret_rotated", subject_type="oauth_client",
                          subject_id=client.client_id, organisation_id=client.organisation_id,
                          detail=why or None)
        return secret
