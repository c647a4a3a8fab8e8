"""What federation stores: an organisation's upstream provider, the links of
upstream accounts to people, and the requests in flight to a provider.

The upstream client secret must be sent to the provider, so it cannot be
hashed: it is kept encrypted with the data key (AES-GCM bound to the
provider's row), as is a private key for private_key_jwt. The state of a
request in flight is kept only as a keyed digest, so a copy of the table
cannot answer a callback.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


class UpstreamProvider(Base):
    """One organisation's own OpenID Connect provider (one per organisation)."""

    __tablename__ = "upstream_provider"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(
        ForeignKey("organisation.id"), unique=True, nullable=False
    )
    issuer: Mapped[str] = mapped_column(String(500), nullable=False)
    client_id: Mapped[str] = mapped_column(String(200), nullable=False)
    # client_secret_basic or private_key_jwt.
    auth_method: Mapped[str] = mapped_column(String(40), nullable=False)
    # The secret, or the private key's PEM, encrypted with the data key.
    credential_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    username_claim: Mapped[str] = mapped_column(String(100), nullable=False)
    # Upstream `acr` values this organisation accepts as meeting level 2.
    accepted_acr: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class UpstreamLink(Base):
    """An upstream account, (issuer, subject), that signs one person in."""

    __tablename__ = "upstream_link"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("upstream_provider.id"), index=True, nullable=False
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    issuer: Mapped[str] = mapped_column(String(500), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    # The username claim's value when linked, for the person and admins to read.
    upstream_username: Mapped[str | None] = mapped_column(String(255))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class UpstreamRequest(Base):
    """An authorization request sent to an upstream provider, waiting for its
    callback: used once, within minutes, by the browser that started it."""

    __tablename__ = "upstream_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("upstream_provider.id"), index=True, nullable=False
    )
    # "signin" or "link"; a link request names the signed-in person.
    purpose: Mapped[str] = mapped_column(String(20), nullable=False)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    nonce: Mapped[str] = mapped_column(String(100), nullable=False)
    verifier_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
