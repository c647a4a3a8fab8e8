"""The authorization server: Authlib's grants with this service's storage.

Authlib does the protocol (parameter rules, client authentication, PKCE
verification, error responses); this module decides what is stored, what a
token says and who may still have one. Grants are subclassed here, in one
place, and nowhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749 import grants as oauth_grants
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import KeySet
from sqlalchemy import Date, bindparam, select, update
from werkzeug.wrappers import Response

from core.settings import Settings
from directory.models import Person
from directory.service import access_blockers, current_positions, usable_clause
from idp.container import Unit
from idp.oidc import dpop
from idp.oidc.clients import sector_of
from idp.oidc.keys import KeyStore
from idp.oidc.models import (
    AuthorizationCode,
    ClientKind,
    ClientStatus,
    Grant,
    OAuthClient,
    RevokedAccessToken,
)

UnitGetter = Callable[[], Unit]


class InvalidDPoPProof(OAuth2Error):  # type: ignore[misc]
    """RFC 9449 section 5.2."""

    error = "invalid_dpop_proof"


class UseDPoPNonce(OAuth2Error):  # type: ignore[misc]
    error = "use_dpop_nonce"


@dataclass(frozen=True)
class ClientView:
    """A snapshot of a client's registration, safe to cache for a few seconds
    per process (the token endpoint's hottest read). Implements Authlib's
    ClientMixin."""

    client_id: str
    organisation_id: int
    name: str
    kind: ClientKind
    auth_method: str
    secret_digest: str | None
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    backchannel_logout_uri: str | None
    scopes: tuple[str, ...]
    grant_types: tuple[str, ...]
    resource_uri: str | None
    dpop_required: bool
    par_required: bool
    subject_type: str
    sector: str
    id_token_signed_response_alg: str
    first_party: bool
    matches_secret: Callable[[str, str], bool] = field(repr=False, compare=False)

    @classmethod
    def of(cls, row: OAuthClient, matches_secret: Callable[[str, str], bool]) -> ClientView:
        return cls(
            client_id=row.client_id,
            organisation_id=row.organisation_id,
            name=row.name,
            kind=row.kind,
            auth_method=row.auth_method,
            secret_digest=row.secret_digest,
            jwks=row.jwks,
            jwks_uri=row.jwks_uri,
            redirect_uris=tuple(row.redirect_uris),
            post_logout_redirect_uris=tuple(row.post_logout_redirect_uris),
            backchannel_logout_uri=row.backchannel_logout_uri,
            scopes=tuple(row.scopes),
            grant_types=tuple(row.grant_types),
            resource_uri=row.resource_uri,
            dpop_required=row.dpop_required,
            par_required=row.par_required,
            subject_type=row.subject_type,
            sector=sector_of(row) if row.subject_type == "pairwise" else "",
            id_token_signed_response_alg=row.id_token_alg,
            first_party=row.first_party,
            matches_secret=matches_secret,
        )

    # Authlib's ClientMixin
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # every request must name its redirect URI exactly

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.scopes)
        return " ".join(s for s in scope_to_list(scope) if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if self.auth_method != "client_secret_basic" or not self.secret_digest:
            return False
        return self.matches_secret(client_secret, self.secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


class ClientCache:
    """Approved clients, per process, for `client_cache_seconds`."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, ClientView | None]] = {}
        self._lock = threading.Lock()

    def get(self, unit: Unit, client_id: str) -> ClientView | None:
        now = time.monotonic()
        hit = self._entries.get(client_id)
        if hit is not None and now - hit[0] < self.seconds:
            return hit[1]
        row = unit.session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
        view = None
        if row is not None and row.status is ClientStatus.APPROVED:
            view = ClientView.of(row, unit.container.digester.matches)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[client_id] = (now, view)
        return view

    def forget(self, client_id: str) -> None:
        self._entries.pop(client_id, None)


class JwksCache:
    """Clients' keys from their `jwks_uri`, fetched at most once a minute."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, uri: str, *, force: bool = False) -> dict[str, Any]:
        hit = self._entries.get(uri)
        if hit is not None and not force and time.monotonic() - hit[0] < 60:
            return hit[1]
        with urllib.request.urlopen(uri, timeout=5) as response:  # noqa: S310 - https checked at registration
            data = json.loads(response.read(256 * 1024))
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("not a JWK set")
        self._entries[uri] = (time.monotonic(), data)
        return data


def digest(unit: Unit, secret: str) -> str:
    return unit.container.digester.digest(secret)


class HasPublicId(Protocol):
    @property
    def public_id(self) -> str: ...


class GrantLike(Protocol):
    """A grant as the ORM row (code exchange) or as the facts the refresh path
    reads in one statement."""

    id: int
    sid: str
    acr: str
    amr: list[str]
    auth_time: datetime
    resource: str
    dpop_jkt: str | None
    refresh_counter: int


def subject_for(person: HasPublicId, client: ClientView, unit: Unit) -> str:
    """`sub`: the person's public id, or a pairwise one per sector (OIDC Core 8.1),
    so that two applications of different sectors cannot join their records."""
    if client.subject_type == "pairwise":
        return digest(unit, f"pairwise|{client.sector}|{person.public_id}")
    return person.public_id


def person_claims(person: Person, scopes: list[str], today: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims.update(
            name=person.display_name,
            given_name=person.given_name,
            family_name=person.family_name,
            preferred_username=person.username,
        )
    if "email" in scopes:
        claims.update(email=person.work_email, email_verified=True)
    if "phone" in scopes and person.work_phone:
        claims.update(phone_number=person.work_phone, phone_number_verified=False)
    if "positions" in scopes:
        claims["positions"] = [
            {
                "organisation": p.organisation.name,
                "organisation_code": p.organisation.code,
                "role": p.role.value,
                "start": p.starts_on.isoformat(),
                "end": p.ends_on.isoformat() if p.ends_on else None,
            }
            for p in current_positions(person, today)
        ]
    if "clearance" in scopes and person.clearance_expires_on is not None:
        claims["clearance_valid_until"] = person.clearance_expires_on.isoformat()
    return claims


def person_may_continue(unit: Unit, person: Person, grant: Grant) -> bool:
    """Whether tokens of this grant still work: the person is active, cleared,
    trained and placed today, and nothing ended their access since the grant
    (suspension, reset, a sweep: each bumps the security epoch)."""
    if grant.revoked_at is not None or grant.expires_at <= unit.clock.now():
        return False
    if person.security_epoch != grant.person_epoch:
        return False
    return not access_blockers(person, unit.clock.today())


class Provider:
    """Everything the OIDC views need, built once per app."""

    def __init__(self, unit_getter: UnitGetter, settings: Settings, keys: KeyStore) -> None:
        self.unit = unit_getter
        self.settings = settings
        self.issuer: str = settings.issuer
        self.keys = keys
        self.clients = ClientCache(settings.oidc.client_cache_seconds)
        self.jwks_cache = JwksCache()
        self.default_resource = settings.oidc.default_resource or f"{self.issuer}/api/v1"
        self.server = self._build_server()

    # -- endpoints' URLs (used for `aud` of client assertions and DPoP `htu`)
    def url(self, path: str) -> str:
        return f"{self.issuer}{path}"

    def _build_server(self) -> AuthorizationServer:
        provider = self
        server = _Server(provider)
        server.register_client_auth_method("private_key_jwt", PrivateKeyJwt(provider))
        server.register_grant(CodeGrant, [S256Only(required=True), IdTokens(provider)])
        server.register_grant(RefreshGrant)
        server.register_grant(ClientCredentialsGrant)
        return server

    def query_client(self, client_id: str) -> ClientView | None:
        if not isinstance(client_id, str) or len(client_id) > 64:
            return None
        return self.clients.get(self.unit(), client_id)

    # -- tokens
    def resource_for(self, client: ClientView, requested: str | None) -> str:
        """RFC 8707: the `aud` of the access token; only registered resources."""
        if not requested:
            return self.default_resource
        if requested == self.default_resource:
            return requested
        unit = self.unit()
        known = unit.session.scalar(
            select(OAuthClient.id).where(
                OAuthClient.resource_uri == requested,
                OAuthClient.kind == ClientKind.RESOURCE_SERVER,
                OAuthClient.status == ClientStatus.APPROVED,
            )
        )
        if known is None:
            raise InvalidTargetError(f"'{requested}' is not a registered resource")
        return requested

    def access_token(
        self,
        client: ClientView,
        *,
        scope: str,
        resource: str,
        person: HasPublicId | None = None,
        grant: GrantLike | None = None,
        jkt: str | None = None,
    ) -> tuple[str, int]:
        unit = self.unit()
        now = int(unit.clock.now().timestamp())
        lifetime = self.settings.oidc.access_token_seconds
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": resource,
            "exp": now + lifetime,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": client.client_id,
            "scope": scope,
        }
        if person is not None and grant is not None:
            claims["sub"] = subject_for(person, client, unit)
            claims["auth_time"] = int(grant.auth_time.timestamp())
            claims["acr"] = grant.acr
            claims["amr"] = list(grant.amr)
            claims["sid"] = grant.sid
            claims["gid"] = grant.id
        else:
            claims["sub"] = client.client_id
        if jkt:
            claims["cnf"] = {"jkt": jkt}
        token = self.keys.sign(lambda: unit.session, unit.clock, claims, alg="ES256",
                               typ="at+jwt")
        return token, lifetime

    def refresh_token(self, grant: GrantLike) -> str:
        """The refresh token of the grant's current counter: `rt.<grant>.<n>.<mac>`.
        Nothing is stored for it; the MAC (keyed from the data key) makes it
        unforgeable, and the counter makes every older one worthless."""
        counter = grant.refresh_counter
        return f"rt.{grant.id}.{counter}.{self.refresh_mac(grant, counter)}"

    def refresh_mac(self, grant: GrantLike, counter: int) -> str:
        return digest(self.unit(), f"refresh|{grant.id}|{counter}|{grant.sid}")

    @staticmethod
    def parse_refresh(value: str) -> tuple[int, int, str] | None:
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != "rt" or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        if len(parts[1]) > 18 or len(parts[2]) > 9:
            return None
        return int(parts[1]), int(parts[2]), parts[3]

    def refresh_grant(self, value: str) -> tuple[Grant, bool] | None:
        """The grant a refresh token belongs to, and whether it is the current one
        (False: rotated away). None when it is not a token of ours at all."""
        parsed = self.parse_refresh(value)
        if parsed is None:
            return None
        grant_id, counter, mac = parsed
        grant = self.unit().session.get(Grant, grant_id)
        if grant is None or counter > grant.refresh_counter:
            return None
        if not hmac.compare_digest(mac, self.refresh_mac(grant, counter)):
            return None
        return grant, counter == grant.refresh_counter

    def token_response(
        self,
        client: ClientView,
        request: OAuth2Request,
        *,
        scope: str,
        person: HasPublicId | None = None,
        grant: GrantLike | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        jkt = self.dpop_for_token_request(client, request, grant)
        resource = grant.resource if grant is not None else self.resource_for(
            client, request.form.get("resource"))
        access, lifetime = self.access_token(
            client, scope=scope, resource=resource, person=person, grant=grant, jkt=jkt)
        token: dict[str, Any] = {
            "access_token": access,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        if include_refresh_token and grant is not None:
            token["refresh_token"] = self.refresh_token(grant)
        return token

    def dpop_for_token_request(
        self, client: ClientView, request: OAuth2Request, grant: GrantLike | None
    ) -> str | None:
        header = request.headers.get("DPoP")
        if header is None:
            if client.dpop_required:
                raise InvalidDPoPProof("this client must send a DPoP proof")
            if grant is not None and grant.dpop_jkt:
                raise InvalidDPoPProof("these tokens are bound to a DPoP key")
            return None
        unit = self.unit()
        try:
            proof = dpop.verify(
                header,
                method="POST",
                url=self.url("/oauth2/token"),
                clock=unit.clock,
                shared=unit.shared,
                max_age_seconds=self.settings.oidc.dpop_max_age_seconds,
            )
        except dpop.DPoPError as exc:
            raise InvalidDPoPProof(str(exc)) from exc
        if grant is not None:
            if grant.dpop_jkt and grant.dpop_jkt != proof.jkt:
                raise InvalidDPoPProof("the DPoP key is not the one these tokens are bound to")
            grant.dpop_jkt = proof.jkt
        return proof.jkt

    # -- revocation of a whole family
    def revoke_grant(self, grant: Grant, reason: str) -> None:
        unit = self.unit()
        if grant.revoked_at is None:
            grant.revoked_at = unit.clock.now()
            grant.revoked_reason = reason

    def is_access_token_revoked(self, jti: str) -> bool:
        unit = self.unit()
        return unit.session.get(RevokedAccessToken, jti) is not None


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 section 2."""

    error = "invalid_target"


class _Server(AuthorizationServer):  # type: ignore[misc]
    """Authlib's framework-free server with Flask requests and our storage."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(scopes_supported=None)
        self.provider = provider

    def query_client(self, client_id: str) -> ClientView | None:
        return self.provider.query_client(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are stored as they are made (see Provider.token_response)."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        """From Flask's request, or from the plain werkzeug request that the
        token endpoint's WSGI layer passes (the adapter needs only werkzeug's)."""
        from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request

        if isinstance(request, OAuth2Request):
            return request
        if request is None:
            from flask import request as flask_request

            request = flask_request
        return FlaskOAuth2Request(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> Any:
        payload = json.dumps(body) if isinstance(body, dict) else body
        response = Response(payload, status=status, headers=headers)
        response.headers["Cache-Control"] = "no-store"
        return response

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication; every assertion's `jti` works once."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, provider: Provider) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.provider = provider

    def get_audiences(self) -> list[str]:
        p = self.provider
        return [p.issuer, p.url("/oauth2/token"), p.url("/oauth2/par"),
                p.url("/oauth2/introspect"), p.url("/oauth2/revoke")]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        unit = self.provider.unit()
        exp = int(claims.get("exp", 0))
        ttl = max(60, exp - int(unit.clock.now().timestamp()) + 60)
        return bool(unit.shared.add_once(f"client-jti:{claims['sub']}:{jti}", min(ttl, 86400)))

    def resolve_client_public_key(self, client: ClientView) -> KeySet:
        if client.auth_method != "private_key_jwt":
            raise InvalidClientError(description="the client does not use private_key_jwt")
        if client.jwks:
            return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
        if client.jwks_uri:
            fetched = self.provider.jwks_cache.get(client.jwks_uri)
            return KeySet.import_key_set(fetched)  # type: ignore[arg-type]
        raise InvalidClientError(description="the client has no keys")


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, S256 only: `plain` (Authlib's default when the method
    is left out) would put the verifier itself in the browser's address bar."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)",
                                      redirect_uri=redirect_uri)
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256",
                                      redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)


@dataclass
class CodeRecord:
    """What Authlib needs of a stored code (AuthorizationCodeMixin)."""

    row: AuthorizationCode
    grant: Grant
    person: Person

    @property
    def code_challenge(self) -> str:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return self.row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.grant.scope

    def get_nonce(self) -> str | None:
        return self.grant.nonce

    def get_auth_time(self) -> int:
        return int(self.grant.auth_time.timestamp())

    def get_acr(self) -> str:
        return self.grant.acr

    def get_amr(self) -> list[str]:
        return list(self.grant.amr)


@dataclass
class PendingAuthorization:
    """What the authorize view knows about the sign-in that grants a code."""

    person: Person
    auth_session_id: int
    acr: str
    amr: list[str]
    auth_time: datetime
    sid: str
    dpop_jkt: str | None = None


class CodeGrant(oauth_grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]

    @property
    def provider(self) -> Provider:
        provider: Provider = self.server.provider
        return provider

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        p = self.provider
        unit = p.unit()
        pending: PendingAuthorization = request.user
        client: ClientView = request.client
        now = unit.clock.now()
        data = request.payload.data
        grant = Grant(
            client_id=client.client_id,
            person_id=pending.person.id,
            auth_session_id=pending.auth_session_id,
            person_epoch=pending.person.security_epoch,
            scope=request.scope or "",
            acr=pending.acr,
            amr=list(pending.amr),
            auth_time=pending.auth_time,
            nonce=data.get("nonce"),
            sid=pending.sid,
            resource=p.resource_for(client, data.get("resource")),
            created_at=now,
            expires_at=now + timedelta(hours=p.settings.oidc.refresh_token_hours),
            dpop_jkt=pending.dpop_jkt,
        )
        unit.session.add(grant)
        unit.session.flush()
        unit.session.add(
            AuthorizationCode(
                digest=digest(unit, code),
                grant_id=grant.id,
                client_id=client.client_id,
                redirect_uri=data["redirect_uri"],
                code_challenge=data["code_challenge"],
                code_challenge_method=data.get("code_challenge_method", "S256"),
                dpop_jkt=pending.dpop_jkt,
                expires_at=now + timedelta(seconds=p.settings.oidc.code_seconds),
            )
        )
        unit.audit.record(
            "oidc:code:issued", subject_type="person", subject_id=pending.person.id,
            detail={"client_id": client.client_id, "scope": grant.scope, "grant": grant.id},
        )

    def query_authorization_code(self, code: str, client: ClientView) -> CodeRecord | None:
        p = self.provider
        unit = p.unit()
        row = unit.session.scalar(
            select(AuthorizationCode).where(AuthorizationCode.digest == digest(unit, code))
        )
        if row is None or row.client_id != client.client_id:
            return None
        grant = unit.session.get(Grant, row.grant_id)
        if grant is None:
            return None
        if row.used_at is not None:
            # RFC 6749 4.1.2: a second use revokes what the first one issued. The
            # refusal is an error response, so commit the revocation here.
            p.revoke_grant(grant, "authorization code replayed")
            unit.audit.record(
                "oidc:code:replayed", "failure", subject_type="person",
                subject_id=grant.person_id, detail={"client_id": client.client_id,
                                                    "grant": grant.id},
            )
            unit.commit()
            return None
        if row.expires_at <= unit.clock.now():
            return None
        person = unit.session.get(Person, grant.person_id)
        if person is None:
            return None
        return CodeRecord(row, grant, person)

    def delete_authorization_code(self, record: CodeRecord) -> None:
        record.row.used_at = self.provider.unit().clock.now()

    def authenticate_user(self, record: CodeRecord) -> Person | None:
        if not person_may_continue(self.provider.unit(), record.person, record.grant):
            return None
        if record.row.dpop_jkt and not self.request.headers.get("DPoP"):
            raise InvalidDPoPProof("the code is bound to a DPoP key: send a proof")
        return record.person

    def generate_token(self, user: Person | None = None, scope: str | None = None,
                       grant_type: str | None = None, expires_in: int | None = None,
                       include_refresh_token: bool = True) -> dict[str, Any]:
        record: CodeRecord = self.request.authorization_code
        token = self.provider.token_response(
            self.request.client, self.request, scope=scope or "", person=user,
            grant=record.grant, include_refresh_token=include_refresh_token,
        )
        self.provider.unit().audit.record(
            "oidc:token:issued", subject_type="person", subject_id=record.person.id,
            detail={"client_id": self.request.client.client_id, "grant_type": "authorization_code",
                    "grant": record.grant.id},
        )
        return token


class IdTokens(OpenIDCode):  # type: ignore[misc]
    """ID tokens signed with the provider's current key (ES256, RS256 on request)."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # a nonce is the client's to check; codes are single use here

    def generate_user_info(self, user: Person, scope: str) -> dict[str, Any]:
        return {}

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        p = self.provider
        unit = p.unit()
        record: CodeRecord = request.authorization_code
        client: ClientView = request.client
        now = int(unit.clock.now().timestamp())
        alg = client.id_token_signed_response_alg
        claims: dict[str, Any] = {
            "iss": p.issuer,
            "sub": subject_for(record.person, client, unit),
            "aud": client.client_id,
            "azp": client.client_id,
            "exp": now + p.settings.oidc.id_token_seconds,
            "iat": now,
            "auth_time": record.get_auth_time(),
            "acr": record.grant.acr,
            "amr": list(record.grant.amr),
            "sid": record.grant.sid,
        }
        if record.grant.nonce:
            claims["nonce"] = record.grant.nonce
        # Both of our algorithms hash with SHA-256 (OIDC Core 3.1.3.6).
        digest_of_token = hashlib.sha256(token["access_token"].encode()).digest()
        claims["at_hash"] = dpop.b64url(digest_of_token[:16])
        claims.update(person_claims(record.person, scope_to_list(token["scope"]),
                                    unit.clock.today()))
        id_token: str = p.keys.sign(unit.session, unit.clock, claims, alg=alg, typ="JWT")
        return id_token


class RefreshGrant(oauth_grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def provider(self) -> Provider:
        provider: Provider = self.server.provider
        return provider

    def authenticate_refresh_token(self, value: str) -> RefreshRecord | None:
        """One read for everything: the grant, the person's subject and epoch, and
        whether they may still use the service today (directory's rule, as SQL)."""
        p = self.provider
        unit = p.unit()
        parsed = p.parse_refresh(value)
        if parsed is None:
            return None
        grant_id, counter, mac = parsed
        rows = unit.rows(_REFRESH_READ, {"grant_id": grant_id, "today": unit.clock.today()})
        if not rows:
            return None
        facts = GrantFacts(*rows[0][:_FACTS])
        security_epoch, usable = rows[0][_FACTS:]
        if counter > facts.refresh_counter:
            return None
        if not hmac.compare_digest(mac, p.refresh_mac(facts, counter)):
            return None
        if counter < facts.refresh_counter:
            if facts.revoked_at is None:
                # A rotated-away token came back: someone holds a copy. End the family.
                grant = unit.session.get(Grant, grant_id)
                if grant is not None:
                    p.revoke_grant(grant, "refresh token reused")
                unit.audit.record(
                    "oidc:refresh:reused", "failure", subject_type="person",
                    subject_id=facts.person_id,
                    detail={"client_id": facts.client_id, "grant": grant_id},
                )
                unit.commit()
            return None
        if (facts.revoked_at is not None or facts.expires_at <= unit.clock.now()
                or security_epoch != facts.person_epoch or not usable):
            return None
        return RefreshRecord(facts)

    def authenticate_user(self, record: RefreshRecord) -> GrantFacts:
        return record.grant

    def revoke_old_credential(self, record: RefreshRecord) -> None:
        """Rotation: move the grant's counter on, only from the value we read, so
        that two nodes racing with one token cannot both use it."""
        unit = self.provider.unit()
        facts = record.grant
        rotated = unit.execute(_ROTATE, {
            "grant_id": facts.id, "was": facts.refresh_counter - 1,
            "now": facts.refresh_counter, "jkt": facts.dpop_jkt})
        if rotated != 1:
            unit.rollback()
            raise InvalidGrantError()

    def generate_token(self, user: GrantFacts | None = None, scope: str | None = None,
                       grant_type: str | None = None, expires_in: int | None = None,
                       include_refresh_token: bool = True) -> dict[str, Any]:
        record: RefreshRecord = self.request.refresh_token
        facts = record.grant
        facts.refresh_counter += 1  # the token issued now is the next one
        return self.provider.token_response(
            self.request.client, self.request, scope=scope or facts.scope, person=facts,
            grant=facts, include_refresh_token=True,
        )


@dataclass
class GrantFacts:
    """The columns of a grant that a refresh needs, read without the ORM."""

    id: int
    client_id: str
    person_id: int
    person_epoch: int
    scope: str
    acr: str
    amr: list[str]
    auth_time: datetime
    sid: str
    resource: str
    expires_at: datetime
    revoked_at: datetime | None
    dpop_jkt: str | None
    refresh_counter: int
    public_id: str


_FACT_COLUMNS = (Grant.id, Grant.client_id, Grant.person_id, Grant.person_epoch, Grant.scope,
                 Grant.acr, Grant.amr, Grant.auth_time, Grant.sid, Grant.resource,
                 Grant.expires_at, Grant.revoked_at, Grant.dpop_jkt, Grant.refresh_counter)
_FACTS = len(_FACT_COLUMNS) + 1  # and the person's public id
# A refresh is these two statements, compiled once per engine and run on the
# DB-API cursor (core.db.PreparedStatement): building, hashing and executing
# SQL expressions through SQLAlchemy per request cost more than running them.
_REFRESH_READ = (
    select(*_FACT_COLUMNS, Person.public_id, Person.security_epoch,
           usable_clause(bindparam("today", type_=Date)).label("usable"))
    .join(Person, Person.id == Grant.person_id)
    .where(Grant.id == bindparam("grant_id"))
)
_ROTATE = (
    update(Grant)
    .where(Grant.id == bindparam("grant_id"), Grant.refresh_counter == bindparam("was"),
           Grant.revoked_at.is_(None))
    .values(refresh_counter=bindparam("now"), dpop_jkt=bindparam("jkt"))
)


@dataclass
class RefreshRecord:
    grant: GrantFacts

    def check_client(self, client: ClientView) -> bool:
        return self.grant.client_id == client.client_id

    def get_scope(self) -> str:
        return self.grant.scope


class ClientCredentialsGrant(oauth_grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]

    def validate_requested_scope(self) -> None:
        requested = scope_to_list(self.request.payload.scope or "") or []
        client: ClientView = self.request.client
        if any(s not in client.scopes or s in ("openid", "offline_access") for s in requested):
            raise InvalidScopeError()

    def generate_token(self, user: Person | None = None, scope: str | None = None,
                       grant_type: str | None = None, expires_in: int | None = None,
                       include_refresh_token: bool = True) -> dict[str, Any]:
        provider: Provider = self.server.provider
        return provider.token_response(self.request.client, self.request, scope=scope or "")
