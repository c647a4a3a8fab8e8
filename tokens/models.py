"""Stored authenticators. Nothing here holds a secret in a form that can be used:
passwords and PINs as argon2id hashes, OTP seeds encrypted with the data key,
letter codes and session tokens as keyed digests."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls, name=name, native_enum=False, length=40, values_callable=lambda e: [m.value for m in e]
    )


class PasswordCredential(Base):
    __tablename__ = "password_credential"

    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(200), nullable=False)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class PinCredential(Base):
    __tablename__ = "pin_credential"

    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(200), nullable=False)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class TokenForm(enum.StrEnum):
    SOFT = "soft"
    HARDWARE = "hardware"


class OtpAlgorithm(enum.StrEnum):
    TOTP = "totp"
    HOTP = "hotp"


class TokenState(enum.StrEnum):
    IN_STOCK = "in_stock"
    ASSIGNED = "assigned"
    ACTIVE = "active"
    LOST = "lost"
    REVOKED = "revoked"
    RETURNED = "returned"


class OtpToken(Base):
    __tablename__ = "otp_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    form: Mapped[TokenForm] = mapped_column(_enum(TokenForm, "token_form"))
    algorithm: Mapped[OtpAlgorithm] = mapped_column(_enum(OtpAlgorithm, "otp_algorithm"))
    digits: Mapped[int] = mapped_column(Integer, nullable=False)
    period_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    secret_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    # TOTP: the last time step accepted; HOTP: the next counter expected.
    # A code is accepted only past this mark, so each code works once.
    last_step: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    drift_steps: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[TokenState] = mapped_column(_enum(TokenState, "token_state"))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CodePurpose(enum.StrEnum):
    ACTIVATION = "activation"
    PIN_RESET = "pin_reset"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose, not a secret


class LetterCode(Base):
    """A one-time code sent by letter: single use, expiring, stored as a digest."""

    __tablename__ = "letter_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    purpose: Mapped[CodePurpose] = mapped_column(_enum(CodePurpose, "code_purpose"))
    digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SignInGuard(Base):
    """Consecutive failures and locks of one account, shared by every node."""

    __tablename__ = "signin_guard"

    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    lock_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_permanently: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Flow(Base):
    """A journey in progress (sign-in, activation), held server-side.

    The browser holds only the flow's random token; the stage and its expiry
    live here, so no step can be skipped by editing a cookie.
    """

    __tablename__ = "auth_flow"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    stage: Mapped[str] = mapped_column(String(20), nullable=False)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    epoch: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class AuthSession(Base):
    __tablename__ = "auth_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    epoch: Mapped[int] = mapped_column(Integer, nullable=False)
    acr: Mapped[str] = mapped_column(String(40), nullable=False)
    amr: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    absolute_expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(80))
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class TokenEvent(Base):
    """The history of one OTP token: every change of state, who made it, when."""

    __tablename__ = "token_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("otp_token.id"), index=True, nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    event: Mapped[str] = mapped_column(String(40), nullable=False)
    state: Mapped[TokenState] = mapped_column(_enum(TokenState, "token_state"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))
    actor_label: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)


class SecurityKey(Base):
    """A FIDO2 / WebAuthn credential: the public key only; the private key never
    leaves the person's authenticator."""

    __tablename__ = "security_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True, nullable=False)
    # base64url of the credential id, as the browser reports it
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True, nullable=False)
    public_key: Mapped[str] = mapped_column(Text, nullable=False)
    sign_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    aaguid: Mapped[str | None] = mapped_column(String(36))
    attestation_format: Mapped[str | None] = mapped_column(String(40))
    transports: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    user_verified: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuthenticatorPolicy(Base):
    """What an organisation lets its people sign in with. No row: everything
    allowed, attestation not required, user verification preferred."""

    __tablename__ = "authenticator_policy"

    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), primary_key=True)
    allow_soft_token: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    allow_hardware_token: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    allow_security_key: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # WebAuthn: "none" accepts any key; "direct" requires an attestation statement.
    attestation: Mapped[str] = mapped_column(String(10), nullable=False, default="none")
    # WebAuthn: "required", "preferred" or "discouraged".
    user_verification: Mapped[str] = mapped_column(String(12), nullable=False, default="preferred")
