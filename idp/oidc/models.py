"""What the OpenID Connect provider stores.

Every bearer secret (client secret, code, refresh token, request_uri) is kept
only as a keyed digest, so a copy of the database hands out nothing usable.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls, name=name, native_enum=False, length=40, values_callable=lambda e: [m.value for m in e]
    )


class ClientStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    SUSPENDED = "suspended"


class ClientKind(enum.StrEnum):
    # Signs people in and calls APIs for them (or for itself).
    APPLICATION = "application"
    # Receives access tokens: may introspect those whose `aud` names it.
    RESOURCE_SERVER = "resource_server"


class OAuthClient(Base):
    __tablename__ = "oauth_client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[ClientKind] = mapped_column(_enum(ClientKind, "client_kind"))
    status: Mapped[ClientStatus] = mapped_column(_enum(ClientStatus, "client_status"))
    # client_secret_basic or private_key_jwt.
    auth_method: Mapped[str] = mapped_column(String(40), nullable=False)
    secret_digest: Mapped[str | None] = mapped_column(String(64))
    secret_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    jwks: Mapped[dict[str, object] | None] = mapped_column(JSON)
    jwks_uri: Mapped[str | None] = mapped_column(String(500))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    grant_types: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    # The audience a resource server answers to (RFC 8707 resource indicator).
    resource_uri: Mapped[str | None] = mapped_column(String(500), unique=True)
    dpop_required: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    par_required: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # "public" or "pairwise" (OIDC Core section 8).
    subject_type: Mapped[str] = mapped_column(String(20), nullable=False, default="public")
    sector_identifier: Mapped[str | None] = mapped_column(String(300))
    id_token_alg: Mapped[str] = mapped_column(String(10), nullable=False, default="ES256")
    # First-party applications (marked by a platform admin) skip the consent page.
    first_party: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    registered_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SigningKey(Base):
    """A provider signing key. `next` keys are published before they sign, so
    relying applications that cache the JWKS already know them at rotation."""

    __tablename__ = "oidc_signing_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    alg: Mapped[str] = mapped_column(String(10), nullable=False)
    # "next", "current" or "retired" (published until retain_until, signs nothing).
    state: Mapped[str] = mapped_column(String(10), nullable=False, index=True)
    private_key: Mapped[str] = mapped_column(Text, nullable=False)  # encrypted PEM
    public_jwk: Mapped[dict[str, object]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retain_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Grant(Base):
    """One sign-in's grant to one client: the code and every token it led to.

    Revoking the grant revokes them all: a replayed code or refresh token ends
    the whole family, as RFC 6749 section 4.1.2 and RFC 9700 ask.
    """

    __tablename__ = "oauth_grant"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True, nullable=False)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    auth_session_id: Mapped[int | None] = mapped_column(ForeignKey("auth_session.id"), index=True)
    person_epoch: Mapped[int] = mapped_column(Integer, nullable=False)
    scope: Mapped[str] = mapped_column(String(500), nullable=False)
    acr: Mapped[str] = mapped_column(String(40), nullable=False)
    amr: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    nonce: Mapped[str | None] = mapped_column(String(255))
    sid: Mapped[str] = mapped_column(String(64), nullable=False)
    resource: Mapped[str] = mapped_column(String(500), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(100))
    # The DPoP key the grant's tokens are bound to, once a token was issued bound.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    # Refresh tokens are MACs of (grant, counter): only the one for the current
    # counter works, and rotation is one conditional UPDATE of this number. A
    # token for an older counter is a rotated-away one coming back.
    refresh_counter: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class AuthorizationCode(Base):
    __tablename__ = "oauth_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    grant_id: Mapped[int] = mapped_column(ForeignKey("oauth_grant.id"), nullable=False)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    redirect_uri: Mapped[str] = mapped_column(String(500), nullable=False)
    code_challenge: Mapped[str] = mapped_column(String(128), nullable=False)
    code_challenge_method: Mapped[str] = mapped_column(String(10), nullable=False)
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Consent(Base):
    """What a person agreed a client may have; asked once per scope set."""

    __tablename__ = "oauth_consent"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PushedRequest(Base):
    """RFC 9126: the parameters a client pushed, redeemable once by its request_uri."""

    __tablename__ = "oauth_pushed_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    parameters: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LogoutNotice(Base):
    """A back-channel logout owed to a relying application, and its delivery."""

    __tablename__ = "oidc_logout_notice"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("oauth_grant.id"), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))


class RevokedAccessToken(Base):
    """RFC 7009 for access tokens that belong to no grant (client credentials):
    remembered by `jti` until they would have expired anyway."""

    __tablename__ = "oauth_revoked_access_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
